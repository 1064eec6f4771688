// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/container/small_vector.hpp>

#include <ionsvc/node_recycler.h>
#include <ionsvc/unique_fd.h>

#include "backends/allocator.h"

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
    // Its supplementary groups (SO_PEERGROUPS), for the access rules and
    // the group quotas.
    std::vector<gid_t> groups;
    // Its cgroup v2 path ("/system.slice/camera.service"), for the views
    // per service and the cgroup quotas; empty if unknown.
    std::string cgroup;

    bool in_group(gid_t group) const
    {
        return gid == group || std::find(groups.begin(), groups.end(), group) != groups.end();
    }
};

// A client as its buffers remember it: who allocated a buffer stays known
// after that client disconnects, for as long as the buffer lives. Shared,
// never changed (a new name makes a new label).
struct ClientLabel
{
    ClientId id = 0;
    pid_t pid = 0;
    uid_t uid = 0;
    std::string comm;
    std::string name;
};

// Bytes and buffers held, and the most bytes ever held at once. For a
// client, also how much of it other clients hold too (shared). Of a
// client's, uid's or group's, also how much of it is imports, which quotas
// may leave out (imports_count = false).
struct Usage
{
    std::uint64_t bytes = 0;
    std::uint64_t buffers = 0;
    std::uint64_t peak_bytes = 0;
    std::uint64_t shared_bytes = 0;
    std::uint64_t shared_buffers = 0;
    std::uint64_t imported_bytes = 0;
    std::uint64_t imported_buffers = 0;

    void add(std::uint64_t size, bool imported = false)
    {
        bytes += size;
        ++buffers;
        if (bytes > peak_bytes)
            peak_bytes = bytes;
        if (imported) {
            imported_bytes += size;
            ++imported_buffers;
        }
    }
    void remove(std::uint64_t size, bool imported = false)
    {
        bytes -= size;
        --buffers;
        if (imported)
            own(size);
    }
    // An import of size bytes is the holder's own now (or gone).
    void own(std::uint64_t size)
    {
        imported_bytes -= size;
        --imported_buffers;
    }
    // All of other's holdings at once (a tally made afresh).
    void add_all(const Usage &other)
    {
        bytes += other.bytes;
        buffers += other.buffers;
        imported_bytes += other.imported_bytes;
        imported_buffers += other.imported_buffers;
        shared_bytes += other.shared_bytes;
        shared_buffers += other.shared_buffers;
        peak_bytes = std::max(peak_bytes, bytes);
    }
    void add_shared(std::uint64_t size)
    {
        shared_bytes += size;
        ++shared_buffers;
    }
    void remove_shared(std::uint64_t size)
    {
        shared_bytes -= size;
        --shared_buffers;
    }
};

// A live buffer, however many clients hold it. The daemon keeps one
// reference to every buffer it handed out, in fd, until the buffer leaves
// the books.
struct BufferRecord
{
    UniqueFD fd;
    std::uint64_t size = 0;
    HeapIndex heap = 0;
    // A dma-buf: the kernel counts its references, so the books let it go
    // once the daemon's own is the last (release detection).
    bool watched = false;
    // Replies carrying its fd that are not out yet: while there are any,
    // the daemon's reference being the only one means nothing.
    std::uint32_t in_flight = 0;
    // Came from the warm pool rather than made for the request.
    bool from_pool = false;
    // The clients that hold it: the one that allocated it, then importers.
    // None: an orphan.
    boost::container::small_vector<ClientId, 1> holders;
    std::shared_ptr<const ClientLabel> allocated_by;
    // When it entered the books, in ms of CLOCK_MONOTONIC_COARSE: a listing
    // shows ages, and the coarse clock costs no more than a memory read.
    std::int64_t born_ms = 0;
    // The references to it that are the daemon's: its fd, and the copy in
    // systemd's fd store once it is there. Release detection lets it go
    // when the kernel counts no more than these.
    std::uint8_t own_references = 1;
    // Its file's inode once stored: how the next daemon tells its fd from
    // the others the store passes back.
    std::uint64_t stored_inode = 0;
};

// One client's hold on a buffer.
struct Handle
{
    bool in_flight = true; // the reply with its fd is not out yet
    // Imported, not allocated, by this client. A buffer always has one
    // holder it is not an import to (its allocator, then whoever is left),
    // so that some quota always pays for it.
    bool imported = false;
};

