// SPDX-License-Identifier: GPL-2.0
/*
 * ion_simple: an ION allocator with the 4.12+ uapi that exports dma-bufs.
 *
 * /dev/ion serves ION_IOC_HEAP_QUERY and ION_IOC_ALLOC. Every open file is
 * a client; every buffer belongs to the client that allocated it until that
 * client's file is closed, after which a still-living buffer is an orphaned
 * allocation. debugfs shows both in ION's own formats under ion/heaps/ and
 * ion/clients/.
 *
 * Heaps, ids in registration order:
 *   0 ion_system_heap         pages of order 8, 4 and 0, not contiguous
 *   1 ion_system_contig_heap  one physically contiguous range
 *   2 ion_carveout_heap       a contiguous region reserved at load time,
 *                             present only when carveout_size is set
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/compat.h>
#include <linux/debugfs.h>
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/err.h>
#include <linux/file.h>
#include <linux/genalloc.h>
#include <linux/highmem.h>
#include <linux/iosys-map.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/scatterlist.h>
#include <linux/seq_file.h>
#include <linux/set_memory.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/vmalloc.h>

#include "uapi/ion.h"

#if defined(MAX_PAGE_ORDER)
#define ION_MAX_BUDDY_ORDER	MAX_PAGE_ORDER
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 4, 0)
#define ION_MAX_BUDDY_ORDER	MAX_ORDER
#else
#define ION_MAX_BUDDY_ORDER	(MAX_ORDER - 1)
#endif

#define ION_VALID_FLAGS		(ION_FLAG_CACHED | ION_FLAG_CACHED_NEEDS_SYNC)
#define ION_DEBUG_RULE		"----------------------------------------------------\n"

static unsigned long ion_max_alloc_size;
static unsigned long ion_carveout_size;

struct ion_buffer;
struct ion_heap;

struct ion_heap_ops {
	/* Fills buffer->table with buffer->size bytes of zeroed pages. */
	int (*allocate)(struct ion_heap *heap, struct ion_buffer *buffer);
	void (*free)(struct ion_heap *heap, struct ion_buffer *buffer);
};

struct ion_heap {
	const char *name;
	enum ion_heap_type type;
	unsigned int id;
	const struct ion_heap_ops *ops;
	size_t total_bytes;		/* under ion_device.lock */
};

struct ion_carveout_heap {
	struct ion_heap heap;
	struct gen_pool *pool;
	struct page *base;
	unsigned long nr_pages;
};

struct ion_device {
	struct miscdevice misc;
	struct mutex lock;		/* clients, orphans, every owner list */
	struct list_head clients;
	struct list_head orphans;
	struct ion_heap *heaps[ION_NUM_HEAP_IDS];
	unsigned int heap_cnt;
	u32 heap_id_mask;		/* ids in use */
	struct dentry *debug_root;
	struct dentry *debug_clients;
};

struct ion_client {
	struct ion_device *idev;
	struct list_head node;		/* in ion_device.clients */
	struct list_head buffers;	/* ion_buffer.owner_node */
	size_t heap_bytes[ION_NUM_HEAP_IDS];
	pid_t pid;
	unsigned int serial;
	char comm[TASK_COMM_LEN];
	struct dentry *debug_file;
};

struct ion_buffer {
	struct ion_device *idev;
	struct ion_heap *heap;
	struct ion_client *client;	/* NULL once orphaned */
	struct list_head owner_node;	/* client's buffers or the orphans */
	/* The last known client, for the orphaned allocations view. */
	pid_t pid;
	char comm[TASK_COMM_LEN];
	unsigned int flags;
	size_t size;
	struct sg_table table;
	void *heap_priv;
	struct dma_buf *dmabuf;

	struct mutex lock;		/* attachments, vmap */
	struct list_head attachments;
	int vmap_cnt;
	void *vaddr;
};

struct ion_attachment {
	struct device *dev;
	struct sg_table *table;
	struct list_head list;
	bool mapped;
};

static struct ion_device ion_dev;

/* Module parameters: sizes in bytes with the usual K/M/G suffixes. */

static int ion_param_set_size(const char *val, const struct kernel_param *kp)
{
	unsigned long long size;
	char *end;

	size = memparse(val, &end);
	if (end == val)
		return -EINVAL;
	if (*end == '\n')
		end++;
	if (*end || size > ULONG_MAX)
		return -EINVAL;

	WRITE_ONCE(*(unsigned long *)kp->arg, (unsigned long)size);
	return 0;
}

static const struct kernel_param_ops ion_param_size_ops = {
	.set = ion_param_set_size,
	.get = param_get_ulong,
};

module_param_cb(max_alloc_size, &ion_param_size_ops, &ion_max_alloc_size, 0644);
MODULE_PARM_DESC(max_alloc_size, "Largest allocation in bytes; 0 = up to half of RAM (default)");
module_param_cb(carveout_size, &ion_param_size_ops, &ion_carveout_size, 0444);
MODULE_PARM_DESC(carveout_size, "Bytes to reserve at load for the carveout heap; 0 = no carveout heap (default)");

/* Page helpers shared by the heaps. */

