// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ionsvc {

// The warm pool's settings, the [pool] table of the config file. Here
// rather than in policy/config.h: the pool lives below the policy layer
// and must not include it.

// One size class of a heap's warm pool: count populated buffers of size
// bytes kept ready.
struct PoolClass
{
    std::string heap; // a heap name (not an alias)
    std::uint64_t size = 0;
    std::uint32_t count = 0;
    std::string origin; // "pool.heaps.memfd.1M", for messages
};

// The most buffers one size class may keep ready.
inline constexpr std::uint32_t kMaxPoolClassCount = 1024;

//   [pool]
//   min_available = "256M"   # MemAvailable below this empties every pool
//   [pool.heaps.memfd]
//   "1M" = 4                 # size = buffers kept ready
struct PoolConfig
{
    std::vector<PoolClass> classes;
    // Below this much MemAvailable (/proc/meminfo) the pools give their
    // memory back and stay empty until there is more again.
    std::uint64_t min_available = 256ull << 20;
};

} // namespace ionsvc