// What the clients in one cgroup subtree that a quota names, and the
// orphans they left, hold per heap (a buffer two of them hold counts
// twice, as for a uid).
struct CgroupTally
{
    std::string path; // "/system.slice/camera.service": it, and every cgroup below it
    std::vector<Usage> usage;
};

// Whether cgroup is root or below it. An unknown cgroup (empty) is in none.
bool in_cgroup_subtree(std::string_view cgroup, std::string_view root);

// What is known of a buffer that outlived every client that held it, as
// ION's debugfs showed them: alive elsewhere (an fd, a mapping, an
// importer), with the last client that held it. It stays charged to that
// client's uid and groups until it dies, so that passing an fd on and
// freeing or disconnecting escapes no quota.
struct OrphanRecord
{
    pid_t pid = 0;
    uid_t uid = 0;
    std::vector<gid_t> groups;
    std::string comm;
    // References besides the daemon's, when last counted; -1 if unknown.
    long references = 0;
    std::shared_ptr<const ClientLabel> last_client;
    std::string cgroup;
    // The tallies of the subtrees its cgroup is in, which it stays charged to.
    std::vector<CgroupTally *> cgroups;
};

struct ClientRecord
{
    ClientIdentity identity;
    // The groups its holds count in: primary and supplementary, each once,
    // as the access rules see them.
    std::vector<gid_t> groups;
    std::string name; // the client's own name for itself, from Hello
    // Its identity and name, as the buffers it allocates remember them.
    std::shared_ptr<const ClientLabel> label;
    // "<comm>:<pid>": the name of its buffers that it did not name itself.
    std::string default_buffer_name;
    std::vector<Usage> usage; // indexed by HeapIndex
    // Its uid's and groups' usage in the books, found once at connect
    // rather than on every charge (entries there are never erased).
    std::vector<Usage> *uid_usage = nullptr;
    std::vector<std::vector<Usage> *> group_usage;
    // The tallies of the cgroup subtrees that quotas name and it is in.
    std::vector<CgroupTally *> cgroups;
    std::unordered_map<BufferId, Handle> handles;
    // The latest buffers released under the client (nobody held them any
    // more, and it had not freed them), so that a Free that raced the
    // release still succeeds. Bounded: a client that never frees costs
    // nothing here.
    std::vector<BufferId> recently_released;
    // Proof a reconnecting client shows to be this one after a restart.
    std::string reclaim_secret;
    // Restored from the daemon before a restart, and not reconnected yet.
    bool awaiting_reclaim = false;
};

// A buffer as the daemon before a restart left it, to enter the books again.
struct RestoredBuffer
{
    UniqueFD fd;
    std::uint64_t inode = 0;
    HeapIndex heap = 0;
    std::uint64_t size = 0;
    bool watched = false;
    bool from_pool = false;
    std::shared_ptr<const ClientLabel> allocated_by;
    std::int64_t born_ms = 0;
    // Its holders, restored clients all, the one that pays first: each with
    // whether it is an import to it.
    std::vector<std::pair<ClientId, bool>> holders;
    // None: held by nobody, charged to the last holder's identity.
    std::optional<ClientIdentity> orphan_of;
    std::shared_ptr<const ClientLabel> orphan_label;
};

// CLOCK_MONOTONIC_COARSE in ms: the clock of BufferRecord::born_ms.
std::int64_t coarse_now_ms();

// How many references the kernel counts to the buffer behind fd, the
// daemon's own included, or -errno if it cannot tell.
using ReferenceCounter = std::function<long(int fd)>;
// A budget of release_unreferenced_now() that never runs out.
inline constexpr std::size_t kEveryBuffer = std::numeric_limits<std::size_t>::max();

// The daemon's accounting: who holds which buffer in which heap. A client is
// one connection, as an ION client was one open of /dev/ion. A buffer
// counts in every client that holds it (as ION counted it in each client
// with a handle) and once in its heap. Adding and removing a buffer or a
// holder costs O(1) (O(holders) to mark sharing); removing a client costs
// O(its buffers).
//
// Release detection: a dma-buf whose only reference is the daemon's (no fd,
// no mapping, no importer, nothing in flight anywhere) is dead to everyone
// else, and the books drop it as if freed. The buffers to check wait in a
// queue that release_unreferenced() works through a budget at a time;
// memfd buffers are not in it and stay until freed or their clients leave.
class Books
{
public:
    explicit Books(std::size_t heap_count);

    ClientId add_client(ClientIdentity identity);

