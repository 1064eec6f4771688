// SPDX-License-Identifier: MIT
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <array>
#include <cstring>

#include <gtest/gtest.h>

#include <ionsvc/fd_passing.h>

#include "child_process.h"
#include "fd_count.h"

namespace ionsvc {
namespace {

struct SocketPair
{
    UniqueFD a;
    UniqueFD b;
};

SocketPair make_pair()
{
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
    return {UniqueFD{fds[0]}, UniqueFD{fds[1]}};
}

std::span<const std::byte> as_bytes(std::string_view text)
{
    return {reinterpret_cast<const std::byte *>(text.data()), text.size()};
}

TEST(FdPassing, DeliversDataAndDescriptorsInOnePacket)
{
    auto pair = make_pair();
    UniqueFD event{::eventfd(7, EFD_CLOEXEC)};
    const int lent[] = {event.get(), event.get()};
    ASSERT_EQ(send_packet(pair.a.get(), as_bytes("hello"), lent), 5);

    std::array<std::byte, 16> buffer{};
    auto received = receive_packet(pair.b.get(), buffer, 4);
    ASSERT_EQ(received.status, 5);
    EXPECT_EQ(std::memcmp(buffer.data(), "hello", 5), 0);
    ASSERT_EQ(received.fds.size(), 2u);

    // The received fd is the same eventfd, and arrived close-on-exec.
    std::uint64_t value = 0;
    ASSERT_EQ(::read(received.fds[0].get(), &value, sizeof(value)), 8);
    EXPECT_EQ(value, 7u);
    EXPECT_EQ(::fcntl(received.fds[1].get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
}

TEST(FdPassing, MoreDescriptorsThanExpectedAreAllClosedAndReported)
{
    auto pair = make_pair();
    UniqueFD event{::eventfd(0, EFD_CLOEXEC)};
    const int lent[] = {event.get(), event.get(), event.get()};
    ASSERT_GT(send_packet(pair.a.get(), as_bytes("x"), lent), 0);

    const std::size_t before = test_support::open_fd_count();
    std::array<std::byte, 16> buffer{};
    auto received = receive_packet(pair.b.get(), buffer, 1);
    EXPECT_EQ(received.status, -EPROTO);
    EXPECT_TRUE(received.fds.empty());
    EXPECT_EQ(test_support::open_fd_count(), before);
}

TEST(FdPassing, DescriptorsSentToAReceiverExpectingNoneAreClosed)
{
    auto pair = make_pair();
    UniqueFD event{::eventfd(0, EFD_CLOEXEC)};
    const int lent[] = {event.get()};
    ASSERT_GT(send_packet(pair.a.get(), as_bytes("x"), lent), 0);

    const std::size_t before = test_support::open_fd_count();
    std::array<std::byte, 16> buffer{};
    auto received = receive_packet(pair.b.get(), buffer, 0);
    EXPECT_EQ(received.status, -EPROTO);
    EXPECT_EQ(test_support::open_fd_count(), before);
}

TEST(FdPassing, APacketLargerThanTheBufferIsRefusedWithEmsgsize)
{
    auto pair = make_pair();
    ASSERT_GT(send_packet(pair.a.get(), as_bytes("0123456789"), {}), 0);
    std::array<std::byte, 4> buffer{};
    EXPECT_EQ(receive_packet(pair.b.get(), buffer, 0).status, -EMSGSIZE);
}

TEST(FdPassing, PeekReportsTheSizeWithoutConsumingThePacketOrItsDescriptors)
{
    auto pair = make_pair();
    UniqueFD event{::eventfd(0, EFD_CLOEXEC)};
    const int lent[] = {event.get()};
    ASSERT_GT(send_packet(pair.a.get(), as_bytes("twelve bytes"), lent), 0);

    const std::size_t before = test_support::open_fd_count();
    EXPECT_EQ(peek_packet_size(pair.b.get()), 12);
    EXPECT_EQ(test_support::open_fd_count(), before);

    std::array<std::byte, 12> buffer{};
    auto received = receive_packet(pair.b.get(), buffer, 1);
    EXPECT_EQ(received.status, 12);
    EXPECT_EQ(received.fds.size(), 1u);
}

TEST(FdPassing, AnEmptyPacketIsToldApartFromAHangUp)
{
    auto pair = make_pair();
    ASSERT_EQ(send_packet(pair.a.get(), {}, {}), 0);
    std::array<std::byte, 4> buffer{};
    EXPECT_EQ(receive_packet(pair.b.get(), buffer, 0).status, 0);
    EXPECT_FALSE(peer_has_hung_up(pair.b.get()));

    pair.a.reset();
    EXPECT_EQ(receive_packet(pair.b.get(), buffer, 0).status, 0);
    EXPECT_TRUE(peer_has_hung_up(pair.b.get()));
}

TEST(FdPassing, SendingToAClosedPeerFailsWithEpipeInsteadOfASignal)
{
    auto pair = make_pair();
    pair.b.reset();
    EXPECT_EQ(send_packet(pair.a.get(), as_bytes("x"), {}), -EPIPE);
}

TEST(FdPassing, AReceiverWithNoFdFreeGetsEmfileAndNoHalfOfTheFds)
{
    auto pair = make_pair();
    UniqueFD first{::eventfd(0, EFD_CLOEXEC)};
    UniqueFD second{::eventfd(0, EFD_CLOEXEC)};
    const int lent[] = {first.get(), second.get()};
    ASSERT_GT(send_packet(pair.a.get(), as_bytes("two fds"), lent), 0);

    // In a child: a full fd table is no state to leave the test process in.
    test_support::ChildProcess child([&] {
        // Once while fds are there: under UBSan, the first check of a type
        // needs a pipe, and out of fds it reports a false error.
        test_support::open_fd_count();
        const rlimit limit{64, 64};
        if (::setrlimit(RLIMIT_NOFILE, &limit) < 0)
            return 2;
        // Fill every slot under the limit but one: one fd of two arrives.
        std::vector<UniqueFD> filler;
        for (;;) {
            UniqueFD fd{::fcntl(pair.b.get(), F_DUPFD_CLOEXEC, 0)};
            if (!fd)
                break;
            filler.push_back(std::move(fd));
        }
        filler.pop_back();
        const std::size_t before = test_support::open_fd_count();
        std::array<std::byte, 16> buffer{};
        const auto received = receive_packet(pair.b.get(), buffer, 4);
        if (received.status != -EMFILE)
            return 3;
        // The one that did arrive is closed again (open_fd_count needs an
        // fd of its own, the one freed).
        return received.fds.empty() && test_support::open_fd_count() == before ? 0 : 4;
    });
    EXPECT_EQ(child.wait(), 0);
}

} // namespace
} // namespace ionsvc
