// SPDX-License-Identifier: MIT
// systemd's watchdog (WatchdogSec= in ionsvc.service): ionsvcd pings it
// from its event loop when, and only when, systemd asked this process for
// pings through WATCHDOG_USEC and WATCHDOG_PID.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"

namespace ionsvc::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::Each;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// Long enough for any loaded machine; only a broken daemon waits this out.
constexpr int kNotificationTimeoutMs = 20'000;

// systemd's side of NOTIFY_SOCKET. The harness's own socket is gone once
// READY=1 arrived; the daemon sends every notification afresh to the path,
// so binding a new socket there receives what comes next.
class NotificationSocket
{
public:
    explicit NotificationSocket(const std::string &path)
    {
        ::unlink(path.c_str());
        socket_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
        if (::bind(socket_.get(), reinterpret_cast<const sockaddr *>(&address), sizeof(address)) < 0)
            ADD_FAILURE() << "bind " << path << ": " << std::strerror(errno);
    }

    // The next notification; nullopt if none comes within timeout_ms.
    std::optional<std::string> next(int timeout_ms = kNotificationTimeoutMs)
    {
        pollfd pfd{socket_.get(), POLLIN, 0};
        if (::poll(&pfd, 1, timeout_ms) <= 0)
            return std::nullopt;
        char message[512];
        const ssize_t n = ::recv(socket_.get(), message, sizeof(message), 0);
        if (n < 0)
            return std::nullopt;
        return std::string(message, static_cast<std::size_t>(n));
    }

    // Every notification already queued.
    std::vector<std::string> queued()
    {
        std::vector<std::string> messages;
        while (auto message = next(0))
            messages.push_back(std::move(*message));
        return messages;
    }

private:
    UniqueFD socket_;
};

std::string read_log(const std::string &path)
{
    std::ifstream file(path);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
}

// Whose pid WATCHDOG_PID names.
enum class WatchdogPid { kDaemon, kSomeoneElse, kUnset };

struct WatchdogEnvironment
{
    const char *name;
    std::optional<std::string> usec; // WATCHDOG_USEC; nullopt: unset
    WatchdogPid pid;
    std::string expected_log = {}; // a line the daemon logs about it
};

// Names the test case in gtest's and ctest's output.
void PrintTo(const WatchdogEnvironment &environment, std::ostream *out)
{
    *out << environment.name;
}

// ionsvcd on the memfd backend, with the watchdog variables set as given.
class DaemonUnderWatchdog
{
public:
    explicit DaemonUnderWatchdog(const WatchdogEnvironment &environment)
        : log_path_(directory_.path() + "/ionsvcd.log"),
          notify_path_(directory_.path() + "/notify"),
          socket_path_(directory_.path() + "/ionsvc.sock")
    {
        pid_ = start_daemon({ionsvcd_path(), "--socket", socket_path_, "--backend", "memfd"}, log_path_,
                            notify_path_, [&environment] {
                                // In the forked child: getpid() is the daemon to be.
                                ::unsetenv("WATCHDOG_USEC");
                                ::unsetenv("WATCHDOG_PID");
                                if (environment.usec)
                                    ::setenv("WATCHDOG_USEC", environment.usec->c_str(), 1);
                                if (environment.pid == WatchdogPid::kDaemon)
                                    ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
                                else if (environment.pid == WatchdogPid::kSomeoneElse)
                                    ::setenv("WATCHDOG_PID", std::to_string(::getppid()).c_str(), 1);
                            });
        notifications_.emplace(notify_path_);
    }

    ~DaemonUnderWatchdog()
    {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }

    bool started() const { return pid_ > 0; }
    const std::string &socket_path() const { return socket_path_; }
    NotificationSocket &notifications() { return *notifications_; }
    std::string log() const { return read_log(log_path_); }

    // SIGTERM, and the exit status once it is gone; -1 if it does not exit
    // (a timer left running would keep the event loop alive).
    int terminate()
    {
        ::kill(pid_, SIGTERM);
        int status = -1;
        const bool exited = eventually([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; });
        if (exited)
            pid_ = -1;
        return exited ? status : -1;
    }

private:
    TemporaryDirectory directory_;
    std::string log_path_;
    std::string notify_path_;
    std::string socket_path_;
    pid_t pid_ = -1;
    std::optional<NotificationSocket> notifications_;
};

