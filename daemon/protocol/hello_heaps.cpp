// SPDX-License-Identifier: MIT
// Hello and ListHeaps: what this daemon speaks and serves.
#include <fmt/format.h>

#include <ionsvc/protocol.h>
#include <ionsvc/text.h>

#include "protocol/service.h"

namespace ionsvc {

void Service::hello(ClientContext &client, const wire::HelloRequest &request, Response &response)
{
    // Hello is said once per connection: once greeted, its version and
    // name stand, whatever a later Hello says (a wrong version must not
    // leave a session half greeted, nor a name change behind the books).
    if (client.greeted) {
        set_error(response, StatusCode::kInvalidArgument,
                  "Hello was said already on this connection: its protocol version and client name stand");
        return;
    }
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
    if (reclaim_enabled_) {
        std::string secret(16, '\0');
        // No randomness, no secret: this client's buffers do not outlive a
        // restart, and it is served all the same.
        if (syscalls_.get_random(std::as_writable_bytes(std::span(secret))) == 0) {
            reply.set_reclaim_secret(secret);
            books_.set_reclaim_secret(client.id, std::move(secret));
        }
    }
    // Untrusted text: made printable here, once, for every reply, log line
    // and terminal it reaches.
    books_.set_client_name(client.id, printable_text(request.client_name(), kMaxNameLength));
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

} // namespace ionsvc
