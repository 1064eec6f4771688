// SPDX-License-Identifier: MIT
#include "pool.h"

#include <fcntl.h>

#include <bufclient/bufclient.h>

#include "processes.h"

namespace ionsvc_bench {

namespace {

std::string pool_config(const PoolOptions &options)
{
    // min_available 0: the pool fills whatever else the machine does.
    std::string text = "[pool]\nmin_available = 0\n[pool.heaps.memfd]\n";
    for (const std::uint64_t size : options.sizes)
        text += "\"" + std::to_string(page_align(size)) + "\" = " + std::to_string(options.pool_count) + "\n";
    return text;
}

bufclient::Client connect(const DaemonProcess &daemon)
{
    auto client = bufclient::Client::connect({.socket_path = daemon.socket_path(), .client_name = "ionsvc-bench"});
    if (!client)
        throw BenchError(client.error().message);
    return std::move(*client);
}

// Times one populated Alloc; frees the buffer untimed. Returns whether it
// came from the pool.
bool time_allocation(bufclient::Client &client, std::uint64_t size, std::vector<std::int64_t> &samples)
{
    const auto start = Clock::now();
    auto buffers = client.allocate({.heap = "memfd", .size = size, .flags = bufclient::kFlagPopulated});
    const auto end = Clock::now();
    if (!buffers)
        throw BenchError("populated allocate failed: " + buffers.error().message);
    samples.push_back(elapsed_ns(start, end));
    const bool from_pool = buffers->front().from_pool();
    if (auto freed = client.free(buffers->front()); !freed)
        throw BenchError("free failed: " + freed.error().message);
    // The Free has no reply: one round trip makes sure the daemon gave the
    // pages back before the next timed Alloc, not during it.
    if (auto heaps = client.list_heaps(); !heaps)
        throw BenchError("list_heaps failed: " + heaps.error().message);
    return from_pool;
}

// Waits (untimed) until the memfd heap's pool holds buffers again.
void wait_for_pool(bufclient::Client &client, std::uint64_t buffers)
{
    // A generous bound: a refill of a few 8 MiB buffers takes milliseconds.
    constexpr int kPolls = 200'000;
    for (int poll = 0; poll < kPolls; ++poll) {
        if (interrupted)
            throw BenchError("interrupted");
        auto heaps = client.list_heaps();
        if (!heaps)
            throw BenchError("list_heaps failed: " + heaps.error().message);
        for (const auto &heap : *heaps) {
            if (heap.name == "memfd" && heap.pool_buffers >= buffers)
                return;
        }
    }
    throw BenchError("the warm pool did not fill up again within " + std::to_string(kPolls) + " polls");
}

// memfd_create + ftruncate + seal + fallocate, as the daemon populates.
UniqueFD allocate_populated_memfd(RawAllocator &memfd, std::uint64_t size)
{
    UniqueFD fd = memfd.allocate(size);
    if (!fd)
        throw BenchError("raw memfd allocation failed: " + errno_text(errno));
    if (::fallocate(fd.get(), 0, 0, static_cast<off_t>(size)) < 0)
        throw BenchError("fallocate failed: " + errno_text(errno));
    return fd;
}

} // namespace

std::vector<Row> run_pool(const PoolOptions &options)
{
    // Started one after the other: the pool's daemon fills while the
    // other one starts.
    DaemonProcess pooled_daemon(options.daemon_path, "memfd", options.server_cpu, pool_config(options));
    DaemonProcess direct_daemon(options.daemon_path, "memfd", options.server_cpu);
    RawAllocator memfd("memfd", {});
    std::vector<Row> rows;
    {
        bufclient::Client pooled = connect(pooled_daemon);
        bufclient::Client direct = connect(direct_daemon);
        const std::uint64_t full = options.pool_count * options.sizes.size();

        for (const std::uint64_t size : options.sizes) {
            const std::uint64_t aligned = page_align(size);
            const std::string label = size_label(aligned);
            std::vector<std::int64_t> from_direct, from_pool, raw;
            std::size_t pool_hits = 0;
            // Taking turns, so that drift lands on all three alike.
            for (std::size_t i = 0; i < options.iterations; ++i) {
                if (time_allocation(direct, aligned, from_direct))
                    throw BenchError("a daemon without a pool handed out a pool buffer");
                wait_for_pool(pooled, full);
                pool_hits += time_allocation(pooled, aligned, from_pool);
                const auto start = Clock::now();
                UniqueFD fd = allocate_populated_memfd(memfd, aligned);
                raw.push_back(elapsed_ns(start, Clock::now()));
            }
            // Every timed allocation must have been the pool's, else the
            // row measures something else.
            if (pool_hits != options.iterations)
                throw BenchError("only " + std::to_string(pool_hits) + " of " + std::to_string(options.iterations) +
                                 " allocations of " + label + " came from the pool");

            Row raw_row = make_row("raw-populated/" + label, "pool", aligned, raw);
            Row direct_row = make_row("populated/" + label, "pool", aligned, from_direct);
            set_baseline(direct_row, raw_row.name, raw_row.summary.p50_us);
            Row pool_row = make_row("pool/" + label, "pool", aligned, from_pool);
            set_baseline(pool_row, direct_row.name, direct_row.summary.p50_us);
            pool_row.extra["pool_buffers_per_size"] = options.pool_count;
            pool_row.extra["ratio_raw_populated"] = pool_row.summary.p50_us / raw_row.summary.p50_us;
            rows.push_back(std::move(pool_row));
            rows.push_back(std::move(direct_row));
            rows.push_back(std::move(raw_row));
        }
    }
    pooled_daemon.stop();
    direct_daemon.stop();
    return rows;
}

} // namespace ionsvc_bench
