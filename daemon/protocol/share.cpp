// SPDX-License-Identifier: MIT
// Share, Import and Revoke: buffers passed on by token.
#include <chrono>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "protocol/errors.h"
#include "protocol/service.h"

namespace ionsvc {

namespace {

// The longest a share token may live.
constexpr std::chrono::milliseconds kMaxShareTtl = std::chrono::hours(24 * 7);

} // namespace

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
    ++counters_.imports;
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

} // namespace ionsvc
