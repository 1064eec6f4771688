// SPDX-License-Identifier: MIT
// The dma-heap backend against mocked heap nodes: this host has no
// /dev/dma_heap.
#include <fcntl.h>
#include <linux/dma-heap.h>

#include <cstring>
#include <map>

#include <gtest/gtest.h>

#include "backends/dma_heap.h"
#include "fakes/fake_devices.h"
#include "fd_count.h"

namespace ionsvc {
namespace {

using ::testing::_;
using ::testing::Contains;
using ::testing::Not;
using ::testing::NiceMock;
using ::testing::Return;
using ::testing::StrEq;
using testing::NameGiven;

constexpr std::uint64_t kSize = 64 * 1024;

class DmaHeapBackend : public ::testing::Test
{
protected:
    DmaHeapBackend() { testing::accept_names(syscalls_, &names_); }

    // directory lists nodes.
    void list(const std::string &directory, std::vector<std::string> nodes)
    {
        EXPECT_CALL(syscalls_, list_char_devices(StrEq(directory))).WillOnce(Return(nodes));
    }

    // The backend on directory with the nodes, each of which opens; the
    // test fails without one.
    std::unique_ptr<Backend> open_with(const std::vector<std::string> &nodes,
                                       const std::string &directory = "/dev/dma_heap")
    {
        list(directory, nodes);
        for (const std::string &node : nodes)
            devices_[node] = testing::expect_device(syscalls_, directory + "/" + node);
        auto backend = open_dma_heap_backend(syscalls_, directory);
        EXPECT_TRUE(backend) << backend.error();
        return backend ? std::move(*backend) : nullptr;
    }

    std::string why_not()
    {
        auto backend = open_dma_heap_backend(syscalls_);
        EXPECT_FALSE(backend);
        return backend ? "" : backend.error();
    }

