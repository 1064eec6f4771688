// SPDX-License-Identifier: MIT
// Buffers from the real daemon, used and shared by real processes.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ionsvc/fd_passing.h>

#include "harness.h"

namespace ionsvc::testing {
namespace {

constexpr std::size_t kSize = 1 << 20;

unsigned char pattern_at(std::size_t offset)
{
    return static_cast<unsigned char>((offset * 31 + 7) & 0xff);
}

TEST(Sharing, ABufferWrittenByOneProcessIsReadByAnotherThroughAPassedFd)
{
    DaemonProcess daemon;
    int pair[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
    UniqueFD a_end{pair[0]}, b_end{pair[1]};

    // A: allocates through the daemon, fills the buffer, hands the fd to B,
    // and waits for B's answer written into the same memory.
    ChildProcess a([&] {
        b_end.reset();
        auto client = bufclient::Client::connect({.socket_path = daemon.socket_path(),
                                                  .client_name = "producer"});
        if (!client)
            return 10;
        auto buffers = client->allocate({.size = kSize, .name = "shared-frame"});
        if (!buffers || buffers->size() != 1)
            return 11;
        auto mapping = buffers->front().map();
        if (!mapping)
            return 12;
        auto *bytes = static_cast<unsigned char *>(mapping->data());
        for (std::size_t i = 0; i < kSize; ++i)
            bytes[i] = pattern_at(i);
        const int lent[] = {buffers->front().fd()};
        if (send_packet(a_end.get(), {}, lent) < 0)
            return 13;
        std::byte done[1];
        if (receive_packet(a_end.get(), done, 0).status != 1)
            return 14;
        return bytes[0] == 0xee && bytes[kSize - 1] == 0xee ? 0 : 15;
    });

    // B: never talks to the daemon; it only has the fd A passed.
    ChildProcess b([&] {
        a_end.reset();
        std::byte nothing[1];
        auto received = receive_packet(b_end.get(), nothing, 1);
        if (received.status < 0 || received.fds.size() != 1)
            return 20;
        auto mapping = bufclient::Mapping::map(received.fds[0].get(), kSize);
        if (!mapping)
            return 21;
        auto *bytes = static_cast<unsigned char *>(mapping->data());
        for (std::size_t i = 0; i < kSize; ++i) {
            if (bytes[i] != pattern_at(i))
                return 22;
        }
        bytes[0] = 0xee;
        bytes[kSize - 1] = 0xee;
        const std::byte done[1] = {std::byte{1}};
        return send_packet(b_end.get(), done, {}) == 1 ? 0 : 23;
    });

    a_end.reset();
    b_end.reset();
    EXPECT_EQ(b.wait(), 0);
    EXPECT_EQ(a.wait(), 0);
}

TEST(Sharing, AnFdOutlivesItsFreeAndItsClientsConnection)
{
    DaemonProcess daemon;
    UniqueFD kept;
    {
        auto client = daemon.connect("short-lived");
        auto buffers = client.allocate({.size = 4096});
        ASSERT_TRUE(buffers) << buffers.error().message;
        auto mapping = buffers->front().map();
        ASSERT_TRUE(mapping);
        std::memcpy(mapping->data(), "still here", 11);
        ASSERT_TRUE(client.free(buffers->front()));
        kept = buffers->front().take_fd();
    }
    auto mapping = bufclient::Mapping::map(kept.get(), 4096);
    ASSERT_TRUE(mapping);
    EXPECT_STREQ(static_cast<const char *>(mapping->data()), "still here");
}

TEST(Sharing, ABatchArrivesAsDistinctBuffersInOneReply)
{
    DaemonProcess daemon;
    auto client = daemon.connect();
    auto buffers = client.allocate({.size = 8192, .count = 16});
    ASSERT_TRUE(buffers) << buffers.error().message;
    ASSERT_EQ(buffers->size(), 16u);
    std::vector<bufclient::Mapping> mappings;
    for (std::size_t i = 0; i < buffers->size(); ++i) {
        auto mapping = (*buffers)[i].map();
        ASSERT_TRUE(mapping);
        static_cast<unsigned char *>(mapping->data())[0] = static_cast<unsigned char>(i);
        mappings.push_back(std::move(*mapping));
    }
    for (std::size_t i = 0; i < mappings.size(); ++i)
        EXPECT_EQ(static_cast<unsigned char *>(mappings[i].data())[0], i);
    for (std::size_t i = 1; i < buffers->size(); ++i)
        EXPECT_NE((*buffers)[i].id(), (*buffers)[i - 1].id());
}

TEST(Sharing, FreeNeedsNoRoundTripAndTheConversationStaysInStep)
{
    DaemonProcess daemon;
    auto client = daemon.connect();
    auto buffers = client.allocate({.size = 4096, .count = 3});
    ASSERT_TRUE(buffers);
    ASSERT_TRUE(client.free((*buffers)[0]));

    // Refused by libbufclient itself, by the daemon's rules.
    auto again = client.free((*buffers)[0]);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, StatusCode::kNotFound);
    EXPECT_THAT(again.error().message, ::testing::HasSubstr("is not held by this client"));
    const std::uint64_t twice[] = {(*buffers)[1].id(), (*buffers)[1].id()};
    auto duplicate = client.free(twice);
    ASSERT_FALSE(duplicate);
    EXPECT_EQ(duplicate.error().code, StatusCode::kInvalidArgument);

    // The next reply answers the next request, and already sees the freed
    // buffer gone and the refused ones kept.
    auto heaps = client.list_heaps();
    ASSERT_TRUE(heaps) << heaps.error().message;
    EXPECT_EQ(heaps->front().live_buffers, 2u);
    auto more = client.allocate({.size = 8192});
    ASSERT_TRUE(more) << more.error().message;
    EXPECT_EQ(more->front().size(), 8192u);
}

TEST(Sharing, TheShareDemoOfTheReadmeTourWorks)
{
    DaemonProcess daemon;
    const CommandResult result =
        run_command({share_demo_path(), "--socket", daemon.socket_path(), "--size", "1M"});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    EXPECT_NE(result.out.find("read all 1048576 bytes the producer wrote"), std::string::npos)
        << result.out;
}

TEST(Sharing, TheShareDemoHoldsItsBufferWithoutATerminalUntilSigterm)
{
    DaemonProcess daemon;
    int ends[2];
    ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
    UniqueFD read_end{ends[0]}, write_end{ends[1]};
    // stdin is /dev/null: end of input at once, which must not free.
    ChildProcess demo([&] {
        const int null = ::open("/dev/null", O_RDONLY);
        if (null < 0 || ::dup2(null, STDIN_FILENO) < 0 || ::dup2(write_end.get(), STDOUT_FILENO) < 0)
            return 10;
        const std::string path = share_demo_path();
        ::execl(path.c_str(), path.c_str(), "--socket", daemon.socket_path().c_str(), "--size", "64K", "--hold",
                static_cast<char *>(nullptr));
        return 11;
    });
    write_end.reset();
    std::string out;
    char chunk[256];
    for (ssize_t n; out.find("to free it.") == std::string::npos &&
                    (n = ::read(read_end.get(), chunk, sizeof(chunk))) > 0;)
        out.append(chunk, static_cast<std::size_t>(n));
    ASSERT_THAT(out, ::testing::HasSubstr("Send SIGINT or SIGTERM to free it."));

    auto observer = daemon.connect("observer");
    const auto held = [&] {
        auto stats = observer.stats();
        EXPECT_TRUE(stats) << stats.error().message;
        return stats && !stats->heaps.empty() ? stats->heaps[0].total_buffers : 0;
    };
    EXPECT_EQ(held(), 1u) << "still held after its input ended";
    ASSERT_EQ(::kill(demo.pid(), SIGTERM), 0);
    EXPECT_EQ(demo.wait(), 0) << "freed and exited normally";
    // Its hang-up may reach the daemon after the observer's next request.
    EXPECT_TRUE(eventually([&] { return held() == 0; }));
}

TEST(Sharing, TheShareDemoRefusesANegativeSize)
{
    DaemonProcess daemon;
    const CommandResult result =
        run_command({share_demo_path(), "--socket", daemon.socket_path(), "--size", "-5"});
    EXPECT_NE(result.exit_code, 0);
    EXPECT_THAT(result.err, ::testing::HasSubstr("a size cannot be negative"));
}

} // namespace
} // namespace ionsvc::testing
