// SPDX-License-Identifier: MIT
// Every kind of bad input gets a clear status, the daemon keeps serving
// everyone else, and afterwards its fds and books are as they were.
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ionsvc/fd_passing.h>
#include <ionsvc/protocol.h>

#include "buffer.pb.h"
#include "harness.h"
#include "raw_connection.h"

namespace ionsvc::testing {
namespace {

using ::testing::HasSubstr;

constexpr std::uint64_t kMaxBufferSize = 1 << 20;

class BadInput : public ::testing::Test
{
protected:
    BadInput()
        : daemon_({"--max-buffer-size", std::to_string(kMaxBufferSize)}),
          observer_(daemon_.connect("observer")), baseline_fds_(daemon_.open_fds())
    {
    }

    // The daemon serves the observer, and once every bad client is gone its
    // fd count and its books are what they were before the test.
    void expect_back_to_baseline()
    {
        EXPECT_TRUE(eventually([&] {
            auto stats = observer_.stats();
            return stats && stats->clients.size() == 1 && stats->heaps.front().total_buffers == 0 &&
                   daemon_.open_fds() == baseline_fds_;
        })) << "fds " << daemon_.open_fds() << " (baseline " << baseline_fds_ << ")";
        auto buffers = observer_.allocate({.size = 4096});
        EXPECT_TRUE(buffers) << "the daemon stopped serving others";
    }

    void TearDown() override { expect_back_to_baseline(); }

    RawConnection raw() { return RawConnection(daemon_.socket_path()); }

