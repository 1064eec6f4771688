// SPDX-License-Identifier: MIT
#include "service.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <ionsvc/free_check.h>
#include <ionsvc/protocol.h>

#include "dma_buf.h"
#include "access.h"
#include "quota.h"

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

constexpr std::uint32_t kKnownAllocFlags =
    wire::ALLOC_FLAG_CACHED | wire::ALLOC_FLAG_CACHED_NEEDS_SYNC | wire::ALLOC_FLAG_POPULATED;
// The flags that reach a heap: ION's. POPULATED is the daemon's business.
constexpr std::uint32_t kHeapFlags = wire::ALLOC_FLAG_CACHED | wire::ALLOC_FLAG_CACHED_NEEDS_SYNC;

// The longest a share token may live.
constexpr std::chrono::milliseconds kMaxShareTtl = std::chrono::hours(24 * 7);

// Names longer than this are cut; they are labels, not data.
constexpr std::size_t kMaxNameLength = 255;

std::string errno_text(int negative_errno)
{
    return std::strerror(-negative_errno);
}

// A heap that failed to make a buffer: the request was checked already, so
// anything but a shortage is the heap's (or its device's) fault, not the
// client's. ENODEV here is a device that went away, not an unknown heap.
StatusCode allocation_status(int negative_errno)
{
    switch (-negative_errno) {
    case ENOMEM:
    case ENOSPC: return StatusCode::kOutOfMemory;
    case EMFILE:
    case ENFILE: return StatusCode::kResourceExhausted;
    default: return StatusCode::kInternal;
    }
}

// What running out of fds means for a client: the daemon holds one fd per
// live buffer, so its fd limit is the most live buffers it can hold.
std::string out_of_fds_hint(int negative_errno)
{
    if (negative_errno == -ENFILE)
        return " (the system is out of open files, fs.file-max: no more live buffers until some are "
               "freed)";
    if (negative_errno != -EMFILE)
        return {};
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) < 0)
        return " (ionsvcd is at its fd limit: it holds one fd per live buffer and per client)";
    return fmt::format(" (ionsvcd holds one fd per live buffer and per client and is at its limit of {} "
                       "(RLIMIT_NOFILE): no more live buffers until some are freed)",
                       static_cast<unsigned long long>(limit.rlim_cur));
}

} // namespace

void set_error(Response &response, StatusCode code, std::string message)
{
    response.reply.set_status(static_cast<wire::StatusCode>(code));
    response.reply.set_message(std::move(message));
}

Service::Service(Allocator &allocator, ServiceLimits limits, Syscalls &syscalls)
    : allocator_(allocator), books_(allocator.heap_count()), shares_(syscalls, limits.max_share_tokens),
      limits_(limits), syscalls_(syscalls),
      reference_counter_([this](int fd) { return count_references(fd); }),
      request_arena_([this] {
          google::protobuf::ArenaOptions options;
          options.initial_block = request_block_.data();
          options.initial_block_size = request_block_.size();
          return options;
      }())
{
}

long Service::count_references(int fd)
{
    const auto references = dma_buf_reference_count(syscalls_, fd);
    if (references)
        return *references;
    // Until it works again, buffers stay in the books: said once, not per
    // buffer and tick.
    if (!reference_count_failed_) {
        reference_count_failed_ = true;
        spdlog::warn("release detection: cannot count a dma-buf's references ({}); buffers stay "
                     "in the books until freed",
                     describe_error(fmt::format("/proc/self/fdinfo/{}", fd), references.error()));
    }
    return references.error();
}

ClientId Service::connect(ClientIdentity identity)
{
    return books_.add_client(std::move(identity));
}

void Service::disconnect(ClientId client)
{
    shares_.forget_client(client);
    if (shutting_down_) {
        // As if the daemon's reference were the last: released, not orphaned.
        books_.remove_client(client, [](int) { return 1L; });
        return;
    }
    books_.remove_client(client, reference_counter_);
}

std::size_t Service::release_unreferenced(std::size_t budget)
{
    return books_.release_unreferenced(budget, reference_counter_);
}