/*
 * The n-th page of a physically contiguous range. nth_page() is gone from
 * newer kernels (7.x), where the pages of one allocation are contiguous in
 * the memory map on every configuration; before, it stepped by pfn.
 */
#ifdef nth_page
#define ion_nth_page(page, n) nth_page(page, n)
#else
#define ion_nth_page(page, n) ((page) + (n))
#endif

static void ion_clear_pages(struct page *page, unsigned long nr_pages)
{
	unsigned long i;

	for (i = 0; i < nr_pages; i++) {
		clear_highpage(ion_nth_page(page, i));
		if (!(i % 1024))
			cond_resched();
	}
}

static void ion_free_page_range(struct page *page, unsigned long nr_pages)
{
	unsigned long i;

	for (i = 0; i < nr_pages; i++)
		__free_page(ion_nth_page(page, i));
}

#ifdef CONFIG_CONTIG_ALLOC
static bool ion_range_is_candidate(struct zone *zone, unsigned long start_pfn,
				   unsigned long nr_pages)
{
	unsigned long pfn;

	for (pfn = start_pfn; pfn < start_pfn + nr_pages; pfn++) {
		struct page *page = pfn_to_online_page(pfn);

		if (!page || page_zone(page) != zone || PageReserved(page))
			return false;
	}
	return true;
}

/*
 * Finds and takes nr_pages physically contiguous pages beyond what the buddy
 * allocator hands out in one block, migrating movable pages out of the way.
 * Returns the first page (zeroed), NULL if no range could be freed, or
 * ERR_PTR(-EINTR) on a fatal signal.
 */
static struct page *ion_alloc_contig_pages(unsigned long nr_pages)
{
	int nid;

	for_each_online_node(nid) {
		pg_data_t *pgdat = NODE_DATA(nid);
		struct zone *zone;

		for (zone = pgdat->node_zones; zone < pgdat->node_zones + MAX_NR_ZONES; zone++) {
			unsigned long pfn;

			if (!populated_zone(zone))
				continue;

			for (pfn = ALIGN(zone->zone_start_pfn, pageblock_nr_pages);
			     pfn + nr_pages <= zone_end_pfn(zone);
			     pfn += pageblock_nr_pages) {
				if (fatal_signal_pending(current))
					return ERR_PTR(-EINTR);
				cond_resched();
				if (!ion_range_is_candidate(zone, pfn, nr_pages))
					continue;
				if (alloc_contig_range(pfn, pfn + nr_pages, MIGRATE_MOVABLE,
						       GFP_KERNEL | __GFP_NOWARN))
					continue;

				ion_clear_pages(pfn_to_page(pfn), nr_pages);
				return pfn_to_page(pfn);
			}
		}
	}
	return NULL;
}
#else
static struct page *ion_alloc_contig_pages(unsigned long nr_pages)
{
	return NULL;
}
#endif

/* Contiguous pages, zeroed: one buddy block if it fits, else a range. */
static struct page *ion_alloc_contig(unsigned long nr_pages)
{
	unsigned int order = get_order(nr_pages << PAGE_SHIFT);
	struct page *page;

	if (order <= ION_MAX_BUDDY_ORDER) {
		page = alloc_pages(GFP_HIGHUSER | __GFP_ZERO | __GFP_NOWARN, order);
		if (page) {
			/* Give back the tail the rounding to an order added. */
			split_page(page, order);
			ion_free_page_range(ion_nth_page(page, nr_pages), (1UL << order) - nr_pages);
			return page;
		}
	}
	return ion_alloc_contig_pages(nr_pages);
}

static int ion_table_from_range(struct sg_table *table, struct page *page, size_t size)
{
	int ret;

	ret = sg_alloc_table(table, 1, GFP_KERNEL);
	if (ret)
		return ret;
	sg_set_page(table->sgl, page, size, 0);
	return 0;
}

/* The system heap: high orders first, no reclaim for them. */

#define ION_HIGH_ORDER_GFP	((GFP_HIGHUSER | __GFP_ZERO | __GFP_NOWARN | \
				  __GFP_NORETRY | __GFP_COMP) & ~__GFP_RECLAIM)
#define ION_MID_ORDER_GFP	(GFP_HIGHUSER | __GFP_ZERO | __GFP_NOWARN | __GFP_COMP)
#define ION_LOW_ORDER_GFP	(GFP_HIGHUSER | __GFP_ZERO)

static const unsigned int ion_system_orders[] = { 8, 4, 0 };

static gfp_t ion_system_order_gfp(unsigned int order)
{
	if (order > 4)
		return ION_HIGH_ORDER_GFP;
	return order ? ION_MID_ORDER_GFP : ION_LOW_ORDER_GFP;
}

static struct page *ion_system_alloc_largest(size_t remaining, unsigned int max_order)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(ion_system_orders); i++) {
		unsigned int order = ion_system_orders[i];
		struct page *page;

		if (remaining < (PAGE_SIZE << order) || order > max_order)
			continue;
		page = alloc_pages(ion_system_order_gfp(order), order);
		if (page)
			return page;
	}
	return NULL;
}

