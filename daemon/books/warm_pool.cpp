// SPDX-License-Identifier: MIT
#include "books/warm_pool.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "syscalls/proc_text.h"

namespace ionsvc {

namespace {

// How often a full pool looks at MemAvailable, and how long a class whose
// buffers cannot be made waits before it tries again.
constexpr auto kMemoryCheckInterval = std::chrono::seconds(1);
constexpr auto kRetryDelay = std::chrono::seconds(1);

// Refills run at this nice value: the event loop, which serves clients,
// goes first on a busy machine.
constexpr int kFillerNice = 10;

std::uint64_t mebibytes(std::uint64_t bytes)
{
    return bytes >> 20;
}

} // namespace

Expected<std::uint64_t, int> meminfo_available(std::string_view meminfo)
{
    const auto value = proc_field(meminfo, "MemAvailable:");
    if (!value)
        return Unexpected{-ENODATA};
    std::uint64_t kibibytes = 0;
    const auto [last, error] = std::from_chars(value->data(), value->data() + value->size(), kibibytes);
    if (error != std::errc() || std::string_view(last, value->data() + value->size()) != " kB")
        return Unexpected{-ENODATA};
    return kibibytes * 1024;
}

WarmPool::WarmPool(Allocator &allocator, Syscalls &syscalls)
    : allocator_(allocator), syscalls_(syscalls), levels_(allocator.heap_count())
{
}

// filler_, the last member, stops and joins first.
WarmPool::~WarmPool() = default;

std::vector<std::string> WarmPool::configure(const PoolConfig &config)
{
    std::vector<std::string> warnings;
    std::vector<Shelf> shelves;
    for (const PoolClass &pool_class : config.classes) {
        const std::optional<HeapIndex> index = allocator_.registry().find_by_name(pool_class.heap);
        if (!index) {
            warnings.push_back(fmt::format("{}: this daemon serves no heap '{}'; no pool for it (serving: {})",
                                           pool_class.origin, pool_class.heap, allocator_.heap_names()));
            continue;
        }
        const auto size = page_align(pool_class.size);
        const auto limit = allocator_.heap(*index).heap->size_limit();
        if (!size || (limit && *size > limit->bytes)) {
            warnings.push_back(fmt::format("{}: larger than heap '{}' can make; no pool for it",
                                           pool_class.origin, pool_class.heap));
            continue;
        }
        // "1M" and "1048576" are one class: the later entry says how many.
        if (Shelf *same = find_in(shelves, *index, *size))
            same->target = pool_class.count;
        else if (pool_class.count > 0)
            shelves.push_back({*index, *size, pool_class.count, {}, false, false});
    }
    std::erase_if(shelves, [](const Shelf &shelf) { return shelf.target == 0; });

    // Closed after the lock is let go: giving back populated memory takes
    // the kernel a while, and take() must not wait for it.
    std::vector<UniqueFD> released;
    std::unique_lock lock(mutex_);
    for (Shelf &old : shelves_) {
        Shelf *kept = find_in(shelves, old.heap, old.size);
        for (UniqueFD &fd : old.ready) {
            if (kept && kept->ready.size() < kept->target)
                kept->ready.push_back(std::move(fd));
            else
                released.push_back(std::move(fd));
        }
    }
    shelves_ = std::move(shelves);
    std::fill(levels_.begin(), levels_.end(), Level{});
    for (const Shelf &shelf : shelves_) {
        levels_[shelf.heap].bytes += shelf.size * shelf.ready.size();
        levels_[shelf.heap].buffers += shelf.ready.size();
    }
    min_available_ = config.min_available;
    pooling_ = !shelves_.empty();
    changed_ = true;
    wake_.notify_one();
    lock.unlock();

    // Started with the first class, not before: a daemon that never pools
    // stays single-threaded, and glibc's syscall wrappers and malloc take
    // their cheaper single-threaded paths on every request.
    if (pooling_ && !filler_.joinable())
        filler_ = std::jthread([this](std::stop_token stop) { fill(std::move(stop)); });
    return warnings;
}

UniqueFD WarmPool::take(HeapIndex heap, std::uint64_t size)
{
    if (!pooling_)
        return {};
    std::lock_guard lock(mutex_);
    Shelf *shelf = find_in(shelves_, heap, size);
    if (shelf == nullptr || shelf->ready.empty())
        return {};
    // The most recently made: its pages were zeroed last, likeliest still
    // in the cache.
    UniqueFD fd = std::move(shelf->ready.back());
    shelf->ready.pop_back();
    levels_[heap].bytes -= size;
    levels_[heap].buffers -= 1;
    changed_ = true;
    wake_.notify_one();
    return fd;
}

WarmPool::Level WarmPool::level(HeapIndex heap) const
{
    std::lock_guard lock(mutex_);
    return heap < levels_.size() ? levels_[heap] : Level{};
}

WarmPool::Shelf *WarmPool::find_in(std::vector<Shelf> &shelves, HeapIndex heap, std::uint64_t size)
{
    for (Shelf &shelf : shelves) {
        if (shelf.heap == heap && shelf.size == size)
            return &shelf;
    }
    return nullptr;
}

WarmPool::Shelf *WarmPool::next_to_fill()
{
    // The emptiest class first, by the share of its target it lacks.
    Shelf *next = nullptr;
    for (Shelf &shelf : shelves_) {
        if (shelf.failing || shelf.ready.size() >= shelf.target)
            continue;
        if (!next || shelf.ready.size() * next->target < next->ready.size() * shelf.target)
            next = &shelf;
    }
    return next;
}

std::vector<UniqueFD> WarmPool::empty_shelves()
{
    std::vector<UniqueFD> released;
    for (Shelf &shelf : shelves_) {
        for (UniqueFD &fd : shelf.ready)
            released.push_back(std::move(fd));
        shelf.ready.clear();
    }
    std::fill(levels_.begin(), levels_.end(), Level{});
    return released;
}

bool WarmPool::memory_to_spare(std::uint64_t min_available, std::uint64_t pool_bytes)
{
    const auto text = syscalls_.read_text("/proc/meminfo");
    const auto available = text ? meminfo_available(*text) : Expected<std::uint64_t, int>{Unexpected{text.error()}};
    if (!available) {
        if (!meminfo_failed_)
            spdlog::warn("warm pool: cannot read MemAvailable ({}); the pool fills without looking at "
                         "free memory",
                         std::strerror(-available.error()));
        meminfo_failed_ = true;
        return true;
    }
    meminfo_failed_ = false;
    // Once emptied, it refills only when the whole pool fits above the
    // threshold: else filling would push it under again, and round it goes.
    const std::uint64_t needed = short_of_memory_ ? min_available + pool_bytes : min_available;
    const bool spare = *available >= needed;
    if (!spare && !short_of_memory_)
        spdlog::warn("warm pool: MemAvailable {} MiB is below pool.min_available {} MiB: pool buffers go "
                     "back to the kernel until there is more",
                     mebibytes(*available), mebibytes(min_available));
    if (spare && short_of_memory_)
        spdlog::info("warm pool: MemAvailable {} MiB: refilling", mebibytes(*available));
    short_of_memory_ = !spare;
    return spare;
}

Expected<UniqueFD, int> WarmPool::make_buffer(HeapIndex index, std::uint64_t size)
{
    Heap &heap = *allocator_.heap(index).heap;
    // No client's flags: the pool serves requests without cache flags only.
    auto fd = heap.allocate(size, 0, kPoolBufferName);
    if (!fd)
        return fd;
    if (const int ret = heap.populate(fd->get(), size); ret < 0)
        return Unexpected{ret};
    return fd;
}

void WarmPool::fill(std::stop_token stop)
{
    // This thread only (a Linux thread is a task of its own).
    if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kFillerNice) < 0) {
        const int error = errno;
        // The shipped unit's syscall filter denies it: not worth more than debug.
        spdlog::debug("warm pool: could not lower the refill thread's priority: {}", std::strerror(error));
    }

    while (!stop.stop_requested()) {
        // Declared before the lock: closed after it is let go.
        std::vector<UniqueFD> released;
        std::unique_lock lock(mutex_);
        changed_ = false;
        if (shelves_.empty()) {
            wake_.wait(lock, stop, [this] { return changed_; });
            continue;
        }
        std::uint64_t pool_bytes = 0;
        for (const Shelf &shelf : shelves_)
            pool_bytes += shelf.size * shelf.target;
        const std::uint64_t min_available = min_available_;
        lock.unlock();

        const bool spare = memory_to_spare(min_available, pool_bytes);
        lock.lock();
        if (!spare) {
            released = empty_shelves();
            lock.unlock();
            released.clear();
            lock.lock();
        }
        Shelf *shelf = spare ? next_to_fill() : nullptr;
        if (shelf == nullptr) {
            wake_.wait_for(lock, stop, kMemoryCheckInterval, [this] { return changed_; });
            // A class that failed gets another try now and then.
            for (Shelf &each : shelves_)
                each.failing = false;
            continue;
        }
        const HeapIndex heap = shelf->heap;
        const std::uint64_t size = shelf->size;
        lock.unlock();

        auto buffer = make_buffer(heap, size);

        lock.lock();
        shelf = find_in(shelves_, heap, size);
        if (!buffer) {
            if (shelf && !shelf->reported)
                spdlog::warn("warm pool: making a {} byte buffer of heap '{}' failed: {}; trying again "
                             "in {} s",
                             size, allocator_.heap(heap).heap->name(), std::strerror(-buffer.error()),
                             std::chrono::duration_cast<std::chrono::seconds>(kRetryDelay).count());
            if (shelf)
                shelf->failing = shelf->reported = true;
            continue;
        }
        // The class may have gone, or been filled by a reload, meanwhile.
        if (shelf && shelf->reported) {
            spdlog::info("warm pool: heap '{}' makes {} byte buffers again", allocator_.heap(heap).heap->name(),
                         size);
            shelf->reported = false;
        }
        if (shelf && shelf->ready.size() < shelf->target) {
            shelf->ready.push_back(std::move(*buffer));
            levels_[heap].bytes += size;
            levels_[heap].buffers += 1;
        } else {
            released.push_back(std::move(*buffer));
        }
    }
}

} // namespace ionsvc
