// SPDX-License-Identifier: MIT
// The warm pool on the real memfd heap: its refill thread, its memory
// check (MemAvailable through the syscall seam), reconfiguration, and
// failures to make a buffer.
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <iterator>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "fd_count.h"
#include "harness.h"
#include "backends/memfd.h"
#include "fakes/mock_syscalls.h"
#include "books/warm_pool.h"

namespace ionsvc {
namespace {

using ::testing::_;
using ::testing::HasSubstr;
using ::testing::NiceMock;
using ::testing::Return;
using ::testing::StrEq;
using ionsvc::testing::eventually;

constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::uint64_t kGiB = 1ull << 30;

std::vector<std::unique_ptr<Backend>> memfd_only(Syscalls &syscalls)
{
    std::vector<std::unique_ptr<Backend>> backends;
    backends.push_back(make_memfd_backend(syscalls));
    return backends;
}

PoolConfig pool_of(std::vector<std::pair<std::uint64_t, std::uint32_t>> classes,
                   std::uint64_t min_available = 0)
{
    PoolConfig config;
    config.min_available = min_available;
    for (const auto &[size, count] : classes)
        config.classes.push_back({"memfd", size, count, fmt::format("pool.heaps.memfd.{}", size)});
    return config;
}

struct stat stat_of(int fd)
{
    struct stat status{};
    EXPECT_EQ(::fstat(fd, &status), 0) << std::strerror(errno);
    return status;
}

class WarmPoolTest : public ::testing::Test
{
protected:
    WarmPoolTest() : allocator_(memfd_only(syscalls_))
    {
        // MemAvailable as the test says, not as the machine has it.
        ON_CALL(syscalls_, read_text(StrEq("/proc/meminfo"))).WillByDefault([this](const char *) {
            return Expected<std::string, int>{
                fmt::format("MemTotal:       {} kB\nMemFree:        1 kB\nMemAvailable:   {} kB\n",
                            64 * kGiB / 1024, available_.load() / 1024)};
        });
    }

    bool level_is(std::uint64_t buffers, std::uint64_t bytes)
    {
        return eventually([&] {
            const WarmPool::Level level = pool_.level(0);
            return level.buffers == buffers && level.bytes == bytes;
        });
    }

