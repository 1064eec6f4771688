// SPDX-License-Identifier: GPL-2.0
/*
 * ion_test_importer: a test-only dma-buf importer.
 *
 * /dev/ion_test_importer takes a dma-buf fd and does with it what a device
 * driver would: attach its own (platform) device, map each attachment for
 * DMA, vmap the buffer and copy bytes inside begin/end_cpu_access. The VM
 * tests use it to check an exporter from the importer's side of dma-buf.
 */
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/dma-resv.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/iosys-map.h>
#include <linux/kernel.h>
#include <linux/miscdevice.h>
#include <linux/minmax.h>
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/sched.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/version.h>

#include "ion_test_importer.h"

/* Bytes moved per step through the bounce buffer. */
#define ION_TEST_IMPORTER_CHUNK	PAGE_SIZE

/* The device every attachment is made for; it has a 64-bit DMA mask. */
static struct platform_device *ion_test_importer_pdev;

/*
 * Linux 6.2 moved dma-buf to the "dynamic locking" rules: the exporter's
 * map_dma_buf and vmap run under the reservation lock, and static importers
 * call the *_unlocked helpers. 6.1 has no dma_buf_vmap_unlocked(), so there
 * the importer takes the lock itself; the exporter then sees the same
 * locking on both kernels.
 */
static struct sg_table *
ion_test_importer_map(struct dma_buf_attachment *attach)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
	return dma_buf_map_attachment_unlocked(attach, DMA_BIDIRECTIONAL);
#else
	struct sg_table *sgt;

	dma_resv_lock(attach->dmabuf->resv, NULL);
	sgt = dma_buf_map_attachment(attach, DMA_BIDIRECTIONAL);
	dma_resv_unlock(attach->dmabuf->resv);
	return sgt;
#endif
}

static void ion_test_importer_unmap(struct dma_buf_attachment *attach,
				    struct sg_table *sgt)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
	dma_buf_unmap_attachment_unlocked(attach, sgt, DMA_BIDIRECTIONAL);
#else
	dma_resv_lock(attach->dmabuf->resv, NULL);
	dma_buf_unmap_attachment(attach, sgt, DMA_BIDIRECTIONAL);
	dma_resv_unlock(attach->dmabuf->resv);
#endif
}

static int ion_test_importer_vmap(struct dma_buf *dmabuf,
				  struct iosys_map *map)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
	return dma_buf_vmap_unlocked(dmabuf, map);
#else
	int ret;

	dma_resv_lock(dmabuf->resv, NULL);
	ret = dma_buf_vmap(dmabuf, map);
	dma_resv_unlock(dmabuf->resv);
	return ret;
#endif
}

static void ion_test_importer_vunmap(struct dma_buf *dmabuf,
				     struct iosys_map *map)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
	dma_buf_vunmap_unlocked(dmabuf, map);
#else
	dma_resv_lock(dmabuf->resv, NULL);
	dma_buf_vunmap(dmabuf, map);
	dma_resv_unlock(dmabuf->resv);
#endif
}

/* What the device would see: total DMA length and number of segments. */
static void ion_test_importer_measure(struct sg_table *sgt, u64 *dma_len,
				      u32 *segments)
{
	struct scatterlist *sg;
	unsigned int i;

	*dma_len = 0;
	*segments = 0;
	for_each_sgtable_dma_sg(sgt, sg, i) {
		*dma_len += sg_dma_len(sg);
		(*segments)++;
	}
}

/* Moves xfer->len bytes between the vmapped buffer and user memory. */
static int ion_test_importer_copy(struct iosys_map *map,
				  const struct ion_test_importer_xfer *xfer,
				  bool to_buffer)
{
	u8 __user *ubuf = u64_to_user_ptr(xfer->user_buf);
	u64 done = 0;
	void *bounce;
	int ret = 0;

	if (!xfer->len)
		return 0;

	/* A bounce buffer works for both system and I/O memory mappings. */
	bounce = kmalloc(ION_TEST_IMPORTER_CHUNK, GFP_KERNEL);
	if (!bounce)
		return -ENOMEM;

	while (done < xfer->len) {
		size_t chunk = min_t(u64, xfer->len - done,
				     ION_TEST_IMPORTER_CHUNK);
		size_t pos = xfer->offset + done;

		if (to_buffer) {
			if (copy_from_user(bounce, ubuf + done, chunk)) {
				ret = -EFAULT;
				break;
			}
			iosys_map_memcpy_to(map, pos, bounce, chunk);
		} else {
			iosys_map_memcpy_from(bounce, map, pos, chunk);
			if (copy_to_user(ubuf + done, bounce, chunk)) {
				ret = -EFAULT;
				break;
			}
		}
		done += chunk;
		cond_resched();
	}

	kfree(bounce);
	return ret;
}