static int ion_system_heap_allocate(struct ion_heap *heap, struct ion_buffer *buffer)
{
	unsigned int max_order = ion_system_orders[0];
	size_t remaining = buffer->size;
	struct page *page, *tmp;
	struct scatterlist *sg;
	LIST_HEAD(pages);
	unsigned int nents = 0;
	int ret;

	while (remaining) {
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			goto free_pages;
		}
		page = ion_system_alloc_largest(remaining, max_order);
		if (!page) {
			ret = -ENOMEM;
			goto free_pages;
		}
		list_add_tail(&page->lru, &pages);
		remaining -= page_size(page);
		/* What failed once at an order will fail again. */
		max_order = compound_order(page);
		nents++;
	}

	ret = sg_alloc_table(&buffer->table, nents, GFP_KERNEL);
	if (ret)
		goto free_pages;

	sg = buffer->table.sgl;
	list_for_each_entry_safe(page, tmp, &pages, lru) {
		sg_set_page(sg, page, page_size(page), 0);
		sg = sg_next(sg);
		list_del(&page->lru);
	}
	return 0;

free_pages:
	list_for_each_entry_safe(page, tmp, &pages, lru)
		__free_pages(page, compound_order(page));
	return ret;
}

static void ion_system_heap_free(struct ion_heap *heap, struct ion_buffer *buffer)
{
	struct scatterlist *sg;
	unsigned int i;

	for_each_sgtable_sg(&buffer->table, sg, i)
		__free_pages(sg_page(sg), compound_order(sg_page(sg)));
	sg_free_table(&buffer->table);
}

static const struct ion_heap_ops ion_system_heap_ops = {
	.allocate = ion_system_heap_allocate,
	.free = ion_system_heap_free,
};

static struct ion_heap ion_system_heap = {
	.name = "ion_system_heap",
	.type = ION_HEAP_TYPE_SYSTEM,
	.ops = &ion_system_heap_ops,
};

/* The contiguous heap. */

static int ion_contig_heap_allocate(struct ion_heap *heap, struct ion_buffer *buffer)
{
	unsigned long nr_pages = buffer->size >> PAGE_SHIFT;
	struct page *page;
	int ret;

	/* One scatterlist entry holds at most 4 GiB. */
	if (buffer->size > (UINT_MAX & PAGE_MASK))
		return -ENOMEM;

	page = ion_alloc_contig(nr_pages);
	if (IS_ERR(page))
		return PTR_ERR(page);
	if (!page)
		return -ENOMEM;

	ret = ion_table_from_range(&buffer->table, page, buffer->size);
	if (ret)
		goto free_pages;
	return 0;

free_pages:
	ion_free_page_range(page, nr_pages);
	return ret;
}

static void ion_contig_heap_free(struct ion_heap *heap, struct ion_buffer *buffer)
{
	ion_free_page_range(sg_page(buffer->table.sgl), buffer->size >> PAGE_SHIFT);
	sg_free_table(&buffer->table);
}

static const struct ion_heap_ops ion_contig_heap_ops = {
	.allocate = ion_contig_heap_allocate,
	.free = ion_contig_heap_free,
};

static struct ion_heap ion_contig_heap = {
	.name = "ion_system_contig_heap",
	.type = ION_HEAP_TYPE_SYSTEM_CONTIG,
	.ops = &ion_contig_heap_ops,
};

/* The carveout heap: genalloc over a region taken at load time. */

static struct ion_carveout_heap *to_carveout_heap(struct ion_heap *heap)
{
	return container_of(heap, struct ion_carveout_heap, heap);
}

static int ion_carveout_heap_allocate(struct ion_heap *heap, struct ion_buffer *buffer)
{
	struct ion_carveout_heap *carveout = to_carveout_heap(heap);
	unsigned long addr;
	struct page *page;
	int ret;

	if (buffer->size > (UINT_MAX & PAGE_MASK))
		return -ENOMEM;

	addr = gen_pool_alloc(carveout->pool, buffer->size);
	if (!addr)
		return -ENOMEM;

	/* The region holds whatever the last buffer left there. */
	page = pfn_to_page(PHYS_PFN(addr));
	ion_clear_pages(page, buffer->size >> PAGE_SHIFT);

	ret = ion_table_from_range(&buffer->table, page, buffer->size);
	if (ret)
		goto free_region;
	return 0;

free_region:
	gen_pool_free(carveout->pool, addr, buffer->size);
	return ret;
}

static void ion_carveout_heap_free(struct ion_heap *heap, struct ion_buffer *buffer)
{
	struct ion_carveout_heap *carveout = to_carveout_heap(heap);

	gen_pool_free(carveout->pool, page_to_phys(sg_page(buffer->table.sgl)), buffer->size);
	sg_free_table(&buffer->table);
}

static const struct ion_heap_ops ion_carveout_heap_ops = {
	.allocate = ion_carveout_heap_allocate,
	.free = ion_carveout_heap_free,
};

static struct ion_carveout_heap ion_carveout_heap = {
	.heap = {
		.name = "ion_carveout_heap",
		.type = ION_HEAP_TYPE_CARVEOUT,
		.ops = &ion_carveout_heap_ops,
	},
};

