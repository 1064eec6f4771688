/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * uapi of ion_test_importer, a test-only dma-buf importer.
 *
 * The module attaches its own device to a dma-buf, maps every attachment
 * for DMA, vmaps the buffer and copies a byte range between it and user
 * memory inside begin/end_cpu_access: the path a real device driver takes.
 * It reports what the DMA mapping looked like so tests can check the
 * exporter's scatterlists. Shared by the module and the C++ VM tests.
 */
#ifndef _UAPI_ION_TEST_IMPORTER_H
#define _UAPI_ION_TEST_IMPORTER_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define ION_TEST_IMPORTER_MAX_ATTACHMENTS	4

/**
 * struct ion_test_importer_xfer - argument of both ioctls
 * @dmabuf_fd:		in: the dma-buf
 * @attachments:	in: attachments to create and map at once, 1..4
 * @offset:		in: first byte of the buffer to copy
 * @len:		in: bytes to copy; offset + len must not pass the end
 * @user_buf:		in: user pointer to @len bytes
 * @size:		out: the dma-buf's size
 * @dma_len:		out: per attachment, the sum of sg_dma_len() over the
 *			DMA-mapped table
 * @dma_segments:	out: per attachment, the number of DMA segments
 * @reserved0, @reserved1: must be 0
 *
 * Entries of @dma_len and @dma_segments past @attachments come back 0.
 */
struct ion_test_importer_xfer {
	__s32 dmabuf_fd;
	__u32 attachments;
	__u64 offset;
	__u64 len;
	__u64 user_buf;
	__u64 size;
	__u64 dma_len[ION_TEST_IMPORTER_MAX_ATTACHMENTS];
	__u32 dma_segments[ION_TEST_IMPORTER_MAX_ATTACHMENTS];
	__u32 reserved0;
	__u32 reserved1;
};

#define ION_TEST_IMPORTER_IOC_MAGIC	0xd5

/* Copies buffer bytes [offset, offset + len) to @user_buf. */
#define ION_TEST_IMPORTER_IOC_READ \
	_IOWR(ION_TEST_IMPORTER_IOC_MAGIC, 0, struct ion_test_importer_xfer)
/* Copies @len bytes from @user_buf into the buffer at @offset. */
#define ION_TEST_IMPORTER_IOC_WRITE \
	_IOWR(ION_TEST_IMPORTER_IOC_MAGIC, 1, struct ion_test_importer_xfer)

#endif /* _UAPI_ION_TEST_IMPORTER_H */
