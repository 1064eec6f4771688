// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/container/small_vector.hpp>
#include <google/protobuf/arena.h>

#include <ionsvc/status.h>

#include "backends/allocator.h"
#include "books/books.h"
#include "books/warm_pool.h"
#include "policy/config.h"
#include "policy/quota.h"
#include "policy/share_table.h"
#include "protocol/response.h"
#include "buffer.pb.h"

namespace ionsvc {

// Names longer than this are cut; they are labels, not data.
inline constexpr std::size_t kMaxNameLength = 255;

struct ServiceLimits
{
    // Live share tokens one client may have.
    std::size_t max_share_tokens = 1024;
    std::uint64_t max_buffer_size = 1ull << 30;
    // Buffers whose references one release check counts (each costs a read
    // of /proc/self/fdinfo, a few microseconds).
    std::size_t release_check_budget = 256;
    // Buffers whose references one stats or heaps request counts afresh,
    // at most: any client may ask, as often as it likes.
    std::size_t fresh_count_budget = 1024;
};

// What the Service did since it started, for stats and metrics.
struct ServiceCounters
{
    std::uint64_t allocations = 0; // buffers handed out by Alloc
    std::uint64_t allocated_bytes = 0;
    std::uint64_t imports = 0;
    // Replies per status, OK's left at 0.
    std::array<std::uint64_t, wire::StatusCode_ARRAYSIZE> refusals{};
};

// What the daemon keeps for the next one across a restart, for stats: the
// server's recovery writer keeps it up to date.
struct RecoveryFigures
{
    bool enabled = false;
    std::uint64_t stored_buffers = 0;
    std::uint64_t store_limit = 0;
    // Changes not in the store yet, counted when asked.
    std::function<std::uint64_t()> pending_changes;
    std::uint64_t unstored_buffers = 0;
    std::uint64_t restored_buffers = 0;
};

// An fd systemd passed back from the store, with its name.
struct StoredFd
{
    std::string name;
    UniqueFD fd;
};

// What restore_state() made of the state and fds it was given.
struct RestoreOutcome
{
    std::size_t clients = 0;
    std::size_t buffers = 0;
    std::size_t shares = 0;
    // Buffers the state names whose fd did not come back, or whose heap
    // this daemon does not serve: they leave the books.
    std::vector<std::string> dropped;
    // Names of fds the state does not know (stored after it was written):
    // the caller closes them and removes them from the store.
    std::vector<std::string> unknown_fds;
};

// The protocol border: turns requests into calls on the allocator and the
// books, and their -errno results into statuses and messages. Holds no
// sockets, so that everything here can be driven from a unit test.
//
// One class, since every request reads the same books, tokens and
// policy, with its request families in a file each: service.cpp (the
// packet, connect and disconnect, release detection), hello_heaps.cpp
// (Hello, ListHeaps), alloc.cpp (Alloc, Free), share.cpp (Share, Import,
// Revoke), stats.cpp (Stats) and buffers.cpp (Buffers).
class Service
{
public:
    // syscalls: how the books count a dma-buf's references (fdinfo).
    Service(Allocator &allocator, ServiceLimits limits, Syscalls &syscalls);

    ClientId connect(ClientIdentity identity);
    // Drops the client; its buffers still alive elsewhere become orphans.
    void disconnect(ClientId client);
    // The daemon is stopping: disconnects from now on drop every buffer
    // without counting its references, since no orphan will be reported
    // again (with 100k dma-bufs the counting alone takes a second).
    void shut_down() { shutting_down_ = true; }

    // Handles one packet that a client sent.
    Disposition handle_packet(ClientContext &client, std::span<const std::byte> packet,
                              Response &response);

    // The reply is out: its buffers are the client's now.
    void delivered(ClientContext &client, const Response &response);
    // Takes back the buffers of a reply that could not be delivered.
    void undo_allocation(ClientContext &client, const Response &response);

    // One round of release detection: counts the references of the next
    // few dma-bufs (ServiceLimits::release_check_budget) and drops those
    // nobody but the daemon holds. Returns how many it dropped.
    std::size_t release_unreferenced() { return release_unreferenced(limits_.release_check_budget); }
    // The same for the next budget buffers: the event loop runs a round in
    // slices of this.
    std::size_t release_unreferenced(std::size_t budget);
    // How many buffers one round checks: the budget, or fewer if fewer wait.
    std::size_t release_round_size() const
    {
        return std::min(limits_.release_check_budget, books_.watch_queue_length());
    }
    // Whether release detection has buffers to watch (else the timer rests).
    bool has_watched_buffers() const { return books_.has_watched_buffers(); }