Disposition Service::handle_packet(ClientContext &client, std::span<const std::byte> packet,
                                   Response &response)
{
    const Disposition disposition = parse_and_handle(client, packet, response);
    // Before the block runs out and the arena would take more memory.
    if (request_arena_.SpaceUsed() > kRequestBlockBytes / 2)
        request_arena_.Reset();
    return disposition;
}

Disposition Service::parse_and_handle(ClientContext &client, std::span<const std::byte> packet,
                                      Response &response)
{
    if (packet.empty()) {
        set_error(response, StatusCode::kInvalidArgument, "empty packet: expected a Request message");
        return Disposition::kKeepOpen;
    }

    wire::Request &request = *google::protobuf::Arena::CreateMessage<wire::Request>(&request_arena_);
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

    if (const auto &ids = request.free_first(); !ids.empty()) {
        if (static_cast<std::size_t>(ids.size()) > kMaxFreeIds) {
            set_error(response, StatusCode::kInvalidArgument,
                      fmt::format("free_first lists {} ids, more than the limit of {}", ids.size(), kMaxFreeIds));
            return Disposition::kKeepOpen;
        }
        free_silently(client, {ids.data(), static_cast<std::size_t>(ids.size())});
    }

    switch (request.body_case()) {
    case wire::Request::kListHeaps: list_heaps(client, response); break;
    case wire::Request::kAlloc: allocate(client, request.alloc(), response); break;
    case wire::Request::kFree: free_buffers(client, request.free(), response); break;
    case wire::Request::kStats: stats(client, request.stats(), response); break;
    case wire::Request::kShare: share(client, request.share(), response); break;
    case wire::Request::kImportBuffer: import_buffer(client, request.import_buffer(), response); break;
    case wire::Request::kRevoke: revoke(client, request.revoke(), response); break;
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

void Service::list_heaps(ClientContext &client, Response &response)
{
    // The totals are every client's (they name none), but only the
    // requester's own buffers are counted afresh: see stats().
    books_.release_unreferenced_now(std::nullopt, visible_uid(client), limits_.fresh_count_budget,
                                    reference_counter_);
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
        if (pool_) {
            const WarmPool::Level pool = pool_->level(i);
            info.set_pool_bytes(pool.bytes);
            info.set_pool_buffers(pool.buffers);
        }
        for (std::string &alias : allocator_.registry().aliases_of(i))
            info.add_aliases(std::move(alias));
        if (const auto ion_heap_id = allocator_.registry().heap(i).ion_heap_id)
            info.set_ion_heap_id(*ion_heap_id);
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
                  fmt::format("unknown flags {:#x}: known flags are CACHED ({:#x}), "
                              "CACHED_NEEDS_SYNC ({:#x}) and POPULATED ({:#x})",
                              unknown, static_cast<unsigned>(wire::ALLOC_FLAG_CACHED),
                              static_cast<unsigned>(wire::ALLOC_FLAG_CACHED_NEEDS_SYNC),
                              static_cast<unsigned>(wire::ALLOC_FLAG_POPULATED)));
        return;
    }

    const auto size = page_align(request.size());
    if (!size) {
        set_error(response, StatusCode::kInvalidArgument,
                  fmt::format("size {} does not fit in whole pages", request.size()));
        return;
    }

    const CandidateHeaps candidates = candidate_heaps(request, response);
    if (candidates.empty())
        return;

    // Unnamed buffers carry their owner's name, so that /proc/<pid>/fd of
    // whoever holds one says where it came from.
    const ClientRecord &record = *books_.client(client.id);
    std::string_view name = std::string_view(request.name()).substr(0, kMaxNameLength);
    if (name.empty())
        name = record.default_buffer_name;

    // With several candidate heaps (an ION mask), the next one gets the
    // whole batch when one fails; the last failure is the one reported.
    MadeBuffers made;
    HeapIndex heap = candidates.front();
    BatchFailure failure;
    for (const HeapIndex candidate : candidates) {
        const Addition addition{candidate, allocator_.heap(candidate).heap->name(), *size, count};
        if (auto refusal = access_refusal(access_, record.identity, addition.heap_name)) {
            failure = BatchFailure{0, 0, candidate, std::move(*refusal), StatusCode::kPermissionDenied};
            continue;
        }
        if (const auto limit = allocator_.heap(candidate).heap->size_limit(); limit && *size > limit->bytes) {
            failure = BatchFailure{0, 0, candidate,
                                   fmt::format("size {} exceeds the largest buffer heap '{}' can make, {} "
                                               "bytes: {}",
                                               *size, addition.heap_name, limit->bytes, limit->source),
                                   StatusCode::kInvalidArgument};
            continue;
        }
        if (auto refusal = quota_refusal_now(record, addition)) {
            failure = BatchFailure{0, 0, candidate, "quota exceeded: " + *refusal, StatusCode::kQuotaExceeded};
            continue;
        }
        auto batch_failure = allocate_batch(candidate, *size, request.flags(), name, count, made);
        if (!batch_failure) {
            heap = candidate;
            break;
        }
        failure = std::move(*batch_failure);
    }
    if (made.empty() && !failure.refusal.empty()) {
        set_error(response, failure.refusal_code, failure.refusal);
        return;
    }
    if (made.empty()) {
        set_error(response, allocation_status(failure.error),
                  fmt::format("allocating buffer {} of {} ({} bytes) from heap '{}' failed: {}{}",
                              failure.index + 1, count, *size, allocator_.heap(failure.heap).heap->name(),
                              errno_text(failure.error), out_of_fds_hint(failure.error)));
        return;
    }

    const Heap &chosen = *allocator_.heap(heap).heap;
    const std::string_view heap_name = chosen.name();
    const bool watched = chosen.exports_dma_buf();
    wire::AllocReply &reply = response.alloc_reply();
    response.fds.reserve(count);
    response.allocated.reserve(count);
    for (MadeBuffer &buffer : made) {
        const int number = buffer.fd.get();
        const BufferId id = books_.add_buffer(client.id, heap, *size, std::move(buffer.fd), watched);
        wire::BufferInfo &info = *reply.add_buffers();
        info.set_id(id);
        info.set_size(*size);
        info.mutable_heap()->assign(heap_name);
        info.set_from_pool(buffer.from_pool);
        response.fds.push_back(number);
        response.allocated.push_back(id);
    }
    SPDLOG_DEBUG("client {}: {} x {} bytes from {}", client.id, count, *size, heap_name);
}

