// SPDX-License-Identifier: MIT
// The books after a restart: clients and buffers as the daemon before it
// left them, the reconnecting clients taking theirs back, and the
// bookkeeping of what systemd's fd store holds.
#include <cerrno>

#include "books/books.h"

namespace ionsvc {

void Books::restore_client(ClientId id, ClientIdentity identity, std::string name, std::string secret)
{
    ClientRecord &record = make_client(id, std::move(identity));
    record.awaiting_reclaim = true;
    record.reclaim_secret = std::move(secret);
    record.label = std::make_shared<const ClientLabel>(
        ClientLabel{id, record.identity.pid, record.identity.uid, record.identity.comm, name});
    record.name = std::move(name);
    next_client_id_ = std::max(next_client_id_, id + 1);
}

int Books::restore_buffer(BufferId id, RestoredBuffer restored)
{
    if (buffers_.contains(id) || restored.heap >= heap_usage_.size() ||
        restored.holders.empty() != restored.orphan_of.has_value())
        return -EINVAL;
    for (const auto &[holder, imported] : restored.holders) {
        const auto it = clients_.find(holder);
        if (it == clients_.end() || !it->second.awaiting_reclaim || it->second.handles.contains(id))
            return -EINVAL;
    }
    BufferRecord &buffer = buffers_[id];
    buffer.fd = std::move(restored.fd);
    buffer.size = restored.size;
    buffer.heap = restored.heap;
    buffer.watched = restored.watched;
    buffer.from_pool = restored.from_pool;
    buffer.allocated_by = std::move(restored.allocated_by);
    buffer.born_ms = restored.born_ms;
    buffer.own_references = 2;
    buffer.stored_inode = restored.inode;
    heap_usage_[buffer.heap].add(buffer.size);
    for (const auto &[holder, imported] : restored.holders) {
        ClientRecord &record = clients_.at(holder);
        record.handles[id] = Handle{.in_flight = false, .imported = imported};
        charge(record, buffer.heap, buffer.size, imported);
        buffer.holders.push_back(holder);
    }
    if (buffer.holders.size() > 1) {
        for (const ClientId holder : buffer.holders)
            clients_.at(holder).usage[buffer.heap].add_shared(buffer.size);
    }
    if (restored.orphan_of) {
        ClientIdentity &last = *restored.orphan_of;
        OrphanRecord &orphan = orphans_[id];
        orphan = {last.pid, last.uid, std::move(last.groups), std::move(last.comm), -1,
                  std::move(restored.orphan_label), std::move(last.cgroup), {}};
        orphan.cgroups = tallies_of(orphan.cgroup);
        charge_ids(orphan.uid, orphan.groups, orphan.cgroups, buffer.heap, buffer.size, false);
        fresh_orphans_.push_back(id);
    }
    if (buffer.watched)
        watch_queue_.push_back(id);
    next_buffer_id_ = std::max(next_buffer_id_, id + 1);
    ++version_;
    return 0;
}

void Books::reserve_ids(ClientId next_client, BufferId next_buffer)
{
    next_client_id_ = std::max(next_client_id_, next_client);
    next_buffer_id_ = std::max(next_buffer_id_, next_buffer);
}

int Books::adopt(ClientId fresh, ClientId dormant)
{
    const auto fresh_it = clients_.find(fresh);
    const auto dormant_it = clients_.find(dormant);
    if (fresh_it == clients_.end() || dormant_it == clients_.end() || !dormant_it->second.awaiting_reclaim)
        return -ENOENT;
    ClientRecord &now = fresh_it->second;
    ClientRecord &record = dormant_it->second;
    if (now.identity.uid != record.identity.uid)
        return -EPERM;
    if (!now.handles.empty())
        return -EBUSY;
    // Its holds leave the old identity's uid, groups and cgroups and enter
    // the new one's: the same process, but its groups or cgroup may differ.
    for (const auto &[id, handle] : record.handles) {
        const BufferRecord &buffer = buffers_.at(id);
        discharge(record, buffer.heap, buffer.size, handle.imported);
    }
    record.identity = std::move(now.identity);
    record.groups = std::move(now.groups);
    record.uid_usage = now.uid_usage;
    record.group_usage = std::move(now.group_usage);
    record.cgroups = std::move(now.cgroups);
    record.default_buffer_name = std::move(now.default_buffer_name);
    record.label = std::make_shared<const ClientLabel>(
        ClientLabel{dormant, record.identity.pid, record.identity.uid, record.identity.comm, record.name});
    record.awaiting_reclaim = false;
    for (const auto &[id, handle] : record.handles) {
        const BufferRecord &buffer = buffers_.at(id);
        charge(record, buffer.heap, buffer.size, handle.imported);
    }
    clients_.erase(fresh_it);
    ++version_;
    return 0;
}

void Books::mark_stored(BufferId id, std::uint64_t inode)
{
    if (const auto it = buffers_.find(id); it != buffers_.end()) {
        it->second.own_references = 2;
        it->second.stored_inode = inode;
    }
}

void Books::set_reclaim_secret(ClientId client, std::string secret)
{
    if (const auto it = clients_.find(client); it != clients_.end())
        it->second.reclaim_secret = std::move(secret);
}

} // namespace ionsvc