static int ion_carveout_heap_reserve(struct ion_carveout_heap *carveout, unsigned long size)
{
	unsigned long nr_pages = PAGE_ALIGN(size) >> PAGE_SHIFT;
	struct page *base;
	int ret;

	base = ion_alloc_contig(nr_pages);
	if (IS_ERR(base))
		return PTR_ERR(base);
	if (!base)
		return -ENOMEM;

	carveout->pool = gen_pool_create(PAGE_SHIFT, NUMA_NO_NODE);
	if (!carveout->pool) {
		ret = -ENOMEM;
		goto free_region;
	}
	ret = gen_pool_add(carveout->pool, page_to_phys(base), nr_pages << PAGE_SHIFT,
			   NUMA_NO_NODE);
	if (ret)
		goto destroy_pool;

	carveout->base = base;
	carveout->nr_pages = nr_pages;
	return 0;

destroy_pool:
	gen_pool_destroy(carveout->pool);
	carveout->pool = NULL;
free_region:
	ion_free_page_range(base, nr_pages);
	return ret;
}

static void ion_carveout_heap_release(struct ion_carveout_heap *carveout)
{
	if (!carveout->pool)
		return;
	gen_pool_destroy(carveout->pool);
	carveout->pool = NULL;
	ion_free_page_range(carveout->base, carveout->nr_pages);
}

/*
 * Uncached buffers are write-combined in every mapping, the kernel's linear
 * one included: x86's PAT refuses a write-combined user mapping of RAM that
 * the linear map still calls write-back, and silently maps it write-back.
 */
#ifdef CONFIG_X86_64
static void ion_buffer_set_write_back(struct ion_buffer *buffer, unsigned int nents)
{
	struct scatterlist *sg;
	unsigned int i;

	for_each_sgtable_sg(&buffer->table, sg, i) {
		if (i == nents)
			break;
		if (set_memory_wb((unsigned long)page_address(sg_page(sg)), sg->length >> PAGE_SHIFT))
			pr_err_ratelimited("cannot make %u bytes write-back again\n", sg->length);
	}
}

static int ion_buffer_set_write_combined(struct ion_buffer *buffer)
{
	struct scatterlist *sg;
	unsigned int i;
	int ret;

	for_each_sgtable_sg(&buffer->table, sg, i) {
		ret = set_memory_wc((unsigned long)page_address(sg_page(sg)), sg->length >> PAGE_SHIFT);
		if (ret) {
			ion_buffer_set_write_back(buffer, i);
			return ret;
		}
	}
	return 0;
}
#else
static void ion_buffer_set_write_back(struct ion_buffer *buffer, unsigned int nents)
{
}

static int ion_buffer_set_write_combined(struct ion_buffer *buffer)
{
	return 0;
}
#endif

/* dma-buf operations. */

static struct sg_table *ion_dup_sg_table(struct sg_table *table)
{
	struct scatterlist *sg, *new_sg;
	struct sg_table *new_table;
	unsigned int i;
	int ret;

	new_table = kzalloc(sizeof(*new_table), GFP_KERNEL);
	if (!new_table)
		return ERR_PTR(-ENOMEM);

	ret = sg_alloc_table(new_table, table->orig_nents, GFP_KERNEL);
	if (ret) {
		kfree(new_table);
		return ERR_PTR(ret);
	}

	new_sg = new_table->sgl;
	for_each_sgtable_sg(table, sg, i) {
		sg_set_page(new_sg, sg_page(sg), sg->length, sg->offset);
		new_sg = sg_next(new_sg);
	}
	return new_table;
}

static void ion_free_sg_table(struct sg_table *table)
{
	sg_free_table(table);
	kfree(table);
}

static int ion_dma_buf_attach(struct dma_buf *dmabuf, struct dma_buf_attachment *attachment)
{
	struct ion_buffer *buffer = dmabuf->priv;
	struct ion_attachment *a;
	struct sg_table *table;

	a = kzalloc(sizeof(*a), GFP_KERNEL);
	if (!a)
		return -ENOMEM;

	/* Each attachment maps its own copy: DMA addresses are per device. */
	table = ion_dup_sg_table(&buffer->table);
	if (IS_ERR(table)) {
		kfree(a);
		return PTR_ERR(table);
	}

	a->table = table;
	a->dev = attachment->dev;
	INIT_LIST_HEAD(&a->list);
	attachment->priv = a;

	mutex_lock(&buffer->lock);
	list_add(&a->list, &buffer->attachments);
	mutex_unlock(&buffer->lock);
	return 0;
}

static void ion_dma_buf_detach(struct dma_buf *dmabuf, struct dma_buf_attachment *attachment)
{
	struct ion_buffer *buffer = dmabuf->priv;
	struct ion_attachment *a = attachment->priv;

	mutex_lock(&buffer->lock);
	list_del(&a->list);
	mutex_unlock(&buffer->lock);

	ion_free_sg_table(a->table);
	kfree(a);
}

static struct sg_table *ion_map_dma_buf(struct dma_buf_attachment *attachment,
					enum dma_data_direction direction)
{
	struct ion_buffer *buffer = attachment->dmabuf->priv;
	struct ion_attachment *a = attachment->priv;
	int ret;

	/*
	 * No DMA_ATTR_SKIP_CPU_SYNC, for uncached buffers either: on a
	 * non-coherent device the first mapping is what cleans the zeroing
	 * out of the CPU caches.
	 */
	ret = dma_map_sgtable(attachment->dev, a->table, direction, 0);
	if (ret)
		return ERR_PTR(ret);

