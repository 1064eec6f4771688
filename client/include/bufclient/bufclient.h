// SPDX-License-Identifier: MIT
// libbufclient: the C++ client of ionsvcd.
//
//   auto client = bufclient::Client::connect();          // IONSVC_SOCKET or the default
//   auto buffers = client->allocate({.size = 1 << 20});
//   auto mapping = (*buffers)[0].map();
//
// Every call returns a value or an Error that carries the daemon's status
// code and message; a lost daemon is an Error (UNAVAILABLE), never a crash
// or a hang. A Client is safe to share between threads (calls are
// serialized); Buffers and Mappings are plain RAII values.
#pragma once

#include <sys/mman.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ionsvc/expected.h>
#include <ionsvc/status.h>
#include <ionsvc/unique_fd.h>

namespace bufclient {

using ionsvc::StatusCode;
using ionsvc::UniqueFD;

struct Error
{
    StatusCode code = StatusCode::kInternal;
    std::string message;
};

template<typename T>
using Result = ionsvc::Expected<T, Error>;

// Allocation flags: ION's cache bits, and one of ionsvc's own.
inline constexpr std::uint32_t kFlagCached = 1;
inline constexpr std::uint32_t kFlagCachedNeedsSync = 2;
// Every page backed before the reply: first use does not fault them in.
inline constexpr std::uint32_t kFlagPopulated = 4;

// A buffer's memory mapped into this process; unmapped on destruction.
class Mapping
{
public:
    Mapping() = default;
    Mapping(Mapping &&other) noexcept;
    Mapping &operator=(Mapping &&other) noexcept;
    Mapping(const Mapping &) = delete;
    Mapping &operator=(const Mapping &) = delete;
    ~Mapping();

    void *data() const { return data_; }
    std::size_t size() const { return size_; }
    std::span<std::byte> bytes() const { return {static_cast<std::byte *>(data_), size_}; }

    // Maps size bytes of fd (lent) with prot.
    static Result<Mapping> map(int fd, std::size_t size, int prot = PROT_READ | PROT_WRITE);

private:
    Mapping(void *data, std::size_t size) : data_(data), size_(size) {}

    void *data_ = nullptr;
    std::size_t size_ = 0;
};

// One buffer the daemon handed out: owns its fd.
class Buffer
{
public:
    Buffer(UniqueFD fd, std::uint64_t id, std::uint64_t size, std::string heap, bool from_pool = false)
        : fd_(std::move(fd)), id_(id), size_(size), heap_(std::move(heap)), from_pool_(from_pool)
    {
    }

    // The fd, lent: valid for as long as this Buffer owns it.
    int fd() const { return fd_.get(); }
    // Gives the fd away; the Buffer keeps its id for Free.
    UniqueFD take_fd() { return std::move(fd_); }

    std::uint64_t id() const { return id_; }
    std::uint64_t size() const { return size_; }
    const std::string &heap() const { return heap_; }
    // The daemon's warm pool made it ahead (populated, never used before).
    bool from_pool() const { return from_pool_; }