    // After a restart: enters client id as the daemon before it knew it,
    // awaiting its reclaim, holding nothing yet.
    void restore_client(ClientId id, ClientIdentity identity, std::string name, std::string secret);
    // Enters a buffer the daemon before a restart held (the fd store's copy
    // and fd being the daemon's references), held by its restored holders
    // or an orphan. -EINVAL if a holder is not a restored client or the
    // id is taken.
    int restore_buffer(BufferId id, RestoredBuffer buffer);
    // The next ids handed out are at least these (the restored ones stay unique).
    void reserve_ids(ClientId next_client, BufferId next_buffer);
    // Connection fresh, greeted just now and holding nothing, is the
    // restored client dormant reconnecting: dormant takes fresh's identity
    // (its charges move with it) and fresh leaves the books. -ENOENT if
    // dormant awaits no reclaim, -EPERM if it was another uid's, -EBUSY
    // if fresh holds buffers already.
    int adopt(ClientId fresh, ClientId dormant);

    // Store tracking: from now on every buffer that enters the books is
    // listed for the fd store, and every stored one that leaves too.
    void track_store() { tracking_store_ = true; }
    // The buffers entered since the last call (some may have left again).
    std::vector<BufferId> take_unstored() { return std::exchange(unstored_, {}); }
    // The stored buffers (own_references 2) that left since the last call.
    std::vector<BufferId> take_left_store() { return std::exchange(left_store_, {}); }
    // The buffer's copy is in the fd store now; inode: its file's.
    void mark_stored(BufferId id, std::uint64_t inode);
    // Grows with every change to who holds what: the state written for a
    // restart is out of date while it differs from what was written.
    std::uint64_t version() const { return version_; }
    // Drops the client's holds. A dma-buf nobody else holds but that
    // count_references says is still referenced becomes an orphan; the
    // rest of those nobody holds are closed.
    void remove_client(ClientId client, const ReferenceCounter &count_references);
    void set_client_name(ClientId client, std::string name);
    void set_reclaim_secret(ClientId client, std::string secret);

    // Enters a new buffer of size bytes in heap, held by client, in flight;
    // the books keep fd. watched: a dma-buf, for release detection.
    // from_pool: the warm pool made it beforehand.
    BufferId add_buffer(ClientId client, HeapIndex heap, std::uint64_t size, UniqueFD fd,
                        bool watched = false, bool from_pool = false);
    // client now holds buffer too (an import), in flight; if it held it
    // already, only its fd is in flight again. -ENOENT if the buffer is not
    // in the books or nobody holds it.
    int add_holder(ClientId client, BufferId buffer);
    // The client now has these buffers' fds (the reply that carried them is
    // out): from here on a lone daemon reference means released.
    void delivered(ClientId client, std::span<const BufferId> buffers);
    // Drops client's hold on buffer (0), or forgets one that was just
    // released under it (0); -ENOENT if the client holds no buffer of that
    // id. The last hold gone, the buffer leaves the books, unless it is a
    // dma-buf that count_references says is referenced still: then it
    // becomes an orphan, as at a disconnect.
    int remove_buffer(ClientId client, BufferId buffer, const ReferenceCounter &count_references);
    bool holds(ClientId client, BufferId buffer) const;
    // Whether remove_buffer(client, buffer) would succeed.
    bool holds_or_released(ClientId client, BufferId buffer) const;

    // Counts the references of up to budget watched buffers, those
    // orphaned since the last call first (up to half the budget), then the
    // rest in turn, and releases those only the daemon still references.
    // Returns how many it released.
    std::size_t release_unreferenced(std::size_t budget, const ReferenceCounter &count_references);
    // The same, now, for the watched buffers that the clients of pid and uid
    // hold (any pid, any uid, if none) and the orphans last held there, at
    // most budget of them: what stats show of those is then up to date.
    // Orphans first; with neither pid nor uid, then the buffers release
    // detection counted longest ago. Every other buffer keeps what release
    // detection last saw.
    std::size_t release_unreferenced_now(std::optional<pid_t> pid, std::optional<uid_t> uid,
                                         std::size_t budget, const ReferenceCounter &count_references);
    // Whether release_unreferenced() has anything to do.
    bool has_watched_buffers() const { return !watch_queue_.empty(); }
    // Entries in the queue of buffers to check, stale ones included.
    std::size_t watch_queue_length() const { return watch_queue_.size(); }

