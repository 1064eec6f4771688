// SPDX-License-Identifier: MIT
// The udmabuf backend with a mocked /dev/udmabuf (this host has none) over
// real memfds.
#include <fcntl.h>
#include <linux/memfd.h>
#include <linux/udmabuf.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cstring>
#include <optional>

#include <gtest/gtest.h>

#include <ionsvc/protocol.h>

#include "fakes/fake_devices.h"
#include "fd_count.h"
#include "protocol/service.h"
#include "backends/udmabuf.h"

namespace ionsvc {
namespace {

using ::testing::_;
using ::testing::InSequence;
using ::testing::NiceMock;
using ::testing::Return;
using ::testing::StrEq;
using testing::expect_failure_without_leak;
using testing::NameGiven;

constexpr std::uint64_t kSize = 64 * 1024;

// What UDMABUF_CREATE was given, and the memfd as the kernel saw it then.
struct CreateSeen
{
    udmabuf_create request{};
    int seals = -1;
    off_t memfd_size = -1;
};

class UdmabufBackend : public ::testing::Test
{
protected:
    UdmabufBackend() { testing::accept_names(syscalls_, &names_); }

    Heap &open_heap()
    {
        device_ = testing::expect_device(syscalls_, "/dev/udmabuf");
        auto backend = open_udmabuf_backend(syscalls_);
        EXPECT_TRUE(backend) << backend.error();
        backend_ = std::move(*backend);
        const auto heaps = backend_->heaps();
        EXPECT_EQ(heaps.size(), 1u);
        return *heaps.front();
    }

    // UDMABUF_CREATE makes a stand-in dma-buf, returned as its result as
    // the kernel does, after noting what it was given.
    void create_buffers(CreateSeen *seen = nullptr, int *made = nullptr)
    {
        EXPECT_CALL(syscalls_, ioctl(device_, UDMABUF_CREATE, _))
            .WillRepeatedly([seen, made](int, unsigned long, void *arg) {
                const auto &request = *static_cast<const udmabuf_create *>(arg);
                if (seen) {
                    seen->request = request;
                    const int memfd = static_cast<int>(request.memfd);
                    seen->seals = ::fcntl(memfd, F_GET_SEALS);
                    struct stat status{};
                    if (::fstat(memfd, &status) == 0)
                        seen->memfd_size = status.st_size;
                }
                const int fd = testing::stand_in_fd().release();
                if (made)
                    *made = fd;
                return fd;
            });
    }