    Result<Mapping> map(int prot = PROT_READ | PROT_WRITE) const;

private:
    UniqueFD fd_;
    std::uint64_t id_;
    std::uint64_t size_;
    std::string heap_;
    bool from_pool_;
};

struct AllocOptions
{
    std::string heap;        // empty: the daemon's default heap
    std::uint64_t size = 0;  // rounded up to pages by the daemon
    std::uint32_t flags = 0; // kFlag* bits
    std::string name;        // the buffer's name, seen in /proc
    std::uint32_t count = 1; // a batch: all in one round trip
    // Instead of heap: ION's heap_id_mask, a bit per HeapInfo::ion_heap_id;
    // its heaps are tried highest id first, as ION did.
    std::uint32_t ion_heap_id_mask = 0;
};

struct ShareOptions
{
    std::optional<uid_t> uid;         // only this user may import; anyone if unset
    std::chrono::milliseconds ttl{0}; // 0: until revoked or the buffer is freed
    bool reusable = false;            // false: the first import uses the token up
};

struct Limits
{
    std::uint64_t max_buffer_size = 0;
    std::uint32_t max_batch_count = 0;
    std::uint32_t max_free_ids = 0;
    std::uint32_t max_request_bytes = 0;
};

struct ServerInfo
{
    std::uint32_t protocol_version = 0;
    std::string server_version;
    std::uint64_t client_id = 0;
    Limits limits;
};

struct HeapInfo
{
    std::string name;
    std::string backend;
    std::string type;
    std::uint64_t live_bytes = 0;
    std::uint64_t live_buffers = 0;
    std::uint64_t peak_bytes = 0;
    std::vector<std::string> aliases; // names that lead here, e.g. "system"
    std::optional<std::uint32_t> ion_heap_id; // ion heaps: the bit in an ion_heap_id_mask
    // The warm pool: buffers made ahead, charged to nobody.
    std::uint64_t pool_bytes = 0;
    std::uint64_t pool_buffers = 0;
};

struct HeapUsage
{
    std::string heap;
    std::uint64_t bytes = 0;
    std::uint64_t buffers = 0;
    std::uint64_t peak_bytes = 0;
    // Of bytes and buffers, those other clients hold too (shared, imported).
    std::uint64_t shared_bytes = 0;
    std::uint64_t shared_buffers = 0;
};

struct ClientStats
{
    std::uint64_t client_id = 0;
    std::uint32_t pid = 0;
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    std::string comm;
    std::string name;
    std::vector<HeapUsage> heaps;
    std::string cgroup; // its cgroup v2 path at connect ("/system.slice/x.service"); empty if unknown
    // A client of before the daemon restarted, not back yet: its buffers
    // wait for it to reconnect.
    bool awaiting_reclaim = false;
};

// A dma-buf whose client is gone but which someone still holds.
struct OrphanedBuffer
{
    std::string comm; // the last client's
    std::uint32_t pid = 0;
    std::uint64_t size = 0;
    std::int32_t map_count = 0; // ION's kernel mappings: -1, user space cannot see them
    std::int32_t refcount = 0;  // references besides the daemon's; -1 if unknown
};

struct HeapStats
{
    std::string name;
    std::string backend;
    std::string type;
    std::uint64_t total_bytes = 0;
    std::uint64_t total_buffers = 0;
    std::vector<OrphanedBuffer> orphaned;
    std::uint64_t pool_bytes = 0; // the heap's warm pool, whatever the scope
    std::uint64_t pool_buffers = 0;
};

// A limit that holds for this client, and how much of it is in use.
struct LimitUsage
{
    std::string setting; // where it is set: "quota.uid", "connections.per_uid"
    std::string scope;   // what it counts: "uid 1000", "this client", "group 44 in heap memfd"
    std::string unit;    // "bytes", "buffers" or "connections"
    std::uint64_t used = 0;
    std::uint64_t limit = 0;
};

// What the daemon did since it started, over every client.
struct Counters
{
    std::uint64_t allocations = 0; // buffers handed out by allocate()
    std::uint64_t allocated_bytes = 0;
    std::uint64_t imports = 0; // buffers handed out by import()
    // Requests answered with each status other than OK (those that occurred).
    std::vector<std::pair<StatusCode, std::uint64_t>> refusals;
};

// What the daemon keeps for the next one if it stops or dies.
struct Recovery
{
    bool enabled = false;            // it has systemd's fd store to keep them in
    std::uint64_t stored_buffers = 0; // buffers kept there now
    std::uint64_t store_limit = 0;
    std::uint64_t pending_changes = 0;  // not there yet
    std::uint64_t unstored_buffers = 0; // beyond the store's size: lost at a restart
    std::uint64_t restored_buffers = 0; // came back when this daemon started
    std::uint64_t awaiting_reclaim = 0; // clients of before the restart not back yet
};

struct Stats
{
    std::vector<ClientStats> clients;
    std::vector<HeapStats> heaps;
    std::vector<LimitUsage> limits; // those that hold for this client
    std::optional<Counters> counters; // for root and the admin group only
    std::optional<Recovery> recovery; // for root and the admin group only
};

// A client as a buffer listing names it; it may have disconnected since.
struct ClientLabel
{
    std::uint64_t client_id = 0;
    std::uint32_t pid = 0;
    std::uint32_t uid = 0;
    std::string comm;
    std::string name; // its own, from its connect
};

// One live buffer the daemon handed out (list_buffers).
struct BufferEntry
{
    std::uint64_t id = 0;
    std::string heap;
    std::uint64_t size = 0;
    // What the kernel calls it now: a dma-buf's name (any holder may change
    // it) or a memfd's.
    std::string name;
    // Of the buffer's file: the same in every process, as /proc shows it.
    std::uint64_t inode = 0;
    ClientLabel allocated_by;
    bool allocator_connected = false;
    std::vector<ClientLabel> holders;   // the connected clients that hold it now
    std::optional<ClientLabel> orphan_of; // no client holds it: the last one that did
    bool from_pool = false;
    std::uint64_t age_ms = 0;
};

// Which buffers list_buffers() returns: those of this process (held, or
// left as orphans there) and heap (a name or alias) only, if given.
struct BufferFilter
{
    std::optional<pid_t> pid;
    std::string heap;
};

enum class StatsView {
    kPids,    // per pid table
    kHeaps,   // ION debugfs heaps/<heap>
    kClients, // ION debugfs clients/<client>
    kCgroups, // per cgroup: summed by ionsvc-ctl from the clients
};

// Sixteen pages: a loop of small buffers defers its frees, a frame's does not.
inline constexpr std::uint64_t kDefaultDeferredFreeBytes = 64 * 1024;

struct ConnectOptions
{
    // Empty: $IONSVC_SOCKET, else /run/ionsvc/ionsvc.sock.
    std::string socket_path;
    // How this client shows in stats.
    std::string client_name;
    // The longest wait for one reply before the daemon counts as lost.
    std::chrono::milliseconds timeout{30'000};
    // free() keeps the frees of small buffers back: their ids ride on this
    // client's next request instead of costing a message each (for a 4 KiB
    // buffer, most of what an allocate+free costs beyond one round trip).
    // They go by themselves, in one message, as soon as the buffers kept
    // back would pass this many bytes or kMaxDeferredFrees ids, with the free
    // of a buffer this client shared (its tokens die when the daemon hears
    // of it), or at flush_frees(). Until then the daemon counts those
    // buffers as this client's and, if its reference is the last (memfd, or
    // the client closed its fds), keeps their memory: this many bytes at
    // most. 0: every free goes at once.
    std::uint64_t deferred_free_bytes = kDefaultDeferredFreeBytes;
    // When the daemon goes away (it crashed, or was restarted) and it keeps
    // its books across a restart, the next request reconnects, takes this
    // client's buffers back, and goes on: ids, fds, tokens and stats stay
    // as they were. This long at most, retrying; then the request, and
    // every later one, fails UNAVAILABLE. 0: never reconnect.
    std::chrono::milliseconds reconnect_timeout{30'000};
};

// The most freed ids a client keeps back (ConnectOptions::deferred_free_bytes).
inline constexpr std::size_t kMaxDeferredFrees = 64;

// $IONSVC_SOCKET if set, else the daemon's default path.
std::string default_socket_path();

class Client
{
public:
    static Result<Client> connect(const ConnectOptions &options = {});

    Client(Client &&) noexcept;
    Client &operator=(Client &&) noexcept;
    ~Client();

    const ServerInfo &server() const;

    Result<std::vector<Buffer>> allocate(const AllocOptions &options);
    // Drops the daemon's reference and accounting for each buffer; the
    // caller's own fds stay valid. All or nothing: ids this client does not
    // hold (NOT_FOUND), none, too many or one twice (INVALID_ARGUMENT) free
    // nothing. Checked here against what this client allocated, so the
    // daemon is told without waiting for an answer, and small buffers' frees
    // wait for the next request (ConnectOptions::deferred_free_bytes); every
    // later request on this client sees the buffers gone. A dma-buf that
    // nobody held any more may have left the books already (release
    // detection): freeing it is still fine.
    Result<void> free(std::span<const std::uint64_t> buffer_ids);
    Result<void> free(const Buffer &buffer);
    // Sends the frees kept back (ConnectOptions::deferred_free_bytes) now:
    // one message, no reply. Nothing if there are none.
    Result<void> flush_frees();
    // A token that lets another client import buffer (ION's SHARE): 48
    // hex digits, to be passed along by any means. It dies when used up,
    // revoked, expired, or when this client no longer holds the buffer.
    Result<std::string> share(const Buffer &buffer, const ShareOptions &options = {});
    // The buffer a token shares (ION's IMPORT): its fd, and its id here. The
    // buffer then counts in this client too, as shared. Wrong, used or
    // expired tokens are NOT_FOUND, another user's PERMISSION_DENIED.
    Result<Buffer> import(std::string_view token);
    // Drops a token this client made.
    Result<void> revoke(std::string_view token);
    Result<std::vector<HeapInfo>> list_heaps();
    Result<Stats> stats(std::optional<pid_t> pid = std::nullopt, StatsView view = StatsView::kPids);
    // Every live buffer this client may see (all for an admin; else those
    // its uid's clients hold or left as orphans), by id. It takes a
    // request per 256 buffers: one freed or made meanwhile may be missed.
    Result<std::vector<BufferEntry>> list_buffers(const BufferFilter &filter = {});

private:
    class Connection;
    explicit Client(std::unique_ptr<Connection> connection);

    std::unique_ptr<Connection> connection_;
};

} // namespace bufclient