	mutex_lock(&buffer->lock);
	a->mapped = true;
	mutex_unlock(&buffer->lock);
	return a->table;
}

static void ion_unmap_dma_buf(struct dma_buf_attachment *attachment, struct sg_table *table,
			      enum dma_data_direction direction)
{
	struct ion_buffer *buffer = attachment->dmabuf->priv;
	struct ion_attachment *a = attachment->priv;

	mutex_lock(&buffer->lock);
	a->mapped = false;
	mutex_unlock(&buffer->lock);

	dma_unmap_sgtable(attachment->dev, table, direction, 0);
}

static int ion_dma_buf_begin_cpu_access(struct dma_buf *dmabuf,
					enum dma_data_direction direction)
{
	struct ion_buffer *buffer = dmabuf->priv;
	struct ion_attachment *a;

	mutex_lock(&buffer->lock);
	if (buffer->vmap_cnt)
		invalidate_kernel_vmap_range(buffer->vaddr, buffer->size);
	list_for_each_entry(a, &buffer->attachments, list) {
		if (a->mapped)
			dma_sync_sgtable_for_cpu(a->dev, a->table, direction);
	}
	mutex_unlock(&buffer->lock);
	return 0;
}

static int ion_dma_buf_end_cpu_access(struct dma_buf *dmabuf,
				      enum dma_data_direction direction)
{
	struct ion_buffer *buffer = dmabuf->priv;
	struct ion_attachment *a;

	mutex_lock(&buffer->lock);
	if (buffer->vmap_cnt)
		flush_kernel_vmap_range(buffer->vaddr, buffer->size);
	list_for_each_entry(a, &buffer->attachments, list) {
		if (a->mapped)
			dma_sync_sgtable_for_device(a->dev, a->table, direction);
	}
	mutex_unlock(&buffer->lock);
	return 0;
}

static pgprot_t ion_buffer_pgprot(struct ion_buffer *buffer, pgprot_t prot)
{
	return (buffer->flags & ION_FLAG_CACHED) ? prot : pgprot_writecombine(prot);
}

static int ion_dma_buf_mmap(struct dma_buf *dmabuf, struct vm_area_struct *vma)
{
	struct ion_buffer *buffer = dmabuf->priv;
	unsigned long buffer_pages = buffer->size >> PAGE_SHIFT;
	unsigned long skip = vma->vm_pgoff;
	unsigned long addr = vma->vm_start;
	struct scatterlist *sg;
	unsigned int i;
	int ret;

	if (skip > buffer_pages || vma_pages(vma) > buffer_pages - skip)
		return -EINVAL;
	/* A private copy-on-write view of device memory has no meaning. */
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;

	vma->vm_page_prot = ion_buffer_pgprot(buffer, vma->vm_page_prot);

	for_each_sgtable_sg(&buffer->table, sg, i) {
		unsigned long entry_pages = sg->length >> PAGE_SHIFT;
		unsigned long len;

		if (skip >= entry_pages) {
			skip -= entry_pages;
			continue;
		}
		len = min((entry_pages - skip) << PAGE_SHIFT, vma->vm_end - addr);
		ret = remap_pfn_range(vma, addr, page_to_pfn(sg_page(sg)) + skip, len,
				      vma->vm_page_prot);
		if (ret)
			return ret;
		addr += len;
		skip = 0;
		if (addr >= vma->vm_end)
			break;
	}
	return 0;
}

static void *ion_buffer_vmap(struct ion_buffer *buffer)
{
	unsigned long nr_pages = buffer->size >> PAGE_SHIFT;
	struct sg_page_iter piter;
	struct page **pages;
	unsigned long i = 0;
	void *vaddr;

	pages = kvmalloc_array(nr_pages, sizeof(*pages), GFP_KERNEL);
	if (!pages)
		return ERR_PTR(-ENOMEM);

	for_each_sgtable_page(&buffer->table, &piter, 0)
		pages[i++] = sg_page_iter_page(&piter);

	vaddr = vmap(pages, nr_pages, VM_MAP, ion_buffer_pgprot(buffer, PAGE_KERNEL));
	kvfree(pages);
	return vaddr ? vaddr : ERR_PTR(-ENOMEM);
}

static int ion_dma_buf_vmap(struct dma_buf *dmabuf, struct iosys_map *map)
{
	struct ion_buffer *buffer = dmabuf->priv;
	void *vaddr;
	int ret = 0;

	mutex_lock(&buffer->lock);
	if (!buffer->vmap_cnt) {
		vaddr = ion_buffer_vmap(buffer);
		if (IS_ERR(vaddr)) {
			ret = PTR_ERR(vaddr);
			goto unlock;
		}
		buffer->vaddr = vaddr;
	}
	buffer->vmap_cnt++;
	iosys_map_set_vaddr(map, buffer->vaddr);
unlock:
	mutex_unlock(&buffer->lock);
	return ret;
}

