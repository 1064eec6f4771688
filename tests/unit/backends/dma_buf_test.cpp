// SPDX-License-Identifier: MIT
// Naming dma-bufs, and opening device nodes, as the dma-buf backends share.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include <gtest/gtest.h>

#include "backends/dma_buf.h"
#include "fakes/fake_devices.h"
#include "fd_count.h"

namespace ionsvc {
namespace {

using ::testing::_;
using ::testing::NiceMock;
using ::testing::Return;
using testing::NameGiven;

TEST(BufferNames, ThatFitTheKernelLimitAreKeptWhole)
{
    EXPECT_EQ(dma_buf_name("camera:1234"), "camera:1234");
    const std::string longest(kMaxDmaBufNameLength, 'n');
    EXPECT_EQ(dma_buf_name(longest), longest);
}

TEST(BufferNames, AreCutAtACharacterBoundaryToFitTheKernelLimit)
{
    EXPECT_EQ(dma_buf_name(std::string(40, 'n')), std::string(31, 'n'));
    // 30 bytes and a two-byte "é" would end half-way through it at 31.
    EXPECT_EQ(dma_buf_name(std::string(30, 'n') + "é"), std::string(30, 'n'));
    // A three-byte "€" from byte 29 on; a four-byte "🎥" from byte 28 on.
    EXPECT_EQ(dma_buf_name(std::string(29, 'n') + "€"), std::string(29, 'n'));
    EXPECT_EQ(dma_buf_name(std::string(28, 'n') + "🎥x"), std::string(28, 'n'));
    EXPECT_EQ(dma_buf_name(std::string(27, 'n') + "🎥x"), std::string(27, 'n') + "🎥");
    // Every character of a name of nothing but multi-byte characters.
    EXPECT_EQ(dma_buf_name("ééééééééééééééééé"), "ééééééééééééééé");
}

TEST(BufferNames, EndAtTheFirstNulAsTheKernelWouldReadThem)
{
    EXPECT_EQ(dma_buf_name(std::string_view("left\0right", 10)), "left");
}

TEST(BufferNames, ThatAreEmptyBecomeIonsvc)
{
    EXPECT_EQ(dma_buf_name(""), "ionsvc");
    EXPECT_EQ(dma_buf_name(std::string_view("\0x", 2)), "ionsvc");
}

class DmaBufNaming : public ::testing::Test
{
protected:
    NiceMock<testing::MockSyscalls> syscalls_;
    DmaBufNamer namer_{syscalls_, "test"};
};

TEST_F(DmaBufNaming, NamesTheBufferWithSetNameB)
{
    std::vector<NameGiven> names;
    testing::accept_names(syscalls_, &names);
    UniqueFD buffer = testing::stand_in_fd();
    const int number = buffer.get();
    auto named = namer_.name(std::move(buffer), std::string(40, 'n'));
    ASSERT_TRUE(named) << named.error();
    EXPECT_EQ(named->get(), number);
    ASSERT_EQ(names.size(), 1u);
    EXPECT_EQ(names[0].fd, number);
    EXPECT_EQ(names[0].name, std::string(31, 'n'));
}

TEST_F(DmaBufNaming, LeavesBuffersUnnamedOnAKernelWithoutTheIoctlAndStopsAsking)
{
    EXPECT_CALL(syscalls_, ioctl(_, DMA_BUF_SET_NAME_B, _)).WillOnce(Return(-ENOTTY));
    for (int i = 0; i < 3; ++i) {
        auto named = namer_.name(testing::stand_in_fd(), "frame");
        ASSERT_TRUE(named);
        EXPECT_TRUE(named->is_valid());
    }
}

class DmaBufNamingFailure : public DmaBufNaming, public ::testing::WithParamInterface<int>
{
};

TEST_P(DmaBufNamingFailure, FailsTheAllocationAndClosesTheBuffer)
{
    EXPECT_CALL(syscalls_, ioctl(_, DMA_BUF_SET_NAME_B, _)).WillOnce(Return(-GetParam()));
    const std::size_t before = test_support::open_fd_count();
    auto named = namer_.name(testing::stand_in_fd(), "frame");
    ASSERT_FALSE(named);
    EXPECT_EQ(named.error(), -GetParam());
    EXPECT_EQ(test_support::open_fd_count(), before);
}

INSTANTIATE_TEST_SUITE_P(DmaBufNaming, DmaBufNamingFailure, ::testing::Values(EFAULT, ENOMEM, EINVAL, EBUSY));

TEST(DeviceNodes, AreOpenedReadWriteAndCloseOnExec)
{
    NiceMock<testing::MockSyscalls> syscalls;
    const int number = testing::expect_device(syscalls, "/dev/thing");
    auto device = open_device(syscalls, "/dev/thing", "hint");
    ASSERT_TRUE(device) << device.error();
    EXPECT_EQ(device->get(), number);
}

TEST(DeviceNodes, SayWhyTheyDoNotOpenHintingOnlyWhenTheyOrTheirDriverAreAbsent)
{
    NiceMock<testing::MockSyscalls> syscalls;
    for (const int error : {ENOENT, ENODEV, ENXIO, EACCES, EMFILE, EIO}) {
        const bool absent = error == ENOENT || error == ENODEV || error == ENXIO;
        EXPECT_CALL(syscalls, open(_, _)).WillOnce(Return(Unexpected{-error}));
        auto device = open_device(syscalls, "/dev/thing", "module thing not loaded?");
        ASSERT_FALSE(device);
        EXPECT_EQ(device.error(), std::string("/dev/thing: ") + std::strerror(error) +
                                      (absent ? " (module thing not loaded?)" : ""));
    }
}

TEST(ReferenceCounts, AreReadFromTheCountLineOfADmaBufsFdinfo)
{
    // As drivers/dma-buf/dma-buf.c prints it after the generic lines.
    EXPECT_EQ(fdinfo_count("pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1045\nsize:\t4096\n"
                           "count:\t3\nexp_name:\tion_simple\nname:\tcamera:1234\n")
                  .value(),
              3);
    EXPECT_EQ(fdinfo_count("count:\t1").value(), 1) << "no newline at the end";
    EXPECT_EQ(fdinfo_count("count: 17\n").value(), 17);
}

TEST(ReferenceCounts, AreMissingFromFdinfoWithoutAUsableCountLine)
{
    // A memfd's fdinfo: no count.
    EXPECT_EQ(fdinfo_count("pos:\t0\nflags:\t0100002\nmnt_id:\t15\nino:\t7\nseals:\t0\n").error(), -ENODATA);
    EXPECT_EQ(fdinfo_count("").error(), -ENODATA);
    EXPECT_EQ(fdinfo_count("count:\t\n").error(), -ENODATA);
    EXPECT_EQ(fdinfo_count("count:\t3x\n").error(), -ENODATA);
    // A buffer name that looks like a count is not one.
    EXPECT_EQ(fdinfo_count("name:\tcount:\t5\n").error(), -ENODATA);
}

TEST(ReferenceCounts, OfAFileThatIsNoDmaBufAreNoData)
{
    // The real /proc/self/fdinfo of a memfd.
    const UniqueFD memfd{::memfd_create("not-a-dma-buf", MFD_CLOEXEC)};
    ASSERT_TRUE(memfd);
    EXPECT_EQ(dma_buf_reference_count(real_syscalls(), memfd.get()).error(), -ENODATA);
}

TEST(ReferenceCounts, OfAClosedFdAreItsErrno)
{
    int fd = ::eventfd(0, EFD_CLOEXEC);
    ::close(fd);
    EXPECT_EQ(dma_buf_reference_count(real_syscalls(), fd).error(), -ENOENT);
}

TEST(ReferenceCounts, PassOnAFailureToReadFdinfo)
{
    NiceMock<testing::MockSyscalls> syscalls;
    EXPECT_CALL(syscalls, read_fdinfo(7, _)).WillOnce(Return(Expected<std::size_t, int>{Unexpected{-EMFILE}}));
    EXPECT_EQ(dma_buf_reference_count(syscalls, 7).error(), -EMFILE);
}

} // namespace
} // namespace ionsvc
