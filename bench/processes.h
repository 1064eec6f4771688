// SPDX-License-Identifier: MIT
// ionsvc-bench: the processes a run needs (the floor's peer, the bench's own
// ionsvcd), CPU placement, and the buffer name every allocation carries.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <ionsvc/fd_passing.h>
#include <ionsvc/unique_fd.h>

#include "raw_allocation.h"
#include "summary.h"

namespace ionsvc_bench {

using ionsvc::UniqueFD;

// Any failure ends the run with a non-zero exit: a benchmark that skips
// errors reports numbers for work it did not do. Caught in main().
class BenchError : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

// Set by SIGINT/SIGTERM: the run stops at the next iteration and unwinds,
// so that the daemon is stopped and the temporary directory removed.
inline volatile sig_atomic_t interrupted = 0;

inline void on_interrupt(int)
{
    interrupted = 1;
}

inline std::string errno_text(int error)
{
    return std::strerror(error);
}

inline std::string size_label(std::uint64_t bytes)
{
    if (bytes % (1024 * 1024) == 0)
        return std::to_string(bytes / (1024 * 1024)) + "MiB";
    if (bytes % 1024 == 0)
        return std::to_string(bytes / 1024) + "KiB";
    return std::to_string(bytes) + "B";
}

// ------------------------------------------------------------- allocation

// The name the daemon gives the bench's unnamed buffers ("<comm>:<pid>"),
// used by the floor and raw cases too so that all create alike
// (raw_allocation.h).
inline std::string &buffer_name()
{
    static std::string name = "ionsvc-bench:" + std::to_string(::getpid());
    return name;
}

inline std::uint64_t page_align(std::uint64_t size)
{
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    return (size + page - 1) / page * page;
}

// ---------------------------------------------------------------- pinning

// Where the bench, the floor's peer and the bench's own daemon run. Left to
// the scheduler, a client and its server land on one CPU in some runs and
// on two in others, and a cross-CPU wakeup on a VM (an IPI to an idle vCPU)
// costs tens of microseconds: p50s then jump between two modes from run to
// run, for the daemon and the floor independently, and the ratio means
// nothing. Pinning fixes the topology and makes it the same for both.
// The CPUs this process may use, in order.
inline std::vector<int> allowed_cpus()
{
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (::sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
        throw BenchError("sched_getaffinity failed: " + errno_text(errno));
    std::vector<int> cpus;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (CPU_ISSET(cpu, &allowed))
            cpus.push_back(cpu);
    }
    return cpus;
}

// Lets process pid (0: the caller) run on cpus; returns -errno, for
// children that cannot throw.
inline int allow_cpus(pid_t pid, const std::vector<int> &cpus)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    for (const int cpu : cpus)
        CPU_SET(cpu, &set);
    return ::sched_setaffinity(pid, sizeof(set), &set) < 0 ? -errno : 0;
}

enum class Pinning {
    kNone,  // the scheduler decides
    kSame,  // everything on one CPU: each round trip is two context switches
    kSplit, // the bench on one CPU, the peer and the daemon on another
};

struct Placement
{
    std::optional<int> client_cpu;
    std::optional<int> server_cpu;
};

inline Placement plan_placement(Pinning pinning)
{
    if (pinning == Pinning::kNone)
        return {};
    const std::vector<int> cpus = allowed_cpus();
    if (cpus.empty())
        throw BenchError("no CPU to run on");
    if (pinning == Pinning::kSame)
        return {cpus[0], cpus[0]};
    if (cpus.size() < 2)
        throw BenchError("--pin split needs two CPUs; this process may use one");
    return {cpus[0], cpus[1]};
}

// Pins the calling process; returns -errno, for children that cannot throw.
inline int pin_to(std::optional<int> cpu)
{
    if (!cpu)
        return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(*cpu, &set);
    return ::sched_setaffinity(0, sizeof(set), &set) < 0 ? -errno : 0;
}

// ------------------------------------------------------------ floor peer

// The floor's wire format: fixed-size packets, no parsing worth the name.
struct FloorRequest
{
    std::uint64_t size = 0; // 0: a bare round trip, no buffer
};

