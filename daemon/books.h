// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <ionsvc/unique_fd.h>

#include "allocator.h"

namespace ionsvc {

using ClientId = std::uint64_t;
using BufferId = std::uint64_t;

// Who a client is, taken from SO_PEERCRED and /proc at connect.
struct ClientIdentity
{
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    std::string comm;
};

// Bytes and buffers held, and the most bytes ever held at once.
struct Usage
{
    std::uint64_t bytes = 0;
    std::uint64_t buffers = 0;
    std::uint64_t peak_bytes = 0;

    void add(std::uint64_t size)
    {
        bytes += size;
        ++buffers;
        if (bytes > peak_bytes)
            peak_bytes = bytes;
    }
    void remove(std::uint64_t size)
    {
        bytes -= size;
        --buffers;
    }
};

// A live buffer. The daemon keeps one reference to every buffer it handed
// out, in fd, until the buffer leaves the books.
struct BufferRecord
{
    UniqueFD fd;
    std::uint64_t size = 0;
    HeapIndex heap = 0;
    // A dma-buf: the kernel counts its references, so the books let it go
    // once the daemon's own is the last (release detection).
    bool watched = false;
    // Entered in the books, its fd not yet out to the client: the daemon's
    // reference being the only one then means nothing.
    bool in_flight = true;
};

// A buffer that outlived the client it was allocated for, as ION's debugfs
// showed them: alive elsewhere (an fd, a mapping, an importer), with the
// last client that held it.
struct OrphanRecord
{
    BufferRecord buffer;
    pid_t pid = 0;
    std::string comm;
    // References besides the daemon's, when last counted.
    long references = 0;
};

struct ClientRecord
{
    ClientIdentity identity;
    std::string name; // the client's own name for itself, from Hello
    // "<comm>:<pid>": the name of its buffers that it did not name itself.
    std::string default_buffer_name;
    std::vector<Usage> usage; // indexed by HeapIndex
    std::unordered_map<BufferId, BufferRecord> buffers;
    // The latest buffers released under the client (it closed every fd and
    // mapping without Free), so that a Free that raced the release still
    // succeeds. Bounded: a client that never frees costs nothing here.
    std::vector<BufferId> recently_released;
};

// How many references the kernel counts to the buffer behind fd, the
// daemon's own included, or -errno if it cannot tell.
using ReferenceCounter = std::function<long(int fd)>;

// The daemon's accounting: who holds which buffer in which heap. A client is
// one connection, as an ION client was one open of /dev/ion. Adding and
// removing a buffer costs O(1); removing a client costs O(its buffers).
//
// Release detection: a dma-buf whose only reference is the daemon's (no fd,
// no mapping, no importer, nothing in flight anywhere) is dead to everyone
// else, and the books drop it as if it had been freed. The buffers to check
// wait in a queue that release_unreferenced() works through a budget at a
// time; memfd buffers are not in it and stay until Free or disconnect.
class Books
{
public:
    explicit Books(std::size_t heap_count);

    ClientId add_client(ClientIdentity identity);
    // Drops the client. Its buffers that count_references says someone else
    // still references become orphans; the rest are closed.
    void remove_client(ClientId client, const ReferenceCounter &count_references);
    void set_client_name(ClientId client, std::string name);

    // Enters a buffer of size bytes in heap for client, in flight; the books
    // keep fd. watched: a dma-buf, for release detection.
    BufferId add_buffer(ClientId client, HeapIndex heap, std::uint64_t size, UniqueFD fd,
                        bool watched = false);
    // The client now has the buffers' fds (the reply that carried them is
    // out): from here on a lone daemon reference means released.
    void delivered(ClientId client, std::span<const BufferId> buffers);
    // Removes one of client's buffers (0), or forgets one that was just
    // released under it (0); -ENOENT if the client holds no buffer of that
    // id (whoever else may hold it).
    int remove_buffer(ClientId client, BufferId buffer);
    // Whether remove_buffer(client, buffer) would succeed.
    bool holds_or_released(ClientId client, BufferId buffer) const;

    // Counts the references of up to budget watched buffers, in turn, and
    // releases those only the daemon still references. Returns how many
    // it released.
    std::size_t release_unreferenced(std::size_t budget, const ReferenceCounter &count_references);
    // The same, now, for every watched buffer of the clients of pid (of all
    // clients if none) and the orphans last held there: what stats show is
    // then up to date.
    std::size_t release_unreferenced_now(std::optional<pid_t> pid,
                                         const ReferenceCounter &count_references);
    // Whether release_unreferenced() has anything to do.
    bool has_watched_buffers() const { return !watch_queue_.empty(); }

    const ClientRecord *client(ClientId client) const;
    const BufferRecord *buffer(ClientId client, BufferId buffer) const;
    // Every client, in no particular order.
    const std::unordered_map<ClientId, ClientRecord> &clients() const { return clients_; }
    // Every orphaned buffer, in no particular order.
    const std::unordered_map<BufferId, OrphanRecord> &orphans() const { return orphans_; }
    // Clients' buffers and orphans.
    const Usage &heap_usage(HeapIndex heap) const { return heap_usage_.at(heap); }
    std::size_t heap_count() const { return heap_usage_.size(); }

private:
    // Where a watched buffer lives: a client's, or an orphan's (kOrphaned).
    struct WatchEntry
    {
        ClientId client;
        BufferId buffer;
    };
    static constexpr ClientId kOrphaned = 0;

    BufferRecord *watched_buffer(const WatchEntry &entry);
    // Counts the buffer's references (noting an orphan's): true if the
    // daemon's is the last.
    bool unreferenced(const WatchEntry &entry, const BufferRecord &record,
                      const ReferenceCounter &count_references);
    // Takes the buffer out of the books and closes the daemon's reference.
    void release(const WatchEntry &entry);

    std::unordered_map<ClientId, ClientRecord> clients_;
    std::unordered_map<BufferId, OrphanRecord> orphans_;
    std::vector<Usage> heap_usage_;
    // Watched buffers to check, in turn. Entries of buffers that left the
    // books stay until their turn comes and are dropped then.
    std::deque<WatchEntry> watch_queue_;
    ClientId next_client_id_ = 1;
    BufferId next_buffer_id_ = 1;
};

} // namespace ionsvc
