// SPDX-License-Identifier: MIT
// The Server's event loop over real sockets, driven by bufclient, with a
// syscall seam that throws: one request's exception must cost only its own
// session, never the loop that serves everyone.
#include <stdlib.h>

#include <filesystem>
#include <future>
#include <mutex>
#include <new>
#include <stdexcept>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include <bufclient/bufclient.h>

#include "server/listener.h"
#include "backends/memfd.h"
#include "fakes/mock_syscalls.h"
#include "raw_connection.h"
#include "server/server.h"

namespace ionsvc {
namespace {

using ::testing::_;
using ::testing::NiceMock;

// memfds that pass for dma-bufs, so that release detection watches them
// and its timer reads their fdinfo through the seam.
class WatchedHeap final : public Heap
{
public:
    explicit WatchedHeap(Syscalls &syscalls) : memfds_(make_memfd_backend(syscalls)) {}
    std::string_view name() const override { return "watched"; }
    std::string_view type() const override { return "system"; }
    bool exports_dma_buf() const override { return true; }
    Expected<UniqueFD, int> allocate(std::uint64_t size, std::uint32_t flags, std::string_view name) override
    {
        return memfds_->heaps().front()->allocate(size, flags, name);
    }

private:
    std::unique_ptr<Backend> memfds_;
};

class WatchedBackend final : public Backend
{
public:
    explicit WatchedBackend(Syscalls &syscalls) : heap_(syscalls) {}
    std::string_view name() const override { return "watched"; }
    std::vector<Heap *> heaps() override { return {&heap_}; }

private:
    WatchedHeap heap_;
};

std::vector<std::unique_ptr<Backend>> memfd_and_watched(Syscalls &syscalls)
{
    std::vector<std::unique_ptr<Backend>> backends;
    backends.push_back(make_memfd_backend(syscalls));
    backends.push_back(std::make_unique<WatchedBackend>(syscalls));
    return backends;
}

// A Server on a private socket, its event loop on a thread of its own as
// ionsvcd runs it. An exception out of io.run() ends the test binary.
class ServerTest : public ::testing::Test
{
protected:
    ServerTest()
        : allocator_(memfd_and_watched(syscalls_)), service_(allocator_, ServiceLimits{}, syscalls_)
    {
        char pattern[] = "/tmp/ionsvc-server-test-XXXXXX";
        directory_ = ::mkdtemp(pattern);
        socket_path_ = directory_ + "/ionsvc.sock";
        auto listener = listen_on(socket_path_);
        EXPECT_TRUE(listener) << listener.error();
        server_.emplace(io_, service_, std::move(listener->socket));
        server_->start();
        loop_ = std::thread([this] { io_.run(); });
    }

    ~ServerTest() override
    {
        boost::asio::post(io_, [this] { server_->stop(); });
        loop_.join();
        std::error_code ignored;
        std::filesystem::remove_all(directory_, ignored);
    }

    bufclient::Client connect()
    {
        auto client = bufclient::Client::connect({.socket_path = socket_path_, .client_name = "test"});
        EXPECT_TRUE(client) << client.error().message;
        if (!client)
            std::abort();
        return std::move(*client);
    }

