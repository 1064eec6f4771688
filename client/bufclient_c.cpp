// SPDX-License-Identifier: MIT
// The C API (bufclient_c.h) over the C++ one: handles wrap its objects,
// errors become a status and this thread's message, and no exception
// crosses into C.
#include <bufclient/bufclient_c.h>

#include <linux/dma-buf.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <new>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <bufclient/bufclient.h>

struct bufclient_client
{
    bufclient::Client client;
};

struct bufclient_buffer
{
    bufclient::Buffer buffer;
};

namespace {

using ionsvc::StatusCode;

thread_local std::string last_message;

bufclient_status fail(StatusCode code, std::string message)
{
    last_message = std::move(message);
    return static_cast<bufclient_status>(code);
}

bufclient_status fail(const bufclient::Error &error)
{
    return fail(error.code, error.message);
}

bufclient_status fail_errno(const char *what, int error)
{
    return fail(ionsvc::status_from_errno(-error), std::string(what) + ": " + std::strerror(error));
}

// Runs body, which returns a status; what it throws becomes one too.
template<typename Body>
bufclient_status guarded(Body &&body) noexcept
{
    last_message.clear();
    try {
        return body();
    } catch (const std::bad_alloc &) {
        return fail(StatusCode::kOutOfMemory, "out of memory in libbufclient");
    } catch (const std::exception &error) {
        return fail(StatusCode::kInternal, std::string("libbufclient: ") + error.what());
    } catch (...) {
        return fail(StatusCode::kInternal, "libbufclient: unknown exception");
    }
}

bool missing(const void *pointer, const char *what, bufclient_status &status)
{
    if (pointer)
        return false;
    status = fail(StatusCode::kInvalidArgument, std::string(what) + " is NULL");
    return true;
}

std::string text_or_empty(const char *text)
{
    return text ? text : "";
}

bufclient_status sync(const bufclient_buffer *buffer, unsigned access, std::uint64_t phase)
{
    return guarded([&] {
        bufclient_status status = BUFCLIENT_OK;
        if (missing(buffer, "buffer", status))
            return status;
        if (access == 0 || (access & ~(BUFCLIENT_SYNC_READ | BUFCLIENT_SYNC_WRITE)) != 0)
            return fail(StatusCode::kInvalidArgument, "access must be BUFCLIENT_SYNC_READ, _WRITE or both");
        dma_buf_sync request{};
        request.flags = phase | ((access & BUFCLIENT_SYNC_READ) ? DMA_BUF_SYNC_READ : 0) |
                        ((access & BUFCLIENT_SYNC_WRITE) ? DMA_BUF_SYNC_WRITE : 0);
        int result;
        do {
            result = ::ioctl(buffer->buffer.fd(), DMA_BUF_IOCTL_SYNC, &request);
        } while (result < 0 && (errno == EINTR || errno == EAGAIN));
        // A memfd is no dma-buf: the CPU's view is the only one.
        if (result < 0 && errno != ENOTTY)
            return fail_errno("DMA_BUF_IOCTL_SYNC", errno);
        return BUFCLIENT_OK;
    });
}

// A heap list and the strings it points into, freed together.
struct HeapListStorage : bufclient_heap_list
{
    std::vector<bufclient::HeapInfo> source;
    std::vector<std::string> aliases;
    std::vector<bufclient_heap_info> entries;
};

struct StatsStorage : bufclient_stats
{
    bufclient::Stats source;
    std::vector<bufclient_client_stats> client_entries;
    std::vector<bufclient_heap_stats> heap_entries;
};

} // namespace

