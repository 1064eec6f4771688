// SPDX-License-Identifier: MIT
// Many allocations, in a row and at once: everything comes back.
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "vm_helpers.h"

namespace ionsvc::vmtest {
namespace {

::testing::AssertionResult every_heap_is_empty()
{
    for (const Heap &heap : kAllHeaps) {
        const HeapView view = read_heap_view(heap);
        if (!view.parsed)
            return ::testing::AssertionFailure() << view.error << "\n" << view.text;
        if (view.total != 0 || !view.clients.empty() || !view.orphans.empty())
            return ::testing::AssertionFailure() << heap.name << " is not empty:\n" << view.text;
    }
    return ::testing::AssertionSuccess();
}

class Hygiene : public IonVmTest
{
};

TEST_F(Hygiene, AThousandAllocateCloseCyclesLeaveEveryHeapEmpty)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    constexpr std::uint64_t kLengths[] = {4 * KiB, 64 * KiB, 5000, 1 * MiB};
    for (int cycle = 0; cycle < 1000; ++cycle) {
        const Heap &heap = kAllHeaps[cycle % 3];
        const std::uint64_t len = kLengths[(cycle / 3) % 4];
        const std::uint32_t flags = cycle % 2 == 0 ? 0u : std::uint32_t{ION_FLAG_CACHED};
        AllocationResult buffer = allocate(ion.fd.get(), len, mask_of(heap), flags);
        ASSERT_EQ(buffer.error, kSuccess) << "cycle " << cycle << ", " << heap.name << ", len "
                                          << len;
    }
    EXPECT_TRUE(every_heap_is_empty());
    const ClientView client = read_client_view(::getpid(), 0);
    ASSERT_TRUE(is_parsed(client));
    EXPECT_TRUE(client.rows.empty()) << client.text;
}

// Collects failures from worker threads for the main thread to report.
class Failures
{
public:
    void add(std::string what)
    {
        const std::lock_guard lock(mutex_);
        if (count_++ == 0)
            first_ = std::move(what);
    }
    int count() const
    {
        const std::lock_guard lock(mutex_);
        return count_;
    }
    std::string first() const
    {
        const std::lock_guard lock(mutex_);
        return first_;
    }

private:
    mutable std::mutex mutex_;
    int count_ = 0;
    std::string first_;
};

TEST_F(Hygiene, EightThreadsAllocatingAndClosingAtOnceAllSucceedAndLeaveNothingBehind)
{
    constexpr int kThreads = 8;
    constexpr int kRounds = 300;
    auto shared = open_ion();
    ASSERT_EQ(shared.error, kSuccess);
    Failures failures;
    std::atomic<int> finished{0};

    // Even threads share one client, odd ones open their own: both the
    // per-client and the per-device paths run concurrently.
    std::vector<std::thread> workers;
    for (int t = 0; t < kThreads; ++t) {
        workers.emplace_back([&, t] {
            Opened own;
            int ion = shared.fd.get();
            if (t % 2 == 1) {
                own = open_ion();
                if (own.error != kSuccess) {
                    failures.add("thread " + std::to_string(t) + ": open: " +
                                 to_string(own.error));
                    ++finished;
                    return;
                }
                ion = own.fd.get();
            }
            for (int round = 0; round < kRounds; ++round) {
                const Heap &heap = kAllHeaps[(t + round) % 3];
                const std::uint64_t len = kPageSize << (round % 5);
                AllocationResult buffer = allocate(ion, len, mask_of(heap));
                if (buffer.error != kSuccess) {
                    failures.add("thread " + std::to_string(t) + " round " +
                                 std::to_string(round) + ", " + std::string{heap.name} + ": " +
                                 to_string(buffer.error));
                    continue;
                }
                if (dma_buf_size(buffer.fd.get()) != static_cast<off_t>(len))
                    failures.add("thread " + std::to_string(t) + ": wrong size");
            }
            ++finished;
        });
    }

    // Meanwhile the debugfs views must stay well formed. Client files may
    // vanish between listing and reading (ENOENT, or EIO once removed).
    std::thread reader([&] {
        int passes = 0;
        while (finished.load() < kThreads || passes == 0) {
            ++passes;
            for (const Heap &heap : kAllHeaps) {
                const HeapView view = read_heap_view(heap);
                if (!view.parsed)
                    failures.add("while allocating: " + view.error + "\n" + view.text);
            }
            const std::string clients = std::string{kDebugfsIon} + "/clients/";
            for (const auto &name : list_directory(clients)) {
                FileText file = read_text_file(clients + name);
                if (file.error == Errno{ENOENT} || file.error == Errno{EIO})
                    continue;
                if (file.error != kSuccess) {
                    failures.add("while allocating, client " + name + ": " +
                                 to_string(file.error));
                    continue;
                }
                const ClientView view = parse_client_view(std::move(file.text));
                if (!view.parsed)
                    failures.add("while allocating, client " + name + ": " + view.error + "\n" +
                                 view.text);
            }
        }
    });

    for (auto &worker : workers)
        worker.join();
    reader.join();
    EXPECT_EQ(failures.count(), 0) << "first: " << failures.first();
    EXPECT_TRUE(every_heap_is_empty());
}

} // namespace
} // namespace ionsvc::vmtest
