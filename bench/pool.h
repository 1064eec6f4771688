// SPDX-License-Identifier: MIT
// ionsvc-bench: populated buffers, made on request against handed out of
// the warm pool. Two daemons of the bench's own, pinned alike, serve them:
// one without a pool, one with a pool of every size measured.
//   populated/<size>      Alloc with kFlagPopulated from the daemon without
//                         a pool: the kernel backs and zeroes every page
//                         while the client waits;
//   pool/<size>           the same Alloc from the daemon with a pool, once
//                         the pool is full again (the wait is not timed:
//                         a pool serves bursts up to its size, not a
//                         client that allocates faster than pages can be
//                         zeroed);
//   raw-populated/<size>  memfd_create + ftruncate + seal + fallocate
//                         in-process, for reference.
// Only the Alloc round trip is timed; the Free and close follow untimed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "summary.h"

namespace ionsvc_bench {

struct PoolOptions
{
    std::string daemon_path;
    std::optional<int> server_cpu; // both daemons'
    std::vector<std::uint64_t> sizes{1024 * 1024, 8 * 1024 * 1024};
    std::uint32_t pool_count = 4; // buffers kept ready per size
    std::size_t iterations = 1000;
};

std::vector<Row> run_pool(const PoolOptions &options);

} // namespace ionsvc_bench