    // The limits from the config file; replaced as a whole on reload.
    void set_quota(QuotaConfig quota)
    {
        books_.set_tracked_cgroups(cgroups_named(quota));
        quota_ = std::move(quota);
    }
    void set_access(AccessConfig access) { access_ = std::move(access); }
    // Only to show in stats: the server enforces them.
    void set_connection_limits(const ConnectionLimits &limits) { connection_limits_ = limits; }
    // Where allocations look first; none: every buffer is made on request.
    void set_pool(WarmPool *pool) { pool_ = pool; }

    // Root or a member of the access rules' admin_group: sees every client
    // and is held to no connection limit.
    bool is_admin(const ClientIdentity &identity) const;

    const ServiceCounters &counters() const { return counters_; }

    // recovery.cpp: keeping the books across a restart.
    // From now on every Hello gets a secret to reclaim its buffers with.
    void enable_reclaim() { reclaim_enabled_ = true; }
    // The books, share tokens and ids as a State (recovery.proto) of
    // generation, serialized: stored buffers only, as the rest cannot
    // come back.
    std::string save_state(std::uint64_t generation);
    // Enters the clients, buffers and tokens of a state that save_state()
    // wrote, with the stored fds that came back; -EINVAL if it does not
    // parse.
    Expected<RestoreOutcome, int> restore_state(std::string_view state, std::vector<StoredFd> fds);
    // The generation of a state that save_state() wrote; none if it does
    // not parse.
    static std::optional<std::uint64_t> state_generation(std::string_view state);
    // Restored clients whose process is gone, or all those left if
    // everyone, leave as at a disconnect. Returns how many.
    std::size_t drop_unreclaimed(bool everyone);
    // Restored clients that have not reclaimed their buffers yet.
    std::size_t awaiting_reclaim() const;
    RecoveryFigures &recovery_figures() { return recovery_; }
    Books &books() { return books_; }
    const Allocator &allocator() const { return allocator_; }
    const ServiceLimits &limits() const { return limits_; }

private:
    struct BatchFailure
    {
        int error = -ENODEV;
        std::uint32_t index = 0; // of the buffer that failed
        HeapIndex heap = 0;
        // Not tried: the client may not use the heap, or it would pass a
        // limit there. Reported with this status.
        std::string refusal;
        StatusCode refusal_code = StatusCode::kOk;
    };
    struct MadeBuffer
    {
        UniqueFD fd;
        bool from_pool = false;
    };
    // Inline room for one: most allocations are of one buffer from one heap.
    using MadeBuffers = boost::container::small_vector<MadeBuffer, 1>;
    using CandidateHeaps = boost::container::small_vector<HeapIndex, 1>;
    using ClientsInScope = std::vector<std::pair<ClientId, const ClientRecord *>>;

    // service.cpp
    Disposition parse_and_handle(ClientContext &client, std::span<const std::byte> packet,
                                 Response &response);
    long count_references(int fd);

    // hello_heaps.cpp
    void hello(ClientContext &client, const wire::HelloRequest &request, Response &response);
    void list_heaps(ClientContext &client, Response &response);

