// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "protocol/service.h"
#include "server/fd_store.h"

namespace ionsvc {

struct RecoverySettings
{
    // Fds the service's store may hold (FileDescriptorStoreMax=): every
    // live buffer's, and two for the state.
    std::size_t store_limit = 0;
    // How long a client of before a restart whose process lives has to
    // come back and reclaim its buffers.
    std::chrono::seconds reclaim_wait{600};
};

// Keeps the books across a restart (docs/RECOVERY.md): every live buffer's
// fd in systemd's fd store under "buf-<id>", and the state that makes them
// books again in a sealed memfd there, "state-0" and "state-1" in turn. A
// change reaches the store within a tick, off the request path; at start,
// what the store passed back becomes the books again.
class RecoveryKeeper
{
public:
    RecoveryKeeper(boost::asio::io_context &io, Service &service, Syscalls &syscalls, RecoverySettings settings);
    ~RecoveryKeeper();
    RecoveryKeeper(const RecoveryKeeper &) = delete;
    RecoveryKeeper &operator=(const RecoveryKeeper &) = delete;

    // Makes the books from the fds systemd passed back, and drops from
    // the store those that cannot be used. Before start().
    void restore(std::vector<std::pair<std::string, UniqueFD>> stored);
    void start();
    // Writes every change out and waits until systemd has it: the daemon
    // is about to exit, and its books must be the next one's.
    void finish();

private:
    void schedule();
    void tick();
    void flush();
    void store_new_buffers();
    void write_state();
    void update_figures();

    boost::asio::steady_timer timer_;
    Service &service_;
    Syscalls &syscalls_;
    RecoverySettings settings_;
    FdStore store_;
    std::size_t stored_ = 0;
    // Buffers that found the store full, waiting for room.
    std::vector<BufferId> waiting_;
    std::uint64_t written_version_ = ~std::uint64_t{0};
    std::uint64_t generation_ = 0;
    std::chrono::steady_clock::duration last_write_{};
    std::chrono::steady_clock::time_point next_write_{};
    std::chrono::steady_clock::time_point reclaim_deadline_{};
    std::chrono::steady_clock::time_point next_reclaim_check_{};
    bool awaiting_reclaim_ = false; // restored clients are still to come back

    bool finished_ = false;
};

} // namespace ionsvc