struct FloorReply
{
    std::int32_t error = 0; // errno of a failed allocation, else 0
    std::uint32_t reserved = 0;
    std::uint64_t size = 0;
};

// The peer's whole life: answer requests until the bench hangs up. It runs
// in a forked child, so it leaves with _exit() and never returns.
[[noreturn]] inline void run_floor_peer(UniqueFD socket, RawAllocator &allocator)
{
    std::array<std::byte, sizeof(FloorRequest)> packet{};
    for (;;) {
        auto received = ionsvc::receive_packet(socket.get(), packet, 0);
        if (received.status == 0)
            ::_exit(EXIT_SUCCESS); // the bench closed its end
        if (received.status != static_cast<ssize_t>(sizeof(FloorRequest)))
            ::_exit(EXIT_FAILURE);
        FloorRequest request;
        std::memcpy(&request, packet.data(), sizeof(request));

        FloorReply reply;
        reply.size = request.size;
        UniqueFD buffer;
        if (request.size != 0) {
            buffer = allocator.allocate(request.size);
            if (!buffer)
                reply.error = errno;
        }
        const int fd = buffer.get();
        const std::span<const int> fds = buffer ? std::span<const int>(&fd, 1) : std::span<const int>();
        if (ionsvc::send_packet(socket.get(), std::as_bytes(std::span(&reply, 1)), fds) < 0)
            ::_exit(EXIT_FAILURE);
        // The peer's own copy goes now, as the daemon's does at Free: the
        // client's fd is then the buffer's last reference.
    }
}

// The bench's end of the floor: a socketpair and the peer process behind
// it, which allocates with (its copy of) allocator.
class FloorPeer
{
public:
    FloorPeer(RawAllocator &allocator, std::optional<int> cpu) : allocator_(allocator)
    {
        int ends[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) < 0)
            throw BenchError("socketpair failed: " + errno_text(errno));
        UniqueFD mine{ends[0]};
        UniqueFD theirs{ends[1]};

        pid_ = ::fork();
        if (pid_ < 0)
            throw BenchError("fork failed: " + errno_text(errno));
        if (pid_ == 0) {
            mine.reset();
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (pin_to(cpu) < 0)
                ::_exit(EXIT_FAILURE);
            run_floor_peer(std::move(theirs), allocator);
        }
        socket_ = std::move(mine);
    }

    FloorPeer(const FloorPeer &) = delete;
    FloorPeer &operator=(const FloorPeer &) = delete;

    ~FloorPeer()
    {
        // Hanging up is the peer's signal to leave.
        socket_.reset();
        int status = 0;
        ::waitpid(pid_, &status, 0);
    }

    // One request/reply round trip; returns the fd that came back (invalid
    // for size 0).
    UniqueFD transact(std::uint64_t size)
    {
        const FloorRequest request{size};
        if (ionsvc::send_packet(socket_.get(), std::as_bytes(std::span(&request, 1)), {}) < 0)
            throw BenchError("floor: send failed: " + errno_text(errno));

        FloorReply reply;
        auto received = ionsvc::receive_packet(
            socket_.get(), std::as_writable_bytes(std::span(&reply, 1)), 1);
        if (received.status != static_cast<ssize_t>(sizeof(reply)))
            throw BenchError("floor: bad reply from the peer (status " +
                             std::to_string(received.status) + ")");
        if (reply.error != 0)
            throw BenchError("floor: the peer could not allocate: " + errno_text(reply.error));
        if (received.fds.size() != (size ? 1u : 0u))
            throw BenchError("floor: the reply carried " + std::to_string(received.fds.size()) +
                             " fds");
        return size ? std::move(received.fds.front()) : UniqueFD{};
    }

    // What the peer allocates with, for the same allocation in-process.
    RawAllocator &allocator() const { return allocator_; }

private:
    RawAllocator &allocator_;
    pid_t pid_ = -1;
    UniqueFD socket_;
};

// ---------------------------------------------------------------- daemon

