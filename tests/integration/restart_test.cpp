// SPDX-License-Identifier: MIT
// The books across a restart, on the host: the test plays systemd's part
// (the listening socket of ionsvc.socket, NOTIFY_SOCKET with its fd store,
// LISTEN_FDS for the next daemon), ionsvcd and libbufclient are the real
// ones. tests/vm/systemd/restart_test.cpp does the same under the real
// systemd.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <fcntl.h>

#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"
#include "raw_connection.h"

namespace ionsvc::testing {
namespace {

using ::testing::HasSubstr;

constexpr std::uint64_t kKiB = 1024;

sockaddr_un address_of(const std::string &path)
{
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    return address;
}

// systemd's side of a service with FileDescriptorStoreMax=: the socket
// unit's listening socket, and the fds the service stores by name.
class ServiceManager
{
public:
    explicit ServiceManager(const std::string &directory) : socket_path_(directory + "/ionsvc.sock")
    {
        listener_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
        const sockaddr_un address = address_of(socket_path_);
        EXPECT_EQ(::bind(listener_.get(), reinterpret_cast<const sockaddr *>(&address), sizeof(address)), 0);
        EXPECT_EQ(::listen(listener_.get(), 64), 0);
    }

    const std::string &socket_path() const { return socket_path_; }

    // Starts ionsvcd with the listening socket and every stored fd, as
    // systemd starts the next instance of a service.
    std::unique_ptr<DaemonProcess> start(const std::vector<std::string> &arguments)
    {
        std::vector<int> fds = {listener_.get()};
        std::string names = "ionsvc.socket";
        for (const auto &[name, fd] : store_) {
            fds.push_back(fd.get());
            names += ":" + name;
        }
        auto daemon = std::make_unique<DaemonProcess>(arguments, [fds, names] {
            // Out of the way first, then to 3, 4, ... without CLOEXEC.
            std::vector<int> high;
            for (const int fd : fds)
                high.push_back(::fcntl(fd, F_DUPFD, 1000));
            for (std::size_t i = 0; i < high.size(); ++i)
                ::dup2(high[i], 3 + static_cast<int>(i));
            ::setenv("LISTEN_FDS", std::to_string(fds.size()).c_str(), 1);
            ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
            ::setenv("LISTEN_FDNAMES", names.c_str(), 1);
        });
        // The harness waited for READY=1 on NOTIFY_SOCKET; what follows
        // comes to the socket bound there now.
        notify_path_ = daemon->directory() + "/notify";
        ::unlink(notify_path_.c_str());
        notify_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        const sockaddr_un address = address_of(notify_path_);
        EXPECT_EQ(::bind(notify_.get(), reinterpret_cast<const sockaddr *>(&address), sizeof(address)), 0);
        return daemon;
    }

    // Takes every notification the daemon has sent: FDSTORE=1 keeps its
    // fds under FDNAME, FDSTOREREMOVE=1 closes those of FDNAME.
    void take_notifications()
    {
        for (;;) {
            std::array<char, 4096> text{};
            alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * 253)> control{};
            iovec io{text.data(), text.size() - 1};
            msghdr message{};
            message.msg_iov = &io;
            message.msg_iovlen = 1;
            message.msg_control = control.data();
            message.msg_controllen = control.size();
            const ssize_t n = ::recvmsg(notify_.get(), &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
            if (n < 0)
                return;
            std::vector<UniqueFD> fds;
            for (cmsghdr *c = CMSG_FIRSTHDR(&message); c; c = CMSG_NXTHDR(&message, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                    continue;
                const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (std::size_t i = 0; i < count; ++i) {
                    int fd;
                    std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                    fds.emplace_back(fd);
                }
            }
            const std::string body(text.data(), static_cast<std::size_t>(n));
            std::string name = "stored";
            if (const auto at = body.find("FDNAME="); at != std::string::npos)
                name = body.substr(at + 7, body.find('\n', at) - at - 7);
            if (body.find("FDSTORE=1") != std::string::npos) {
                for (UniqueFD &fd : fds)
                    store_.emplace(name, std::move(fd));
            } else if (body.find("FDSTOREREMOVE=1") != std::string::npos) {
                store_.erase(name);
            }
        }
    }

    std::size_t stored() const { return store_.size(); }
    // As systemd after a stop and a start: nothing kept.
    void forget_store() { store_.clear(); }
    // As a daemon outside systemd that is gone: nobody listens.
    void close_socket()
    {
        listener_.reset();
        ::unlink(socket_path_.c_str());
    }
    std::size_t stored_named(const std::string &prefix) const
    {
        std::size_t count = 0;
        for (const auto &[name, fd] : store_)
            count += name.starts_with(prefix) ? 1 : 0;
        return count;
    }

private:
    std::string socket_path_;
    std::string notify_path_;
    UniqueFD listener_;
    UniqueFD notify_;
    std::multimap<std::string, UniqueFD> store_;
};

class Restart : public ::testing::Test
{
protected:
    void SetUp() override
    {
        std::ofstream(directory_.path() + "/ionsvc.conf") << "[quota]\nuid = { bytes = 1572864 }\n";
        daemon_ = manager_.start(arguments());
    }