    // alloc.cpp
    void allocate(ClientContext &client, const wire::AllocRequest &request, Response &response);
    // The request's size in whole pages, once its count, size and flags
    // passed; none, with the error in response, if one did not.
    std::optional<std::uint64_t> checked_alloc_size(const wire::AllocRequest &request, Response &response) const;
    // The heaps an allocation may come from, in the order to try them;
    // empty, with the error in response, if none.
    CandidateHeaps candidate_heaps(const wire::AllocRequest &request, Response &response) const;
    // Why heap may not serve count buffers of size to client (an access
    // rule, the heap's own size limit, a quota), if it may not.
    std::optional<BatchFailure> why_refused(const ClientRecord &client, HeapIndex heap, std::uint64_t size,
                                            std::uint32_t count);
    // count buffers from heap (the warm pool's first) into made (empty), or
    // nothing and why. An out-parameter: the buffers are not moved again.
    std::optional<BatchFailure> allocate_batch(HeapIndex heap, std::uint64_t size, std::uint32_t flags,
                                               std::string_view name, std::uint32_t count, MadeBuffers &made);
    // Puts the buffers made into the books, and their ids and fds in the reply.
    void book_buffers(ClientContext &client, HeapIndex heap, std::uint64_t size, MadeBuffers &made,
                      Response &response);
    // The reply to an allocation that made nothing.
    void report_failure(const BatchFailure &failure, std::uint32_t count, std::uint64_t size,
                        Response &response) const;
    // Why adding to client's holdings would pass a quota, if it would.
    std::optional<std::string> quota_refusal_now(const ClientRecord &client, const Addition &addition);
    void free_buffers(ClientContext &client, const wire::FreeRequest &request, Response &response);
    // Frees those of ids the client holds, answering nothing (a Free with
    // no_reply, a request's free_first).
    void free_silently(ClientContext &client, std::span<const BufferId> ids);

    // share.cpp
    void share(ClientContext &client, const wire::ShareRequest &request, Response &response);
    void import_buffer(ClientContext &client, const wire::ImportRequest &request, Response &response);
    void revoke(ClientContext &client, const wire::RevokeRequest &request, Response &response);

    // recovery.cpp
    void reclaim(ClientContext &client, const wire::ReclaimRequest &request, Response &response);
    // The last page: the reclaimed client's buffers it did not name go.
    void finish_reclaim(ClientContext &client);

    // stats.cpp
    void stats(ClientContext &client, const wire::StatsRequest &request, Response &response);
    // The uid whose clients the requester may see; none: it sees all.
    std::optional<uid_t> visible_uid(const ClientContext &requester) const;
    // The clients, and the orphans (oldest first), of pid and uid; none: all.
    ClientsInScope clients_in_scope(std::optional<pid_t> pid, std::optional<uid_t> uid) const;
    std::vector<BufferId> orphans_in_scope(std::optional<pid_t> pid, std::optional<uid_t> uid) const;
    // A ClientStats per client, with its usage per heap.
    void add_client_stats(const ClientsInScope &clients, wire::StatsReply &reply) const;
    // A HeapStats per heap with the scope's totals, its orphans listed.
    void add_heap_stats(const ClientsInScope &clients, const std::vector<BufferId> &orphans,
                        wire::StatsReply &reply) const;
    // buffers.cpp
    void list_buffers(ClientContext &requester, const wire::BuffersRequest &request, Response &response);
    // The ids above after of the buffers that the clients of pid and uid
    // hold or left as orphans (any, if none), in heap (any, if none); in no
    // particular order.
    std::vector<BufferId> buffers_in_scope(std::optional<pid_t> pid, std::optional<uid_t> uid,
                                           std::optional<HeapIndex> heap, BufferId after) const;
    void add_buffer_entry(BufferId id, const BufferRecord &buffer, std::int64_t now_ms,
                          wire::BuffersReply &reply) const;

    // The limits that hold for client, with their use.
    void add_limits(const ClientRecord &client, wire::StatsReply &reply) const;
    void add_counters(wire::StatsReply &reply) const;
    // Per heap, the bytes and buffers of the clients and orphans given,
    // each buffer once.
    std::vector<Usage> totals_in_scope(const ClientsInScope &clients, const std::vector<BufferId> &orphans) const;

    Allocator &allocator_;
    Books books_;
    ShareTable shares_;
    WarmPool *pool_ = nullptr;
    QuotaConfig quota_;
    AccessConfig access_;
    ConnectionLimits connection_limits_;
    ServiceLimits limits_;
    ServiceCounters counters_;
    Syscalls &syscalls_;
    ReferenceCounter reference_counter_;
    // Requests are parsed into messages on this arena, which starts in
    // request_block_ and is reset once they fill half of it: per request,
    // no malloc and no arena set up and torn down.
    static constexpr std::size_t kRequestBlockBytes = 16 * 1024;
    alignas(std::max_align_t) std::array<char, kRequestBlockBytes> request_block_;
    google::protobuf::Arena request_arena_;
    RecoveryFigures recovery_;
    bool reclaim_enabled_ = false;
    bool reference_count_failed_ = false; // said once in the log
    bool shutting_down_ = false;
};

} // namespace ionsvc
