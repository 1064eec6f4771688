// SPDX-License-Identifier: MIT
// Stats: who holds what, as the requester may see it.
#include <algorithm>

#include <fmt/format.h>

#include "policy/access.h"
#include "policy/quota.h"
#include "protocol/service.h"

namespace ionsvc {

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
    const ClientsInScope clients = clients_in_scope(pid, uid);
    add_client_stats(clients, reply);
    add_heap_stats(clients, orphans_in_scope(pid, uid), reply);
    add_limits(*books_.client(requester.id), reply);
    if (!uid)
        add_counters(reply);
}

void Service::add_counters(wire::StatsReply &reply) const
{
    wire::Counters &counters = *reply.mutable_counters();
    counters.set_allocations(counters_.allocations);
    counters.set_allocated_bytes(counters_.allocated_bytes);
    counters.set_imports(counters_.imports);
    for (std::size_t status = 0; status < counters_.refusals.size(); ++status) {
        if (counters_.refusals[status] == 0)
            continue;
        wire::StatusCount &entry = *counters.add_refusals();
        entry.set_status(static_cast<wire::StatusCode>(status));
        entry.set_count(counters_.refusals[status]);
    }
    wire::RecoveryStatus &recovery = *reply.mutable_recovery();
    recovery.set_enabled(recovery_.enabled);
    recovery.set_stored_buffers(recovery_.stored_buffers);
    recovery.set_store_limit(recovery_.store_limit);
    recovery.set_pending_changes(recovery_.pending_changes ? recovery_.pending_changes() : 0);
    recovery.set_unstored_buffers(recovery_.unstored_buffers);
    recovery.set_restored_buffers(recovery_.restored_buffers);
    recovery.set_awaiting_reclaim(awaiting_reclaim());
}

void Service::add_limits(const ClientRecord &client, wire::StatsReply &reply) const
{
    const auto add = [&](const LimitInUse &limit) {
        wire::LimitUsage &entry = *reply.add_limits();
        entry.set_setting(limit.setting);
        entry.set_scope(limit.scope);
        entry.set_unit(limit.unit);
        entry.set_used(limit.used);
        entry.set_limit(limit.limit);
    };
    std::vector<std::string> heap_names;
    for (HeapIndex heap = 0; heap < allocator_.heap_count(); ++heap)
        heap_names.emplace_back(allocator_.heap(heap).heap->name());
    for (const LimitInUse &limit : quota_limits_of(quota_, client, heap_names))
        add(limit);
    if (is_admin(client.identity))
        return;
    // Admins are held to no connection limit.
    const uid_t uid = client.identity.uid;
    std::uint64_t of_uid = 0;
    std::uint64_t of_users = 0;
    for (const auto &[id, record] : books_.clients()) {
        of_uid += record.identity.uid == uid;
        of_users += !is_admin(record.identity);
    }
    add({"connections.per_uid", fmt::format("uid {}", uid), "connections", of_uid, connection_limits_.per_uid});
    add({"connections.total", "users other than root and the admin group", "connections", of_users,
         connection_limits_.total});
}

Service::ClientsInScope Service::clients_in_scope(std::optional<pid_t> pid, std::optional<uid_t> uid) const
{
    ClientsInScope clients;
    for (const auto &[id, record] : books_.clients()) {
        if ((!pid || record.identity.pid == *pid) && (!uid || record.identity.uid == *uid))
            clients.emplace_back(id, &record);
    }
    std::sort(clients.begin(), clients.end());
    return clients;
}

std::vector<BufferId> Service::orphans_in_scope(std::optional<pid_t> pid, std::optional<uid_t> uid) const
{
    // Oldest first, as ION listed them.
    std::vector<BufferId> orphans;
    for (const auto &[id, orphan] : books_.orphans()) {
        if ((!pid || orphan.pid == *pid) && (!uid || orphan.uid == *uid))
            orphans.push_back(id);
    }
    std::sort(orphans.begin(), orphans.end());
    return orphans;
}

void Service::add_client_stats(const ClientsInScope &clients, wire::StatsReply &reply) const
{
    const std::size_t heap_count = allocator_.heap_count();
    for (const auto &[id, record] : clients) {
        wire::ClientStats &client = *reply.add_clients();
        client.set_client_id(id);
        client.set_pid(static_cast<std::uint32_t>(record->identity.pid));
        client.set_uid(record->identity.uid);
        client.set_awaiting_reclaim(record->awaiting_reclaim);
        client.set_gid(record->identity.gid);
        client.set_comm(record->identity.comm);
        client.set_name(record->name);
        client.set_cgroup(record->identity.cgroup);
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
}

void Service::add_heap_stats(const ClientsInScope &clients, const std::vector<BufferId> &orphans,
                             wire::StatsReply &reply) const
{
    const std::vector<Usage> totals = totals_in_scope(clients, orphans);
    for (HeapIndex heap = 0; heap < allocator_.heap_count(); ++heap) {
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

bool Service::is_admin(const ClientIdentity &identity) const
{
    return sees_every_client(access_, identity);
}

std::optional<uid_t> Service::visible_uid(const ClientContext &requester) const
{
    // Who is not an admin sees the clients of its own uid only.
    const ClientRecord &record = *books_.client(requester.id);
    if (is_admin(record.identity))
        return std::nullopt;
    return record.identity.uid;
}

std::vector<Usage> Service::totals_in_scope(const ClientsInScope &clients,
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

} // namespace ionsvc
