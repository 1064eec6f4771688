// SPDX-License-Identifier: MIT
// The Service's packet handling, its clients' arrivals and departures and
// release detection; each family of requests is in a file of its own.
#include "protocol/service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <ionsvc/protocol.h>

#include "backends/dma_buf.h"

namespace ionsvc {

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
    // The one place every reply passes: a refusal counts here, whatever
    // made it.
    if (const wire::StatusCode status = response.reply.status(); status != wire::OK)
        ++counters_.refusals[static_cast<std::size_t>(status)];
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
    case wire::Request::kBuffers: list_buffers(client, request.buffers(), response); break;
    case wire::Request::kReclaim: reclaim(client, request.reclaim(), response); break;
    case wire::Request::kHello:
    case wire::Request::BODY_NOT_SET: break;
    }
    return Disposition::kKeepOpen;
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
