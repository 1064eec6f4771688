// SPDX-License-Identifier: MIT
#include "harness.h"

#include "fd_count.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>

#include <gtest/gtest.h>

namespace ionsvc::testing {

namespace {

constexpr auto kStartTimeout = std::chrono::seconds(20);
constexpr auto kEventuallyTimeout = std::chrono::seconds(20);

UniqueFD bind_notify_socket(const std::string &path)
{
    UniqueFD socket{::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    if (::bind(socket.get(), reinterpret_cast<const sockaddr *>(&address), sizeof(address)) < 0)
        ADD_FAILURE() << "bind " << path << ": " << std::strerror(errno);
    return socket;
}

std::string read_file(const std::string &path)
{
    std::ifstream file(path);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
}

[[noreturn]] void exec(const std::vector<std::string> &arguments)
{
    std::vector<char *> argv;
    for (const auto &argument : arguments)
        argv.push_back(const_cast<char *>(argument.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::fprintf(stderr, "exec %s: %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
}

} // namespace

TemporaryDirectory::TemporaryDirectory()
{
    char pattern[] = "/tmp/ionsvc-test-XXXXXX";
    if (!::mkdtemp(pattern))
        ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    path_ = pattern;
}

TemporaryDirectory::~TemporaryDirectory()
{
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

pid_t start_daemon(const std::vector<std::string> &arguments, const std::string &log_path,
                   const std::string &notify_path, std::function<void()> before_exec)
{
    UniqueFD notify = bind_notify_socket(notify_path);

    const pid_t pid = ::fork();
    if (pid == 0) {
        const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ::dup2(log, STDERR_FILENO);
        ::dup2(log, STDOUT_FILENO);
        ::setenv("NOTIFY_SOCKET", notify_path.c_str(), 1);
        if (before_exec)
            before_exec();
        exec(arguments);
    }

    // READY=1 says the socket is listening; nothing else is waited for.
    const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd pfd{notify.get(), POLLIN, 0};
        if (::poll(&pfd, 1, 200) > 0) {
            char message[512] = {};
            const ssize_t n = ::recv(notify.get(), message, sizeof(message) - 1, 0);
            if (n > 0 && std::string_view(message).find("READY=1") != std::string_view::npos)
                return pid;
        }
        int status;
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            ADD_FAILURE() << "ionsvcd exited with " << test_support::exit_code_from_wait_status(status)
                          << " before it was ready:\n" << read_file(log_path);
            return -1;
        }
    }
    ADD_FAILURE() << "ionsvcd did not report READY=1 in time:\n" << read_file(log_path);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return -1;
}

DaemonProcess::DaemonProcess(std::vector<std::string> extra_arguments, std::function<void()> before_exec)
    : socket_path_(directory_.path() + "/run/ionsvc.sock")
{
    const auto given = [&](std::string_view option) {
        return std::find(extra_arguments.begin(), extra_arguments.end(), option) != extra_arguments.end();
    };
    std::vector<std::string> arguments = {ionsvcd_path(), "--socket", socket_path_};
    // memfd works on every machine; the in-VM tests ask for the real devices.
    if (!given("--backend"))
        arguments.insert(arguments.end(), {"--backend", "memfd"});
    // Debug logs help a failing test, unless the test is about log levels.
    if (!given("--log-level"))
        arguments.insert(arguments.end(), {"--log-level", "debug"});
    arguments.insert(arguments.end(), extra_arguments.begin(), extra_arguments.end());
    pid_ = start_daemon(arguments, directory_.path() + "/ionsvcd.log", directory_.path() + "/notify",
                        std::move(before_exec));
}

DaemonProcess::~DaemonProcess()
{
    if (pid_ <= 0)
        return;
    // Every test also checks that the daemon shuts down cleanly: under the
    // sanitizers a leak or an error shows here as a non-zero exit.
    const int status = terminate();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        ADD_FAILURE() << "ionsvcd did not exit cleanly (status " << status << "):\n" << log();
}

int DaemonProcess::terminate()
{
    if (pid_ <= 0)
        return -1;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
}

void DaemonProcess::kill()
{
    if (pid_ <= 0)
        return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
}

std::string DaemonProcess::log() const
{
    return read_file(directory_.path() + "/ionsvcd.log");
}

bool DaemonProcess::reload()
{
    if (::kill(pid_, SIGHUP) != 0)
        return false;
    ++reloads_;
    // Every reload logs one line with "reload" in it, done or failed.
    return eventually([&] {
        const std::string text = log();
        int seen = 0;
        for (std::size_t at = 0; (at = text.find("reload", at)) != std::string::npos; at += 6)
            ++seen;
        return seen >= reloads_;
    });
}

std::size_t DaemonProcess::open_fds() const
{
    return test_support::open_fd_count(pid_);
}

bufclient::Client DaemonProcess::connect(const std::string &client_name) const
{
    auto client = bufclient::Client::connect({.socket_path = socket_path_, .client_name = client_name});
    if (!client) {
        ADD_FAILURE() << "connect: " << client.error().message;
        std::abort();
    }
    return std::move(*client);
}


Signal::Signal()
{
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0)
        ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    read_end_.reset(fds[0]);
    write_end_.reset(fds[1]);
}

void Signal::raise()
{
    const char byte = 1;
    if (::write(write_end_.get(), &byte, 1) != 1)
        std::abort();
}

bool Signal::wait()
{
    char byte;
    return ::read(read_end_.get(), &byte, 1) == 1;
}

CommandResult run_command(const std::vector<std::string> &argv)
{
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) < 0 || ::pipe2(err, O_CLOEXEC) < 0)
        return {};
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out[1], STDOUT_FILENO);
        ::dup2(err[1], STDERR_FILENO);
        exec(argv);
    }
    ::close(out[1]);
    ::close(err[1]);
    UniqueFD out_read{out[0]}, err_read{err[0]};

    CommandResult result;
    // Drain both pipes together, so that neither can fill up and stall the
    // command.
    pollfd pfds[2] = {{out_read.get(), POLLIN, 0}, {err_read.get(), POLLIN, 0}};
    std::string *sinks[2] = {&result.out, &result.err};
    int open_pipes = 2;
    while (open_pipes > 0 && ::poll(pfds, 2, -1) > 0) {
        for (int i = 0; i < 2; ++i) {
            if (pfds[i].fd < 0 || !pfds[i].revents)
                continue;
            char chunk[4096];
            const ssize_t n = ::read(pfds[i].fd, chunk, sizeof(chunk));
            if (n > 0) {
                sinks[i]->append(chunk, static_cast<std::size_t>(n));
            } else {
                pfds[i].fd = -1;
                --open_pipes;
            }
        }
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    result.exit_code = test_support::exit_code_from_wait_status(status);
    return result;
}

