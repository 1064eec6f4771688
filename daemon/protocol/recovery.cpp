// SPDX-License-Identifier: MIT
// Keeping the books across a restart: the state one daemon writes for the
// next, the next one reading it back, and the clients reclaiming their
// buffers (docs/RECOVERY.md).
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <unordered_map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <ionsvc/protocol.h>

#include "protocol/client_label.h"
#include "protocol/service.h"
#include "recovery.pb.h"

namespace ionsvc {

namespace {

constexpr std::size_t kSecretSize = 16;

void save_identity(const ClientIdentity &identity, std::span<const gid_t> groups, recovery::Identity &out)
{
    out.set_pid(static_cast<std::uint32_t>(identity.pid));
    out.set_uid(identity.uid);
    out.set_gid(identity.gid);
    out.mutable_groups()->Add(groups.begin(), groups.end());
    out.set_comm(identity.comm);
    out.set_cgroup(identity.cgroup);
}

ClientIdentity load_identity(const recovery::Identity &in)
{
    return {static_cast<pid_t>(in.pid()), in.uid(), in.gid(), in.comm(), {in.groups().begin(), in.groups().end()},
            in.cgroup()};
}

std::shared_ptr<const ClientLabel> load_label(const recovery::Label &in)
{
    return std::make_shared<const ClientLabel>(
        ClientLabel{in.client_id(), static_cast<pid_t>(in.pid()), in.uid(), in.comm(), in.name()});
}

std::int64_t monotonic_ns(ShareTable::Clock::time_point when)
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
}

} // namespace

std::string Service::save_state(std::uint64_t generation)
{
    recovery::State state;
    state.set_generation(generation);
    const std::int64_t now_ms = coarse_now_ms();
    BufferId next_buffer = 1;
    for (const auto &[id, buffer] : books_.buffers()) {
        next_buffer = std::max(next_buffer, id + 1);
        if (buffer.own_references < 2)
            continue; // not in the store: it cannot come back
        recovery::Buffer &out = *state.add_buffers();
        out.set_id(id);
        out.set_heap(std::string(allocator_.heap(buffer.heap).heap->name()));
        out.set_size(buffer.size);
        out.set_inode(buffer.stored_inode);
        out.set_watched(buffer.watched);
        out.set_from_pool(buffer.from_pool);
        if (buffer.allocated_by)
            fill_label(*buffer.allocated_by, *out.mutable_allocated_by());
        out.set_age_ms(static_cast<std::uint64_t>(std::max<std::int64_t>(0, now_ms - buffer.born_ms)));
        out.mutable_holders()->Add(buffer.holders.begin(), buffer.holders.end());
        if (const auto orphan = books_.orphans().find(id); orphan != books_.orphans().end()) {
            const OrphanRecord &record = orphan->second;
            recovery::Identity &last = *out.mutable_orphan_of();
            save_identity({record.pid, record.uid, 0, record.comm, {}, record.cgroup}, record.groups, last);
            if (record.last_client)
                fill_label(*record.last_client, *out.mutable_orphan_label());
        }
    }
    ClientId next_client = 1;
    for (const auto &[id, client] : books_.clients()) {
        next_client = std::max(next_client, id + 1);
        if (client.handles.empty())
            continue;
        recovery::Client &out = *state.add_clients();
        out.set_id(id);
        save_identity(client.identity, client.identity.groups, *out.mutable_identity());
        out.set_name(client.name);
        out.set_secret(client.reclaim_secret);
        for (const auto &[buffer, handle] : client.handles) {
            recovery::Hold &hold = *out.add_holds();
            hold.set_buffer_id(buffer);
            hold.set_imported(handle.imported);
        }
    }
    state.set_next_client_id(next_client);
    state.set_next_buffer_id(next_buffer);
    shares_.for_each([&](std::string_view token, const ShareTable::Grant &grant) {
        recovery::Share &out = *state.add_shares();
        out.set_token(std::string(token));
        out.set_sharer(grant.sharer);
        out.set_buffer_id(grant.buffer);
        if (grant.uid)
            out.set_uid(*grant.uid);
        if (grant.expires)
            out.set_expires_ns(monotonic_ns(*grant.expires));
        out.set_reusable(grant.reusable);
    });
    return state.SerializeAsString();
}

