// SPDX-License-Identifier: MIT
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <ionsvc/expected.h>
#include <ionsvc/unique_fd.h>

#include "backends/allocator.h"
#include "books/pool_config.h"
#include "syscalls/syscalls.h"

namespace ionsvc {

// The name of buffers the pool makes, where a heap cannot rename them when
// they are handed out (memfd: /proc shows "memfd:ionsvc-pool").
inline constexpr std::string_view kPoolBufferName = "ionsvc-pool";

// MemAvailable from the text of /proc/meminfo, in bytes; -ENODATA if the
// text has no such line.
Expected<std::uint64_t, int> meminfo_available(std::string_view meminfo);

// Populated buffers made ahead, per heap and size class, so that an
// allocation of that size is a hand-over rather than the kernel zeroing and
// mapping pages while the client waits. A thread of its own refills the
// pool after each hand-over, at a lower CPU priority than the event loop.
//
// A buffer leaves the pool only to a client and never comes back: freed
// buffers go to the kernel as always, so the pool never holds anybody's
// data. When MemAvailable falls below PoolConfig::min_available the pool
// gives all its buffers back and stays empty until there is room again.
class WarmPool
{
public:
    // syscalls: /proc/meminfo (read_text) and whatever the heaps use.
    WarmPool(Allocator &allocator, Syscalls &syscalls);
    ~WarmPool();

    WarmPool(const WarmPool &) = delete;
    WarmPool &operator=(const WarmPool &) = delete;

    // Applies a pool config (at start and on reload): classes not in it
    // give their buffers back, new ones fill. Returns a line for each class
    // that names no heap served here, for the log. Called on the thread
    // that calls take().
    std::vector<std::string> configure(const PoolConfig &config);

    // A ready buffer of exactly size bytes (page-aligned) from heap, or an
    // invalid fd if that class is empty or not pooled. Never blocks on the
    // refill; without a pool, takes no lock either.
    UniqueFD take(HeapIndex heap, std::uint64_t size);

    struct Level
    {
        std::uint64_t bytes = 0;
        std::uint64_t buffers = 0;
    };
    // What the pool holds ready in heap.
    Level level(HeapIndex heap) const;

private:
    struct Shelf
    {
        HeapIndex heap = 0;
        std::uint64_t size = 0;
        std::uint32_t target = 0;
        std::vector<UniqueFD> ready;
        // Making its buffers failed: not tried again until the next timed
        // wake-up.
        bool failing = false;
        // The failure is in the log: said once per streak, not per retry.
        bool reported = false;
    };

    // The refill thread's loop.
    void fill(std::stop_token stop);
    // The next shelf below its target, or none; mutex_ held.
    Shelf *next_to_fill();
    // The shelf of that class in shelves, or none.
    static Shelf *find_in(std::vector<Shelf> &shelves, HeapIndex heap, std::uint64_t size);
    // Whether MemAvailable is at least min_available (after a shortage:
    // min_available plus the whole pool, pool_bytes); logs changes.
    bool memory_to_spare(std::uint64_t min_available, std::uint64_t pool_bytes);
    // Takes every ready buffer off the shelves, for closing outside the lock.
    std::vector<UniqueFD> empty_shelves();
    Expected<UniqueFD, int> make_buffer(HeapIndex heap, std::uint64_t size);

    Allocator &allocator_;
    Syscalls &syscalls_;

    mutable std::mutex mutex_;
    std::condition_variable_any wake_;
    std::vector<Shelf> shelves_;
    // Whether any class is pooled; read by take() without the lock. Set
    // by configure(): both run on the event loop's thread.
    bool pooling_ = false;
    std::vector<Level> levels_; // by heap index
    std::uint64_t min_available_ = 0;
    // Set by configure() and take(): the refill thread has work to look at.
    bool changed_ = false;
    bool short_of_memory_ = false; // refill thread only
    bool meminfo_failed_ = false;  // refill thread only; said once

    std::jthread filler_; // last: stopped and joined before the rest goes
};

} // namespace ionsvc