static int ion_test_importer_xfer(struct ion_test_importer_xfer *xfer,
				  bool to_buffer)
{
	struct dma_buf_attachment *attach[ION_TEST_IMPORTER_MAX_ATTACHMENTS];
	struct sg_table *sgt[ION_TEST_IMPORTER_MAX_ATTACHMENTS];
	enum dma_data_direction cpu_dir;
	unsigned int attached = 0;
	unsigned int mapped = 0;
	struct dma_buf *dmabuf;
	struct iosys_map map;
	int ret, end_ret;

	if (xfer->reserved0 || xfer->reserved1)
		return -EINVAL;
	if (!xfer->attachments ||
	    xfer->attachments > ION_TEST_IMPORTER_MAX_ATTACHMENTS)
		return -EINVAL;

	dmabuf = dma_buf_get(xfer->dmabuf_fd);
	if (IS_ERR(dmabuf))
		return PTR_ERR(dmabuf);

	if (xfer->offset > dmabuf->size ||
	    xfer->len > dmabuf->size - xfer->offset) {
		ret = -EINVAL;
		goto put_dmabuf;
	}

	xfer->size = dmabuf->size;
	memset(xfer->dma_len, 0, sizeof(xfer->dma_len));
	memset(xfer->dma_segments, 0, sizeof(xfer->dma_segments));

	for (; attached < xfer->attachments; attached++) {
		attach[attached] = dma_buf_attach(dmabuf,
						  &ion_test_importer_pdev->dev);
		if (IS_ERR(attach[attached])) {
			ret = PTR_ERR(attach[attached]);
			goto detach;
		}
	}

	/* All attachments stay mapped at once, as with several devices. */
	for (; mapped < xfer->attachments; mapped++) {
		sgt[mapped] = ion_test_importer_map(attach[mapped]);
		if (IS_ERR(sgt[mapped])) {
			ret = PTR_ERR(sgt[mapped]);
			goto unmap;
		}
		ion_test_importer_measure(sgt[mapped], &xfer->dma_len[mapped],
					  &xfer->dma_segments[mapped]);
	}

	ret = ion_test_importer_vmap(dmabuf, &map);
	if (ret)
		goto unmap;

	/* DMA_BUF_IOCTL_SYNC's mapping: CPU reads are FROM_DEVICE. */
	cpu_dir = to_buffer ? DMA_TO_DEVICE : DMA_FROM_DEVICE;
	ret = dma_buf_begin_cpu_access(dmabuf, cpu_dir);
	if (ret)
		goto vunmap;

	ret = ion_test_importer_copy(&map, xfer, to_buffer);

	end_ret = dma_buf_end_cpu_access(dmabuf, cpu_dir);
	if (!ret)
		ret = end_ret;

vunmap:
	ion_test_importer_vunmap(dmabuf, &map);
unmap:
	while (mapped--)
		ion_test_importer_unmap(attach[mapped], sgt[mapped]);
detach:
	while (attached--)
		dma_buf_detach(dmabuf, attach[attached]);
put_dmabuf:
	dma_buf_put(dmabuf);
	return ret;
}

static long ion_test_importer_ioctl(struct file *file, unsigned int cmd,
				    unsigned long arg)
{
	void __user *uarg = (void __user *)arg;
	struct ion_test_importer_xfer xfer;
	bool to_buffer;
	int ret;

	switch (cmd) {
	case ION_TEST_IMPORTER_IOC_READ:
		to_buffer = false;
		break;
	case ION_TEST_IMPORTER_IOC_WRITE:
		to_buffer = true;
		break;
	default:
		return -ENOTTY;
	}

	if (copy_from_user(&xfer, uarg, sizeof(xfer)))
		return -EFAULT;

	ret = ion_test_importer_xfer(&xfer, to_buffer);
	if (ret)
		return ret;

	if (copy_to_user(uarg, &xfer, sizeof(xfer)))
		return -EFAULT;
	return 0;
}

static const struct file_operations ion_test_importer_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = ion_test_importer_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice ion_test_importer_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "ion_test_importer",
	.fops = &ion_test_importer_fops,
	.mode = 0600,
};

static int __init ion_test_importer_init(void)
{
	int ret;

	ion_test_importer_pdev =
		platform_device_register_simple("ion_test_importer",
						PLATFORM_DEVID_NONE, NULL, 0);
	if (IS_ERR(ion_test_importer_pdev))
		return PTR_ERR(ion_test_importer_pdev);

	/* Without a DMA mask, mapping an attachment fails. */
	ret = dma_coerce_mask_and_coherent(&ion_test_importer_pdev->dev,
					   DMA_BIT_MASK(64));
	if (ret)
		goto unregister_pdev;

	ion_test_importer_misc.parent = &ion_test_importer_pdev->dev;
	ret = misc_register(&ion_test_importer_misc);
	if (ret)
		goto unregister_pdev;

	return 0;

unregister_pdev:
	platform_device_unregister(ion_test_importer_pdev);
	return ret;
}

static void __exit ion_test_importer_exit(void)
{
	misc_deregister(&ion_test_importer_misc);
	platform_device_unregister(ion_test_importer_pdev);
}

module_init(ion_test_importer_init);
module_exit(ion_test_importer_exit);

MODULE_DESCRIPTION("Test-only dma-buf importer for the ion_simple VM tests");
MODULE_LICENSE("GPL");
/* Symbol namespaces are named by a string literal since 6.13. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
MODULE_IMPORT_NS("DMA_BUF");
#else
MODULE_IMPORT_NS(DMA_BUF);
#endif