    NiceMock<testing::MockSyscalls> syscalls_;
    int device_ = -1;
    std::unique_ptr<Backend> backend_;
    std::vector<NameGiven> names_;
};

TEST_F(UdmabufBackend, ServesOneSystemHeapCalledUdmabuf)
{
    Heap &heap = open_heap();
    EXPECT_EQ(backend_->name(), "udmabuf");
    EXPECT_EQ(heap.name(), "udmabuf");
    EXPECT_EQ(heap.type(), "system");
}

TEST_F(UdmabufBackend, OpensTheDeviceOnceForAllItsBuffers)
{
    Heap &heap = open_heap();
    create_buffers();
    EXPECT_CALL(syscalls_, open(_, _)).Times(0);
    EXPECT_TRUE(heap.allocate(kSize, 0, "a"));
    EXPECT_TRUE(heap.allocate(kSize, 0, "b"));
}

TEST_F(UdmabufBackend, SealsTheMemfdAgainstShrinkingBeforeCreatingTheBuffer)
{
    Heap &heap = open_heap();
    CreateSeen seen;
    int memfd = -1;
    {
        InSequence in_order;
        EXPECT_CALL(syscalls_, memfd_create(_, MFD_CLOEXEC | MFD_ALLOW_SEALING))
            .WillOnce([&](const char *name, unsigned int flags) {
                auto fd = real_syscalls().memfd_create(name, flags);
                memfd = fd ? fd->get() : -1;
                return fd;
            });
        EXPECT_CALL(syscalls_, ftruncate(_, static_cast<off_t>(kSize)));
        EXPECT_CALL(syscalls_, add_seals(_, _));
        create_buffers(&seen);
    }
    ASSERT_TRUE(heap.allocate(kSize, 0, "frame"));

    EXPECT_EQ(static_cast<int>(seen.request.memfd), memfd);
    EXPECT_EQ(seen.memfd_size, static_cast<off_t>(kSize));
    // udmabuf insists on SHRINK and refuses WRITE.
    EXPECT_EQ(seen.seals & F_SEAL_SHRINK, F_SEAL_SHRINK);
    EXPECT_EQ(seen.seals & F_SEAL_WRITE, 0);
}

TEST_F(UdmabufBackend, AsksForTheWholeMemfdAsACloseOnExecBuffer)
{
    Heap &heap = open_heap();
    CreateSeen seen;
    create_buffers(&seen);
    ASSERT_TRUE(heap.allocate(kSize, 0, "frame"));
    EXPECT_EQ(seen.request.flags, static_cast<std::uint32_t>(UDMABUF_FLAGS_CLOEXEC));
    EXPECT_EQ(seen.request.offset, 0u);
    EXPECT_EQ(seen.request.size, kSize);
}

TEST_F(UdmabufBackend, HandsOutTheBufferNamedAndClosesTheMemfd)
{
    Heap &heap = open_heap();
    int made = -1;
    create_buffers(nullptr, &made);
    const std::size_t before = test_support::open_fd_count();
    auto fd = heap.allocate(kSize, 0, "camera:1234");
    ASSERT_TRUE(fd) << fd.error();
    EXPECT_EQ(fd->get(), made);
    EXPECT_EQ(test_support::open_fd_count(), before + 1);
    testing::expect_one_name(names_, made, "camera:1234");
}

TEST_F(UdmabufBackend, KnowsTheModulesSizeLimitFromItsParameter)
{
    EXPECT_CALL(syscalls_, read_text(StrEq("/sys/module/udmabuf/parameters/size_limit_mb")))
        .WillOnce(Return(Expected<std::string, int>{"64\n"}));
    const auto limit = open_heap().size_limit();
    ASSERT_TRUE(limit);
    EXPECT_EQ(limit->bytes, 64u << 20);
    EXPECT_EQ(limit->source, "the udmabuf module's size_limit_mb is 64");
}

TEST_F(UdmabufBackend, KnowsNoSizeLimitWhenTheParameterCannotBeRead)
{
    EXPECT_CALL(syscalls_, read_text(_)).WillOnce(Return(Unexpected{-ENOENT}));
    EXPECT_FALSE(open_heap().size_limit());
}

TEST_F(UdmabufBackend, KnowsNoSizeLimitWhenTheParameterIsNoNumber)
{
    EXPECT_CALL(syscalls_, read_text(_)).WillOnce(Return(Expected<std::string, int>{"lots\n"}));
    EXPECT_FALSE(open_heap().size_limit());
}

// Through the protocol border: the limit becomes a refusal that names it,
// before the kernel is asked.
class UdmabufService : public UdmabufBackend
{
protected:
    Response allocate(std::uint64_t size)
    {
        wire::Request request;
        request.mutable_alloc()->set_size(size);
        request.mutable_alloc()->set_count(1);
        request.mutable_alloc()->set_heap("udmabuf");
        return send(request);
    }

    Response send(const wire::Request &request)
    {
        const std::string packet = request.SerializeAsString();
        Response response;
        service_->handle_packet(client_, {reinterpret_cast<const std::byte *>(packet.data()), packet.size()},
                                response);
        return response;
    }

    void start_with_size_limit_mb(const std::string &text)
    {
        EXPECT_CALL(syscalls_, read_text(StrEq("/sys/module/udmabuf/parameters/size_limit_mb")))
            .WillOnce(Return(Expected<std::string, int>{text}));
        open_heap();
        std::vector<std::unique_ptr<Backend>> backends;
        backends.push_back(std::move(backend_));
        allocator_.emplace(std::move(backends));
        service_.emplace(*allocator_, ServiceLimits{.max_buffer_size = 1ull << 30}, syscalls_);
        client_.id = service_->connect({1234, 1000, 1000, "camera"});
        wire::Request hello;
        hello.mutable_hello()->set_protocol_version(kProtocolVersion);
        ASSERT_EQ(send(hello).reply.status(), wire::OK);
    }

