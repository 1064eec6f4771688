// SPDX-License-Identifier: MIT
// Real processes for the integration and in-VM tests: the real ionsvcd on
// a private socket, forked clients, and commands run to completion.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <bufclient/bufclient.h>
#include <ionsvc/status.h>
#include <ionsvc/unique_fd.h>

#include "child_process.h"

namespace ionsvc {
// gtest prints a status by its name.
inline void PrintTo(StatusCode code, std::ostream *os)
{
    *os << status_name(code);
}
} // namespace ionsvc

namespace ionsvc::testing {

// A private directory under /tmp, removed with everything in it.
class TemporaryDirectory
{
public:
    TemporaryDirectory();
    ~TemporaryDirectory();
    const std::string &path() const { return path_; }

private:
    std::string path_;
};

// ionsvcd, started on a socket of its own and known to be serving: the
// fixture waits for its sd_notify READY=1, not for time to pass. It serves
// memfd only unless extra_arguments name a --backend.
class DaemonProcess
{
public:
    // before_exec runs in the daemon's process before it starts (e.g. to
    // set a resource limit).
    explicit DaemonProcess(std::vector<std::string> extra_arguments = {}, std::function<void()> before_exec = {});
    ~DaemonProcess();

    pid_t pid() const { return pid_; }
    const std::string &socket_path() const { return socket_path_; }
    const std::string &directory() const { return directory_.path(); }

    // SIGTERM, then the exit status (as from waitpid) once it is gone.
    int terminate();
    // SIGKILL and reap.
    void kill();
    // What it wrote on stderr so far.
    std::string log() const;
    // SIGHUP, then waits until the daemon has said it read its config file
    // once more (whichever way that went); false if it never says so.
    bool reload();

    std::size_t open_fds() const;
    bufclient::Client connect(const std::string &client_name = "test") const;

private:
    TemporaryDirectory directory_;
    std::string socket_path_;
    pid_t pid_ = -1;
    int reloads_ = 0; // SIGHUPs sent
};

// Starts ionsvcd with argv and environment additions and returns once it
// said READY=1 (or fails the test). Used by DaemonProcess and by tests that
// start it in unusual ways.
pid_t start_daemon(const std::vector<std::string> &arguments, const std::string &log_path,
                   const std::string &notify_path, std::function<void()> before_exec = {});

// Forks a child that runs body and exits with its return value.
using test_support::ChildProcess;

// Runs body in a forked child, and returns its exit code with the text
// body put in message (an error message the parent wants to check).
struct ChildOutcome
{
    int exit_code = -1;
    std::string message;
};
ChildOutcome run_child(const std::function<int(std::string &message)> &body);

// In a forked child: becomes uid, with primary group gid (the number of
// uid if none) and groups as its supplementary groups. False if refused.
bool become_user(uid_t uid, std::optional<gid_t> gid = std::nullopt, const std::vector<gid_t> &groups = {});

// For DaemonProcess's and OpenDaemon's before_exec: the daemon's
// RLIMIT_NOFILE, soft and hard (it raises its soft limit to the hard one),
// so that an attack exhausts it quickly.
std::function<void()> fd_limit(rlim_t limit);

// What a client of another user got when it tried to allocate.
struct AllocationAttempt
{
    bool became_user = false;
    StatusCode code = StatusCode::kInternal; // of the connection, else of the allocation
    std::string message;                     // the refusal's, if any
};

// Connects to socket_path as uid (primary group the same number, and
// groups) in a forked child and allocates one 4 KiB buffer from heap (the
// daemon's default if empty).
AllocationAttempt allocate_as(const std::string &socket_path, uid_t uid, const std::vector<gid_t> &groups = {},
                              const std::string &heap = "");

// A daemon that every user may connect to (its socket 0666 in a 0755
// directory), for tests whose clients are other users: started on the
// config text given, with a client of root's connected and the daemon's
// fd count at that moment, which it must come back to.
class OpenDaemon
{
public:
    explicit OpenDaemon(const std::string &config = "", std::function<void()> before_exec = {});

    DaemonProcess &daemon() { return *daemon_; }
    const DaemonProcess &daemon() const { return *daemon_; }
    bufclient::Client &observer() { return *observer_; }
    // Its config file (given or not): rewrite it, then daemon().reload().
    std::string config_path() const { return config_directory_.path() + "/ionsvc.conf"; }
    // Fails the test unless the daemon's fds come back to the count it
    // had once the observer was connected, and its books to nothing but
    // the observer.
    void expect_back_to_baseline();
    // Fails the test unless everyone else is still served: root's
    // `ionsvc-ctl stats` succeeds and uid bystander allocates.
    void expect_others_served(uid_t bystander = 65533);

private:
    TemporaryDirectory config_directory_;
    std::optional<DaemonProcess> daemon_;
    std::optional<bufclient::Client> observer_;
    std::size_t baseline_fds_ = 0;
};

// A pipe that carries whole texts from a child to its parent, one message
// per write().
class TextPipe
{
public:
    TextPipe();
    void write(const std::string &text);
    // The next text written; empty on EOF or error.
    std::string read();

private:
    UniqueFD read_end_;
    UniqueFD write_end_;
};

// A pipe used as a one-byte signal between processes.
class Signal
{
public:
    Signal();
    void raise();   // write one byte
    bool wait();    // read one byte; false on EOF or error
    void close_write_end() { write_end_.reset(); }
    void close_read_end() { read_end_.reset(); }

private:
    UniqueFD read_end_;
    UniqueFD write_end_;
};

struct CommandResult
{
    int exit_code = -1;
    std::string out;
    std::string err;
};

// Runs a program to completion and collects its output.
CommandResult run_command(const std::vector<std::string> &argv);

// Paths of the binaries under test, from the build.
std::string ionsvcd_path();
std::string ionsvc_ctl_path();
std::string share_demo_path();

// Whether a test that needs root must fail rather than skip when it is not
// root: IONSVC_REQUIRE_ROOT=1 (scripts/test.sh sets it under CI, so that a
// CI run without root cannot pass those tests by skipping them).
bool root_is_required();

// Polls condition (each poll costing one round trip or syscall, never a
// sleep) until it holds or a generous deadline passes.
bool eventually(const std::function<bool()> &condition);

} // namespace ionsvc::testing

// In a test or fixture: skips it (or fails it, see root_is_required) unless
// it runs as root; why says what for.
#define IONSVC_NEED_ROOT(why)                                                                     \
    do {                                                                                          \
        if (::geteuid() != 0) {                                                                   \
            if (::ionsvc::testing::root_is_required())                                            \
                GTEST_FAIL() << "IONSVC_REQUIRE_ROOT is set, but this test is not root (" why ")"; \
            else                                                                                  \
                GTEST_SKIP() << "needs root, " why;                                               \
        }                                                                                         \
    } while (false)