TEST(Watchdog, PingsComeOneAfterAnotherFromTheServingDaemonAndEndWithIt)
{
    // A ping a second. The kernel queues 10 datagrams for a socket nobody
    // reads (net.unix.max_dgram_qlen) before the sender blocks: 10 s of slack
    // for a slow machine between two reads here.
    DaemonUnderWatchdog daemon({"daemon", "2000000", WatchdogPid::kDaemon});
    ASSERT_TRUE(daemon.started());
    EXPECT_THAT(daemon.log(), HasSubstr("watchdog: timeout 2000 ms, pinging every 1000 ms"));

    // The second ping is another round of the loop's timer.
    for (int ping = 0; ping < 2; ++ping) {
        const auto message = daemon.notifications().next();
        ASSERT_TRUE(message) << "no ping " << ping << ":\n" << daemon.log();
        EXPECT_EQ(*message, "WATCHDOG=1");
    }

    // The loop that pings also serves.
    auto client = bufclient::Client::connect({.socket_path = daemon.socket_path()});
    ASSERT_TRUE(client) << client.error().message;
    EXPECT_TRUE(client->allocate({.size = 4096}));

    const int status = daemon.terminate();
    ASSERT_NE(status, -1) << "ionsvcd did not exit on SIGTERM with the watchdog on:\n" << daemon.log();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << daemon.log();

    // It is gone, so everything it sent is queued: pings up to STOPPING=1,
    // none after.
    std::vector<std::string> messages = daemon.notifications().queued();
    const auto stopping = std::find(messages.begin(), messages.end(), "STOPPING=1");
    ASSERT_NE(stopping, messages.end()) << ::testing::PrintToString(messages);
    EXPECT_THAT(std::vector<std::string>(messages.begin(), stopping), Each(std::string("WATCHDOG=1")));
    EXPECT_THAT(std::vector<std::string>(stopping + 1, messages.end()), IsEmpty());
}

// Environments in which systemd did not ask this process for pings.
class NoWatchdog : public ::testing::TestWithParam<WatchdogEnvironment>
{
};

TEST_P(NoWatchdog, NoPingIsSent)
{
    DaemonUnderWatchdog daemon(GetParam());
    ASSERT_TRUE(daemon.started());

    // Round trips through the event loop, during which a daemon that pinged
    // at every WATCHDOG_USEC/2 = 1 ms would ping.
    auto client = bufclient::Client::connect({.socket_path = daemon.socket_path()});
    ASSERT_TRUE(client) << client.error().message;
    for (int i = 0; i < 100; ++i) {
        auto buffers = client->allocate({.size = 4096});
        ASSERT_TRUE(buffers) << buffers.error().message;
        ASSERT_TRUE(client->stats());
    }

    const int status = daemon.terminate();
    ASSERT_NE(status, -1) << daemon.log();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << daemon.log();
    EXPECT_THAT(daemon.notifications().queued(), ElementsAre("STOPPING=1"));
    EXPECT_THAT(daemon.log(), Not(HasSubstr("watchdog: timeout")));
    EXPECT_THAT(daemon.log(), HasSubstr(GetParam().expected_log));
}

INSTANTIATE_TEST_SUITE_P(
    Watchdog, NoWatchdog,
    ::testing::Values(WatchdogEnvironment{"Unset", std::nullopt, WatchdogPid::kUnset},
                      // systemd meant another process (e.g. a parent that forked us).
                      WatchdogEnvironment{"ForAnotherProcess", "2000", WatchdogPid::kSomeoneElse},
                      WatchdogEnvironment{"NotANumber", "soon", WatchdogPid::kDaemon,
                                          "ignoring the watchdog settings in the environment: Invalid argument"}),
    [](const ::testing::TestParamInfo<WatchdogEnvironment> &environment) {
        return std::string(environment.param.name);
    });

} // namespace
} // namespace ionsvc::testing