std::optional<std::uint64_t> Service::state_generation(std::string_view text)
{
    recovery::State state;
    if (!state.ParseFromArray(text.data(), static_cast<int>(text.size())))
        return std::nullopt;
    return state.generation();
}

Expected<RestoreOutcome, int> Service::restore_state(std::string_view text, std::vector<StoredFd> fds)
{
    recovery::State state;
    if (!state.ParseFromArray(text.data(), static_cast<int>(text.size())))
        return Unexpected{-EINVAL};
    RestoreOutcome outcome;

    std::unordered_map<std::uint64_t, StoredFd *> by_inode;
    for (StoredFd &stored : fds) {
        const auto inode = syscalls_.inode(stored.fd.get());
        if (inode)
            by_inode[*inode] = &stored;
    }

    // Holds name buffers, buffers name holders: the holds' import flags first.
    std::unordered_map<BufferId, std::vector<std::pair<ClientId, bool>>> holders;
    for (const recovery::Client &client : state.clients()) {
        books_.restore_client(client.id(), load_identity(client.identity()), client.name(), client.secret());
        for (const recovery::Hold &hold : client.holds())
            holders[hold.buffer_id()].emplace_back(client.id(), hold.imported());
        ++outcome.clients;
    }
    const std::int64_t now_ms = coarse_now_ms();
    for (const recovery::Buffer &buffer : state.buffers()) {
        const auto heap = allocator_.registry().find_by_name(buffer.heap());
        const auto stored = by_inode.find(buffer.inode());
        if (!heap || stored == by_inode.end() || !stored->second->fd) {
            outcome.dropped.push_back(
                fmt::format("buffer {} of {} bytes in heap '{}': {}", buffer.id(), buffer.size(), buffer.heap(),
                            heap ? "its fd did not come back" : "this daemon serves no such heap"));
            continue;
        }
        RestoredBuffer restored;
        const std::string &name = stored->second->name;
        restored.fd = std::move(stored->second->fd);
        restored.inode = buffer.inode();
        restored.heap = *heap;
        restored.size = buffer.size();
        restored.watched = buffer.watched();
        restored.from_pool = buffer.from_pool();
        restored.allocated_by = load_label(buffer.allocated_by());
        restored.born_ms = now_ms - static_cast<std::int64_t>(buffer.age_ms());
        // Holders in the buffer's order, each with its hold's flag.
        auto &flags = holders[buffer.id()];
        for (const std::uint64_t holder : buffer.holders()) {
            const auto flag = std::find_if(flags.begin(), flags.end(), [&](const auto &f) { return f.first == holder; });
            restored.holders.emplace_back(holder, flag != flags.end() && flag->second);
        }
        if (buffer.has_orphan_of()) {
            restored.orphan_of = load_identity(buffer.orphan_of());
            restored.orphan_label = load_label(buffer.orphan_label());
        }
        if (books_.restore_buffer(buffer.id(), std::move(restored)) < 0) {
            outcome.dropped.push_back(fmt::format("buffer {}: the state contradicts itself", buffer.id()));
            outcome.unknown_fds.push_back(name); // its fd is closed: systemd's copy goes too
            continue;
        }
        ++outcome.buffers;
    }
    books_.reserve_ids(state.next_client_id(), state.next_buffer_id());

    for (const recovery::Share &share : state.shares()) {
        ShareTable::Grant grant{share.sharer(), share.buffer_id(), std::nullopt, std::nullopt, share.reusable()};
        if (share.has_uid())
            grant.uid = share.uid();
        if (share.has_expires_ns())
            grant.expires = ShareTable::Clock::time_point(std::chrono::nanoseconds(share.expires_ns()));
        if (books_.holds(grant.sharer, grant.buffer) && shares_.give_back(share.token(), grant) == 0)
            ++outcome.shares;
    }
    for (StoredFd &stored : fds) {
        if (stored.fd)
            outcome.unknown_fds.push_back(stored.name);
    }
    recovery_.restored_buffers = outcome.buffers;
    return outcome;
}