    std::vector<std::string> arguments() const
    {
        return {"--config", directory_.path() + "/ionsvc.conf", "--fd-store-max", "64"};
    }

    bufclient::Client connect(const std::string &name) const
    {
        auto client = bufclient::Client::connect({.socket_path = manager_.socket_path(), .client_name = name});
        EXPECT_TRUE(client) << client.error().message;
        return std::move(*client);
    }

    // The daemon's view once everything it holds is in the store.
    bufclient::Stats stored_stats()
    {
        auto observer = connect("observer");
        std::optional<bufclient::Stats> stats;
        EXPECT_TRUE(eventually([&] {
            auto now = observer.stats();
            if (!now || !now->recovery || now->recovery->pending_changes != 0)
                return false;
            stats = std::move(*now);
            return true;
        })) << "the daemon never had everything in the store";
        manager_.take_notifications();
        return stats.value_or(bufclient::Stats{});
    }

    TemporaryDirectory directory_;
    ServiceManager manager_{directory_.path()};
    std::unique_ptr<DaemonProcess> daemon_;
};

std::uint64_t bytes_of(const bufclient::Stats &stats, std::uint64_t client_id)
{
    for (const bufclient::ClientStats &client : stats.clients) {
        if (client.client_id != client_id)
            continue;
        std::uint64_t bytes = 0;
        for (const bufclient::HeapUsage &usage : client.heaps)
            bytes += usage.bytes;
        return bytes;
    }
    return 0;
}

TEST_F(Restart, ACrashedDaemonsSuccessorHasTheSameBooksAndTheClientsGoOnThroughTheSameObjects)
{
    bufclient::Client camera = connect("camera");
    bufclient::Client display = connect("display");
    auto buffers = camera.allocate({.size = 256 * kKiB, .count = 3});
    ASSERT_TRUE(buffers) << buffers.error().message;
    auto token = camera.share((*buffers)[0]);
    ASSERT_TRUE(token) << token.error().message;
    auto imported = display.import(*token);
    ASSERT_TRUE(imported) << imported.error().message;
    const auto mapping = (*buffers)[1].map();
    ASSERT_TRUE(mapping);
    std::memcpy(mapping->data(), "kept", 4);
    auto spare = camera.share((*buffers)[2], {.reusable = true});
    ASSERT_TRUE(spare);

    const bufclient::Stats before = stored_stats();
    EXPECT_EQ(manager_.stored_named("buf-"), 3u);
    EXPECT_EQ(manager_.stored_named("state-"), 1u);
    daemon_->kill();
    daemon_ = manager_.start(arguments());

    // Before anyone is back: the same figures, charged to the same clients.
    const bufclient::Stats after = stored_stats();
    ASSERT_TRUE(after.recovery);
    EXPECT_EQ(after.recovery->restored_buffers, 3u);
    EXPECT_EQ(after.recovery->awaiting_reclaim, 2u);
    EXPECT_EQ(bytes_of(after, camera.server().client_id), bytes_of(before, camera.server().client_id));
    EXPECT_EQ(bytes_of(after, display.server().client_id), 256 * kKiB);

    // The quota refuses at the same point: uid 0 holds 1 MiB of 1.5 MiB
    // (the import counts too).
    const auto too_much = camera.allocate({.size = 768 * kKiB});
    ASSERT_FALSE(too_much);
    EXPECT_EQ(too_much.error().code, bufclient::StatusCode::kQuotaExceeded) << too_much.error().message;
    // The token made before the crash still works, for a third client.
    bufclient::Client third = connect("third");
    auto again = third.import(*spare);
    ASSERT_TRUE(again) << again.error().message;
    EXPECT_EQ(again->id(), (*buffers)[2].id());
    EXPECT_EQ(std::memcmp((*buffers)[1].map()->data(), "kept", 4), 0);

    EXPECT_TRUE(display.free(*imported));
    EXPECT_TRUE(third.free(*again));
    for (const bufclient::Buffer &buffer : *buffers)
        EXPECT_TRUE(camera.free(buffer));
    EXPECT_TRUE(camera.flush_frees());
    EXPECT_TRUE(display.flush_frees());
    EXPECT_TRUE(third.flush_frees());
    const bufclient::Stats done = stored_stats();
    for (const bufclient::HeapStats &heap : done.heaps)
        EXPECT_EQ(heap.total_bytes, 0u) << heap.name;
    EXPECT_EQ(done.recovery->awaiting_reclaim, 0u);
    EXPECT_EQ(manager_.stored_named("buf-"), 0u) << "freed buffers stayed in the store";
}

TEST_F(Restart, AStoppedDaemonWritesEverythingOutBeforeItExits)
{
    bufclient::Client client = connect("client");
    auto buffers = client.allocate({.size = 64 * kKiB, .count = 2});
    ASSERT_TRUE(buffers);
    // No wait for the tick: SIGTERM writes what is pending.
    EXPECT_EQ(daemon_->terminate(), 0);
    manager_.take_notifications();
    EXPECT_EQ(manager_.stored_named("buf-"), 2u);
    daemon_ = manager_.start(arguments());
    auto more = client.allocate({.size = 64 * kKiB});
    ASSERT_TRUE(more) << more.error().message;
    const bufclient::Stats stats = stored_stats();
    EXPECT_EQ(bytes_of(stats, client.server().client_id), 3 * 64 * kKiB);
    EXPECT_NE(more->front().id(), (*buffers)[0].id());
    EXPECT_NE(more->front().id(), (*buffers)[1].id());
}

TEST_F(Restart, AClientThatFreedBeforeTheCrashIsNotChargedForItAfterwards)
{
    bufclient::Client client = connect("client");
    auto buffers = client.allocate({.size = 64 * kKiB, .count = 2});
    ASSERT_TRUE(buffers);
    stored_stats();
    // Kept back by the library, never told to the daemon that dies.
    ASSERT_TRUE(client.free((*buffers)[0]));
    daemon_->kill();
    daemon_ = manager_.start(arguments());
    ASSERT_TRUE(client.stats()) << "the first request after the crash reconnects";
    const bufclient::Stats stats = stored_stats();
    EXPECT_EQ(bytes_of(stats, client.server().client_id), 64 * kKiB);
}

TEST_F(Restart, AReclaimWithoutTheSecretIsRefusedAndTakesNothing)
{
    bufclient::Client client = connect("client");
    auto buffers = client.allocate({.size = 64 * kKiB});
    ASSERT_TRUE(buffers);
    const std::uint64_t id = client.server().client_id;
    stored_stats();
    daemon_->kill();
    daemon_ = manager_.start(arguments());

    RawConnection raw(manager_.socket_path());
    ASSERT_EQ(raw.hello().status(), wire::OK);
    wire::Request request;
    request.mutable_reclaim()->set_client_id(id);
    request.mutable_reclaim()->set_secret(std::string(16, 'x'));
    request.mutable_reclaim()->set_last(true);
    ASSERT_GT(raw.send(request), 0);
    const wire::Reply reply = raw.receive();
    EXPECT_EQ(reply.status(), wire::NOT_FOUND);
    EXPECT_THAT(reply.message(), HasSubstr("awaits a reclaim with that secret"));
    const bufclient::Stats stats = stored_stats();
    EXPECT_EQ(bytes_of(stats, id), 64 * kKiB) << "a wrong secret took the buffers";
}

TEST_F(Restart, AClientWhoseDaemonNeverComesBackFailsOnceAfterItsWaitAndThenAtOnce)
{
    auto client = bufclient::Client::connect(
        {.socket_path = manager_.socket_path(), .client_name = "patient", .reconnect_timeout = std::chrono::milliseconds{300}});
    ASSERT_TRUE(client);
    daemon_->kill();
    // Connections wait in the socket as under systemd, and nobody takes
    // them: the Hello is never answered. Closing the socket makes that a
    // refusal, as when a daemon outside systemd is gone.
    manager_.close_socket();
    const auto first = client->list_heaps();
    ASSERT_FALSE(first);
    EXPECT_EQ(first.error().code, bufclient::StatusCode::kUnavailable);
    EXPECT_THAT(first.error().message, HasSubstr("did not come back within 300 ms"));
    const auto second = client->list_heaps();
    ASSERT_FALSE(second);
    EXPECT_THAT(second.error().message, HasSubstr("was lost earlier"));
}

TEST_F(Restart, AClientTheNextDaemonDoesNotKnowGoesOnAsANewOneWithoutItsOldIds)
{
    bufclient::Client client = connect("client");
    auto buffers = client.allocate({.size = 64 * kKiB});
    ASSERT_TRUE(buffers);
    daemon_->kill();
    manager_.forget_store();
    daemon_ = manager_.start(arguments());

    auto heaps = client.list_heaps();
    ASSERT_TRUE(heaps) << heaps.error().message;
    const auto freed = client.free(buffers->front());
    ASSERT_FALSE(freed);
    EXPECT_EQ(freed.error().code, bufclient::StatusCode::kNotFound);
    auto more = client.allocate({.size = 128 * kKiB});
    ASSERT_TRUE(more) << more.error().message;
    const bufclient::Stats stats = stored_stats();
    EXPECT_EQ(bytes_of(stats, client.server().client_id), 128 * kKiB) << "the new daemon charges what it knows";
}

} // namespace
} // namespace ionsvc::testing
