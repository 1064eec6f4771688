/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * ION allocator uapi, 4.12+ layout.
 *
 * The numbers and layouts here are the ABI of every ION driver since Linux
 * 4.12, so existing ION users work with ion_simple unchanged. ionsvcd's ion
 * backend includes this header too.
 */
#ifndef _UAPI_LINUX_ION_H
#define _UAPI_LINUX_ION_H

#include <linux/ioctl.h>
#include <linux/types.h>

enum ion_heap_type {
	ION_HEAP_TYPE_SYSTEM = 0,
	ION_HEAP_TYPE_SYSTEM_CONTIG = 1,
	ION_HEAP_TYPE_CARVEOUT = 2,
	ION_HEAP_TYPE_CHUNK = 3,
	ION_HEAP_TYPE_DMA = 4,
	ION_HEAP_TYPE_CUSTOM = 5,
};

/* Heap ids are bit positions in ion_allocation_data.heap_id_mask. */
#define ION_NUM_HEAP_IDS		(sizeof(unsigned int) * 8)

/* CPU mappings are cached; without it they are write-combined. */
#define ION_FLAG_CACHED			1
/* Cached, and the user brackets CPU access with DMA_BUF_IOCTL_SYNC. */
#define ION_FLAG_CACHED_NEEDS_SYNC	2

/**
 * struct ion_allocation_data - argument of ION_IOC_ALLOC
 * @len:		size in bytes; rounded up to whole pages
 * @heap_id_mask:	heaps that may serve it, one bit per heap id
 * @flags:		ION_FLAG_*
 * @fd:			out: an O_CLOEXEC dma-buf fd
 * @unused:		ignored, returned as given
 */
struct ion_allocation_data {
	__u64 len;
	__u32 heap_id_mask;
	__u32 flags;
	__u32 fd;
	__u32 unused;
};

#define MAX_HEAP_NAME			32

/**
 * struct ion_heap_data - one heap as ION_IOC_HEAP_QUERY reports it
 * @name:	NUL-terminated heap name
 * @type:	enum ion_heap_type
 * @heap_id:	bit position in heap_id_mask
 */
struct ion_heap_data {
	char name[MAX_HEAP_NAME];
	__u32 type;
	__u32 heap_id;
	__u32 reserved0;
	__u32 reserved1;
	__u32 reserved2;
};

/**
 * struct ion_heap_query - argument of ION_IOC_HEAP_QUERY
 * @cnt:	in: entries in @heaps; out: heaps present (@heaps == 0) or
 *		entries written
 * @heaps:	user pointer to an array of struct ion_heap_data, or 0
 * @reserved0..2: must be 0
 */
struct ion_heap_query {
	__u32 cnt;
	__u32 reserved0;
	__u64 heaps;
	__u32 reserved1;
	__u32 reserved2;
};

#define ION_IOC_MAGIC		'I'

#define ION_IOC_ALLOC		_IOWR(ION_IOC_MAGIC, 0, struct ion_allocation_data)
#define ION_IOC_HEAP_QUERY	_IOWR(ION_IOC_MAGIC, 8, struct ion_heap_query)

#endif /* _UAPI_LINUX_ION_H */