std::optional<std::string> Service::quota_refusal_now(const ClientRecord &client, const Addition &addition)
{
    auto refusal = quota_refusal(quota_, books_, client, addition);
    // Before saying no, what the kernel knows now: the process's dma-bufs
    // (orphans of a Free first) that died since the last release round give
    // their room back. Bounded like a stats request: a client that runs
    // into its quota over and over must not stall everyone else.
    if (refusal && books_.release_unreferenced_now(client.identity.pid, std::nullopt,
                                                   limits_.fresh_count_budget, reference_counter_) > 0)
        refusal = quota_refusal(quota_, books_, client, addition);
    return refusal;
}

std::optional<Service::BatchFailure> Service::allocate_batch(HeapIndex heap, std::uint64_t size,
                                                            std::uint32_t flags, std::string_view name,
                                                            std::uint32_t count, MadeBuffers &made)
{
    Heap &source = *allocator_.heap(heap).heap;
    const std::uint32_t heap_flags = flags & kHeapFlags;
    // Pool buffers are made without cache flags: they serve requests
    // without them (populated or not: they are populated).
    const bool poolable = pool_ != nullptr && heap_flags == 0;
    // All or nothing: a failure closes the buffers made so far.
    made.reserve(count);
    for (std::uint32_t i = 0; i < count; ++i) {
        if (UniqueFD fd = poolable ? pool_->take(heap, size) : UniqueFD{}) {
            // A memfd's name is fixed when it is made: it stays the pool's.
            const int ret = source.rename(fd.get(), name);
            if (ret == 0 || ret == -EOPNOTSUPP) {
                made.push_back({std::move(fd), true});
                continue;
            }
            // A buffer that cannot carry its owner's name is not handed out.
        }
        auto fd = allocator_.allocate(heap, size, heap_flags, name);
        if (!fd) {
            made.clear();
            return BatchFailure{fd.error(), i, heap};
        }
        if (flags & wire::ALLOC_FLAG_POPULATED) {
            if (const int ret = source.populate(fd->get(), size); ret < 0) {
                made.clear();
                return BatchFailure{ret, i, heap};
            }
        }
        made.push_back({std::move(*fd), false});
    }
    return std::nullopt;
}