    NiceMock<testing::MockSyscalls> syscalls_;
    std::map<std::string, int> devices_;
    std::vector<NameGiven> names_;
};

std::vector<std::string> names_of(Backend &backend)
{
    std::vector<std::string> names;
    for (const Heap *heap : backend.heaps())
        names.emplace_back(heap->name());
    return names;
}

TEST_F(DmaHeapBackend, ServesEveryNodeInTheDirectory)
{
    auto backend = open_with({"system", "linux,cma", "reserved"});
    ASSERT_TRUE(backend);
    EXPECT_EQ(backend->name(), "dma-heap");
    // In the order of their names, whatever order the directory has.
    EXPECT_EQ(names_of(*backend),
              (std::vector<std::string>{"dma-heap:linux,cma", "dma-heap:reserved", "dma-heap:system"}));
}

TEST_F(DmaHeapBackend, TypesHeapsAsIonTypesWhereTheNameSaysWhichMemory)
{
    auto backend = open_with({"system", "system-uncached", "linux,cma", "secure_video"});
    ASSERT_TRUE(backend);
    std::map<std::string, std::string> types;
    for (const Heap *heap : backend->heaps())
        types[std::string(heap->name())] = heap->type();
    EXPECT_EQ(types["dma-heap:system"], "system");
    EXPECT_EQ(types["dma-heap:system-uncached"], "system");
    EXPECT_EQ(types["dma-heap:linux,cma"], "dma");
    EXPECT_EQ(types["dma-heap:secure_video"], "unknown");
}

TEST_F(DmaHeapBackend, ScansTheDirectoryItIsGiven)
{
    auto backend = open_with({"system"}, "/run/test-heaps");
    ASSERT_TRUE(backend);
    EXPECT_EQ(names_of(*backend), std::vector<std::string>{"dma-heap:system"});
}

TEST_F(DmaHeapBackend, AllocatesFromTheNodeOfTheHeapReadWriteCloseOnExecWithoutHeapFlags)
{
    auto backend = open_with({"linux,cma", "system"});
    ASSERT_TRUE(backend);
    int made = -1;
    dma_heap_allocation_data seen{};
    EXPECT_CALL(syscalls_, ioctl(devices_["system"], DMA_HEAP_IOCTL_ALLOC, _))
        .WillOnce(testing::hand_out_dma_buf<dma_heap_allocation_data>(&made, &seen));
    auto fd = backend->heaps()[1]->allocate(kSize, 1, "frame");
    ASSERT_TRUE(fd) << fd.error();
    EXPECT_EQ(fd->get(), made);
    EXPECT_EQ(seen.len, kSize);
    EXPECT_EQ(seen.fd_flags, static_cast<std::uint32_t>(O_RDWR | O_CLOEXEC));
    EXPECT_EQ(seen.heap_flags, 0u);
}

TEST_F(DmaHeapBackend, NamesEachBufferItHandsOut)
{
    auto backend = open_with({"system"});
    ASSERT_TRUE(backend);
    int made = -1;
    EXPECT_CALL(syscalls_, ioctl(devices_["system"], DMA_HEAP_IOCTL_ALLOC, _))
        .WillOnce(testing::hand_out_dma_buf<dma_heap_allocation_data>(&made));
    ASSERT_TRUE(backend->heaps()[0]->allocate(kSize, 0, "preview"));
    testing::expect_one_name(names_, made, "preview");
}

class DmaHeapAllocFailure : public DmaHeapBackend, public ::testing::WithParamInterface<int>
{
};

TEST_P(DmaHeapAllocFailure, IsReturnedAsItsNegativeErrnoAndLeavesNoFd)
{
    auto backend = open_with({"system"});
    ASSERT_TRUE(backend);
    EXPECT_CALL(syscalls_, ioctl(devices_["system"], DMA_HEAP_IOCTL_ALLOC, _)).WillOnce(Return(-GetParam()));
    testing::expect_failure_without_leak(*backend->heaps()[0], -GetParam());
}

INSTANTIATE_TEST_SUITE_P(DmaHeapBackend, DmaHeapAllocFailure,
                         ::testing::Values(ENOMEM, EMFILE, EIO, ENODEV, EFAULT, EINVAL));

TEST_F(DmaHeapBackend, WithoutTheDirectoryTheKernelHasNoDmaBufHeaps)
{
    EXPECT_CALL(syscalls_, list_char_devices(StrEq("/dev/dma_heap"))).WillOnce(Return(Unexpected{-ENOENT}));
    EXPECT_EQ(why_not(), "/dev/dma_heap does not exist (kernel without CONFIG_DMABUF_HEAPS)");
}

TEST_F(DmaHeapBackend, ADirectoryThatCannotBeReadSaysWhy)
{
    EXPECT_CALL(syscalls_, list_char_devices(_)).WillOnce(Return(Unexpected{-EACCES}));
    EXPECT_EQ(why_not(), "/dev/dma_heap: Permission denied");
}

TEST_F(DmaHeapBackend, AnEmptyDirectoryIsNoBackend)
{
    list("/dev/dma_heap", {});
    EXPECT_EQ(why_not(), "/dev/dma_heap has no heaps");
}

TEST_F(DmaHeapBackend, ANodeThatCannotBeOpenedIsLeftOut)
{
    list("/dev/dma_heap", {"system", "linux,cma"});
    EXPECT_CALL(syscalls_, open(StrEq("/dev/dma_heap/linux,cma"), _)).WillOnce(Return(Unexpected{-EACCES}));
    testing::expect_device(syscalls_, "/dev/dma_heap/system");
    auto backend = open_dma_heap_backend(syscalls_);
    ASSERT_TRUE(backend);
    EXPECT_EQ(names_of(**backend), std::vector<std::string>{"dma-heap:system"});
}

class DmaHeapOpenFailure : public DmaHeapBackend, public ::testing::WithParamInterface<int>
{
};

TEST_P(DmaHeapOpenFailure, OfEveryNodeIsNoBackendAndLeavesNoFd)
{
    list("/dev/dma_heap", {"system", "linux,cma"});
    EXPECT_CALL(syscalls_, open(StrEq("/dev/dma_heap/system"), _)).WillOnce(Return(Unexpected{-EIO}));
    EXPECT_CALL(syscalls_, open(StrEq("/dev/dma_heap/linux,cma"), _))
        .WillOnce(Return(Unexpected{-GetParam()}));
    const std::size_t before = test_support::open_fd_count();
    EXPECT_EQ(why_not(), std::string("/dev/dma_heap/linux,cma: ") + std::strerror(GetParam()) +
                             (GetParam() == EACCES ? "" : " (removed while starting?)") +
                             "; /dev/dma_heap/system: Input/output error");
    EXPECT_EQ(test_support::open_fd_count(), before);
}

INSTANTIATE_TEST_SUITE_P(DmaHeapBackend, DmaHeapOpenFailure, ::testing::Values(EACCES, ENODEV));

// The one part of the seam a real kernel can run here.
TEST(KernelSyscalls, ListCharacterDevicesAndNothingElse)
{
    auto nodes = real_syscalls().list_char_devices("/dev");
    ASSERT_TRUE(nodes) << nodes.error();
    EXPECT_THAT(*nodes, Contains("null"));
    EXPECT_THAT(*nodes, Contains("zero"));
    EXPECT_THAT(*nodes, Not(Contains("pts"))); // a directory
    EXPECT_THAT(*nodes, Not(Contains("fd")));  // a symbolic link

    auto missing = real_syscalls().list_char_devices("/nonexistent/dma_heap");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error(), -ENOENT);
}

} // namespace
} // namespace ionsvc
