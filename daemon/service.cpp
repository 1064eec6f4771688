// SPDX-License-Identifier: MIT
#include "service.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <ionsvc/free_check.h>
#include <ionsvc/protocol.h>

namespace ionsvc {

namespace {

// The wire enum and ours must agree value for value.
static_assert(static_cast<int>(StatusCode::kOk) == wire::OK);
static_assert(static_cast<int>(StatusCode::kInvalidArgument) == wire::INVALID_ARGUMENT);
static_assert(static_cast<int>(StatusCode::kNoSuchHeap) == wire::NO_SUCH_HEAP);
static_assert(static_cast<int>(StatusCode::kOutOfMemory) == wire::OUT_OF_MEMORY);
static_assert(static_cast<int>(StatusCode::kQuotaExceeded) == wire::QUOTA_EXCEEDED);
static_assert(static_cast<int>(StatusCode::kPermissionDenied) == wire::PERMISSION_DENIED);
static_assert(static_cast<int>(StatusCode::kResourceExhausted) == wire::RESOURCE_EXHAUSTED);
static_assert(static_cast<int>(StatusCode::kUnsupportedVersion) == wire::UNSUPPORTED_VERSION);
static_assert(static_cast<int>(StatusCode::kNotFound) == wire::NOT_FOUND);
static_assert(static_cast<int>(StatusCode::kInternal) == wire::INTERNAL);
static_assert(static_cast<int>(StatusCode::kUnavailable) == wire::UNAVAILABLE);

constexpr std::uint32_t kKnownAllocFlags = wire::ALLOC_FLAG_CACHED | wire::ALLOC_FLAG_CACHED_NEEDS_SYNC;

// Names longer than this are cut; they are labels, not data.
constexpr std::size_t kMaxNameLength = 255;

std::string errno_text(int negative_errno)
{
    return std::strerror(-negative_errno);
}

} // namespace

void set_error(Response &response, StatusCode code, std::string message)
{
    response.reply.set_status(static_cast<wire::StatusCode>(code));
    response.reply.set_message(std::move(message));
}

Service::Service(Allocator &allocator, ServiceLimits limits)
    : allocator_(allocator), books_(allocator.heap_count()), limits_(limits)
{
}

ClientId Service::connect(ClientIdentity identity)
{
    return books_.add_client(std::move(identity));
}

void Service::disconnect(ClientId client)
{
    books_.remove_client(client);
}

Disposition Service::handle_packet(ClientContext &client, std::span<const std::byte> packet,
                                   Response &response)
{
    if (packet.empty()) {
        set_error(response, StatusCode::kInvalidArgument, "empty packet: expected a Request message");
        return Disposition::kKeepOpen;
    }

    wire::Request request;
    if (!request.ParseFromArray(packet.data(), static_cast<int>(packet.size()))) {
        set_error(response, StatusCode::kInvalidArgument,
                  fmt::format("malformed packet of {} bytes: not a Request message", packet.size()));
        return Disposition::kClose;
    }

    if (request.body_case() == wire::Request::BODY_NOT_SET) {
        set_error(response, StatusCode::kInvalidArgument,
                  "unknown request: the packet holds no request this daemon knows");
        return Disposition::kKeepOpen;
    }

    if (request.body_case() == wire::Request::kHello) {
        hello(client, request.hello(), response);
        return Disposition::kKeepOpen;
    }

    if (!client.greeted) {
        set_error(response, StatusCode::kInvalidArgument,
                  fmt::format("request before Hello: say Hello with protocol version {} first",
                              kProtocolVersion));
        return Disposition::kKeepOpen;
    }

    switch (request.body_case()) {
    case wire::Request::kListHeaps: list_heaps(response); break;
    case wire::Request::kAlloc: allocate(client, request.alloc(), response); break;
    case wire::Request::kFree: free_buffers(client, request.free(), response); break;
    case wire::Request::kStats: stats(request.stats(), response); break;
    case wire::Request::kHello:
    case wire::Request::BODY_NOT_SET: break;
    }
    return Disposition::kKeepOpen;
}

void Service::hello(ClientContext &client, const wire::HelloRequest &request, Response &response)
{
    wire::HelloReply &reply = *response.reply.mutable_hello();
    reply.set_protocol_version(kProtocolVersion);
    reply.set_server_version(IONSVC_VERSION);
    reply.set_client_id(client.id);
    wire::Limits &limits = *reply.mutable_limits();
    limits.set_max_buffer_size(limits_.max_buffer_size);
    limits.set_max_batch_count(kMaxBatchCount);
    limits.set_max_free_ids(kMaxFreeIds);
    limits.set_max_request_bytes(static_cast<std::uint32_t>(kMaxRequestBytes));

    if (request.protocol_version() != kProtocolVersion) {
        set_error(response, StatusCode::kUnsupportedVersion,
                  fmt::format("protocol version {} is not supported: this daemon speaks version {}",
                              request.protocol_version(), kProtocolVersion));
        return;
    }

    client.greeted = true;
    books_.set_client_name(client.id, request.client_name().substr(0, kMaxNameLength));
}

void Service::list_heaps(Response &response)
{
    wire::ListHeapsReply &reply = *response.reply.mutable_list_heaps();
    for (HeapIndex i = 0; i < allocator_.heap_count(); ++i) {
        const HeapEntry &entry = allocator_.heap(i);
        const Usage &usage = books_.heap_usage(i);
        wire::HeapInfo &info = *reply.add_heaps();
        info.set_name(std::string(entry.heap->name()));
        info.set_backend(std::string(entry.backend));
        info.set_type(std::string(entry.heap->type()));
        info.set_live_bytes(usage.bytes);
        info.set_live_buffers(usage.buffers);
        info.set_peak_bytes(usage.peak_bytes);
        for (std::string &alias : allocator_.registry().aliases_of(i))
            info.add_aliases(std::move(alias));
    }
}

void Service::allocate(ClientContext &client, const wire::AllocRequest &request, Response &response)
{
    const std::uint32_t count = request.count();
    if (count == 0) {
        set_error(response, StatusCode::kInvalidArgument, "count must be at least 1");
        return;
    }
    if (count > kMaxBatchCount) {
        set_error(response, StatusCode::kInvalidArgument,
                  fmt::format("count {} exceeds the batch limit of {} buffers", count, kMaxBatchCount));
        return;
    }
    if (request.size() == 0) {
        set_error(response, StatusCode::kInvalidArgument, "size must be greater than zero");
        return;
    }
    if (request.size() > limits_.max_buffer_size) {
        set_error(response, StatusCode::kInvalidArgument,
                  fmt::format("size {} exceeds the maximum buffer size of {} bytes", request.size(),
                              limits_.max_buffer_size));
        return;
    }
    if (const std::uint32_t unknown = request.flags() & ~kKnownAllocFlags) {
        set_error(response, StatusCode::kInvalidArgument,
                  fmt::format("unknown flags {:#x}: known flags are CACHED ({:#x}) and "
                              "CACHED_NEEDS_SYNC ({:#x})",
                              unknown, static_cast<unsigned>(wire::ALLOC_FLAG_CACHED),
                              static_cast<unsigned>(wire::ALLOC_FLAG_CACHED_NEEDS_SYNC)));
        return;
    }

    const auto heap = allocator_.find_heap(request.heap());
    if (!heap) {
        set_error(response, StatusCode::kNoSuchHeap,
                  fmt::format("no heap named '{}'; this daemon serves: {}", request.heap(),
                              allocator_.heap_names()));
        return;
    }
    const std::string_view heap_name = allocator_.heap(*heap).heap->name();

    const auto size = page_align(request.size());
    if (!size) {
        set_error(response, StatusCode::kInvalidArgument,
                  fmt::format("size {} does not fit in whole pages", request.size()));
        return;
    }

    // Unnamed buffers carry their owner's name, so that /proc/<pid>/fd of
    // whoever holds one says where it came from.
    std::string_view name = std::string_view(request.name()).substr(0, kMaxNameLength);
    if (name.empty()) {
        if (const ClientRecord *record = books_.client(client.id))
            name = record->default_buffer_name;
    }

    // All or nothing: nothing enters the books until every buffer exists.
    std::vector<UniqueFD> fds;
    fds.reserve(count);
    for (std::uint32_t i = 0; i < count; ++i) {
        auto fd = allocator_.allocate(*heap, *size, request.flags(), name);
        if (!fd) {
            set_error(response, status_from_errno(fd.error()),
                      fmt::format("allocating buffer {} of {} ({} bytes) from heap '{}' failed: {}",
                                  i + 1, count, *size, heap_name, errno_text(fd.error())));
            return;
        }
        fds.push_back(std::move(*fd));
    }

    wire::AllocReply &reply = *response.reply.mutable_alloc();
    response.fds.reserve(count);
    response.allocated.reserve(count);
    for (UniqueFD &fd : fds) {
        const int number = fd.get();
        const BufferId id = books_.add_buffer(client.id, *heap, *size, std::move(fd));
        wire::BufferInfo &info = *reply.add_buffers();
        info.set_id(id);
        info.set_size(*size);
        info.set_heap(std::string(heap_name));
        response.fds.push_back(number);
        response.allocated.push_back(id);
    }
    SPDLOG_DEBUG("client {}: {} x {} bytes from {}", client.id, count, *size, heap_name);
}

void Service::free_buffers(ClientContext &client, const wire::FreeRequest &request, Response &response)
{
    const auto &ids = request.buffer_ids();
    if (request.no_reply()) {
        // Nobody hears about ids the client does not hold: free the rest.
        response.silent = true;
        std::size_t unknown = 0;
        for (const BufferId id : ids)
            unknown += books_.remove_buffer(client.id, id) < 0;
        if (unknown)
            SPDLOG_DEBUG("client {}: {} of {} ids to free without reply were not held", client.id,
                         unknown, ids.size());
        return;
    }
    const auto refusal = check_free_ids({ids.data(), static_cast<std::size_t>(ids.size())}, kMaxFreeIds,
                                        [&](BufferId id) { return books_.buffer(client.id, id) != nullptr; });
    if (refusal) {
        set_error(response, refusal->code, refusal->message);
        return;
    }

    for (const BufferId id : ids)
        books_.remove_buffer(client.id, id);
    response.reply.mutable_free()->set_freed(static_cast<std::uint32_t>(ids.size()));
}

void Service::stats(const wire::StatsRequest &request, Response &response)
{
    wire::StatsReply &reply = *response.reply.mutable_stats();
    const std::size_t heap_count = allocator_.heap_count();
    std::vector<Usage> in_scope(heap_count);

    std::vector<std::pair<ClientId, const ClientRecord *>> clients;
    for (const auto &[id, record] : books_.clients()) {
        if (request.has_pid() && static_cast<std::uint32_t>(record.identity.pid) != request.pid())
            continue;
        clients.emplace_back(id, &record);
    }
    std::sort(clients.begin(), clients.end());

    for (const auto &[id, record] : clients) {
        wire::ClientStats &client = *reply.add_clients();
        client.set_client_id(id);
        client.set_pid(static_cast<std::uint32_t>(record->identity.pid));
        client.set_uid(record->identity.uid);
        client.set_gid(record->identity.gid);
        client.set_comm(record->identity.comm);
        client.set_name(record->name);
        for (HeapIndex heap = 0; heap < heap_count; ++heap) {
            const Usage &usage = record->usage[heap];
            if (usage.peak_bytes == 0)
                continue;
            wire::HeapUsage &entry = *client.add_heaps();
            entry.set_heap(std::string(allocator_.heap(heap).heap->name()));
            entry.set_bytes(usage.bytes);
            entry.set_buffers(usage.buffers);
            entry.set_peak_bytes(usage.peak_bytes);
            in_scope[heap].bytes += usage.bytes;
            in_scope[heap].buffers += usage.buffers;
        }
    }

    for (HeapIndex heap = 0; heap < heap_count; ++heap) {
        const HeapEntry &entry = allocator_.heap(heap);
        wire::HeapStats &stats = *reply.add_heaps();
        stats.set_name(std::string(entry.heap->name()));
        stats.set_backend(std::string(entry.backend));
        stats.set_type(std::string(entry.heap->type()));
        stats.set_total_bytes(in_scope[heap].bytes);
        stats.set_total_buffers(in_scope[heap].buffers);
    }
}

void Service::undo_allocation(ClientContext &client, const Response &response)
{
    for (const BufferId id : response.allocated)
        books_.remove_buffer(client.id, id);
}

} // namespace ionsvc