static void ion_dma_buf_vunmap(struct dma_buf *dmabuf, struct iosys_map *map)
{
	struct ion_buffer *buffer = dmabuf->priv;

	mutex_lock(&buffer->lock);
	if (!--buffer->vmap_cnt) {
		vunmap(buffer->vaddr);
		buffer->vaddr = NULL;
	}
	mutex_unlock(&buffer->lock);
	iosys_map_clear(map);
}

static void ion_buffer_destroy(struct ion_buffer *buffer)
{
	if (!(buffer->flags & ION_FLAG_CACHED))
		ion_buffer_set_write_back(buffer, UINT_MAX);
	buffer->heap->ops->free(buffer->heap, buffer);
	mutex_destroy(&buffer->lock);
	kfree(buffer);
}

static void ion_dma_buf_release(struct dma_buf *dmabuf)
{
	struct ion_buffer *buffer = dmabuf->priv;
	struct ion_device *idev = buffer->idev;

	mutex_lock(&idev->lock);
	list_del(&buffer->owner_node);
	if (buffer->client)
		buffer->client->heap_bytes[buffer->heap->id] -= buffer->size;
	buffer->heap->total_bytes -= buffer->size;
	mutex_unlock(&idev->lock);

	/* An importer that vmapped must have vunmapped before its last put. */
	if (WARN_ON_ONCE(buffer->vmap_cnt))
		vunmap(buffer->vaddr);

	ion_buffer_destroy(buffer);
}

static const struct dma_buf_ops ion_dma_buf_ops = {
	.attach = ion_dma_buf_attach,
	.detach = ion_dma_buf_detach,
	.map_dma_buf = ion_map_dma_buf,
	.unmap_dma_buf = ion_unmap_dma_buf,
	.begin_cpu_access = ion_dma_buf_begin_cpu_access,
	.end_cpu_access = ion_dma_buf_end_cpu_access,
	.mmap = ion_dma_buf_mmap,
	.vmap = ion_dma_buf_vmap,
	.vunmap = ion_dma_buf_vunmap,
	.release = ion_dma_buf_release,
};

/* Allocation. */

static struct ion_buffer *ion_buffer_create(struct ion_client *client, struct ion_heap *heap,
					    size_t size, unsigned int flags)
{
	struct ion_buffer *buffer;
	int ret;

	buffer = kzalloc(sizeof(*buffer), GFP_KERNEL);
	if (!buffer)
		return ERR_PTR(-ENOMEM);

	buffer->idev = client->idev;
	buffer->heap = heap;
	buffer->pid = client->pid;
	memcpy(buffer->comm, client->comm, sizeof(buffer->comm));
	buffer->flags = flags;
	buffer->size = size;
	INIT_LIST_HEAD(&buffer->owner_node);
	INIT_LIST_HEAD(&buffer->attachments);
	mutex_init(&buffer->lock);

	ret = heap->ops->allocate(heap, buffer);
	if (ret)
		goto free_buffer;

	if (!(flags & ION_FLAG_CACHED)) {
		ret = ion_buffer_set_write_combined(buffer);
		if (ret)
			goto free_pages;
	}
	return buffer;

free_pages:
	heap->ops->free(heap, buffer);
free_buffer:
	mutex_destroy(&buffer->lock);
	kfree(buffer);
	return ERR_PTR(ret);
}

/* From here on the dma-buf owns the buffer: its release frees it. */
static struct dma_buf *ion_buffer_export(struct ion_client *client, struct ion_buffer *buffer)
{
	struct ion_device *idev = client->idev;
	DEFINE_DMA_BUF_EXPORT_INFO(exp_info);
	struct dma_buf *dmabuf;

	exp_info.ops = &ion_dma_buf_ops;
	exp_info.size = buffer->size;
	exp_info.flags = O_RDWR;
	exp_info.priv = buffer;

	dmabuf = dma_buf_export(&exp_info);
	if (IS_ERR(dmabuf)) {
		ion_buffer_destroy(buffer);
		return dmabuf;
	}
	buffer->dmabuf = dmabuf;

	mutex_lock(&idev->lock);
	buffer->client = client;
	list_add_tail(&buffer->owner_node, &client->buffers);
	client->heap_bytes[buffer->heap->id] += buffer->size;
	buffer->heap->total_bytes += buffer->size;
	mutex_unlock(&idev->lock);
	return dmabuf;
}

static struct dma_buf *ion_alloc(struct ion_client *client, u64 len, u32 heap_id_mask,
				 u32 flags)
{
	struct ion_device *idev = client->idev;
	struct ion_buffer *buffer = ERR_PTR(-ENOMEM);
	unsigned long max_size = READ_ONCE(ion_max_alloc_size);
	unsigned int id;

	if (flags & ~ION_VALID_FLAGS)
		return ERR_PTR(-EINVAL);
	if (!len)
		return ERR_PTR(-EINVAL);
	if (!(heap_id_mask & idev->heap_id_mask))
		return ERR_PTR(-ENODEV);

	/* Refuse up front what would only end in the OOM killer. */
	if ((max_size && len > max_size) || len / PAGE_SIZE > totalram_pages() / 2)
		return ERR_PTR(-ENOMEM);
	len = PAGE_ALIGN(len);

	/* Highest id first, as ION's heap priority list did. */
	for (id = ION_NUM_HEAP_IDS; id-- > 0;) {
		struct ion_heap *heap = idev->heaps[id];

		if (!heap || !(heap_id_mask & BIT(id)))
			continue;
		buffer = ion_buffer_create(client, heap, len, flags);
		if (!IS_ERR(buffer))
			break;
	}
	if (IS_ERR(buffer))
		return ERR_CAST(buffer);

	return ion_buffer_export(client, buffer);
}