std::string ionsvcd_path()
{
    return IONSVCD_PATH;
}

std::string ionsvc_ctl_path()
{
    return IONSVC_CTL_PATH;
}

std::string share_demo_path()
{
    return IONSVC_SHARE_DEMO_PATH;
}

bool root_is_required()
{
    const char *required = std::getenv("IONSVC_REQUIRE_ROOT");
    return required != nullptr && std::string_view{required} == "1";
}

bool eventually(const std::function<bool()> &condition)
{
    const auto deadline = std::chrono::steady_clock::now() + kEventuallyTimeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (condition())
            return true;
    }
    return condition();
}

ChildOutcome run_child(const std::function<int(std::string &message)> &body)
{
    int ends[2];
    EXPECT_EQ(::pipe2(ends, O_CLOEXEC), 0) << std::strerror(errno);
    UniqueFD read_end{ends[0]};
    UniqueFD write_end{ends[1]};
    ChildProcess child([&] {
        read_end.reset();
        std::string message;
        const int code = body(message);
        if (::write(write_end.get(), message.data(), message.size()) < 0)
            return 99;
        return code;
    });
    write_end.reset();
    ChildOutcome outcome;
    char chunk[512];
    for (ssize_t n; (n = ::read(read_end.get(), chunk, sizeof(chunk))) > 0;)
        outcome.message.append(chunk, static_cast<std::size_t>(n));
    outcome.exit_code = child.wait();
    return outcome;
}

bool become_user(uid_t uid, std::optional<gid_t> gid, const std::vector<gid_t> &groups)
{
    const gid_t primary = gid.value_or(static_cast<gid_t>(uid));
    return ::setgroups(groups.size(), groups.data()) == 0 && ::setresgid(primary, primary, primary) == 0 &&
           ::setresuid(uid, uid, uid) == 0;
}

