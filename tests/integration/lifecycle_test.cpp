// SPDX-License-Identifier: MIT
// Starting, stopping and losing the daemon.
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"

namespace ionsvc::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

UniqueFD bound_socket(const std::string &path, bool listening)
{
    UniqueFD socket{::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)};
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    EXPECT_EQ(::bind(socket.get(), reinterpret_cast<const sockaddr *>(&address), sizeof(address)), 0);
    if (listening) {
        EXPECT_EQ(::listen(socket.get(), 16), 0);
    }
    return socket;
}

std::size_t occurrences(const std::string &text, const std::string &needle)
{
    std::size_t count = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
        ++count;
    return count;
}

TEST(Lifecycle, ADaemonOutOfFdsSaysResourceExhaustedLetsRootInAndServesEveryoneAgainOnceBuffersAreFreed)
{
    TemporaryDirectory directory;
    const std::string path = directory.path() + "/ionsvc.sock";
    const std::string log_path = directory.path() + "/ionsvcd.log";
    // Without the built-in uid quota, which would stop root at a quarter of
    // the fds first.
    const std::string config_path = directory.path() + "/ionsvc.conf";
    std::ofstream(config_path) << "[quota]\nuid = {}\n";
    // The daemon raises its soft limit to the hard one: both go low.
    const pid_t pid = start_daemon({ionsvcd_path(), "--socket", path, "--backend", "memfd", "--log-level", "debug",
                                    "--config", config_path},
                                   log_path, directory.path() + "/notify", [] {
                                       const rlimit limit{64, 64};
                                       ::setrlimit(RLIMIT_NOFILE, &limit);
                                   });
    ASSERT_GT(pid, 0);
    const auto daemon_log = [&] {
        std::ifstream file(log_path);
        return std::string(std::istreambuf_iterator<char>(file), {});
    };
    auto holder = bufclient::Client::connect({.socket_path = path});
    ASSERT_TRUE(holder) << holder.error().message;
    // A Free message while fds are there: UBSan's first check of a type
    // needs a pipe, and out of fds it reports a false error and stops the
    // daemon. Flushed, as a small buffer's free would wait for the next
    // request.
    auto first = holder->allocate({.size = 4096});
    ASSERT_TRUE(first && holder->free(first->front()) && holder->flush_frees());

    std::vector<bufclient::Buffer> held;
    bufclient::Error exhausted{};
    for (int i = 0; i < 1000; ++i) {
        auto buffers = holder->allocate({.size = 4096});
        if (!buffers) {
            exhausted = buffers.error();
            break;
        }
        held.push_back(std::move(buffers->front()));
    }
    EXPECT_EQ(exhausted.code, StatusCode::kResourceExhausted) << exhausted.message;
    EXPECT_THAT(exhausted.message, HasSubstr("Too many open files"));
    EXPECT_THAT(exhausted.message, HasSubstr("at its limit of 64 (RLIMIT_NOFILE): no more live buffers"));
    EXPECT_GT(held.size(), 30u);

    // A client that connects now is let in on the daemon's spare fds: root
    // may always connect and look.
    {
        auto late = bufclient::Client::connect({.socket_path = path});
        ASSERT_TRUE(late) << late.error().message << "\n" << daemon_log();
        EXPECT_TRUE(late->list_heaps());
    }

    std::vector<std::uint64_t> ids;
    for (const auto &buffer : held)
        ids.push_back(buffer.id());
    ASSERT_TRUE(holder->free(ids));
    held.clear();

    auto newcomer = bufclient::Client::connect({.socket_path = path});
    ASSERT_TRUE(newcomer) << newcomer.error().message;
    EXPECT_TRUE(newcomer->allocate({.size = 4096}));
    EXPECT_TRUE(holder->allocate({.size = 4096}));

    // Nobody waited in the backlog, so accept() never failed for good.
    EXPECT_EQ(occurrences(daemon_log(), "accept failed"), 0u) << daemon_log();

    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << daemon_log();
}