    std::optional<Allocator> allocator_;
    std::optional<Service> service_;
    ClientContext client_;
};

TEST_F(UdmabufService, ABufferLargerThanTheModulesLimitIsRefusedNamingTheLimit)
{
    start_with_size_limit_mb("64\n");
    EXPECT_CALL(syscalls_, ioctl(device_, UDMABUF_CREATE, _)).Times(0);
    const Response response = allocate((64u << 20) + 1);
    EXPECT_EQ(response.reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_EQ(response.reply.message(),
              "size 67112960 exceeds the largest buffer heap 'udmabuf' can make, 67108864 bytes: the udmabuf "
              "module's size_limit_mb is 64");
    EXPECT_TRUE(response.fds.empty());
}

TEST_F(UdmabufService, ABufferOfExactlyTheModulesLimitIsMade)
{
    start_with_size_limit_mb("1\n");
    create_buffers();
    const Response response = allocate(1u << 20);
    EXPECT_EQ(response.reply.status(), wire::OK) << response.reply.message();
    EXPECT_EQ(response.fds.size(), 1u);
}

class UdmabufCreateFailure : public UdmabufBackend, public ::testing::WithParamInterface<int>
{
};

TEST_P(UdmabufCreateFailure, IsReturnedAsItsNegativeErrnoAndClosesTheMemfd)
{
    Heap &heap = open_heap();
    EXPECT_CALL(syscalls_, ioctl(device_, UDMABUF_CREATE, _)).WillOnce(Return(-GetParam()));
    expect_failure_without_leak(heap, -GetParam());
}

INSTANTIATE_TEST_SUITE_P(UdmabufBackend, UdmabufCreateFailure,
                         ::testing::Values(ENOMEM, EMFILE, EIO, EINVAL, EFAULT, ENOTTY));

TEST_F(UdmabufBackend, AFailedMemfdCreateIsReturned)
{
    Heap &heap = open_heap();
    EXPECT_CALL(syscalls_, memfd_create(_, _)).WillOnce(Return(Unexpected{-EMFILE}));
    expect_failure_without_leak(heap, -EMFILE);
}

TEST_F(UdmabufBackend, AFailedFtruncateClosesTheMemfd)
{
    Heap &heap = open_heap();
    EXPECT_CALL(syscalls_, ftruncate(_, _)).WillOnce(Return(-ENOSPC));
    expect_failure_without_leak(heap, -ENOSPC);
}

TEST_F(UdmabufBackend, AFailedSealClosesTheMemfd)
{
    Heap &heap = open_heap();
    EXPECT_CALL(syscalls_, add_seals(_, _)).WillOnce(Return(-EPERM));
    expect_failure_without_leak(heap, -EPERM);
}

TEST_F(UdmabufBackend, ABufferThatCannotBeNamedIsClosedWithTheMemfd)
{
    Heap &heap = open_heap();
    create_buffers();
    EXPECT_CALL(syscalls_, ioctl(_, DMA_BUF_SET_NAME_B, _)).WillOnce(Return(-ENOMEM));
    expect_failure_without_leak(heap, -ENOMEM);
}

TEST_F(UdmabufBackend, AMissingDeviceHintsAtTheModule)
{
    EXPECT_CALL(syscalls_, open(StrEq("/dev/udmabuf"), O_RDWR | O_CLOEXEC))
        .WillOnce(Return(Unexpected{-ENOENT}));
    auto backend = open_udmabuf_backend(syscalls_);
    ASSERT_FALSE(backend);
    EXPECT_EQ(backend.error(), "/dev/udmabuf: No such file or directory (module udmabuf not loaded, or a "
                               "kernel without CONFIG_UDMABUF?)");
}

TEST_F(UdmabufBackend, ADeviceThatMayNotBeOpenedSaysSo)
{
    EXPECT_CALL(syscalls_, open(_, _)).WillOnce(Return(Unexpected{-EACCES}));
    auto backend = open_udmabuf_backend(syscalls_);
    ASSERT_FALSE(backend);
    EXPECT_EQ(backend.error(), "/dev/udmabuf: Permission denied");
}

} // namespace
} // namespace ionsvc
