/* SPDX-License-Identifier: MIT */
/*
 * libbufclient's C API: buffers from ionsvcd for programs written in C (C99
 * and later), over the same library as the C++ API (bufclient.h).
 *
 * Every call returns a bufclient_status: BUFCLIENT_OK, or the daemon's
 * status for a refusal, or BUFCLIENT_UNAVAILABLE when the daemon could not
 * be reached or did not answer. After a failure, bufclient_error_message()
 * says what went wrong, naming the problem and any limit, until the next
 * call of this thread.
 *
 * Handles are opaque. A client is one connection: use it from one thread
 * at a time. A buffer handle owns the buffer's fd until it is freed
 * (bufclient_free) or its fd taken (bufclient_buffer_take_fd).
 *
 *   bufclient_client *client;
 *   bufclient_buffer *buffer;
 *   bufclient_alloc_options options = BUFCLIENT_ALLOC_OPTIONS_INIT;
 *   options.size = 4096;
 *   if (bufclient_connect(NULL, "camera", &client) != BUFCLIENT_OK ||
 *       bufclient_allocate(client, &options, &buffer) != BUFCLIENT_OK)
 *       fprintf(stderr, "%s\n", bufclient_error_message());
 */
#ifndef BUFCLIENT_BUFCLIENT_C_H
#define BUFCLIENT_BUFCLIENT_C_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Value for value the daemon's statuses (proto/buffer.proto). */
typedef enum bufclient_status {
    BUFCLIENT_OK = 0,
    BUFCLIENT_INVALID_ARGUMENT = 1,
    BUFCLIENT_NO_SUCH_HEAP = 2,
    BUFCLIENT_OUT_OF_MEMORY = 3,
    BUFCLIENT_QUOTA_EXCEEDED = 4,
    BUFCLIENT_PERMISSION_DENIED = 5,
    BUFCLIENT_RESOURCE_EXHAUSTED = 6,
    BUFCLIENT_UNSUPPORTED_VERSION = 7,
    BUFCLIENT_NOT_FOUND = 8,
    BUFCLIENT_INTERNAL = 9,
    /* The daemon could not be reached, hung up, or did not answer. */
    BUFCLIENT_UNAVAILABLE = 10,
} bufclient_status;

/* What the last failed call of this thread said; "" if none did. Valid
 * until the next call of this thread. */
const char *bufclient_error_message(void);
/* The status's name, e.g. "QUOTA_EXCEEDED". */
const char *bufclient_status_name(bufclient_status status);

typedef struct bufclient_client bufclient_client;
typedef struct bufclient_buffer bufclient_buffer;

/* Connects and says Hello. socket_path NULL or "": $IONSVC_SOCKET, else
 * /run/ionsvc/ionsvc.sock. client_name (may be NULL) names the client in
 * stats. */
bufclient_status bufclient_connect(const char *socket_path, const char *client_name, bufclient_client **client);
/* Hangs up: the daemon frees what this client still holds. Its buffer
 * handles stay valid (their fds too) and must still be freed. NULL: nothing. */
void bufclient_disconnect(bufclient_client *client);

/* Allocation flags (AllocFlag in the protocol). */
#define BUFCLIENT_FLAG_CACHED 1u
#define BUFCLIENT_FLAG_CACHED_NEEDS_SYNC 2u
#define BUFCLIENT_FLAG_POPULATED 4u

typedef struct bufclient_alloc_options {
    const char *heap;   /* a heap or alias; NULL or "": the daemon's default */
    uint64_t size;      /* bytes, rounded up to pages */
    uint32_t flags;     /* BUFCLIENT_FLAG_* */
    const char *name;   /* the buffer's name; NULL: none */
    uint32_t count;     /* buffers of this size in one request; 0 means 1 */
    uint32_t ion_heap_id_mask; /* instead of heap: ION's heap_id_mask */
} bufclient_alloc_options;
#define BUFCLIENT_ALLOC_OPTIONS_INIT {NULL, 0, 0, NULL, 1, 0}

/* Allocates options->count buffers (all or none) into buffers[0..count). */
bufclient_status bufclient_allocate(bufclient_client *client, const bufclient_alloc_options *options,
                                    bufclient_buffer **buffers);
/* Tells the daemon this client no longer holds the buffer, closes its fd
 * (if not taken), unmaps nothing, and destroys the handle. NULL: nothing. */
bufclient_status bufclient_free(bufclient_client *client, bufclient_buffer *buffer);

