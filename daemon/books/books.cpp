// SPDX-License-Identifier: MIT
#include "books/books.h"

#include <time.h>

#include <algorithm>
#include <cerrno>

#include <spdlog/spdlog.h>

namespace ionsvc {

namespace {

// How many released ids a client's Free may still name (see ClientRecord).
constexpr std::size_t kRememberedReleases = 64;

// The daemon's own references (its fd, the fd store's copy) are
// buffer.own_references; anything above is someone else's. A count that
// cannot be read keeps the buffer: releasing a buffer in use would lose
// track of it for good, keeping a dead one only for a while.
bool only_the_daemon_holds(long references, const BufferRecord &buffer)
{
    return references >= 0 && references <= buffer.own_references;
}

long references_besides_the_daemons(long references, const BufferRecord &buffer)
{
    return references < 0 ? -1 : references - buffer.own_references;
}

} // namespace

std::int64_t coarse_now_ms()
{
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return static_cast<std::int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1'000'000;
}

Books::Books(std::size_t heap_count) : heap_usage_(heap_count) {}

ClientId Books::add_client(ClientIdentity identity)
{
    const ClientId id = next_client_id_++;
    make_client(id, std::move(identity));
    return id;
}

ClientRecord &Books::make_client(ClientId id, ClientIdentity identity)
{
    ClientRecord &record = clients_[id];
    record.default_buffer_name = identity.comm + ":" + std::to_string(identity.pid);
    record.groups = identity.groups;
    record.groups.push_back(identity.gid);
    std::sort(record.groups.begin(), record.groups.end());
    record.groups.erase(std::unique(record.groups.begin(), record.groups.end()), record.groups.end());
    record.identity = std::move(identity);
    record.label = std::make_shared<const ClientLabel>(
        ClientLabel{id, record.identity.pid, record.identity.uid, record.identity.comm, {}});
    record.usage.resize(heap_usage_.size());
    const auto usage_of = [this](std::vector<Usage> &usage) {
        usage.resize(heap_usage_.size());
        return &usage;
    };
    record.uid_usage = usage_of(uid_usage_[record.identity.uid]);
    for (const gid_t gid : record.groups)
        record.group_usage.push_back(usage_of(gid_usage_[gid]));
    record.cgroups = tallies_of(record.identity.cgroup);
    return record;
}

void Books::charge(ClientRecord &client, HeapIndex heap, std::uint64_t size, bool imported)
{
    client.usage[heap].add(size, imported);
    (*client.uid_usage)[heap].add(size, imported);
    for (std::vector<Usage> *usage : client.group_usage)
        (*usage)[heap].add(size, imported);
    for (CgroupTally *tally : client.cgroups)
        tally->usage[heap].add(size, imported);
}

void Books::discharge(ClientRecord &client, HeapIndex heap, std::uint64_t size, bool imported)
{
    client.usage[heap].remove(size, imported);
    (*client.uid_usage)[heap].remove(size, imported);
    for (std::vector<Usage> *usage : client.group_usage)
        (*usage)[heap].remove(size, imported);
    for (CgroupTally *tally : client.cgroups)
        tally->usage[heap].remove(size, imported);
}

void Books::charge_ids(uid_t uid, std::span<const gid_t> groups, std::span<CgroupTally *const> cgroups,
                       HeapIndex heap, std::uint64_t size, bool imported)
{
    const auto add = [&](std::vector<Usage> &usage) {
        usage.resize(heap_usage_.size());
        usage[heap].add(size, imported);
    };
    add(uid_usage_[uid]);
    for (const gid_t gid : groups)
        add(gid_usage_[gid]);
    for (CgroupTally *tally : cgroups)
        tally->usage[heap].add(size, imported);
}

void Books::discharge_ids(uid_t uid, std::span<const gid_t> groups, std::span<CgroupTally *const> cgroups,
                          HeapIndex heap, std::uint64_t size, bool imported)
{
    uid_usage_.at(uid)[heap].remove(size, imported);
    for (const gid_t gid : groups)
        gid_usage_.at(gid)[heap].remove(size, imported);
    for (CgroupTally *tally : cgroups)
        tally->usage[heap].remove(size, imported);
}

bool in_cgroup_subtree(std::string_view cgroup, std::string_view root)
{
    if (cgroup.empty() || !cgroup.starts_with(root))
        return false;
    return cgroup.size() == root.size() || root == "/" || cgroup[root.size()] == '/';
}

std::vector<CgroupTally *> Books::tallies_of(std::string_view cgroup) const
{
    std::vector<CgroupTally *> tallies;
    for (const auto &tally : cgroup_tallies_) {
        if (in_cgroup_subtree(cgroup, tally->path))
            tallies.push_back(tally.get());
    }
    return tallies;
}

void Books::set_tracked_cgroups(std::vector<std::string> roots)
{
    std::sort(roots.begin(), roots.end());
    roots.erase(std::unique(roots.begin(), roots.end()), roots.end());
    cgroup_tallies_.clear();
    for (std::string &root : roots)
        cgroup_tallies_.push_back(
            std::make_unique<CgroupTally>(CgroupTally{std::move(root), std::vector<Usage>(heap_usage_.size())}));
    // What everyone holds now, counted into the new tallies as if just
    // allocated: their peaks start from here.
    for (auto &[id, client] : clients_) {
        client.cgroups = tallies_of(client.identity.cgroup);
        for (CgroupTally *tally : client.cgroups) {
            for (HeapIndex heap = 0; heap < heap_usage_.size(); ++heap)
                tally->usage[heap].add_all(client.usage[heap]);
        }
    }
    for (auto &[id, orphan] : orphans_) {
        orphan.cgroups = tallies_of(orphan.cgroup);
        const BufferRecord &buffer = buffers_.at(id);
        for (CgroupTally *tally : orphan.cgroups)
            tally->usage[buffer.heap].add(buffer.size);
    }
}

void Books::drop_hold(ClientRecord &client, ClientId client_id, BufferId id, BufferRecord &buffer,
                      bool imported)
{
    discharge(client, buffer.heap, buffer.size, imported);
    Usage &usage = client.usage[buffer.heap];
    auto &holders = buffer.holders;
    if (holders.size() > 1)
        usage.remove_shared(buffer.size);
    holders.erase(std::find(holders.begin(), holders.end(), client_id));
    if (holders.empty())
        return;
    ClientRecord &next = clients_.at(holders.front());
    // The one left holds it alone now.
    if (holders.size() == 1)
        next.usage[buffer.heap].remove_shared(buffer.size);
    // Its allocator let go: the first importer left pays for it from now on.
    Handle &next_handle = next.handles.at(id);
    if (!imported && next_handle.imported) {
        next_handle.imported = false;
        next.usage[buffer.heap].own(buffer.size);
        uid_usage_.at(next.identity.uid)[buffer.heap].own(buffer.size);
        for (const gid_t gid : next.groups)
            gid_usage_.at(gid)[buffer.heap].own(buffer.size);
    }
}

void Books::let_go(std::unordered_map<BufferId, BufferRecord>::iterator it, const ClientRecord &last,
                   const ReferenceCounter &count_references)
{
    BufferRecord &buffer = it->second;
    if (buffer.watched) {
        const long references = count_references(buffer.fd.get());
        if (!only_the_daemon_holds(references, buffer)) {
            // Its entry in the watch queue stays: the orphan is checked in
            // turn like any buffer. Its memory is pinned still, so the last
            // holder's uid and groups keep paying for it.
            const ClientIdentity &identity = last.identity;
            orphans_[it->first] = {identity.pid,    identity.uid, last.groups,
                                   identity.comm,   references_besides_the_daemons(references, buffer),
                                   last.label,      identity.cgroup,
                                   last.cgroups};
            charge_ids(identity.uid, last.groups, last.cgroups, buffer.heap, buffer.size, false);
            fresh_orphans_.push_back(it->first);
            return;
        }
    }
    erase_buffer(it);
}

void Books::erase_buffer(std::unordered_map<BufferId, BufferRecord>::iterator it)
{
    const BufferRecord &buffer = it->second;
    heap_usage_[buffer.heap].remove(buffer.size);
    if (const auto orphan = orphans_.find(it->first); orphan != orphans_.end()) {
        discharge_ids(orphan->second.uid, orphan->second.groups, orphan->second.cgroups, buffer.heap,
                      buffer.size, false);
        orphans_.erase(orphan);
    }
    if (buffer.own_references > 1)
        left_store_.push_back(it->first);
    ++version_;
    buffer_nodes_.erase(buffers_, it);
}

void Books::remove_client(ClientId client, const ReferenceCounter &count_references)
{
    const auto it = clients_.find(client);
    if (it == clients_.end())
        return;
    ClientRecord &record = it->second;
    if (!record.handles.empty())
        ++version_;
    for (const auto &[id, handle] : record.handles) {
        const auto buffer_it = buffers_.find(id);
        BufferRecord &buffer = buffer_it->second;
        if (handle.in_flight)
            --buffer.in_flight;
        drop_hold(record, client, id, buffer, handle.imported);
        if (buffer.holders.empty())
            let_go(buffer_it, record, count_references);
    }
    clients_.erase(it);
}

void Books::set_client_name(ClientId client, std::string name)
{
    const auto it = clients_.find(client);
    if (it == clients_.end())
        return;
    ClientRecord &record = it->second;
    ClientLabel label = *record.label;
    label.name = name;
    record.label = std::make_shared<const ClientLabel>(std::move(label));
    record.name = std::move(name);
    ++version_;
}

BufferId Books::add_buffer(ClientId client, HeapIndex heap, std::uint64_t size, UniqueFD fd,
                           bool watched, bool from_pool)
{
    ClientRecord &record = clients_.at(client);
    const BufferId id = next_buffer_id_++;
    BufferRecord &buffer = buffer_nodes_.insert(buffers_, id)->second;
    buffer.fd = std::move(fd);
    buffer.size = size;
    buffer.heap = heap;
    buffer.watched = watched;
    buffer.in_flight = 1;
    buffer.from_pool = from_pool;
    buffer.holders.push_back(client);
    buffer.allocated_by = record.label;
    buffer.born_ms = coarse_now_ms();
    handle_nodes_.insert(record.handles, id);
    charge(record, heap, size, false);
    heap_usage_[heap].add(size);
    if (watched)
        watch_queue_.push_back(id);
    if (tracking_store_)
        unstored_.push_back(id);
    ++version_;
    return id;
}

int Books::add_holder(ClientId client, BufferId id)
{
    const auto buffer_it = buffers_.find(id);
    if (buffer_it == buffers_.end() || buffer_it->second.holders.empty())
        return -ENOENT;
    BufferRecord &buffer = buffer_it->second;
    ClientRecord &record = clients_.at(client);
    const auto [handle, added] = record.handles.try_emplace(id);
    if (!added) {
        // Held already: counted once, only its fd travels again.
        if (!handle->second.in_flight) {
            handle->second.in_flight = true;
            ++buffer.in_flight;
        }
        return 0;
    }
    handle->second.imported = true;
    ++version_;
    ++buffer.in_flight;
    charge(record, buffer.heap, buffer.size, true);
    record.usage[buffer.heap].add_shared(buffer.size);
    if (buffer.holders.size() == 1)
        clients_.at(buffer.holders.front()).usage[buffer.heap].add_shared(buffer.size);
    buffer.holders.push_back(client);
    return 0;
}

void Books::delivered(ClientId client, std::span<const BufferId> buffers)
{
    const auto client_it = clients_.find(client);
    if (client_it == clients_.end())
        return;
    for (const BufferId id : buffers) {
        const auto handle = client_it->second.handles.find(id);
        if (handle != client_it->second.handles.end() && handle->second.in_flight) {
            handle->second.in_flight = false;
            --buffers_.at(id).in_flight;
        }
    }
}

int Books::remove_buffer(ClientId client, BufferId id, const ReferenceCounter &count_references)
{
    const auto client_it = clients_.find(client);
    if (client_it == clients_.end())
        return -ENOENT;
    ClientRecord &record = client_it->second;
    const auto handle = record.handles.find(id);
    if (handle == record.handles.end()) {
        auto &released = record.recently_released;
        const auto found = std::find(released.begin(), released.end(), id);
        if (found == released.end())
            return -ENOENT;
        released.erase(found);
        return 0;
    }
    const auto buffer_it = buffers_.find(id);
    BufferRecord &buffer = buffer_it->second;
    if (handle->second.in_flight)
        --buffer.in_flight;
    const bool imported = handle->second.imported;
    handle_nodes_.erase(record.handles, handle);
    ++version_;
    drop_hold(record, client, id, buffer, imported);
    // Freed by its last holder: memory that someone still references
    // stays on the books as an orphan.
    if (buffer.holders.empty())
        let_go(buffer_it, record, count_references);
    return 0;
}

bool Books::holds(ClientId client, BufferId buffer) const
{
    const ClientRecord *record = this->client(client);
    return record && record->handles.contains(buffer);
}

bool Books::holds_or_released(ClientId client, BufferId buffer) const
{
    const ClientRecord *record = this->client(client);
    if (!record)
        return false;
    return record->handles.contains(buffer) ||
           std::find(record->recently_released.begin(), record->recently_released.end(), buffer) !=
               record->recently_released.end();
}

bool Books::release_if_unreferenced(BufferId id, const BufferRecord &buffer,
                                    const ReferenceCounter &count_references)
{
    const long references = count_references(buffer.fd.get());
    if (buffer.holders.empty()) {
        if (const auto orphan = orphans_.find(id); orphan != orphans_.end())
            orphan->second.references = references_besides_the_daemons(references, buffer);
    }
    if (!only_the_daemon_holds(references, buffer))
        return false;
    release(id);
    return true;
}

void Books::release(BufferId id)
{
    const auto it = buffers_.find(id);
    const BufferRecord &buffer = it->second;
    const bool shared = buffer.holders.size() > 1;
    for (const ClientId holder : buffer.holders) {
        ClientRecord &record = clients_.at(holder);
        const auto handle = record.handles.find(id);
        discharge(record, buffer.heap, buffer.size, handle->second.imported);
        handle_nodes_.erase(record.handles, handle);
        if (shared)
            record.usage[buffer.heap].remove_shared(buffer.size);
        auto &released = record.recently_released;
        if (released.size() == kRememberedReleases)
            released.erase(released.begin());
        released.push_back(id);
    }
    SPDLOG_DEBUG("buffer {} released: nobody holds it any more ({} clients had not freed it)", id,
                 buffer.holders.size());
    erase_buffer(it);
}

std::size_t Books::release_unreferenced(std::size_t budget, const ReferenceCounter &count_references)
{
    std::size_t released = 0;
    std::size_t checked = 0;
    // Each fresh orphan once: if it lives on, its turn in the queue comes.
    // Half the budget at most, so that a client making orphans faster than
    // rounds go cannot stall the queue.
    const std::size_t fresh_budget = (budget + 1) / 2;
    while (!fresh_orphans_.empty() && checked < fresh_budget) {
        const BufferId id = fresh_orphans_.front();
        fresh_orphans_.pop_front();
        const auto it = buffers_.find(id);
        if (it == buffers_.end() || !it->second.holders.empty() || it->second.in_flight > 0)
            continue;
        ++checked;
        released += release_if_unreferenced(id, it->second, count_references);
    }
    // One pass at most: live entries go back to the end of the queue.
    for (std::size_t visits = watch_queue_.size(); visits > 0 && checked < budget; --visits) {
        const BufferId id = watch_queue_.front();
        watch_queue_.pop_front();
        const auto it = buffers_.find(id);
        if (it == buffers_.end())
            continue; // freed or released since it was queued
        if (it->second.in_flight == 0) {
            ++checked;
            if (release_if_unreferenced(id, it->second, count_references)) {
                ++released;
                continue;
            }
        }
        watch_queue_.push_back(id);
    }
    return released;
}

std::size_t Books::release_unreferenced_now(std::optional<pid_t> pid, std::optional<uid_t> uid,
                                            std::size_t budget, const ReferenceCounter &count_references)
{
    // No dma-buf in the books (memfd alone): no count to read, and no need
    // to walk a single buffer.
    if (watch_queue_.empty())
        return 0;

    std::size_t released = 0;
    // Counts id if its count means something. False once the budget is
    // spent: the rest wait for release detection's turn.
    const auto count = [&](BufferId id) {
        const auto it = buffers_.find(id);
        if (it == buffers_.end() || !it->second.watched || it->second.in_flight != 0)
            return true;
        if (budget == 0) {
            SPDLOG_DEBUG("fresh count: out of budget; release detection counts the rest in turn");
            return false;
        }
        --budget;
        released += release_if_unreferenced(id, it->second, count_references);
        return true;
    };

    // Orphans first: a buffer freed and closed a moment ago is the one
    // likeliest dead, and the budget may not reach the end. Copied: a
    // release erases its orphan.
    const auto in_scope = [&](pid_t p, uid_t u) { return (!pid || p == *pid) && (!uid || u == *uid); };
    std::vector<BufferId> orphans;
    for (const auto &[id, orphan] : orphans_) {
        if (in_scope(orphan.pid, orphan.uid))
            orphans.push_back(id);
    }
    for (const BufferId id : orphans) {
        if (!count(id))
            return released;
    }

    if (!pid && !uid) {
        // Every buffer is in scope: the watch queue has each dma-buf once
        // (and ids that left since, skipped), those release detection
        // reached longest ago first. Walked in place, as a release leaves
        // the queue as it is: no list of 100 000 ids per request.
        for (std::size_t i = 0; i < watch_queue_.size(); ++i) {
            const BufferId id = watch_queue_[i];
            if (orphans_.contains(id))
                continue; // counted above
            if (!count(id))
                return released;
        }
        return released;
    }

    std::vector<BufferId> candidates;
    for (const auto &[client_id, record] : clients_) {
        if (!in_scope(record.identity.pid, record.identity.uid))
            continue;
        for (const auto &[id, handle] : record.handles)
            candidates.push_back(id);
    }
    // Two clients in scope may hold the same buffer.
    std::sort(candidates.begin(), candidates.end());
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
    for (const BufferId id : candidates) {
        if (!count(id))
            return released;
    }
    return released;
}

const ClientRecord *Books::client(ClientId client) const
{
    const auto it = clients_.find(client);
    return it == clients_.end() ? nullptr : &it->second;
}

const std::vector<Usage> *Books::uid_usage(uid_t uid) const
{
    const auto it = uid_usage_.find(uid);
    return it == uid_usage_.end() ? nullptr : &it->second;
}

const std::vector<Usage> *Books::gid_usage(gid_t gid) const
{
    const auto it = gid_usage_.find(gid);
    return it == gid_usage_.end() ? nullptr : &it->second;
}

const BufferRecord *Books::buffer(BufferId buffer) const
{
    const auto it = buffers_.find(buffer);
    return it == buffers_.end() ? nullptr : &it->second;
}

} // namespace ionsvc