extern "C" {

const char *bufclient_error_message(void)
{
    return last_message.c_str();
}

const char *bufclient_status_name(bufclient_status status)
{
    // Every name is a literal: its data is NUL-terminated.
    return ionsvc::status_name(static_cast<StatusCode>(status)).data();
}

bufclient_status bufclient_connect(const char *socket_path, const char *client_name, bufclient_client **client)
{
    return guarded([&] {
        bufclient_status status = BUFCLIENT_OK;
        if (missing(client, "client", status))
            return status;
        auto connected = bufclient::Client::connect(
            {.socket_path = text_or_empty(socket_path), .client_name = text_or_empty(client_name)});
        if (!connected)
            return fail(connected.error());
        *client = new bufclient_client{std::move(*connected)};
        return BUFCLIENT_OK;
    });
}

void bufclient_disconnect(bufclient_client *client)
{
    delete client;
}

bufclient_status bufclient_allocate(bufclient_client *client, const bufclient_alloc_options *options,
                                    bufclient_buffer **buffers)
{
    return guarded([&] {
        bufclient_status status = BUFCLIENT_OK;
        if (missing(client, "client", status) || missing(options, "options", status) ||
            missing(buffers, "buffers", status))
            return status;
        auto made = client->client.allocate({.heap = text_or_empty(options->heap),
                                             .size = options->size,
                                             .flags = options->flags,
                                             .name = text_or_empty(options->name),
                                             .count = options->count == 0 ? 1 : options->count,
                                             .ion_heap_id_mask = options->ion_heap_id_mask});
        if (!made)
            return fail(made.error());
        // Handles first, then hand them out: all or none.
        std::vector<bufclient_buffer *> handles;
        try {
            for (bufclient::Buffer &buffer : *made)
                handles.push_back(new bufclient_buffer{std::move(buffer)});
        } catch (...) {
            for (bufclient_buffer *handle : handles)
                delete handle;
            throw;
        }
        std::copy(handles.begin(), handles.end(), buffers);
        return BUFCLIENT_OK;
    });
}

bufclient_status bufclient_free(bufclient_client *client, bufclient_buffer *buffer)
{
    return guarded([&] {
        bufclient_status status = BUFCLIENT_OK;
        if (!buffer)
            return status;
        if (missing(client, "client", status))
            return status;
        auto freed = client->client.free(buffer->buffer);
        delete buffer;
        return freed ? BUFCLIENT_OK : fail(freed.error());
    });
}

int bufclient_buffer_fd(const bufclient_buffer *buffer)
{
    return buffer ? buffer->buffer.fd() : -1;
}

int bufclient_buffer_take_fd(bufclient_buffer *buffer)
{
    return buffer ? buffer->buffer.take_fd().release() : -1;
}

uint64_t bufclient_buffer_id(const bufclient_buffer *buffer)
{
    return buffer ? buffer->buffer.id() : 0;
}

uint64_t bufclient_buffer_size(const bufclient_buffer *buffer)
{
    return buffer ? buffer->buffer.size() : 0;
}

const char *bufclient_buffer_heap(const bufclient_buffer *buffer)
{
    return buffer ? buffer->buffer.heap().c_str() : "";
}

bufclient_status bufclient_map(const bufclient_buffer *buffer, int prot, void **data)
{
    return guarded([&] {
        bufclient_status status = BUFCLIENT_OK;
        if (missing(buffer, "buffer", status) || missing(data, "data", status))
            return status;
        void *mapped = ::mmap(nullptr, buffer->buffer.size(), prot, MAP_SHARED, buffer->buffer.fd(), 0);
        if (mapped == MAP_FAILED)
            return fail_errno("mmap", errno);
        *data = mapped;
        return BUFCLIENT_OK;
    });
}

bufclient_status bufclient_unmap(const bufclient_buffer *buffer, void *data)
{
    return guarded([&] {
        bufclient_status status = BUFCLIENT_OK;
        if (missing(buffer, "buffer", status) || missing(data, "data", status))
            return status;
        if (::munmap(data, buffer->buffer.size()) < 0)
            return fail_errno("munmap", errno);
        return BUFCLIENT_OK;
    });
}

bufclient_status bufclient_sync_begin(const bufclient_buffer *buffer, unsigned access)
{
    return sync(buffer, access, DMA_BUF_SYNC_START);
}

bufclient_status bufclient_sync_end(const bufclient_buffer *buffer, unsigned access)
{
    return sync(buffer, access, DMA_BUF_SYNC_END);
}

bufclient_status bufclient_share(bufclient_client *client, const bufclient_buffer *buffer,
                                 const bufclient_share_options *options, char token[BUFCLIENT_TOKEN_SIZE])
{
    return guarded([&] {
        bufclient_status status = BUFCLIENT_OK;
        if (missing(client, "client", status) || missing(buffer, "buffer", status) || missing(token, "token", status))
            return status;
        const bufclient_share_options defaults = BUFCLIENT_SHARE_OPTIONS_INIT;
        const bufclient_share_options &given = options ? *options : defaults;
        bufclient::ShareOptions share;
        if (given.uid >= 0)
            share.uid = static_cast<uid_t>(given.uid);
        share.ttl = std::chrono::milliseconds(given.ttl_ms);
        share.reusable = given.reusable != 0;
        auto shared = client->client.share(buffer->buffer, share);
        if (!shared)
            return fail(shared.error());
        if (shared->size() + 1 > BUFCLIENT_TOKEN_SIZE)
            return fail(StatusCode::kInternal, "the daemon's token is " + std::to_string(shared->size()) +
                                                   " characters, more than BUFCLIENT_TOKEN_SIZE holds");
        std::memcpy(token, shared->c_str(), shared->size() + 1);
        return BUFCLIENT_OK;
    });
}

bufclient_status bufclient_import(bufclient_client *client, const char *token,
                                  bufclient_buffer **buffer)
{
    return guarded([&] {
        bufclient_status status = BUFCLIENT_OK;
        if (missing(client, "client", status) || missing(token, "token", status) || missing(buffer, "buffer", status))
            return status;
        auto imported = client->client.import(token);
        if (!imported)
            return fail(imported.error());
        *buffer = new bufclient_buffer{std::move(*imported)};
        return BUFCLIENT_OK;
    });
}

bufclient_status bufclient_revoke(bufclient_client *client, const char *token)
{
    return guarded([&] {
        bufclient_status status = BUFCLIENT_OK;
        if (missing(client, "client", status) || missing(token, "token", status))
            return status;
        auto revoked = client->client.revoke(token);
        return revoked ? BUFCLIENT_OK : fail(revoked.error());
    });
}

bufclient_status bufclient_list_heaps(bufclient_client *client, bufclient_heap_list **heaps)
{
    return guarded([&] {
        bufclient_status status = BUFCLIENT_OK;
        if (missing(client, "client", status) || missing(heaps, "heaps", status))
            return status;
        auto listed = client->client.list_heaps();
        if (!listed)
            return fail(listed.error());
        auto storage = std::make_unique<HeapListStorage>();
        storage->source = std::move(*listed);
        for (const bufclient::HeapInfo &heap : storage->source) {
            storage->aliases.push_back(std::accumulate(
                heap.aliases.begin(), heap.aliases.end(), std::string{},
                [](std::string all, const std::string &alias) { return all.empty() ? alias : all + "," + alias; }));
        }
        for (std::size_t i = 0; i < storage->source.size(); ++i) {
            const bufclient::HeapInfo &heap = storage->source[i];
            storage->entries.push_back({heap.name.c_str(), heap.backend.c_str(), heap.type.c_str(),
                                        storage->aliases[i].c_str(),
                                        heap.ion_heap_id ? static_cast<int32_t>(*heap.ion_heap_id) : -1,
                                        heap.live_bytes, heap.live_buffers, heap.peak_bytes});
        }
        storage->count = storage->entries.size();
        storage->heaps = storage->entries.data();
        *heaps = storage.release();
        return BUFCLIENT_OK;
    });
}

void bufclient_heap_list_free(bufclient_heap_list *heaps)
{
    delete static_cast<HeapListStorage *>(heaps);
}

bufclient_status bufclient_get_stats(bufclient_client *client, pid_t pid, bufclient_stats **stats)
{
    return guarded([&] {
        bufclient_status status = BUFCLIENT_OK;
        if (missing(client, "client", status) || missing(stats, "stats", status))
            return status;
        auto got = client->client.stats(pid > 0 ? std::optional<pid_t>(pid) : std::nullopt);
        if (!got)
            return fail(got.error());
        auto storage = std::make_unique<StatsStorage>();
        storage->source = std::move(*got);
        for (const bufclient::ClientStats &entry : storage->source.clients) {
            bufclient_client_stats out{entry.client_id, static_cast<pid_t>(entry.pid), entry.uid, entry.gid,
                                       entry.comm.c_str(), entry.name.c_str(), 0, 0};
            for (const bufclient::HeapUsage &usage : entry.heaps) {
                out.bytes += usage.bytes;
                out.buffers += usage.buffers;
            }
            storage->client_entries.push_back(out);
        }
        for (const bufclient::HeapStats &heap : storage->source.heaps) {
            storage->heap_entries.push_back(
                {heap.name.c_str(), heap.total_bytes, heap.total_buffers, heap.orphaned.size()});
        }
        storage->client_count = storage->client_entries.size();
        storage->clients = storage->client_entries.data();
        storage->heap_count = storage->heap_entries.size();
        storage->heaps = storage->heap_entries.data();
        *stats = storage.release();
        return BUFCLIENT_OK;
    });
}

void bufclient_stats_free(bufclient_stats *stats)
{
    delete static_cast<StatsStorage *>(stats);
}

} // extern "C"