TEST(Lifecycle, AClientWithNoFdFreeForItsBuffersIsToldSoAndTheDaemonLetsThemGo)
{
    DaemonProcess daemon;
    ChildProcess child([&] {
        auto client = bufclient::Client::connect({.socket_path = daemon.socket_path()});
        if (!client)
            return 2;
        // Each request once while fds are there: under UBSan, the first
        // check of a type needs a pipe, and out of fds it reports a false
        // error.
        auto first = client->allocate({.size = 4096});
        if (!first || !client->free(first->front()) || !client->list_heaps())
            return 7;
        const rlimit limit{64, 64};
        if (::setrlimit(RLIMIT_NOFILE, &limit) < 0)
            return 3;
        std::vector<UniqueFD> filler;
        for (UniqueFD fd{::dup(0)}; fd; fd = UniqueFD{::dup(0)})
            filler.push_back(std::move(fd));
        auto buffers = client->allocate({.size = 4096, .count = 2});
        if (buffers || buffers.error().code != StatusCode::kResourceExhausted)
            return 4;
        const std::string &message = buffers.error().message;
        if (message.find("this process has no fd free for the buffers the reply carried") == std::string::npos ||
            message.find("its limit of 64 (RLIMIT_NOFILE)") == std::string::npos)
            return 5;
        // The connection went with the buffers.
        const auto heaps = client->list_heaps();
        return !heaps && heaps.error().code == StatusCode::kUnavailable ? 0 : 6;
    });
    const pid_t child_pid = child.pid();
    EXPECT_EQ(child.wait(), 0);

    auto observer = daemon.connect("observer");
    EXPECT_TRUE(eventually([&] {
        auto stats = observer.stats(child_pid);
        return stats && stats->clients.empty() && stats->heaps.at(0).total_buffers == 0;
    })) << "the books still hold the buffers of the reply nobody could take";
    EXPECT_TRUE(observer.allocate({.size = 4096}));
}

TEST(Lifecycle, SigtermShutsDownCleanlyAndRemovesTheSocket)
{
    DaemonProcess daemon;
    auto client = daemon.connect();
    ASSERT_TRUE(client.allocate({.size = 4096}));
    ASSERT_TRUE(std::filesystem::exists(daemon.socket_path()));

    const int status = daemon.terminate();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    EXPECT_FALSE(std::filesystem::exists(daemon.socket_path()));
    EXPECT_THAT(daemon.log(), HasSubstr("shutting down"));
}

TEST(Lifecycle, ConnectAndDisconnectAreLoggedWithPidUidAndComm)
{
    DaemonProcess daemon({"--log-level", "info"});
    {
        auto client = daemon.connect("logged");
        for (int i = 0; i < 10; ++i)
            ASSERT_TRUE(client.allocate({.size = 4096}));
    }
    auto observer = daemon.connect("observer");
    ASSERT_TRUE(eventually([&] { return observer.stats()->clients.size() == 1; }));

    std::ifstream comm_file("/proc/self/comm");
    std::string comm;
    std::getline(comm_file, comm);
    const std::string log = daemon.log();
    const std::string who = "pid " + std::to_string(::getpid()) + " uid " + std::to_string(::getuid());
    EXPECT_THAT(log, HasSubstr("client 1 connected: " + who));
    EXPECT_THAT(log, HasSubstr("client 1 disconnected: " + who + " comm '" + comm + "' name 'logged'"));
    // Nothing per allocation at info level.
    EXPECT_THAT(log, Not(HasSubstr("4096")));
}

TEST(Lifecycle, AStaleSocketFileIsReplaced)
{
    TemporaryDirectory directory;
    const std::string path = directory.path() + "/ionsvc.sock";
    bound_socket(path, false); // closed at once: the file stays, nobody listens
    ASSERT_TRUE(std::filesystem::exists(path));

    const pid_t pid = start_daemon({ionsvcd_path(), "--socket", path}, directory.path() + "/log",
                                   directory.path() + "/notify");
    ASSERT_GT(pid, 0);
    auto client = bufclient::Client::connect({.socket_path = path});
    EXPECT_TRUE(client) << client.error().message;
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
}

TEST(Lifecycle, ASecondDaemonOnALiveSocketRefusesToStart)
{
    DaemonProcess daemon;
    const CommandResult second = run_command({ionsvcd_path(), "--socket", daemon.socket_path()});
    EXPECT_NE(second.exit_code, 0);
    EXPECT_THAT(second.err, HasSubstr("another daemon already listens on"));
    // The first one is untouched.
    auto client = daemon.connect();
    EXPECT_TRUE(client.allocate({.size = 4096}));
}

TEST(Lifecycle, AFileThatIsNotASocketIsLeftAlone)
{
    TemporaryDirectory directory;
    const std::string path = directory.path() + "/precious";
    std::ofstream(path) << "data";
    const CommandResult result = run_command({ionsvcd_path(), "--socket", path});
    EXPECT_NE(result.exit_code, 0);
    EXPECT_THAT(result.err, HasSubstr("exists and is not a socket"));
    EXPECT_EQ(std::filesystem::file_size(path), 4u);
}

