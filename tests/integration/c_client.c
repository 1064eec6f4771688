/* SPDX-License-Identifier: MIT */
/*
 * A client written in C11 against <bufclient/bufclient_c.h> alone, run by
 * c_api_test.cpp against a real daemon:
 *
 *   c_client SOCKET tour    lists heaps, allocates a batch of two, writes
 *                           one through a mapping (with CPU-access sync),
 *                           shares it with a second connection that imports
 *                           and reads it, revokes a second token, sees
 *                           itself in stats, frees everything
 *   c_client SOCKET refused an allocation over the quota, and one from a
 *                           heap that does not exist: each status, its name
 *                           and its message
 *
 * Prints one line per step; exits 0 if every step went as expected.
 */
#define _POSIX_C_SOURCE 200809L

#include <bufclient/bufclient_c.h>

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHECK(call)                                                                                          \
    do {                                                                                                     \
        bufclient_status status_ = (call);                                                                   \
        if (status_ != BUFCLIENT_OK) {                                                                       \
            fprintf(stderr, "c_client: %s: %s: %s\n", #call, bufclient_status_name(status_),                \
                    bufclient_error_message());                                                              \
            return 1;                                                                                        \
        }                                                                                                    \
    } while (0)

#define EXPECT(condition)                                                                                    \
    do {                                                                                                     \
        if (!(condition)) {                                                                                  \
            fprintf(stderr, "c_client: expected %s\n", #condition);                                         \
            return 1;                                                                                        \
        }                                                                                                    \
    } while (0)

static int tour(const char *socket)
{
    bufclient_client *client = NULL;
    bufclient_client *peer = NULL;
    CHECK(bufclient_connect(socket, "c-client", &client));
    CHECK(bufclient_connect(socket, "c-peer", &peer));

    bufclient_heap_list *heaps = NULL;
    CHECK(bufclient_list_heaps(client, &heaps));
    EXPECT(heaps->count >= 1);
    printf("heaps: %zu, the first %s (backend %s)\n", heaps->count, heaps->heaps[0].name, heaps->heaps[0].backend);
    bufclient_heap_list_free(heaps);

    bufclient_alloc_options options = BUFCLIENT_ALLOC_OPTIONS_INIT;
    options.size = 8192;
    options.count = 2;
    options.name = "c-frame";
    bufclient_buffer *buffers[2] = {NULL, NULL};
    CHECK(bufclient_allocate(client, &options, buffers));
    EXPECT(bufclient_buffer_size(buffers[0]) == 8192 && bufclient_buffer_fd(buffers[1]) >= 0);
    printf("allocated buffers %llu and %llu from heap %s\n", (unsigned long long)bufclient_buffer_id(buffers[0]),
           (unsigned long long)bufclient_buffer_id(buffers[1]), bufclient_buffer_heap(buffers[0]));

    void *data = NULL;
    CHECK(bufclient_map(buffers[0], PROT_READ | PROT_WRITE, &data));
    CHECK(bufclient_sync_begin(buffers[0], BUFCLIENT_SYNC_WRITE));
    memset(data, 0xc5, 8192);
    CHECK(bufclient_sync_end(buffers[0], BUFCLIENT_SYNC_WRITE));
    CHECK(bufclient_unmap(buffers[0], data));

    char token[BUFCLIENT_TOKEN_SIZE];
    CHECK(bufclient_share(client, buffers[0], NULL, token));
    bufclient_buffer *imported = NULL;
    CHECK(bufclient_import(peer, token, &imported));
    EXPECT(bufclient_buffer_id(imported) == bufclient_buffer_id(buffers[0]));
    CHECK(bufclient_map(imported, PROT_READ, &data));
    CHECK(bufclient_sync_begin(imported, BUFCLIENT_SYNC_READ));
    const unsigned char *bytes = data;
    EXPECT(bytes[0] == 0xc5 && bytes[8191] == 0xc5);
    CHECK(bufclient_sync_end(imported, BUFCLIENT_SYNC_READ));
    CHECK(bufclient_unmap(imported, data));
    printf("the peer imported buffer %llu and read what was written\n",
           (unsigned long long)bufclient_buffer_id(imported));

    bufclient_share_options share = BUFCLIENT_SHARE_OPTIONS_INIT;
    share.reusable = 1;
    CHECK(bufclient_share(client, buffers[1], &share, token));
    CHECK(bufclient_revoke(client, token));
    bufclient_buffer *not_imported = NULL;
    EXPECT(bufclient_import(peer, token, &not_imported) == BUFCLIENT_NOT_FOUND);
    printf("a revoked token imports nothing: %s\n", bufclient_error_message());

    bufclient_stats *stats = NULL;
    CHECK(bufclient_get_stats(client, getpid(), &stats));
    EXPECT(stats->client_count == 2);
    unsigned long long held = 0;
    for (size_t i = 0; i < stats->client_count; ++i) {
        if (strcmp(stats->clients[i].name, "c-client") == 0)
            held = stats->clients[i].buffers;
    }
    EXPECT(held == 2);
    bufclient_stats_free(stats);
    printf("stats show this pid's clients, c-client holding %llu buffers\n", held);

    CHECK(bufclient_free(peer, imported));
    CHECK(bufclient_free(client, buffers[0]));
    CHECK(bufclient_free(client, buffers[1]));
    bufclient_disconnect(peer);
    bufclient_disconnect(client);
    printf("freed everything\n");
    return 0;
}

static int refused(const char *socket)
{
    bufclient_client *client = NULL;
    CHECK(bufclient_connect(socket, "c-client", &client));
    bufclient_alloc_options options = BUFCLIENT_ALLOC_OPTIONS_INIT;
    options.size = 2 << 20;
    bufclient_buffer *buffer = NULL;
    EXPECT(bufclient_allocate(client, &options, &buffer) == BUFCLIENT_QUOTA_EXCEEDED && buffer == NULL);
    printf("%s: %s\n", bufclient_status_name(BUFCLIENT_QUOTA_EXCEEDED), bufclient_error_message());
    options.size = 4096;
    options.heap = "nope";
    EXPECT(bufclient_allocate(client, &options, &buffer) == BUFCLIENT_NO_SUCH_HEAP);
    printf("%s: %s\n", bufclient_status_name(BUFCLIENT_NO_SUCH_HEAP), bufclient_error_message());
    EXPECT(bufclient_allocate(NULL, &options, &buffer) == BUFCLIENT_INVALID_ARGUMENT);
    printf("no client: %s\n", bufclient_error_message());
    bufclient_disconnect(client);
    EXPECT(bufclient_connect("/nonexistent/ionsvc.sock", NULL, &client) == BUFCLIENT_UNAVAILABLE);
    printf("no daemon: %s\n", bufclient_error_message());
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[2], "tour") == 0)
        return tour(argv[1]);
    if (argc == 3 && strcmp(argv[2], "refused") == 0)
        return refused(argv[1]);
    fprintf(stderr, "usage: c_client SOCKET tour|refused\n");
    return 2;
}
