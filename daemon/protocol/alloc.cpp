// SPDX-License-Identifier: MIT
// Alloc and Free.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <ionsvc/free_check.h>
#include <ionsvc/protocol.h>
#include <ionsvc/text.h>

#include "policy/access.h"
#include "policy/quota.h"
#include "protocol/errors.h"
#include "protocol/service.h"

namespace ionsvc {

namespace {

constexpr std::uint32_t kKnownAllocFlags =
    wire::ALLOC_FLAG_CACHED | wire::ALLOC_FLAG_CACHED_NEEDS_SYNC | wire::ALLOC_FLAG_POPULATED;
// The flags that reach a heap: ION's. POPULATED is the daemon's business.
constexpr std::uint32_t kHeapFlags = wire::ALLOC_FLAG_CACHED | wire::ALLOC_FLAG_CACHED_NEEDS_SYNC;

} // namespace

void Service::allocate(ClientContext &client, const wire::AllocRequest &request, Response &response)
{
    const auto size = checked_alloc_size(request, response);
    if (!size)
        return;
    const CandidateHeaps candidates = candidate_heaps(request, response);
    if (candidates.empty())
        return;

    // Unnamed buffers carry their owner's name, so that /proc/<pid>/fd of
    // whoever holds one says where it came from.
    // A name given is untrusted text, made printable before it names a
    // memfd or dma-buf that /proc shows to anyone (most names already are:
    // no copy then).
    const ClientRecord &record = *books_.client(client.id);
    std::string_view name = request.name();
    std::string printable_name;
    if (!name.empty() && !is_printable_text(name, kMaxNameLength)) {
        printable_name = printable_text(name, kMaxNameLength);
        name = printable_name;
    }
    if (name.empty())
        name = record.default_buffer_name;

    // With several candidate heaps (an ION mask), the next one gets the
    // whole batch when one fails; the last failure is the one reported.
    const std::uint32_t count = request.count();
    MadeBuffers made;
    BatchFailure failure;
    for (const HeapIndex candidate : candidates) {
        auto batch_failure = why_refused(record, candidate, *size, count);
        if (!batch_failure)
            batch_failure = allocate_batch(candidate, *size, request.flags(), name, count, made);
        if (!batch_failure) {
            book_buffers(client, candidate, *size, made, response);
            return;
        }
        failure = std::move(*batch_failure);
    }
    report_failure(failure, count, *size, response);
}

std::optional<std::uint64_t> Service::checked_alloc_size(const wire::AllocRequest &request,
                                                         Response &response) const
{
    const std::uint32_t count = request.count();
    if (count == 0) {
        set_error(response, StatusCode::kInvalidArgument, "count must be at least 1");
        return std::nullopt;
    }
    if (count > kMaxBatchCount) {
        set_error(response, StatusCode::kInvalidArgument,
                  fmt::format("count {} exceeds the batch limit of {} buffers", count, kMaxBatchCount));
        return std::nullopt;
    }
    if (request.size() == 0) {
        set_error(response, StatusCode::kInvalidArgument, "size must be greater than zero");
        return std::nullopt;
    }
    if (request.size() > limits_.max_buffer_size) {
        set_error(response, StatusCode::kInvalidArgument,
                  fmt::format("size {} exceeds the maximum buffer size of {} bytes", request.size(),
                              limits_.max_buffer_size));
        return std::nullopt;
    }
    if (const std::uint32_t unknown = request.flags() & ~kKnownAllocFlags) {
        set_error(response, StatusCode::kInvalidArgument,
                  fmt::format("unknown flags {:#x}: known flags are CACHED ({:#x}), "
                              "CACHED_NEEDS_SYNC ({:#x}) and POPULATED ({:#x})",
                              unknown, static_cast<unsigned>(wire::ALLOC_FLAG_CACHED),
                              static_cast<unsigned>(wire::ALLOC_FLAG_CACHED_NEEDS_SYNC),
                              static_cast<unsigned>(wire::ALLOC_FLAG_POPULATED)));
        return std::nullopt;
    }
    const auto size = page_align(request.size());
    if (!size) {
        set_error(response, StatusCode::kInvalidArgument,
                  fmt::format("size {} does not fit in whole pages", request.size()));
        return std::nullopt;
    }
    return *size;
}

std::optional<Service::BatchFailure> Service::why_refused(const ClientRecord &client, HeapIndex heap,
                                                         std::uint64_t size, std::uint32_t count)
{
    const Heap &source = *allocator_.heap(heap).heap;
    const Addition addition{heap, source.name(), size, count};
    if (auto refusal = access_refusal(access_, client.identity, addition.heap_name))
        return BatchFailure{0, 0, heap, std::move(*refusal), StatusCode::kPermissionDenied};
    if (const auto limit = source.size_limit(); limit && size > limit->bytes) {
        return BatchFailure{0, 0, heap,
                            fmt::format("size {} exceeds the largest buffer heap '{}' can make, {} bytes: {}",
                                        size, addition.heap_name, limit->bytes, limit->source),
                            StatusCode::kInvalidArgument};
    }
    if (auto refusal = quota_refusal_now(client, addition))
        return BatchFailure{0, 0, heap, "quota exceeded: " + *refusal, StatusCode::kQuotaExceeded};
    return std::nullopt;
}

void Service::book_buffers(ClientContext &client, HeapIndex heap, std::uint64_t size, MadeBuffers &made,
                           Response &response)
{
    const Heap &chosen = *allocator_.heap(heap).heap;
    const std::string_view heap_name = chosen.name();
    const bool watched = chosen.exports_dma_buf();
    wire::AllocReply &reply = response.alloc_reply();
    response.fds.reserve(made.size());
    response.allocated.reserve(made.size());
    for (MadeBuffer &buffer : made) {
        const int number = buffer.fd.get();
        const BufferId id = books_.add_buffer(client.id, heap, size, std::move(buffer.fd), watched,
                                              buffer.from_pool);
        wire::BufferInfo &info = *reply.add_buffers();
        info.set_id(id);
        info.set_size(size);
        info.mutable_heap()->assign(heap_name);
        info.set_from_pool(buffer.from_pool);
        response.fds.push_back(number);
        response.allocated.push_back(id);
    }
    counters_.allocations += made.size();
    counters_.allocated_bytes += size * made.size();
    SPDLOG_DEBUG("client {}: {} x {} bytes from {}", client.id, made.size(), size, heap_name);
}

void Service::report_failure(const BatchFailure &failure, std::uint32_t count, std::uint64_t size,
                             Response &response) const
{
    if (!failure.refusal.empty()) {
        set_error(response, failure.refusal_code, failure.refusal);
        return;
    }
    set_error(response, allocation_status(failure.error),
              fmt::format("allocating buffer {} of {} ({} bytes) from heap '{}' failed: {}{}", failure.index + 1,
                          count, size, allocator_.heap(failure.heap).heap->name(), errno_text(failure.error),
                          out_of_fds_hint(failure.error)));
}

Service::CandidateHeaps Service::candidate_heaps(const wire::AllocRequest &request, Response &response) const
{
    const HeapRegistry &registry = allocator_.registry();
    if (const std::uint32_t mask = request.ion_heap_id_mask()) {
        if (!request.heap().empty()) {
            set_error(response, StatusCode::kInvalidArgument,
                      fmt::format("both heap '{}' and ion_heap_id_mask {:#x} given: ask by one of them",
                                  printable_text(request.heap(), kMaxNameLength), mask));
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
                  fmt::format("no heap named '{}'{}; this daemon serves: {}",
                              printable_text(request.heap(), kMaxNameLength),
                              unserved ? "; " + *unserved : "", allocator_.heap_names()));
        return {};
    }
    return {*heap};
}

std::optional<std::string> Service::quota_refusal_now(const ClientRecord &client, const Addition &addition)
{
    auto refusal = quota_refusal(quota_, client, addition);
    // Before saying no, what the kernel knows now: the process's dma-bufs
    // (orphans of a Free first) that died since the last release round give
    // their room back. Bounded like a stats request: a client that runs
    // into its quota over and over must not stall everyone else.
    if (refusal && books_.release_unreferenced_now(client.identity.pid, std::nullopt,
                                                   limits_.fresh_count_budget, reference_counter_) > 0)
        refusal = quota_refusal(quota_, client, addition);
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

} // namespace ionsvc