static long ion_ioctl_alloc(struct ion_client *client, struct ion_allocation_data __user *uarg)
{
	struct ion_allocation_data data;
	struct dma_buf *dmabuf;
	int fd, ret;

	if (copy_from_user(&data, uarg, sizeof(data)))
		return -EFAULT;

	dmabuf = ion_alloc(client, data.len, data.heap_id_mask, data.flags);
	if (IS_ERR(dmabuf))
		return PTR_ERR(dmabuf);

	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0) {
		ret = fd;
		goto put_dmabuf;
	}

	/* Install the fd only once the caller can learn its number. */
	data.fd = fd;
	if (copy_to_user(uarg, &data, sizeof(data))) {
		ret = -EFAULT;
		goto put_fd;
	}
	fd_install(fd, dmabuf->file);
	return 0;

put_fd:
	put_unused_fd(fd);
put_dmabuf:
	dma_buf_put(dmabuf);
	return ret;
}

static long ion_ioctl_heap_query(struct ion_device *idev, struct ion_heap_query __user *uarg)
{
	struct ion_heap_data __user *uheaps;
	struct ion_heap_query query;
	unsigned int id, copied = 0;

	if (copy_from_user(&query, uarg, sizeof(query)))
		return -EFAULT;
	if (query.reserved0 || query.reserved1 || query.reserved2)
		return -EINVAL;

	if (!query.heaps) {
		query.cnt = idev->heap_cnt;
		goto copy_query;
	}

	uheaps = u64_to_user_ptr(query.heaps);
	for (id = 0; id < ION_NUM_HEAP_IDS && copied < query.cnt; id++) {
		struct ion_heap *heap = idev->heaps[id];
		struct ion_heap_data hdata = {};

		if (!heap)
			continue;
		strscpy(hdata.name, heap->name, sizeof(hdata.name));
		hdata.type = heap->type;
		hdata.heap_id = heap->id;
		if (copy_to_user(&uheaps[copied], &hdata, sizeof(hdata)))
			return -EFAULT;
		copied++;
	}
	query.cnt = copied;

copy_query:
	if (copy_to_user(uarg, &query, sizeof(query)))
		return -EFAULT;
	return 0;
}

static long ion_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct ion_client *client = file->private_data;

	switch (cmd) {
	case ION_IOC_ALLOC:
		return ion_ioctl_alloc(client, (void __user *)arg);
	case ION_IOC_HEAP_QUERY:
		return ion_ioctl_heap_query(client->idev, (void __user *)arg);
	default:
		return -ENOTTY;
	}
}

/* debugfs: ION's heap and client views. */