std::function<void()> fd_limit(rlim_t limit)
{
    return [limit] {
        const rlimit both{limit, limit};
        ::setrlimit(RLIMIT_NOFILE, &both);
    };
}

AllocationAttempt allocate_as(const std::string &socket_path, uid_t uid, const std::vector<gid_t> &groups,
                              const std::string &heap)
{
    constexpr int kUserChange = 100;
    const ChildOutcome outcome = run_child([&](std::string &message) {
        if (!become_user(uid, std::nullopt, groups))
            return kUserChange;
        auto client = bufclient::Client::connect({.socket_path = socket_path, .client_name = "allocate_as"});
        if (!client) {
            message = client.error().message;
            return static_cast<int>(client.error().code);
        }
        auto buffers = client->allocate({.heap = heap, .size = 4096});
        if (!buffers) {
            message = buffers.error().message;
            return static_cast<int>(buffers.error().code);
        }
        return static_cast<int>(StatusCode::kOk);
    });
    AllocationAttempt attempt;
    attempt.became_user = outcome.exit_code != kUserChange;
    if (attempt.became_user && outcome.exit_code >= 0)
        attempt.code = static_cast<StatusCode>(outcome.exit_code);
    attempt.message = outcome.message;
    return attempt;
}

TextPipe::TextPipe()
{
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) == 0) {
        read_end_ = UniqueFD{ends[0]};
        write_end_ = UniqueFD{ends[1]};
    }
}

void TextPipe::write(const std::string &text)
{
    const std::uint32_t length = static_cast<std::uint32_t>(text.size());
    std::string message(reinterpret_cast<const char *>(&length), sizeof(length));
    message += text;
    // Below PIPE_BUF is one write; longer texts are for nobody here.
    [[maybe_unused]] const ssize_t written = ::write(write_end_.get(), message.data(), message.size());
}

std::string TextPipe::read()
{
    const auto read_exactly = [&](char *data, std::size_t size) {
        for (std::size_t done = 0; done < size;) {
            const ssize_t n = ::read(read_end_.get(), data + done, size - done);
            if (n <= 0)
                return false;
            done += static_cast<std::size_t>(n);
        }
        return true;
    };
    std::uint32_t length = 0;
    if (!read_exactly(reinterpret_cast<char *>(&length), sizeof(length)))
        return {};
    std::string text(length, '\0');
    return read_exactly(text.data(), length) ? text : std::string{};
}

OpenDaemon::OpenDaemon(const std::string &config, std::function<void()> before_exec)
{
    std::vector<std::string> arguments;
    if (!config.empty()) {
        std::ofstream(config_directory_.path() + "/ionsvc.conf") << config;
        arguments = {"--config", config_directory_.path() + "/ionsvc.conf"};
    }
    daemon_.emplace(arguments, std::move(before_exec));
    EXPECT_EQ(::chmod(daemon_->directory().c_str(), 0755), 0) << std::strerror(errno);
    EXPECT_EQ(::chmod(daemon_->socket_path().c_str(), 0666), 0) << std::strerror(errno);
    observer_.emplace(daemon_->connect("observer"));
    baseline_fds_ = daemon_->open_fds();
}

void OpenDaemon::expect_others_served(uid_t bystander)
{
    const CommandResult stats = run_command({ionsvc_ctl_path(), "--socket", daemon_->socket_path(), "stats"});
    EXPECT_EQ(stats.exit_code, 0) << stats.err;
    const AllocationAttempt attempt = allocate_as(daemon_->socket_path(), bystander);
    EXPECT_EQ(attempt.code, StatusCode::kOk) << attempt.message;
}

void OpenDaemon::expect_back_to_baseline()
{
    EXPECT_TRUE(eventually([&] { return daemon_->open_fds() == baseline_fds_; }))
        << daemon_->open_fds() << " fds, " << baseline_fds_ << " with the observer alone";
    // Release detection runs on a timer: the books empty soon after.
    const auto books_empty = [&] {
        auto stats = observer_->stats();
        if (!stats || stats->clients.size() != 1)
            return false;
        return std::all_of(stats->heaps.begin(), stats->heaps.end(),
                           [](const auto &heap) { return heap.total_buffers == 0; });
    };
    EXPECT_TRUE(eventually(books_empty)) << "buffers left in the books";
}

} // namespace ionsvc::testing
