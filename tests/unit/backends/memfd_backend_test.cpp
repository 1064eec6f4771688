// SPDX-License-Identifier: MIT
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "fd_count.h"
#include "backends/memfd.h"
#include "fakes/mock_syscalls.h"

namespace ionsvc {
namespace {

using ::testing::_;
using ::testing::NiceMock;
using ::testing::Return;

constexpr std::uint64_t kSize = 64 * 1024;

Heap &only_heap(Backend &backend)
{
    auto heaps = backend.heaps();
    EXPECT_EQ(heaps.size(), 1u);
    return *heaps.front();
}

TEST(MemfdBackend, ServesOneSystemHeapCalledMemfd)
{
    auto backend = make_memfd_backend(real_syscalls());
    EXPECT_EQ(backend->name(), "memfd");
    Heap &heap = only_heap(*backend);
    EXPECT_EQ(heap.name(), "memfd");
    EXPECT_EQ(heap.type(), "system");
}

TEST(MemfdBackend, AllocatesAMemfdOfTheSizeAskedFor)
{
    auto backend = make_memfd_backend(real_syscalls());
    auto fd = only_heap(*backend).allocate(kSize, 0, "frame");
    ASSERT_TRUE(fd) << fd.error();
    struct stat status{};
    ASSERT_EQ(::fstat(fd->get(), &status), 0);
    EXPECT_EQ(status.st_size, static_cast<off_t>(kSize));
}

TEST(MemfdBackend, SealsTheBufferAgainstShrinkGrowAndUnsealing)
{
    auto backend = make_memfd_backend(real_syscalls());
    auto fd = only_heap(*backend).allocate(kSize, 0, "frame");
    ASSERT_TRUE(fd);
    EXPECT_EQ(::fcntl(fd->get(), F_GET_SEALS), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    EXPECT_LT(::ftruncate(fd->get(), kSize / 2), 0);
    EXPECT_LT(::ftruncate(fd->get(), kSize * 2), 0);
}

TEST(MemfdBackend, NamesTheMemfdAfterTheBufferAndMakesItCloseOnExec)
{
    auto backend = make_memfd_backend(real_syscalls());
    auto fd = only_heap(*backend).allocate(kSize, 0, "camera-frame-7");
    ASSERT_TRUE(fd);
    const auto target = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd->get()));
    EXPECT_EQ(target.string().rfind("/memfd:camera-frame-7", 0), 0u) << target;
    EXPECT_EQ(::fcntl(fd->get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
}

TEST(MemfdBackend, TheMemoryIsSharedBetweenMappingsOfTheFd)
{
    auto backend = make_memfd_backend(real_syscalls());
    auto fd = only_heap(*backend).allocate(kSize, 0, "shared");
    ASSERT_TRUE(fd);
    void *first = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd->get(), 0);
    void *second = ::mmap(nullptr, kSize, PROT_READ, MAP_SHARED, fd->get(), 0);
    ASSERT_NE(first, MAP_FAILED);
    ASSERT_NE(second, MAP_FAILED);
    static_cast<unsigned char *>(first)[kSize - 1] = 0x5a;
    EXPECT_EQ(static_cast<unsigned char *>(second)[kSize - 1], 0x5a);
    ::munmap(first, kSize);
    ::munmap(second, kSize);
}

TEST(MemfdBackend, AZeroSizeIsRefusedWithEinval)
{
    auto backend = make_memfd_backend(real_syscalls());
    auto fd = only_heap(*backend).allocate(0, 0, "empty");
    ASSERT_FALSE(fd);
    EXPECT_EQ(fd.error(), -EINVAL);
}

// Failures the kernel gives only under pressure, injected.
class MemfdCreateFailure : public ::testing::TestWithParam<int>
{
};

TEST_P(MemfdCreateFailure, IsReportedAsItsNegativeErrno)
{
    NiceMock<testing::MockSyscalls> syscalls;
    EXPECT_CALL(syscalls, memfd_create(_, _)).WillOnce(Return(Unexpected{-GetParam()}));
    auto backend = make_memfd_backend(syscalls);
    auto fd = only_heap(*backend).allocate(kSize, 0, "x");
    ASSERT_FALSE(fd);
    EXPECT_EQ(fd.error(), -GetParam());
}

INSTANTIATE_TEST_SUITE_P(MemfdBackend, MemfdCreateFailure, ::testing::Values(ENOMEM, EMFILE, ENFILE));

// An allocation through syscalls fails with error and leaves no fd open.
void expect_failure_without_leak(Syscalls &syscalls, int error)
{
    auto backend = make_memfd_backend(syscalls);
    const std::size_t before = test_support::open_fd_count();
    auto fd = only_heap(*backend).allocate(kSize, 0, "x");
    ASSERT_FALSE(fd);
    EXPECT_EQ(fd.error(), error);
    EXPECT_EQ(test_support::open_fd_count(), before);
}

TEST(MemfdBackend, AFailedFtruncateClosesTheMemfdItCreated)
{
    NiceMock<testing::MockSyscalls> syscalls;
    EXPECT_CALL(syscalls, ftruncate(_, _)).WillOnce(Return(-ENOSPC));
    expect_failure_without_leak(syscalls, -ENOSPC);
}

TEST(MemfdBackend, AFailedSealClosesTheMemfdItCreated)
{
    NiceMock<testing::MockSyscalls> syscalls;
    EXPECT_CALL(syscalls, add_seals(_, _)).WillOnce(Return(-EPERM));
    expect_failure_without_leak(syscalls, -EPERM);
}

} // namespace
} // namespace ionsvc