static int ion_heap_debug_show(struct seq_file *s, void *unused)
{
	struct ion_heap *heap = s->private;
	struct ion_device *idev = &ion_dev;
	struct ion_client *client;
	struct ion_buffer *buffer;
	size_t orphaned = 0;

	seq_printf(s, "%16s %16s %16s\n", "client", "pid", "size");
	seq_puts(s, ION_DEBUG_RULE);

	mutex_lock(&idev->lock);
	list_for_each_entry(client, &idev->clients, node) {
		size_t bytes = client->heap_bytes[heap->id];

		if (bytes)
			seq_printf(s, "%16s %16u %16zu\n", client->comm, client->pid, bytes);
	}
	seq_puts(s, ION_DEBUG_RULE);
	seq_puts(s, "orphaned allocations (info is from last known client):\n");
	list_for_each_entry(buffer, &idev->orphans, owner_node) {
		if (buffer->heap != heap)
			continue;
		seq_printf(s, "%16s %16u %16zu %d %d\n", buffer->comm, buffer->pid, buffer->size,
			   READ_ONCE(buffer->vmap_cnt), (int)file_count(buffer->dmabuf->file));
		orphaned += buffer->size;
	}
	seq_puts(s, ION_DEBUG_RULE);
	seq_printf(s, "%16s %16zu\n", "total orphaned", orphaned);
	seq_printf(s, "%16s %16zu\n", "total ", heap->total_bytes);
	mutex_unlock(&idev->lock);
	seq_puts(s, ION_DEBUG_RULE);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(ion_heap_debug);

static int ion_client_debug_show(struct seq_file *s, void *unused)
{
	struct ion_client *client = s->private;
	struct ion_device *idev = client->idev;
	unsigned int id;

	seq_printf(s, "%16.16s: %16.16s\n", "heap_name", "size_in_bytes");
	mutex_lock(&idev->lock);
	for (id = 0; id < ION_NUM_HEAP_IDS; id++) {
		if (idev->heaps[id] && client->heap_bytes[id])
			seq_printf(s, "%16.16s: %16zu\n", idev->heaps[id]->name,
				   client->heap_bytes[id]);
	}
	mutex_unlock(&idev->lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(ion_client_debug);

/* Clients: one per open file. */

static struct ion_device *ion_device_from_file(struct file *file)
{
	struct miscdevice *misc = file->private_data;

	return container_of(misc, struct ion_device, misc);
}

/* Lowest serial above every live client of the same process, as ION did. */
static unsigned int ion_next_serial(struct ion_device *idev, pid_t pid)
{
	struct ion_client *client;
	unsigned int serial = 0;

	lockdep_assert_held(&idev->lock);
	list_for_each_entry(client, &idev->clients, node) {
		if (client->pid == pid && client->serial >= serial)
			serial = client->serial + 1;
	}
	return serial;
}

static int ion_open(struct inode *inode, struct file *file)
{
	struct ion_device *idev = ion_device_from_file(file);
	struct ion_client *client;
	char name[32];

	client = kzalloc(sizeof(*client), GFP_KERNEL);
	if (!client)
		return -ENOMEM;

	client->idev = idev;
	client->pid = task_tgid_nr(current);
	get_task_comm(client->comm, current->group_leader);
	INIT_LIST_HEAD(&client->buffers);

	mutex_lock(&idev->lock);
	client->serial = ion_next_serial(idev, client->pid);
	list_add_tail(&client->node, &idev->clients);
	mutex_unlock(&idev->lock);

	/* debugfs is a view: the device works without it. */
	snprintf(name, sizeof(name), "%d-%u", client->pid, client->serial);
	client->debug_file = debugfs_create_file(name, 0444, idev->debug_clients, client,
						 &ion_client_debug_fops);

	file->private_data = client;
	return 0;
}

static int ion_release(struct inode *inode, struct file *file)
{
	struct ion_client *client = file->private_data;
	struct ion_device *idev = client->idev;
	struct ion_buffer *buffer, *tmp;

	/* Before taking the lock: removal waits for readers, which take it. */
	debugfs_remove(client->debug_file);

	mutex_lock(&idev->lock);
	list_del(&client->node);
	list_for_each_entry_safe(buffer, tmp, &client->buffers, owner_node) {
		buffer->client = NULL;
		list_move_tail(&buffer->owner_node, &idev->orphans);
	}
	mutex_unlock(&idev->lock);

	kfree(client);
	return 0;
}

static const struct file_operations ion_fops = {
	.owner = THIS_MODULE,
	.open = ion_open,
	.release = ion_release,
	.unlocked_ioctl = ion_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

/* Module load and unload. */

static void ion_device_add_heap(struct ion_device *idev, struct ion_heap *heap)
{
	heap->id = idev->heap_cnt++;
	idev->heaps[heap->id] = heap;
	idev->heap_id_mask |= BIT(heap->id);
}

static void ion_debugfs_create(struct ion_device *idev)
{
	struct dentry *heaps_dir;
	unsigned int id;

	idev->debug_root = debugfs_create_dir("ion", NULL);
	heaps_dir = debugfs_create_dir("heaps", idev->debug_root);
	idev->debug_clients = debugfs_create_dir("clients", idev->debug_root);

	for (id = 0; id < idev->heap_cnt; id++)
		debugfs_create_file(idev->heaps[id]->name, 0444, heaps_dir, idev->heaps[id],
				    &ion_heap_debug_fops);
}

static int __init ion_init(void)
{
	struct ion_device *idev = &ion_dev;
	int ret;

	mutex_init(&idev->lock);
	INIT_LIST_HEAD(&idev->clients);
	INIT_LIST_HEAD(&idev->orphans);

	ion_device_add_heap(idev, &ion_system_heap);
	ion_device_add_heap(idev, &ion_contig_heap);
	if (ion_carveout_size) {
		ret = ion_carveout_heap_reserve(&ion_carveout_heap, ion_carveout_size);
		if (ret) {
			pr_err("cannot reserve %lu bytes for the carveout heap: %d\n",
			       ion_carveout_size, ret);
			return ret;
		}
		ion_device_add_heap(idev, &ion_carveout_heap.heap);
	}

	ion_debugfs_create(idev);

	idev->misc.minor = MISC_DYNAMIC_MINOR;
	idev->misc.name = "ion";
	idev->misc.fops = &ion_fops;
	/* Only the daemon that owns the allocator opens it. */
	idev->misc.mode = 0600;
	ret = misc_register(&idev->misc);
	if (ret)
		goto remove_debugfs;
	return 0;

remove_debugfs:
	debugfs_remove_recursive(idev->debug_root);
	ion_carveout_heap_release(&ion_carveout_heap);
	return ret;
}

static void __exit ion_exit(void)
{
	struct ion_device *idev = &ion_dev;

	/* Every client and every buffer held a module reference: all are gone. */
	misc_deregister(&idev->misc);
	debugfs_remove_recursive(idev->debug_root);
	ion_carveout_heap_release(&ion_carveout_heap);
	mutex_destroy(&idev->lock);
}

module_init(ion_init);
module_exit(ion_exit);

MODULE_DESCRIPTION("ION allocator with the 4.12+ uapi, exporting dma-bufs");
MODULE_LICENSE("GPL");
/* Symbol namespaces are named by a string literal since 6.13. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
MODULE_IMPORT_NS("DMA_BUF");
#else
MODULE_IMPORT_NS(DMA_BUF);
#endif
