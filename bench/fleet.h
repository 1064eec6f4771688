// SPDX-License-Identifier: MIT
// ionsvc-bench: the cases with many client processes. Each client is a
// forked process with its own connection to the daemon, steered by the
// bench over a control socket.
//   concurrency/<n>  n clients allocate and free 4 KiB as fast as they can:
//                    allocations per second and per-allocation latency;
//   scale/*          clients x buffers live at once: one more client's
//                    allocation, stats, and the daemon's memory per client
//                    and per live buffer.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "processes.h"
#include "summary.h"

namespace ionsvc_bench {

struct FleetOptions
{
    std::string socket_path;
    std::optional<pid_t> daemon_pid; // for its memory and its fd limit
    bool daemon_is_ours = false;     // the bench may change its CPUs
    std::vector<int> all_cpus;       // the CPUs the bench was given
    Placement placement;             // of the round-trip cases
    std::uint64_t size = 4096;
    std::string heap; // the daemon's heap to allocate from; empty: its default

    std::vector<std::size_t> client_counts{1, 2, 4, 8, 64};
    std::size_t concurrency_allocations = 40'000; // per client count, all clients together

    std::size_t scale_clients = 1000;
    std::size_t scale_buffers = 100; // per client
    std::size_t scale_iterations = 5'000;
    std::size_t stats_iterations = 50;
};

std::vector<Row> run_concurrency(const FleetOptions &options);

// The daemon's fds the scale case needs: a buffer's and a client's one each.
std::uint64_t scale_fds_needed(const FleetOptions &options);

// Why the daemon cannot hold the scale case's buffers (its fd limit), if
// it cannot.
std::optional<std::string> scale_cannot_run(const FleetOptions &options);

std::vector<Row> run_scale(const FleetOptions &options);

} // namespace ionsvc_bench