    std::atomic<std::uint64_t> available_{8 * kGiB};
    NiceMock<testing::MockSyscalls> syscalls_;
    Allocator allocator_;
    WarmPool pool_{allocator_, syscalls_};
};

std::size_t thread_count()
{
    return static_cast<std::size_t>(std::distance(std::filesystem::directory_iterator("/proc/self/task"),
                                                  std::filesystem::directory_iterator{}));
}

TEST_F(WarmPoolTest, NoRefillThreadRunsUntilAClassIsPooled)
{
    const std::size_t before = thread_count();
    EXPECT_TRUE(pool_.configure(pool_of({})).empty());
    EXPECT_FALSE(pool_.take(0, kMiB));
    EXPECT_EQ(thread_count(), before);

    EXPECT_TRUE(pool_.configure(pool_of({{kMiB, 1}})).empty());
    EXPECT_EQ(thread_count(), before + 1);
    ASSERT_TRUE(level_is(1, kMiB));
    EXPECT_TRUE(pool_.take(0, kMiB));
}

TEST_F(WarmPoolTest, FillsEachSizeClassToItsCountWithPopulatedZeroedBuffers)
{
    EXPECT_TRUE(pool_.configure(pool_of({{kMiB, 3}, {64 * 1024, 2}})).empty());
    ASSERT_TRUE(level_is(5, 3 * kMiB + 2 * 64 * 1024));

    const UniqueFD fd = pool_.take(0, kMiB);
    ASSERT_TRUE(fd);
    const struct stat status = stat_of(fd.get());
    EXPECT_EQ(status.st_size, static_cast<off_t>(kMiB));
    // Backed already: st_blocks counts 512-byte units of pages present.
    EXPECT_GE(static_cast<std::uint64_t>(status.st_blocks) * 512, kMiB);

    void *memory = ::mmap(nullptr, kMiB, PROT_READ, MAP_SHARED, fd.get(), 0);
    ASSERT_NE(memory, MAP_FAILED);
    const auto *bytes = static_cast<const unsigned char *>(memory);
    EXPECT_EQ(std::count(bytes, bytes + kMiB, 0), static_cast<std::ptrdiff_t>(kMiB));
    ::munmap(memory, kMiB);
}

TEST_F(WarmPoolTest, GivesNothingForASizeOrHeapItDoesNotPool)
{
    pool_.configure(pool_of({{kMiB, 1}}));
    ASSERT_TRUE(level_is(1, kMiB));
    EXPECT_FALSE(pool_.take(0, 2 * kMiB));
    EXPECT_FALSE(pool_.take(1, kMiB));
    EXPECT_EQ(pool_.level(0).buffers, 1u);
}

TEST_F(WarmPoolTest, RefillsAfterATakeWithANewBufferNotTheOneTaken)
{
    pool_.configure(pool_of({{kMiB, 1}}));
    ASSERT_TRUE(level_is(1, kMiB));
    const UniqueFD first = pool_.take(0, kMiB);
    ASSERT_TRUE(first);

    ASSERT_TRUE(level_is(1, kMiB));
    const UniqueFD second = pool_.take(0, kMiB);
    ASSERT_TRUE(second);
    EXPECT_NE(stat_of(first.get()).st_ino, stat_of(second.get()).st_ino);
}

TEST_F(WarmPoolTest, GivesItsMemoryBackWhenMemAvailableFallsBelowTheThresholdAndRefillsWhenItIsBack)
{
    pool_.configure(pool_of({{kMiB, 4}}, 256 * kMiB));
    ASSERT_TRUE(level_is(4, 4 * kMiB));

    available_ = 100 * kMiB;
    ASSERT_TRUE(level_is(0, 0));
    EXPECT_FALSE(pool_.take(0, kMiB));

    // Room for the threshold and the whole pool above it.
    available_ = 8 * kGiB;
    EXPECT_TRUE(level_is(4, 4 * kMiB));
}

TEST_F(WarmPoolTest, StaysEmptyWhileMemAvailableIsBelowTheThreshold)
{
    available_ = 100 * kMiB;
    pool_.configure(pool_of({{kMiB, 2}}, 256 * kMiB));
    // A take wakes the refill thread, which looks at memory and makes nothing.
    EXPECT_FALSE(pool_.take(0, kMiB));
    // Reconfiguring wakes it too; the new class is just as empty.
    pool_.configure(pool_of({{kMiB, 3}}, 256 * kMiB));
    EXPECT_FALSE(pool_.take(0, kMiB));
    EXPECT_EQ(pool_.level(0).buffers, 0u);
    // And it did look: the threshold was what kept it empty.
    available_ = 8 * kGiB;
    EXPECT_TRUE(level_is(3, 3 * kMiB));
}

TEST_F(WarmPoolTest, ReconfiguringKeepsTheBuffersOfClassesItKeepsAndReleasesTheRest)
{
    pool_.configure(pool_of({{kMiB, 2}, {2 * kMiB, 2}}));
    ASSERT_TRUE(level_is(4, 6 * kMiB));
    const std::size_t fds_before = test_support::open_fd_count(::getpid());

    EXPECT_TRUE(pool_.configure(pool_of({{kMiB, 1}})).empty());
    EXPECT_EQ(pool_.level(0).buffers, 1u);
    EXPECT_EQ(pool_.level(0).bytes, kMiB);
    EXPECT_EQ(test_support::open_fd_count(::getpid()), fds_before - 3);
    EXPECT_FALSE(pool_.take(0, 2 * kMiB));

    pool_.configure(PoolConfig{});
    EXPECT_EQ(pool_.level(0).buffers, 0u);
    EXPECT_EQ(test_support::open_fd_count(::getpid()), fds_before - 4);
}

TEST_F(WarmPoolTest, AClassWhoseBuffersCannotBeMadeDoesNotStopTheOthers)
{
    // Backing 2 MiB fails, 1 MiB works.
    ON_CALL(syscalls_, fallocate(_, static_cast<off_t>(2 * kMiB))).WillByDefault(Return(-ENOSPC));
    pool_.configure(pool_of({{2 * kMiB, 2}, {kMiB, 2}}));
    ASSERT_TRUE(level_is(2, 2 * kMiB));
    EXPECT_FALSE(pool_.take(0, 2 * kMiB));
    EXPECT_TRUE(pool_.take(0, kMiB));
}

TEST_F(WarmPoolTest, NamesEachClassItCannotServeAndWhy)
{
    PoolConfig config = pool_of({{kMiB, 1}});
    config.classes.push_back({"dma-heap:system", kMiB, 2, "pool.heaps.dma-heap:system.1M"});
    const auto warnings = pool_.configure(config);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_THAT(warnings[0], HasSubstr("pool.heaps.dma-heap:system.1M: this daemon serves no heap "
                                       "'dma-heap:system'"));
    EXPECT_THAT(warnings[0], HasSubstr("memfd"));
    EXPECT_TRUE(level_is(1, kMiB));
}

TEST_F(WarmPoolTest, RoundsAClassUpToWholePages)
{
    pool_.configure(pool_of({{1000, 1}}));
    const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    ASSERT_TRUE(level_is(1, page));
    EXPECT_TRUE(pool_.take(0, page));
}

TEST(MeminfoAvailable, ReadsMemAvailableInBytes)
{
    const auto available =
        meminfo_available("MemTotal:       16303400 kB\nMemFree:  1 kB\nMemAvailable:   12345 kB\n");
    ASSERT_TRUE(available);
    EXPECT_EQ(*available, 12345ull * 1024);
}

TEST(MeminfoAvailable, IsNoDataWithoutTheLineOrWithAnOddOne)
{
    EXPECT_EQ(meminfo_available("MemTotal: 1 kB\n").error(), -ENODATA);
    EXPECT_EQ(meminfo_available("MemAvailable: lots\n").error(), -ENODATA);
    EXPECT_EQ(meminfo_available("MemAvailable: 12 MB\n").error(), -ENODATA);
    EXPECT_EQ(meminfo_available("").error(), -ENODATA);
}

} // namespace
} // namespace ionsvc