    NiceMock<testing::MockSyscalls> syscalls_;
    Allocator allocator_;
    Service service_;
    boost::asio::io_context io_{1};
    std::optional<Server> server_;
    std::thread loop_;
    std::string directory_;
    std::string socket_path_;
};

TEST_F(ServerTest, ARequestThatThrowsGetsInternalAndClosesOnlyItsOwnSession)
{
    // Buffers named "boom" hit a bug (at() out of range, say) deep inside.
    ON_CALL(syscalls_, memfd_create(_, _)).WillByDefault([](const char *name, unsigned int flags) {
        if (std::string_view(name) == "boom")
            throw std::out_of_range("vector::_M_range_check");
        return real_syscalls().memfd_create(name, flags);
    });
    auto bystander = connect();
    auto victim = connect();

    auto failed = victim.allocate({.heap = "memfd", .size = 4096, .name = "boom"});
    ASSERT_FALSE(failed);
    EXPECT_EQ(failed.error().code, StatusCode::kInternal);
    EXPECT_EQ(failed.error().message, "internal error: vector::_M_range_check");
    auto after = victim.allocate({.heap = "memfd", .size = 4096});
    ASSERT_FALSE(after) << "the session that threw is closed";
    EXPECT_EQ(after.error().code, StatusCode::kUnavailable);

    EXPECT_TRUE(bystander.allocate({.heap = "memfd", .size = 4096}));
    auto newcomer = connect();
    EXPECT_TRUE(newcomer.allocate({.heap = "memfd", .size = 4096}));
}

TEST_F(ServerTest, ARequestThatRunsOutOfMemoryLeavesNoBufferOfItsBatchInTheBooks)
{
    // The third buffer of the batch throws after two were made.
    auto made = std::make_shared<int>(0);
    ON_CALL(syscalls_, memfd_create(_, _)).WillByDefault([made](const char *name, unsigned int flags) {
        if (++*made == 3)
            throw std::bad_alloc();
        return real_syscalls().memfd_create(name, flags);
    });
    auto victim = connect();
    auto failed = victim.allocate({.heap = "memfd", .size = 4096, .count = 4});
    ASSERT_FALSE(failed);
    EXPECT_EQ(failed.error().code, StatusCode::kInternal);

    auto observer = connect();
    auto stats = observer.stats();
    ASSERT_TRUE(stats) << stats.error().message;
    for (const auto &heap : stats->heaps)
        EXPECT_EQ(heap.total_buffers, 0u) << heap.name;
}

TEST_F(ServerTest, ReleaseDetectionThatThrowsLeavesTheLoopServing)
{
    // Shared: the loop calls this again after the test body, at the
    // disconnects of the fixture's teardown.
    struct FirstCount
    {
        bool seen = false;
        std::promise<void> thrown;
    };
    auto first = std::make_shared<FirstCount>();
    ON_CALL(syscalls_, read_fdinfo(_, _)).WillByDefault([first](int fd, std::span<char> text) {
        if (!first->seen) {
            first->seen = true;
            first->thrown.set_value();
            throw std::bad_alloc();
        }
        return real_syscalls().read_fdinfo(fd, text);
    });
    auto client = connect();
    auto held = client.allocate({.heap = "watched", .size = 4096});
    ASSERT_TRUE(held) << held.error().message;
    // The release detection timer counts the buffer's references next.
    ASSERT_EQ(first->thrown.get_future().wait_for(std::chrono::seconds(20)), std::future_status::ready);

    EXPECT_TRUE(client.allocate({.heap = "memfd", .size = 4096}));
    auto newcomer = connect();
    EXPECT_TRUE(newcomer.allocate({.heap = "memfd", .size = 4096}));
}

TEST_F(ServerTest, ClientsAreServedBetweenTheSlicesOfAReleaseRound)
{
    auto holder = connect();
    auto held = holder.allocate({.heap = "watched", .size = 4096, .count = 50});
    ASSERT_TRUE(held) << held.error().message;
    auto more = holder.allocate({.heap = "watched", .size = 4096, .count = 50});
    ASSERT_TRUE(more) << more.error().message;
    testing::RawConnection other(socket_path_);
    ASSERT_EQ(other.hello().status(), wire::OK);

    // What the loop does, in order, once armed: R a reference count of one
    // of the 100 buffers (a round's worth), A an allocation. The first
    // count sends the other client's Alloc: it waits in the socket while
    // the round goes on.
    struct Log
    {
        std::mutex mutex;
        bool armed = false;
        std::string events;
    };
    auto log = std::make_shared<Log>();
    wire::Request alloc;
    alloc.mutable_alloc()->set_heap("memfd");
    alloc.mutable_alloc()->set_size(4096);
    alloc.mutable_alloc()->set_count(1);
    const std::string alloc_packet = alloc.SerializeAsString();
    ON_CALL(syscalls_, read_fdinfo(_, _)).WillByDefault([log, &other, alloc_packet](int, std::span<char>) {
        std::lock_guard lock(log->mutex);
        if (log->armed) {
            if (log->events.empty()) {
                EXPECT_EQ(other.send_bytes(alloc_packet), static_cast<ssize_t>(alloc_packet.size()));
            }
            log->events += 'R';
        }
        // Uncountable: the buffers stay, and every round counts them all.
        return Expected<std::size_t, int>{Unexpected{-ENOENT}};
    });
    ON_CALL(syscalls_, memfd_create(_, _)).WillByDefault([log](const char *name, unsigned int flags) {
        std::lock_guard lock(log->mutex);
        if (log->armed)
            log->events += 'A';
        return real_syscalls().memfd_create(name, flags);
    });
    {
        std::lock_guard lock(log->mutex);
        log->armed = true;
    }

    ASSERT_EQ(other.receive().status(), wire::OK);
    std::lock_guard lock(log->mutex);
    const std::size_t counts_before = log->events.find('A');
    ASSERT_NE(counts_before, std::string::npos) << log->events;
    // Armed at any point of a round: at most one slice (8) of counts went
    // before the Alloc, not the rest of the round's 100.
    EXPECT_GE(counts_before, 1u) << log->events;
    EXPECT_LE(counts_before, 8u) << log->events;
    log->armed = false;
}

} // namespace
} // namespace ionsvc