// An ionsvcd of our own on a temporary socket, serving backend alone,
// stopped with SIGTERM.
class DaemonProcess
{
public:
    // config: the text of its config file; the machine's own
    // (/etc/ionsvc/ionsvc.conf) is never read, so that runs compare.
    DaemonProcess(const std::string &executable, const std::string &backend, std::optional<int> cpu,
                  const std::string &config = {})
    {
        char pattern[] = "/tmp/ionsvc-bench.XXXXXX";
        if (!::mkdtemp(pattern))
            throw BenchError("mkdtemp failed: " + errno_text(errno));
        directory_ = pattern;
        socket_path_ = directory_ + "/ionsvc.sock";
        const std::string config_path = directory_ + "/ionsvc.conf";
        std::FILE *file = std::fopen(config_path.c_str(), "w");
        const bool written = file && std::fwrite(config.data(), 1, config.size(), file) == config.size();
        if (!file || std::fclose(file) != 0 || !written) {
            remove_directory();
            throw BenchError("cannot write " + config_path);
        }

        std::vector<std::string> arguments{executable, "--socket", socket_path_, "--backend",
                                           backend, "--log-level", "warn", "--config", config_path};
        std::vector<char *> argv;
        for (auto &argument : arguments)
            argv.push_back(argument.data());
        argv.push_back(nullptr);

        pid_ = ::fork();
        if (pid_ < 0)
            throw BenchError("fork failed: " + errno_text(errno));
        if (pid_ == 0) {
            // Should the bench die without cleaning up, take the daemon along.
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (const int error = pin_to(cpu); error < 0) {
                std::fprintf(stderr, "ionsvc-bench: cannot pin ionsvcd: %s\n", std::strerror(-error));
                ::_exit(127);
            }
            ::execv(argv[0], argv.data());
            std::fprintf(stderr, "ionsvc-bench: cannot run %s: %s\n", argv[0], std::strerror(errno));
            ::_exit(127);
        }
        try {
            wait_until_accepting();
        } catch (...) {
            // A constructor that throws gets no destructor: clean up here.
            stop_quietly();
            throw;
        }
    }

    DaemonProcess(const DaemonProcess &) = delete;
    DaemonProcess &operator=(const DaemonProcess &) = delete;

    ~DaemonProcess() { stop_quietly(); }

    const std::string &socket_path() const { return socket_path_; }
    pid_t pid() const { return pid_; }

    // SIGTERM, then the exit status: a daemon that does not stop cleanly is
    // a failed run.
    void stop()
    {
        if (::kill(pid_, SIGTERM) < 0)
            throw BenchError("cannot signal ionsvcd: " + errno_text(errno));
        const int status = wait_bounded(kStopLimit);
        remove_directory();
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            throw BenchError("ionsvcd did not exit cleanly on SIGTERM (wait status " +
                             std::to_string(status) + ")");
    }

private:
    // Generous: after a scale run under emulation, the daemon first looks
    // at each of 100k dma-bufs as its clients go, then frees them.
    static constexpr std::chrono::seconds kStopLimit{120};