Service::CandidateHeaps Service::candidate_heaps(const wire::AllocRequest &request, Response &response) const
{
    const HeapRegistry &registry = allocator_.registry();
    if (const std::uint32_t mask = request.ion_heap_id_mask()) {
        if (!request.heap().empty()) {
            set_error(response, StatusCode::kInvalidArgument,
                      fmt::format("both heap '{}' and ion_heap_id_mask {:#x} given: ask by one of them",
                                  request.heap(), mask));
            return {};
        }
        const auto heaps = registry.resolve_ion_mask(mask);
        if (heaps.empty()) {
            set_error(response, StatusCode::kNoSuchHeap,
                      fmt::format("no ion heap in ion_heap_id_mask {:#x}; this daemon's ion heaps: {}",
                                  mask, registry.ion_heap_ids()));
        }
        return CandidateHeaps(heaps.begin(), heaps.end());
    }
    const auto heap = allocator_.find_heap(request.heap());
    if (!heap) {
        const auto unserved = allocator_.why_not_served(request.heap());
        set_error(response, StatusCode::kNoSuchHeap,
                  fmt::format("no heap named '{}'{}; this daemon serves: {}", request.heap(),
                              unserved ? "; " + *unserved : "", allocator_.heap_names()));
        return {};
    }
    return {*heap};
}

void Service::free_buffers(ClientContext &client, const wire::FreeRequest &request, Response &response)
{
    const auto &ids = request.buffer_ids();
    if (request.no_reply()) {
        response.silent = true;
        free_silently(client, {ids.data(), static_cast<std::size_t>(ids.size())});
        return;
    }
    const auto refusal = check_free_ids({ids.data(), static_cast<std::size_t>(ids.size())}, kMaxFreeIds,
                                        [&](BufferId id) { return books_.holds_or_released(client.id, id); });
    if (refusal) {
        set_error(response, refusal->code, refusal->message);
        return;
    }

    for (const BufferId id : ids)
        books_.remove_buffer(client.id, id, reference_counter_);
    response.reply.mutable_free()->set_freed(static_cast<std::uint32_t>(ids.size()));
}

void Service::free_silently(ClientContext &client, std::span<const BufferId> ids)
{
    // Nobody hears about ids the client does not hold: free the rest.
    std::size_t unknown = 0;
    for (const BufferId id : ids)
        unknown += books_.remove_buffer(client.id, id, reference_counter_) < 0;
    if (unknown)
        SPDLOG_DEBUG("client {}: {} of {} ids to free without reply were not held", client.id, unknown,
                     ids.size());
}

void Service::stats(ClientContext &requester, const wire::StatsRequest &request, Response &response)
{
    std::optional<pid_t> pid;
    if (request.has_pid())
        pid = static_cast<pid_t>(request.pid());
    const std::optional<uid_t> uid = visible_uid(requester);
    // What the kernel knows now, not at the last tick: a client that closed
    // a buffer a moment ago no longer holds it.
    // Each count reads /proc/self/fdinfo: only the buffers the requester
    // may see are worth it, and only so many of them per request.
    books_.release_unreferenced_now(pid, uid, limits_.fresh_count_budget, reference_counter_);

    wire::StatsReply &reply = *response.reply.mutable_stats();
    const std::size_t heap_count = allocator_.heap_count();

    std::vector<std::pair<ClientId, const ClientRecord *>> clients;
    for (const auto &[id, record] : books_.clients()) {
        if ((!pid || record.identity.pid == *pid) && (!uid || record.identity.uid == *uid))
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
            entry.set_shared_bytes(usage.shared_bytes);
            entry.set_shared_buffers(usage.shared_buffers);
        }
    }

    // Oldest first, as ION listed them.
    std::vector<BufferId> orphans;
    for (const auto &[id, orphan] : books_.orphans()) {
        if ((!pid || orphan.pid == *pid) && (!uid || orphan.uid == *uid))
            orphans.push_back(id);
    }
    std::sort(orphans.begin(), orphans.end());

    const std::vector<Usage> totals = totals_in_scope(clients, orphans);
    for (HeapIndex heap = 0; heap < heap_count; ++heap) {
        const HeapEntry &entry = allocator_.heap(heap);
        wire::HeapStats &stats = *reply.add_heaps();
        stats.set_name(std::string(entry.heap->name()));
        stats.set_backend(std::string(entry.backend));
        stats.set_type(std::string(entry.heap->type()));
        stats.set_total_bytes(totals[heap].bytes);
        stats.set_total_buffers(totals[heap].buffers);
        if (pool_) {
            const WarmPool::Level pool = pool_->level(heap);
            stats.set_pool_bytes(pool.bytes);
            stats.set_pool_buffers(pool.buffers);
        }
    }
    for (const BufferId id : orphans) {
        const OrphanRecord &orphan = books_.orphans().at(id);
        const BufferRecord &buffer = *books_.buffer(id);
        wire::OrphanedBuffer &entry = *reply.mutable_heaps(static_cast<int>(buffer.heap))->add_orphaned();
        entry.set_comm(orphan.comm);
        entry.set_pid(static_cast<std::uint32_t>(orphan.pid));
        entry.set_size(buffer.size);
        entry.set_map_count(-1);
        entry.set_refcount(static_cast<std::int32_t>(std::min<long>(orphan.references, INT32_MAX)));
    }
}

