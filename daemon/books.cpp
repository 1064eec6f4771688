// SPDX-License-Identifier: MIT
#include "books.h"

#include <algorithm>
#include <cerrno>

#include <spdlog/spdlog.h>

namespace ionsvc {

namespace {

// How many released ids a client's Free may still name (see ClientRecord).
constexpr std::size_t kRememberedReleases = 64;

// The daemon's own reference is one; anything above is someone else's.
// A count that cannot be read keeps the buffer: releasing a buffer in use
// would lose track of it for good, keeping a dead one only for a while.
bool only_the_daemon_holds(long references)
{
    return references >= 0 && references <= 1;
}

} // namespace

Books::Books(std::size_t heap_count) : heap_usage_(heap_count) {}

ClientId Books::add_client(ClientIdentity identity)
{
    const ClientId id = next_client_id_++;
    ClientRecord &record = clients_[id];
    record.default_buffer_name = identity.comm + ":" + std::to_string(identity.pid);
    record.identity = std::move(identity);
    record.usage.resize(heap_usage_.size());
    return id;
}

void Books::remove_client(ClientId client, const ReferenceCounter &count_references)
{
    const auto it = clients_.find(client);
    if (it == clients_.end())
        return;
    ClientRecord &record = it->second;
    for (auto &[id, buffer] : record.buffers) {
        if (buffer.watched) {
            const long references = count_references(buffer.fd.get());
            if (!only_the_daemon_holds(references)) {
                // Its queue entry named the client: it needs one of its own.
                OrphanRecord &orphan = orphans_[id];
                orphan.buffer = std::move(buffer);
                orphan.buffer.in_flight = false;
                orphan.pid = record.identity.pid;
                orphan.comm = record.identity.comm;
                orphan.references = references < 0 ? -1 : references - 1;
                watch_queue_.push_back({kOrphaned, id});
                continue;
            }
        }
        heap_usage_[buffer.heap].remove(buffer.size);
    }
    clients_.erase(it);
}

void Books::set_client_name(ClientId client, std::string name)
{
    if (const auto it = clients_.find(client); it != clients_.end())
        it->second.name = std::move(name);
}

BufferId Books::add_buffer(ClientId client, HeapIndex heap, std::uint64_t size, UniqueFD fd,
                           bool watched)
{
    ClientRecord &record = clients_.at(client);
    const BufferId id = next_buffer_id_++;
    record.buffers.emplace(id, BufferRecord{std::move(fd), size, heap, watched, true});
    record.usage[heap].add(size);
    heap_usage_[heap].add(size);
    if (watched)
        watch_queue_.push_back({client, id});
    return id;
}

void Books::delivered(ClientId client, std::span<const BufferId> buffers)
{
    const auto client_it = clients_.find(client);
    if (client_it == clients_.end())
        return;
    for (const BufferId buffer : buffers) {
        if (const auto it = client_it->second.buffers.find(buffer); it != client_it->second.buffers.end())
            it->second.in_flight = false;
    }
}

int Books::remove_buffer(ClientId client, BufferId buffer)
{
    const auto client_it = clients_.find(client);
    if (client_it == clients_.end())
        return -ENOENT;
    ClientRecord &record = client_it->second;
    const auto it = record.buffers.find(buffer);
    if (it == record.buffers.end()) {
        auto &released = record.recently_released;
        const auto found = std::find(released.begin(), released.end(), buffer);
        if (found == released.end())
            return -ENOENT;
        released.erase(found);
        return 0;
    }
    record.usage[it->second.heap].remove(it->second.size);
    heap_usage_[it->second.heap].remove(it->second.size);
    record.buffers.erase(it);
    return 0;
}

bool Books::holds_or_released(ClientId client, BufferId buffer) const
{
    const ClientRecord *record = this->client(client);
    if (!record)
        return false;
    return record->buffers.contains(buffer) ||
           std::find(record->recently_released.begin(), record->recently_released.end(), buffer) !=
               record->recently_released.end();
}

BufferRecord *Books::watched_buffer(const WatchEntry &entry)
{
    if (entry.client == kOrphaned) {
        const auto it = orphans_.find(entry.buffer);
        return it == orphans_.end() ? nullptr : &it->second.buffer;
    }
    const auto client_it = clients_.find(entry.client);
    if (client_it == clients_.end())
        return nullptr;
    const auto it = client_it->second.buffers.find(entry.buffer);
    return it == client_it->second.buffers.end() ? nullptr : &it->second;
}

bool Books::unreferenced(const WatchEntry &entry, const BufferRecord &record,
                         const ReferenceCounter &count_references)
{
    const long references = count_references(record.fd.get());
    if (entry.client == kOrphaned)
        orphans_.at(entry.buffer).references = references < 0 ? -1 : references - 1;
    return only_the_daemon_holds(references);
}

void Books::release(const WatchEntry &entry)
{
    if (entry.client == kOrphaned) {
        const auto it = orphans_.find(entry.buffer);
        const OrphanRecord &orphan = it->second;
        heap_usage_[orphan.buffer.heap].remove(orphan.buffer.size);
        SPDLOG_DEBUG("orphaned buffer {} of pid {} released: nobody holds it any more", entry.buffer,
                     orphan.pid);
        orphans_.erase(it);
        return;
    }
    ClientRecord &record = clients_.at(entry.client);
    const auto it = record.buffers.find(entry.buffer);
    const BufferRecord &buffer = it->second;
    record.usage[buffer.heap].remove(buffer.size);
    heap_usage_[buffer.heap].remove(buffer.size);
    SPDLOG_DEBUG("client {}: buffer {} released: the client closed it without Free", entry.client,
                 entry.buffer);
    record.buffers.erase(it);
    auto &released = record.recently_released;
    if (released.size() == kRememberedReleases)
        released.erase(released.begin());
    released.push_back(entry.buffer);
}

std::size_t Books::release_unreferenced(std::size_t budget, const ReferenceCounter &count_references)
{
    std::size_t released = 0;
    std::size_t checked = 0;
    // One pass at most: live entries go back to the end of the queue.
    for (std::size_t visits = watch_queue_.size(); visits > 0 && checked < budget; --visits) {
        const WatchEntry entry = watch_queue_.front();
        watch_queue_.pop_front();
        const BufferRecord *record = watched_buffer(entry);
        if (!record)
            continue; // freed or released since it was queued
        if (!record->in_flight) {
            ++checked;
            if (unreferenced(entry, *record, count_references)) {
                release(entry);
                ++released;
                continue;
            }
        }
        watch_queue_.push_back(entry);
    }
    return released;
}

std::size_t Books::release_unreferenced_now(std::optional<pid_t> pid,
                                            const ReferenceCounter &count_references)
{
    std::vector<WatchEntry> unreferenced_entries;
    for (const auto &[client_id, record] : clients_) {
        if (pid && record.identity.pid != *pid)
            continue;
        for (const auto &[buffer_id, buffer] : record.buffers) {
            const WatchEntry entry{client_id, buffer_id};
            if (buffer.watched && !buffer.in_flight && unreferenced(entry, buffer, count_references))
                unreferenced_entries.push_back(entry);
        }
    }
    for (const auto &[buffer_id, orphan] : orphans_) {
        const WatchEntry entry{kOrphaned, buffer_id};
        if ((!pid || orphan.pid == *pid) && unreferenced(entry, orphan.buffer, count_references))
            unreferenced_entries.push_back(entry);
    }
    // Released after the walk: releasing erases from the maps walked.
    for (const WatchEntry &entry : unreferenced_entries)
        release(entry);
    return unreferenced_entries.size();
}

const ClientRecord *Books::client(ClientId client) const
{
    const auto it = clients_.find(client);
    return it == clients_.end() ? nullptr : &it->second;
}

const BufferRecord *Books::buffer(ClientId client, BufferId buffer) const
{
    const ClientRecord *record = this->client(client);
    if (!record)
        return nullptr;
    const auto it = record->buffers.find(buffer);
    return it == record->buffers.end() ? nullptr : &it->second;
}

} // namespace ionsvc