    // On the error path: stop the daemon, never hang on it.
    void stop_quietly() noexcept
    {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            try {
                wait_bounded(kStopLimit);
            } catch (const BenchError &) {
                // wait_bounded killed it; the run has failed already.
            }
        }
        remove_directory();
    }

    void wait_until_accepting()
    {
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        if (socket_path_.size() >= sizeof(address.sun_path))
            throw BenchError("socket path too long: " + socket_path_);
        std::memcpy(address.sun_path, socket_path_.data(), socket_path_.size());

        // 1000 attempts, 5 ms apart: up to 5 s for a slow (e.g. sanitized) start.
        constexpr int kAttempts = 1000;
        for (int attempt = 0; attempt < kAttempts; ++attempt) {
            UniqueFD probe{::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)};
            if (!probe)
                throw BenchError("socket failed: " + errno_text(errno));
            if (::connect(probe.get(), reinterpret_cast<const sockaddr *>(&address),
                          sizeof(address)) == 0)
                return;
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                throw BenchError("ionsvcd exited before accepting connections (wait status " +
                                 std::to_string(status) + ")");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        throw BenchError("ionsvcd did not accept connections on " + socket_path_ + " within " +
                         std::to_string(kAttempts) + " attempts");
    }

    int wait_bounded(std::chrono::seconds limit)
    {
        const auto deadline = Clock::now() + limit;
        int status = 0;
        for (;;) {
            const pid_t done = ::waitpid(pid_, &status, WNOHANG);
            if (done == pid_) {
                pid_ = -1;
                return status;
            }
            if (done < 0) {
                pid_ = -1;
                throw BenchError("waitpid failed: " + errno_text(errno));
            }
            if (Clock::now() > deadline) {
                ::kill(pid_, SIGKILL);
                ::waitpid(pid_, &status, 0);
                pid_ = -1;
                throw BenchError("ionsvcd did not stop within " + std::to_string(limit.count()) +
                                 " s of SIGTERM; killed it");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }

    void remove_directory()
    {
        if (directory_.empty())
            return;
        std::error_code ignored;
        std::filesystem::remove_all(directory_, ignored);
        directory_.clear();
    }

    pid_t pid_ = -1;
    std::string directory_;
    std::string socket_path_;
};

// ---------------------------------------------------------- daemon state

// The number that format (one %llu) reads from the first line of
// /proc/<pid>/<file> it matches.
inline std::optional<unsigned long long> proc_number(pid_t pid, const char *file, const char *format)
{
    std::FILE *stream = std::fopen(("/proc/" + std::to_string(pid) + "/" + file).c_str(), "r");
    if (!stream)
        return std::nullopt;
    std::optional<unsigned long long> number;
    char line[256];
    while (std::fgets(line, sizeof(line), stream)) {
        unsigned long long value = 0;
        if (std::sscanf(line, format, &value) == 1) {
            number = value;
            break;
        }
    }
    std::fclose(stream);
    return number;
}

// VmRSS of pid, in bytes.
inline std::optional<std::uint64_t> resident_bytes(pid_t pid)
{
    const auto kib = proc_number(pid, "status", "VmRSS: %llu kB");
    return kib ? std::optional<std::uint64_t>(*kib * 1024) : std::nullopt;
}

// The soft limit on open files of pid.
inline std::optional<std::uint64_t> open_files_limit(pid_t pid)
{
    return proc_number(pid, "limits", "Max open files %llu");
}

// The pid of the process listening on socket_path (SO_PEERCRED), so that
// a daemon given with --socket can be measured too.
inline std::optional<pid_t> listener_pid(const std::string &socket_path)
{
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (socket_path.size() >= sizeof(address.sun_path))
        return std::nullopt;
    std::memcpy(address.sun_path, socket_path.data(), socket_path.size());
    UniqueFD probe{::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)};
    if (!probe ||
        ::connect(probe.get(), reinterpret_cast<const sockaddr *>(&address), sizeof(address)) < 0)
        return std::nullopt;
    ucred credentials{};
    socklen_t length = sizeof(credentials);
    if (::getsockopt(probe.get(), SOL_SOCKET, SO_PEERCRED, &credentials, &length) < 0)
        return std::nullopt;
    return credentials.pid;
}

// Makes this process's fd limits (soft and hard) at least wanted, so that a
// daemon started from it may raise its own that far. Raising the hard limit
// takes CAP_SYS_RESOURCE. Returns why it could not, else nothing.
inline std::optional<std::string> raise_fd_limits(std::uint64_t wanted)
{
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) < 0)
        return "getrlimit failed: " + errno_text(errno);
    if (limit.rlim_cur >= wanted && limit.rlim_max >= wanted)
        return std::nullopt;
    rlimit raised{std::max<rlim_t>(limit.rlim_cur, wanted), std::max<rlim_t>(limit.rlim_max, wanted)};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0)
        return std::nullopt;
    const int error = errno;
    // Take what the hard limit allows, at least.
    raised = {limit.rlim_max, limit.rlim_max};
    ::setrlimit(RLIMIT_NOFILE, &raised);
    return "cannot raise the fd limit to " + std::to_string(wanted) + " (hard limit " +
           std::to_string(limit.rlim_max) + "): " + errno_text(error) +
           (error == EPERM ? " (raising the hard limit needs CAP_SYS_RESOURCE, which this "
                             "process lacks; a container may drop it even for root)"
                           : "");
}

} // namespace ionsvc_bench