/* The buffer's fd, still owned by the handle. */
int bufclient_buffer_fd(const bufclient_buffer *buffer);
/* The buffer's fd, now owned by the caller (close it); -1 if already taken.
 * The daemon counts the buffer as this client's until bufclient_free. */
int bufclient_buffer_take_fd(bufclient_buffer *buffer);
uint64_t bufclient_buffer_id(const bufclient_buffer *buffer);
uint64_t bufclient_buffer_size(const bufclient_buffer *buffer);
/* The heap it came from, e.g. "memfd"; valid as long as the handle. */
const char *bufclient_buffer_heap(const bufclient_buffer *buffer);

/* Maps the whole buffer (prot: PROT_READ, PROT_WRITE) at *data; unmap
 * with bufclient_unmap. */
bufclient_status bufclient_map(const bufclient_buffer *buffer, int prot, void **data);
bufclient_status bufclient_unmap(const bufclient_buffer *buffer, void *data);

/* CPU access to a mapped dma-buf (DMA_BUF_IOCTL_SYNC): begin before the
 * CPU reads or writes, end after. No-ops for memfd buffers, which are not
 * dma-bufs. */
#define BUFCLIENT_SYNC_READ 1u
#define BUFCLIENT_SYNC_WRITE 2u
bufclient_status bufclient_sync_begin(const bufclient_buffer *buffer, unsigned access);
bufclient_status bufclient_sync_end(const bufclient_buffer *buffer, unsigned access);

/* Share and import: a token another client may import the buffer by, as
 * text (48 hex digits and a NUL) to pass along by any means. */
#define BUFCLIENT_TOKEN_SIZE 49
typedef struct bufclient_share_options {
    int32_t uid;      /* only this user may import; -1: anyone */
    uint64_t ttl_ms;  /* 0: until revoked or the buffer is freed */
    int reusable;     /* 0: the first import uses the token up */
} bufclient_share_options;
#define BUFCLIENT_SHARE_OPTIONS_INIT {-1, 0, 0}

/* options NULL: BUFCLIENT_SHARE_OPTIONS_INIT. */
bufclient_status bufclient_share(bufclient_client *client, const bufclient_buffer *buffer,
                                 const bufclient_share_options *options, char token[BUFCLIENT_TOKEN_SIZE]);
bufclient_status bufclient_import(bufclient_client *client, const char *token,
                                  bufclient_buffer **buffer);
bufclient_status bufclient_revoke(bufclient_client *client, const char *token);

/* The daemon's heaps. */
typedef struct bufclient_heap_info {
    const char *name;     /* e.g. "dma-heap:system" */
    const char *backend;  /* "ion", "dma-heap", "udmabuf", "memfd" */
    const char *type;     /* ION heap type name, e.g. "system" */
    const char *aliases;  /* the aliases that lead here, comma-separated */
    int32_t ion_heap_id;  /* ion heaps: the bit in ion_heap_id_mask; else -1 */
    uint64_t live_bytes;
    uint64_t live_buffers;
    uint64_t peak_bytes;
} bufclient_heap_info;

typedef struct bufclient_heap_list {
    size_t count;
    bufclient_heap_info *heaps;
} bufclient_heap_list;

/* *heaps is freed with bufclient_heap_list_free. */
bufclient_status bufclient_list_heaps(bufclient_client *client, bufclient_heap_list **heaps);
void bufclient_heap_list_free(bufclient_heap_list *heaps);

/* Who holds what, as the daemon lets this client see it. */
typedef struct bufclient_client_stats {
    uint64_t client_id;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    const char *comm;
    const char *name;
    uint64_t bytes;   /* over every heap */
    uint64_t buffers;
} bufclient_client_stats;

typedef struct bufclient_heap_stats {
    const char *name;
    uint64_t live_bytes;   /* of the clients in scope, orphans included */
    uint64_t live_buffers;
    uint64_t orphaned_buffers;
} bufclient_heap_stats;

typedef struct bufclient_stats {
    size_t client_count;
    bufclient_client_stats *clients;
    size_t heap_count;
    bufclient_heap_stats *heaps;
} bufclient_stats;

/* pid 0: every process; else the clients of that process. *stats is freed
 * with bufclient_stats_free. */
bufclient_status bufclient_get_stats(bufclient_client *client, pid_t pid, bufclient_stats **stats);
void bufclient_stats_free(bufclient_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* BUFCLIENT_BUFCLIENT_C_H */