    DaemonProcess daemon_;
    bufclient::Client observer_;
    std::size_t baseline_fds_;
};

TEST_F(BadInput, AnEmptyPacketIsRefusedAndTheConnectionGoesOn)
{
    auto connection = raw();
    connection.send_bytes("");
    const wire::Reply reply = connection.receive();
    EXPECT_EQ(reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_THAT(reply.message(), HasSubstr("empty packet"));
    EXPECT_EQ(connection.hello().status(), wire::OK);
}

TEST_F(BadInput, MalformedProtobufIsRefusedAndTheConnectionClosed)
{
    auto connection = raw();
    connection.send_bytes(std::string("\x0a\xff\xff\xff\xff", 5));
    const wire::Reply reply = connection.receive();
    EXPECT_EQ(reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_THAT(reply.message(), HasSubstr("malformed"));
    EXPECT_TRUE(connection.hung_up());
    EXPECT_THAT(daemon_.log(), HasSubstr("protocol violation: malformed packet"));
}

TEST_F(BadInput, APacketOverTheLimitIsRefusedAndTheConnectionClosed)
{
    auto connection = raw();
    ASSERT_GT(connection.send_bytes(std::string(kMaxRequestBytes + 1, 'x')), 0);
    const wire::Reply reply = connection.receive();
    EXPECT_EQ(reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_THAT(reply.message(), HasSubstr("larger than the limit of 65536 bytes"));
    EXPECT_TRUE(connection.hung_up());
}

TEST_F(BadInput, AnUnknownRequestIsNamed)
{
    auto connection = raw();
    connection.hello();
    connection.send_bytes(std::string("\x78\x01", 2));
    const wire::Reply reply = connection.receive();
    EXPECT_EQ(reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_THAT(reply.message(), HasSubstr("unknown request"));
}

TEST_F(BadInput, ARequestBeforeHelloIsRefused)
{
    auto connection = raw();
    wire::Request request;
    request.mutable_alloc()->set_size(4096);
    request.mutable_alloc()->set_count(1);
    connection.send(request);
    const wire::Reply reply = connection.receive();
    EXPECT_EQ(reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_THAT(reply.message(), HasSubstr("before Hello"));
}

TEST_F(BadInput, AnotherProtocolVersionIsUnsupported)
{
    auto connection = raw();
    const wire::Reply reply = connection.hello(kProtocolVersion + 41);
    EXPECT_EQ(reply.status(), wire::UNSUPPORTED_VERSION);
    EXPECT_THAT(reply.message(), HasSubstr("protocol version 42 is not supported"));
    EXPECT_EQ(reply.hello().protocol_version(), kProtocolVersion);
}

TEST_F(BadInput, InvalidAllocationsComeBackAsStatusesWithMessages)
{
    auto client = daemon_.connect("careless");
    struct Case
    {
        bufclient::AllocOptions options;
        StatusCode code;
        std::string message;
    };
    const Case cases[] = {
        {{.size = 0}, StatusCode::kInvalidArgument, "size must be greater than zero"},
        {{.size = kMaxBufferSize + 1}, StatusCode::kInvalidArgument, "exceeds the maximum buffer size of 1048576"},
        {{.size = 1ull << 63}, StatusCode::kInvalidArgument, "size 9223372036854775808 exceeds"},
        {{.size = 4096, .count = 0}, StatusCode::kInvalidArgument, "count must be at least 1"},
        {{.size = 4096, .count = 1000}, StatusCode::kInvalidArgument, "count 1000 exceeds the batch limit"},
        {{.heap = "nonexistent", .size = 4096}, StatusCode::kNoSuchHeap, "no heap named 'nonexistent'"},
        {{.size = 4096, .flags = 0x80}, StatusCode::kInvalidArgument, "unknown flags 0x80"},
    };
    for (const Case &c : cases) {
        auto buffers = client.allocate(c.options);
        ASSERT_FALSE(buffers) << c.message;
        EXPECT_EQ(buffers.error().code, c.code) << c.message;
        EXPECT_THAT(buffers.error().message, HasSubstr(c.message));
    }
}

TEST_F(BadInput, FreeingAnIdTheClientDoesNotHoldIsNotFound)
{
    auto owner = daemon_.connect("owner");
    auto intruder = daemon_.connect("intruder");
    auto buffers = owner.allocate({.size = 4096});
    ASSERT_TRUE(buffers);

    const std::uint64_t theirs = buffers->front().id();
    auto stolen = intruder.free(std::span<const std::uint64_t>(&theirs, 1));
    ASSERT_FALSE(stolen);
    EXPECT_EQ(stolen.error().code, StatusCode::kNotFound);
    EXPECT_THAT(stolen.error().message, HasSubstr("is not held by this client"));

    const std::uint64_t made_up = 999999;
    auto unknown = owner.free(std::span<const std::uint64_t>(&made_up, 1));
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().code, StatusCode::kNotFound);

    // The owner's buffer survived both attempts.
    EXPECT_TRUE(owner.free(buffers->front()));
}

TEST_F(BadInput, TheDaemonRefusesAFreeOfIdsTheConnectionDoesNotHold)
{
    auto owner = daemon_.connect("owner");
    auto buffers = owner.allocate({.size = 4096});
    ASSERT_TRUE(buffers);

    // Asked by hand, past libbufclient's own check: the daemon's books say no.
    auto connection = raw();
    connection.hello();
    wire::Request request;
    request.mutable_free()->add_buffer_ids(buffers->front().id());
    connection.send(request);
    const wire::Reply reply = connection.receive();
    EXPECT_EQ(reply.status(), wire::NOT_FOUND);
    EXPECT_THAT(reply.message(), HasSubstr("is not held by this client"));
}

TEST_F(BadInput, AFreeWithoutReplyOfIdsNotHeldChangesNothingAndAnswersNothing)
{
    auto owner = daemon_.connect("owner");
    auto buffers = owner.allocate({.size = 4096});
    ASSERT_TRUE(buffers);

    auto connection = raw();
    connection.hello();
    wire::Request bogus;
    bogus.mutable_free()->add_buffer_ids(buffers->front().id());
    bogus.mutable_free()->add_buffer_ids(123456789);
    bogus.mutable_free()->set_no_reply(true);
    connection.send(bogus);
    wire::Request list;
    list.mutable_list_heaps();
    connection.send(list);
    // The first reply to arrive is the ListHeaps one: the Free got none.
    const wire::Reply reply = connection.receive();
    ASSERT_TRUE(reply.has_list_heaps()) << reply.DebugString();
    EXPECT_EQ(reply.list_heaps().heaps(0).live_buffers(), 1u);
}

TEST_F(BadInput, DescriptorsSentWithARequestAreClosedAndRefused)
{
    auto connection = raw();
    connection.hello();
    UniqueFD event{::eventfd(0, EFD_CLOEXEC)};
    const int lent[] = {event.get(), event.get(), event.get()};
    wire::Request request;
    request.mutable_list_heaps();
    connection.send_bytes(request.SerializeAsString(), lent);
    const wire::Reply reply = connection.receive();
    EXPECT_EQ(reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_THAT(reply.message(), HasSubstr("carry no file descriptors"));
    EXPECT_EQ(daemon_.open_fds(), baseline_fds_ + 1); // only the connection itself
}

TEST_F(BadInput, AClientThatDiesInTheMiddleOfARequestLeavesNothingBehind)
{
    auto connection = raw();
    connection.hello();
    wire::Request request;
    request.mutable_alloc()->set_size(65536);
    request.mutable_alloc()->set_count(kMaxBatchCount);
    connection.send(request);
    connection.close(); // before the reply with 64 fds arrives
}

TEST_F(BadInput, AClientThatNeverReadsItsRepliesStallsOnlyItself)
{
    // Greeted (so surely accepted) before it turns deaf.
    auto connection = raw();
    ASSERT_EQ(connection.hello().status(), wire::OK);
    ASSERT_EQ(::fcntl(connection.fd(), F_SETFL, O_NONBLOCK), 0);

    wire::Request request;
    request.mutable_alloc()->set_size(4096);
    request.mutable_alloc()->set_count(1);
    const std::string packet = request.SerializeAsString();
    // Fill both directions: the daemon stops reading from a client whose
    // replies are not read, so sending eventually fails with EAGAIN.
    int sent = 0;
    while (sent < 100000 && connection.send_bytes(packet) > 0)
        ++sent;
    EXPECT_LT(sent, 100000) << "the daemon kept reading from a client that reads nothing";

    // Everybody else is still served while that client sits there.
    auto stats = observer_.stats();
    ASSERT_TRUE(stats) << stats.error().message;
    EXPECT_EQ(stats->clients.size(), 2u);
    auto other = daemon_.connect("bystander");
    EXPECT_TRUE(other.allocate({.size = 4096}));
    connection.close();
}

} // namespace
} // namespace ionsvc::testing