    const ClientRecord *client(ClientId client) const;
    const BufferRecord *buffer(BufferId buffer) const;
    // Every buffer, orphans included, in no particular order.
    const std::unordered_map<BufferId, BufferRecord> &buffers() const { return buffers_; }
    // Every client, in no particular order.
    const std::unordered_map<ClientId, ClientRecord> &clients() const { return clients_; }
    // Every orphaned buffer (in buffer(id), with no holders), in no
    // particular order.
    const std::unordered_map<BufferId, OrphanRecord> &orphans() const { return orphans_; }
    // Every buffer once, orphans included.
    const Usage &heap_usage(HeapIndex heap) const { return heap_usage_.at(heap); }
    // What all the clients of one uid, or in one group (primary or
    // supplementary), and the orphans they left hold per heap (a buffer two
    // of them hold counts twice); nullptr if none ever held any.
    const std::vector<Usage> *uid_usage(uid_t uid) const;
    const std::vector<Usage> *gid_usage(gid_t gid) const;
    std::size_t heap_count() const { return heap_usage_.size(); }

    // Keeps a tally for each cgroup subtree in roots (those the quotas
    // name), counted afresh from every client and orphan: the cost of a
    // config reload, none per allocation while no quota names a cgroup.
    void set_tracked_cgroups(std::vector<std::string> roots);

private:
    // Counts the buffer's references (noting an orphan's) and, if the
    // daemon's is the last, releases it: true if it did.
    bool release_if_unreferenced(BufferId id, const BufferRecord &buffer,
                                 const ReferenceCounter &count_references);
    // A hold of size bytes in heap enters or leaves client's usage and its
    // uid's and groups'.
    void charge(ClientRecord &client, HeapIndex heap, std::uint64_t size, bool imported);
    void discharge(ClientRecord &client, HeapIndex heap, std::uint64_t size, bool imported);
    // The same for a uid's and groups' usage alone (an orphan's).
    void charge_ids(uid_t uid, std::span<const gid_t> groups, std::span<CgroupTally *const> cgroups,
                    HeapIndex heap, std::uint64_t size, bool imported);
    void discharge_ids(uid_t uid, std::span<const gid_t> groups, std::span<CgroupTally *const> cgroups,
                       HeapIndex heap, std::uint64_t size, bool imported);
    // Fills a new client record from its identity.
    ClientRecord &make_client(ClientId id, ClientIdentity identity);
    // The tallies whose subtrees cgroup is in.
    std::vector<CgroupTally *> tallies_of(std::string_view cgroup) const;
    // Takes a hold out of client's usage and the buffer's holders, marking
    // whoever is left alone with it as no longer sharing, and making it
    // the first one left's own if it was client's own.
    void drop_hold(ClientRecord &client, ClientId client_id, BufferId id, BufferRecord &buffer,
                   bool imported);
    // Nobody holds the buffer any more (last held by last): a dma-buf still
    // referenced elsewhere becomes an orphan, anything else leaves.
    void let_go(std::unordered_map<BufferId, BufferRecord>::iterator it, const ClientRecord &last,
                const ReferenceCounter &count_references);
    // Takes the buffer out of every holder and the books, closing the
    // daemon's reference; each holder remembers it as released.
    void release(BufferId id);
    void erase_buffer(std::unordered_map<BufferId, BufferRecord>::iterator it);

    std::unordered_map<ClientId, ClientRecord> clients_;
    std::unordered_map<BufferId, BufferRecord> buffers_;
    // Sized for steady churn, not for the largest batch: nodes beyond it
    // are freed as usual.
    NodeRecycler<decltype(buffers_), 64> buffer_nodes_;
    NodeRecycler<decltype(ClientRecord::handles), 64> handle_nodes_;
    std::unordered_map<BufferId, OrphanRecord> orphans_;
    std::vector<Usage> heap_usage_;
    std::unordered_map<uid_t, std::vector<Usage>> uid_usage_;
    std::unordered_map<gid_t, std::vector<Usage>> gid_usage_;
    std::vector<std::unique_ptr<CgroupTally>> cgroup_tallies_;
    // Watched buffers to check, in turn. Entries of buffers that left the
    // books stay until their turn comes and are dropped then.
    std::deque<BufferId> watch_queue_;
    // Buffers orphaned since the last round, checked before the queue: most
    // were freed a moment before their owner closed its fd, and waiting for
    // their turn in a queue of 100 000 would keep their memory, and a
    // daemon fd each, for 40 s.
    std::deque<BufferId> fresh_orphans_;
    ClientId next_client_id_ = 1;
    BufferId next_buffer_id_ = 1;
    std::uint64_t version_ = 0;
    bool tracking_store_ = false;
    std::vector<BufferId> unstored_;
    std::vector<BufferId> left_store_;
};

} // namespace ionsvc