std::optional<uid_t> Service::visible_uid(const ClientContext &requester) const
{
    // Who is not an admin sees the clients of its own uid only.
    const ClientRecord &record = *books_.client(requester.id);
    if (sees_every_client(access_, record.identity))
        return std::nullopt;
    return record.identity.uid;
}

std::vector<Usage> Service::totals_in_scope(
    const std::vector<std::pair<ClientId, const ClientRecord *>> &clients,
    const std::vector<BufferId> &orphans) const
{
    std::vector<Usage> totals(allocator_.heap_count());
    // Every client in scope: the heaps' own totals, each buffer once.
    if (clients.size() == books_.clients().size() && orphans.size() == books_.orphans().size()) {
        for (HeapIndex heap = 0; heap < totals.size(); ++heap)
            totals[heap] = books_.heap_usage(heap);
        return totals;
    }
    // Some: each buffer they hold once, however many of them hold it.
    std::vector<BufferId> buffers(orphans);
    for (const auto &[id, record] : clients) {
        for (const auto &[buffer, handle] : record->handles)
            buffers.push_back(buffer);
    }
    std::sort(buffers.begin(), buffers.end());
    buffers.erase(std::unique(buffers.begin(), buffers.end()), buffers.end());
    for (const BufferId id : buffers) {
        const BufferRecord &buffer = *books_.buffer(id);
        totals[buffer.heap].add(buffer.size);
    }
    return totals;
}

void Service::share(ClientContext &client, const wire::ShareRequest &request, Response &response)
{
    const BufferId buffer = request.buffer_id();
    if (!books_.holds(client.id, buffer)) {
        set_error(response, StatusCode::kNotFound,
                  fmt::format("buffer {} is not held by this client: only a holder can share it", buffer));
        return;
    }
    if (request.ttl_ms() > kMaxShareTtl.count()) {
        set_error(response, StatusCode::kInvalidArgument,
                  fmt::format("ttl_ms {} exceeds the longest time to live, {} ms (7 days)", request.ttl_ms(),
                              kMaxShareTtl.count()));
        return;
    }

    const auto now = ShareTable::Clock::now();
    ShareTable::Grant grant{client.id, buffer, std::nullopt, std::nullopt, request.reusable()};
    if (request.has_uid())
        grant.uid = static_cast<uid_t>(request.uid());
    if (request.ttl_ms() > 0)
        grant.expires = now + std::chrono::milliseconds(request.ttl_ms());

    // At the limit, tokens that lead nowhere any more make room first.
    if (shares_.count_of(client.id) >= limits_.max_share_tokens) {
        shares_.purge(client.id, [&](const ShareTable::Grant &old) {
            return !books_.holds(old.sharer, old.buffer) || (old.expires && now >= *old.expires);
        });
    }
    auto token = shares_.add(grant);
    if (!token) {
        if (token.error() == -ENOSPC)
            set_error(response, StatusCode::kResourceExhausted,
                      fmt::format("this client has {} live share tokens, the most it may have: revoke "
                                  "some first",
                                  limits_.max_share_tokens));
        else
            set_error(response, StatusCode::kInternal,
                      fmt::format("no randomness for a share token: {}", errno_text(token.error())));
        return;
    }
    response.reply.mutable_share()->set_token(std::move(*token));
}