TEST(Lifecycle, ASocketPassedBySystemdIsServedAndNotUnlinked)
{
    TemporaryDirectory directory;
    const std::string path = directory.path() + "/activated.sock";
    UniqueFD listening = bound_socket(path, true);
    const int passed = listening.get();

    const pid_t pid = start_daemon({ionsvcd_path(), "--socket", directory.path() + "/unused.sock"},
                                   directory.path() + "/log", directory.path() + "/notify", [&] {
                                       // As systemd does: fd 3, and LISTEN_PID naming the daemon.
                                       ::dup2(passed, 3);
                                       ::setenv("LISTEN_FDS", "1", 1);
                                       ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
                                   });
    ASSERT_GT(pid, 0);
    listening.reset();

    auto client = bufclient::Client::connect({.socket_path = path});
    ASSERT_TRUE(client) << client.error().message;
    EXPECT_TRUE(client->allocate({.size = 4096}));
    EXPECT_FALSE(std::filesystem::exists(directory.path() + "/unused.sock"));

    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
    EXPECT_TRUE(std::filesystem::exists(path)) << "systemd's socket file was removed";
}

TEST(Lifecycle, ADeadDaemonIsAnErrorForItsClientsNotACrash)
{
    DaemonProcess daemon;
    auto client = daemon.connect();
    auto buffers = client.allocate({.size = 4096});
    ASSERT_TRUE(buffers);
    daemon.kill();

    auto after = client.allocate({.size = 4096});
    ASSERT_FALSE(after);
    EXPECT_EQ(after.error().code, StatusCode::kUnavailable);
    EXPECT_THAT(after.error().message, HasSubstr("ionsvcd"));
    auto again = client.stats();
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, StatusCode::kUnavailable);

    // What the client already held is still good memory.
    auto mapping = buffers->front().map();
    ASSERT_TRUE(mapping);
    static_cast<char *>(mapping->data())[0] = 'x';
}

TEST(Lifecycle, ASilentDaemonIsAnErrorAfterTheTimeoutNotAHang)
{
    DaemonProcess daemon;
    auto client = bufclient::Client::connect({.socket_path = daemon.socket_path(),
                                              .timeout = std::chrono::milliseconds(100)});
    ASSERT_TRUE(client);
    ::kill(daemon.pid(), SIGSTOP);
    auto stats = client->stats();
    ::kill(daemon.pid(), SIGCONT);
    ASSERT_FALSE(stats);
    EXPECT_EQ(stats.error().code, StatusCode::kUnavailable);
    EXPECT_THAT(stats.error().message, HasSubstr("no reply within 100 ms"));
}

TEST(Lifecycle, ADaemonThatStopsReadingIsAnErrorForFreeNotAHang)
{
    DaemonProcess daemon;
    // Every Free a message of its own.
    auto client = bufclient::Client::connect({.socket_path = daemon.socket_path(),
                                              .timeout = std::chrono::milliseconds(100),
                                              .deferred_free_bytes = 0});
    ASSERT_TRUE(client);
    // More one-id Frees than the socket's send buffer holds (~200 packets).
    std::vector<bufclient::Buffer> held;
    for (int batch = 0; batch < 8; ++batch) {
        auto buffers = client->allocate({.size = 4096, .count = 64});
        ASSERT_TRUE(buffers) << buffers.error().message;
        std::move(buffers->begin(), buffers->end(), std::back_inserter(held));
    }

    // Frees need no reply, so they queue up until the socket is full; then
    // the send gives up after the timeout instead of blocking forever.
    ::kill(daemon.pid(), SIGSTOP);
    bufclient::Error error;
    for (const auto &buffer : held) {
        auto freed = client->free(buffer);
        if (!freed) {
            error = freed.error();
            break;
        }
    }
    ::kill(daemon.pid(), SIGCONT);
    EXPECT_EQ(error.code, StatusCode::kUnavailable);
    EXPECT_THAT(error.message, HasSubstr("took no request within 100 ms"));
}

TEST(Lifecycle, ConnectingWhereNoDaemonListensIsUnavailable)
{
    TemporaryDirectory directory;
    auto client = bufclient::Client::connect({.socket_path = directory.path() + "/nobody.sock"});
    ASSERT_FALSE(client);
    EXPECT_EQ(client.error().code, StatusCode::kUnavailable);
    EXPECT_THAT(client.error().message, HasSubstr("nobody.sock"));
}

TEST(Lifecycle, ClientsFindTheDaemonThroughIonsvcSocket)
{
    DaemonProcess daemon;
    ::setenv("IONSVC_SOCKET", daemon.socket_path().c_str(), 1);
    auto client = bufclient::Client::connect();
    ::unsetenv("IONSVC_SOCKET");
    EXPECT_TRUE(client) << client.error().message;
}

} // namespace
} // namespace ionsvc::testing
