// SPDX-License-Identifier: MIT
// Connections a client can make the daemon hold, against the real daemon:
// an unprivileged attacker (setresuid in a forked child) that opens idle
// connections is stopped at its uid's limit and at the total, root and
// other users are still served, a connection that never says Hello is
// closed, and everything goes back to where it was when the attacker
// leaves.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"

namespace ionsvc::testing {
namespace {

using ::testing::HasSubstr;

constexpr uid_t kAttacker = 65534;
constexpr uid_t kBystander = 65533;

// Child exit codes.
constexpr int kUserChange = 10;
constexpr int kIdleConnect = 11;
constexpr int kRefused = 20;
constexpr int kAdmitted = 21;
constexpr int kOtherFailure = 22;

// A connection that never says anything.
UniqueFD idle_connection(const std::string &path)
{
    UniqueFD socket{::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)};
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    if (!socket || ::connect(socket.get(), reinterpret_cast<const sockaddr *>(&address), sizeof(address)) < 0)
        return {};
    return socket;
}

class ConnectionLimits : public ::testing::Test
{
protected:
    void start(const std::string &config)
    {
        IONSVC_NEED_ROOT("to run the attacker as another user");
        open_.emplace(config, fd_limit(512));
    }

    void TearDown() override
    {
        if (open_)
            open_->expect_back_to_baseline();
    }

    DaemonProcess &daemon() { return open_->daemon(); }
    const DaemonProcess &daemon() const { return open_->daemon(); }

    // The attacker: opens idle connections, then tries one more with
    // libbufclient; holds them all until release. The refusal's text goes
    // to message.
    ChildProcess attacker(int idle, Signal &ready, Signal &release, UniqueFD &message_pipe)
    {
        int ends[2];
        EXPECT_EQ(::pipe2(ends, O_CLOEXEC), 0);
        UniqueFD read_end{ends[0]};
        UniqueFD write_end{ends[1]};
        ChildProcess child([&, idle] {
            release.close_write_end();
            read_end.reset();
            if (!become_user(kAttacker))
                return kUserChange;
            std::vector<UniqueFD> held;
            for (int i = 0; i < idle; ++i) {
                held.push_back(idle_connection(daemon().socket_path()));
                if (!held.back())
                    return kIdleConnect;
            }
            auto client = bufclient::Client::connect({.socket_path = daemon().socket_path(), .client_name = "one more"});
            int result = kAdmitted;
            if (!client) {
                const std::string &text = client.error().message;
                if (::write(write_end.get(), text.data(), text.size()) < 0)
                    return kOtherFailure;
                result = client.error().code == StatusCode::kResourceExhausted ? kRefused : kOtherFailure;
            }
            write_end.reset();
            ready.raise();
            release.wait();
            return result;
        });
        write_end.reset();
        ready.close_write_end();
        message_pipe = std::move(read_end);
        return child;
    }

    static std::string read_all(const UniqueFD &fd)
    {
        std::string text;
        char chunk[512];
        for (ssize_t n; (n = ::read(fd.get(), chunk, sizeof(chunk))) > 0;)
            text.append(chunk, static_cast<std::size_t>(n));
        return text;
    }

    // What a second, well-behaved user gets.
    StatusCode bystander_allocation() { return allocate_as(daemon().socket_path(), kBystander).code; }

    CommandResult root_stats() const
    {
        return run_command({ionsvc_ctl_path(), "--socket", daemon().socket_path(), "stats"});
    }

    std::optional<OpenDaemon> open_;
};

TEST_F(ConnectionLimits, OneConnectionPastTheUidsLimitIsRefusedNamingIt)
{
    // Idle connections are not closed for want of Hello during the test.
    start("[connections]\nper_uid = 4\nhello_timeout_ms = 3600000\n");
    Signal ready, release;
    UniqueFD message;
    ChildProcess child = attacker(4, ready, release, message);
    ASSERT_TRUE(ready.wait()) << "attacker step " << child.wait();
    EXPECT_THAT(read_all(message), HasSubstr("uid 65534 has 4 connections open, the most one uid may have "
                                             "(connections.per_uid in the config file)"));

    open_->expect_others_served(kBystander);

    release.close_write_end();
    EXPECT_EQ(child.wait(), kRefused);
}

TEST_F(ConnectionLimits, AtTheTotalOnlyRootAndTheAdminGroupMayStillConnect)
{
    start("[connections]\ntotal = 4\nhello_timeout_ms = 3600000\n");
    Signal ready, release;
    UniqueFD message;
    // With the observer's, the attacker's three idle connections make four.
    ChildProcess child = attacker(3, ready, release, message);
    ASSERT_TRUE(ready.wait()) << "attacker step " << child.wait();
    EXPECT_THAT(read_all(message), HasSubstr("ionsvcd has 4 connections open, the most it takes from users "
                                             "other than root and the admin group (connections.total"));

    const CommandResult stats = root_stats();
    EXPECT_EQ(stats.exit_code, 0) << stats.err;
    EXPECT_THAT(stats.out, HasSubstr("total"));
    EXPECT_EQ(bystander_allocation(), StatusCode::kResourceExhausted) << "the total holds for every user but root";

    release.close_write_end();
    EXPECT_EQ(child.wait(), kRefused);
    EXPECT_TRUE(eventually([&] { return bystander_allocation() == StatusCode::kOk; })) << "room once the attacker left";
}

TEST_F(ConnectionLimits, AConnectionThatNeverSaysHelloIsClosed)
{
    start("[connections]\nhello_timeout_ms = 50\n");
    UniqueFD idle = idle_connection(daemon().socket_path());
    ASSERT_TRUE(idle);
    // A safety net for a daemon that never hangs up, not a measure of time.
    const timeval patience{60, 0};
    ASSERT_EQ(::setsockopt(idle.get(), SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof(patience)), 0);
    std::byte byte[1];
    EXPECT_EQ(::recv(idle.get(), byte, sizeof(byte), 0), 0) << "the daemon hangs up: " << std::strerror(errno);
    EXPECT_TRUE(eventually([&] { return daemon().log().find("no Hello within 50 ms") != std::string::npos; }))
        << daemon().log();
    // A client that greeted in time stays.
    EXPECT_TRUE(open_->observer().list_heaps());
}

} // namespace
} // namespace ionsvc::testing