std::size_t Service::drop_unreclaimed(bool everyone)
{
    std::vector<ClientId> gone;
    for (const auto &[id, client] : books_.clients()) {
        // Another user's process answers EPERM: it is there.
        if (client.awaiting_reclaim && (everyone || (::kill(client.identity.pid, 0) < 0 && errno == ESRCH)))
            gone.push_back(id);
    }
    for (const ClientId id : gone) {
        spdlog::info("client {} (pid {}) of before the restart {}: its buffers go as at a disconnect", id,
                     books_.client(id)->identity.pid, everyone ? "did not come back in time" : "has exited");
        disconnect(id);
    }
    return gone.size();
}

std::size_t Service::awaiting_reclaim() const
{
    std::size_t count = 0;
    for (const auto &[id, client] : books_.clients())
        count += client.awaiting_reclaim ? 1 : 0;
    return count;
}

void Service::reclaim(ClientContext &client, const wire::ReclaimRequest &request, Response &response)
{
    if (static_cast<std::size_t>(request.held_ids_size()) > kMaxFreeIds) {
        set_error(response, StatusCode::kInvalidArgument,
                  fmt::format("a Reclaim page lists {} ids, more than the limit of {}", request.held_ids_size(),
                              kMaxFreeIds));
        return;
    }
    if (!client.reclaiming) {
        const ClientRecord *dormant = books_.client(request.client_id());
        const std::string &secret = request.secret();
        const bool proven = dormant && dormant->awaiting_reclaim && secret.size() == kSecretSize &&
                            dormant->reclaim_secret.size() == kSecretSize &&
                            equal_in_constant_time(
                                {reinterpret_cast<const std::uint8_t *>(secret.data()), kSecretSize},
                                {reinterpret_cast<const std::uint8_t *>(dormant->reclaim_secret.data()), kSecretSize});
        // Whether the id exists says nothing without the secret.
        const int adopted = proven ? books_.adopt(client.id, request.client_id()) : -ENOENT;
        if (adopted == -EBUSY) {
            set_error(response, StatusCode::kInvalidArgument,
                      "Reclaim must come right after Hello, before this connection holds any buffer");
            return;
        }
        if (adopted < 0) {
            set_error(response, StatusCode::kNotFound,
                      fmt::format("no client {} of before the restart awaits a reclaim with that secret "
                                  "(never there, back already, gone, or another user's)",
                                  request.client_id()));
            return;
        }
        spdlog::info("client {} is client {} of before the restart: its buffers are its own again", client.id,
                     request.client_id());
        shares_.forget_client(client.id);
        client.id = request.client_id();
        client.reclaiming = true;
        client.reclaimed.clear();
    } else if (request.client_id() != client.id) {
        set_error(response, StatusCode::kInvalidArgument,
                  fmt::format("this connection is reclaiming client {}, not {}", client.id, request.client_id()));
        return;
    }
    wire::ReclaimReply &reply = *response.reply.mutable_reclaim();
    reply.set_client_id(client.id);
    for (const std::uint64_t id : request.held_ids()) {
        if (books_.holds(client.id, id))
            client.reclaimed.insert(id);
        else
            reply.add_unknown_ids(id);
    }
    if (request.last())
        finish_reclaim(client);
}

void Service::finish_reclaim(ClientContext &client)
{
    std::vector<BufferId> unnamed;
    for (const auto &[id, handle] : books_.client(client.id)->handles) {
        if (!client.reclaimed.contains(id))
            unnamed.push_back(id);
    }
    // Freed before the restart, or in a reply that never arrived.
    for (const BufferId id : unnamed)
        books_.remove_buffer(client.id, id, reference_counter_);
    client.reclaiming = false;
    client.reclaimed = {};
}

} // namespace ionsvc