void Service::import_buffer(ClientContext &client, const wire::ImportRequest &request, Response &response)
{
    const std::string &token = request.token();
    if (token.size() != kShareTokenSize) {
        set_error(response, StatusCode::kInvalidArgument,
                  fmt::format("a share token is {} bytes, not {}", kShareTokenSize, token.size()));
        return;
    }
    const ClientRecord *importer = books_.client(client.id);
    const auto now = ShareTable::Clock::now();
    // Looked at first, used up only once every check passed.
    const auto redemption = shares_.inspect(token, importer->identity.uid, now);
    switch (redemption.verdict) {
    case ShareTable::Verdict::kUnknown:
        set_error(response, StatusCode::kNotFound,
                  "no such share token: never issued, already used, revoked, or mistyped");
        return;
    case ShareTable::Verdict::kExpired:
        set_error(response, StatusCode::kNotFound, "the share token has expired");
        return;
    case ShareTable::Verdict::kOtherUid:
        set_error(response, StatusCode::kPermissionDenied,
                  fmt::format("the share token is for uid {}, not uid {}", *redemption.grant.uid,
                              importer->identity.uid));
        return;
    case ShareTable::Verdict::kGranted: break;
    }

    const BufferId id = redemption.grant.buffer;
    const BufferRecord *shared_before = books_.buffer(id);
    if (quota_.imports_count && shared_before && books_.holds(redemption.grant.sharer, id) &&
        !books_.holds(client.id, id)) {
        const Addition addition{shared_before->heap, allocator_.heap(shared_before->heap).heap->name(),
                                shared_before->size, 1};
        if (auto refusal = quota_refusal_now(*importer, addition)) {
            set_error(response, StatusCode::kQuotaExceeded, "quota exceeded: " + *refusal);
            return;
        }
    }
    // Checked after the quota: its recount may have found the buffer dead.
    if (!books_.holds(redemption.grant.sharer, id)) {
        set_error(response, StatusCode::kNotFound,
                  fmt::format("buffer {} is no longer held by the client that shared it", id));
        return;
    }
    response.held_before = books_.holds(client.id, id);
    const BufferRecord &shared = *books_.buffer(id);
    shares_.redeem(token, importer->identity.uid, now);
    if (!redemption.grant.reusable) {
        response.used_token = token;
        response.used_grant = redemption.grant;
    }
    books_.add_holder(client.id, id);
    wire::BufferInfo &info = *response.reply.mutable_import_buffer()->mutable_buffer();
    info.set_id(id);
    info.set_size(shared.size);
    info.set_heap(std::string(allocator_.heap(shared.heap).heap->name()));
    response.fds.push_back(shared.fd.get());
    response.allocated.push_back(id);
    SPDLOG_DEBUG("client {}: imported buffer {} shared by client {}", client.id, id, redemption.grant.sharer);
}

void Service::revoke(ClientContext &client, const wire::RevokeRequest &request, Response &response)
{
    if (shares_.revoke(request.token(), client.id) < 0) {
        set_error(response, StatusCode::kNotFound, "no such share token of this client");
        return;
    }
    response.reply.mutable_revoke();
}

void Service::delivered(ClientContext &client, const Response &response)
{
    if (!response.allocated.empty())
        books_.delivered(client.id, response.allocated);
}

void Service::undo_allocation(ClientContext &client, const Response &response)
{
    // The import never happened: its token works again, if what it grants
    // still stands.
    const ShareTable::Grant &grant = response.used_grant;
    if (!response.used_token.empty() && books_.holds(grant.sharer, grant.buffer))
        shares_.give_back(response.used_token, grant);
    if (response.held_before) {
        books_.delivered(client.id, response.allocated);
        return;
    }
    for (const BufferId id : response.allocated)
        books_.remove_buffer(client.id, id, reference_counter_);
}

} // namespace ionsvc
