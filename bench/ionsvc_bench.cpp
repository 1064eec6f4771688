// SPDX-License-Identifier: MIT
// ionsvc-bench: what one buffer costs through ionsvcd, next to what it costs
// at the least (the physical floor) in the same run.
//
// Cases, per buffer size, each iteration timed on its own:
//   daemon   client.allocate() + client.free() + close of the fd, through ionsvcd
//            (an Alloc round trip, then a Free that libbufclient checks
//            itself and sends without waiting for a reply), timed as a whole
//            and split after the Alloc;
//   floor    one request/reply round trip over a SOCK_SEQPACKET socketpair to a
//            forked peer process that memfd_create()s + ftruncate()s + seals a
//            buffer, replies with its fd (SCM_RIGHTS) and closes its own copy;
//            the client then closes the received fd;
//   floor2   floor followed by one bare round trip: what a two-trip protocol
//            costs at the least;
//   raw      memfd_create() + ftruncate() + F_ADD_SEALS + close() in-process;
// and, once, a bare round trip over the same socketpair with no fd and no
// allocation (rtt), to split the floor into its parts.
//
// The cases take turns in rounds so that drift on a shared machine (a VM's
// neighbours, frequency changes) lands on all of them alike, and the bench,
// the peer and the daemon are pinned (see Pinning). docs/PERFORMANCE.md has
// the results and what they mean.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <bufclient/bufclient.h>
#include <ionsvc/fd_passing.h>
#include <ionsvc/unique_fd.h>
#include <nlohmann/json.hpp>

namespace {

using Clock = std::chrono::steady_clock;
using ionsvc::UniqueFD;

// Any failure ends the run with a non-zero exit: a benchmark that skips
// errors reports numbers for work it did not do.
class BenchError : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

// Set by SIGINT/SIGTERM: the run stops at the next iteration and unwinds,
// so that the daemon is stopped and the temporary directory removed.
volatile sig_atomic_t interrupted = 0;

void on_interrupt(int)
{
    interrupted = 1;
}

std::string errno_text(int error)
{
    return std::strerror(error);
}

std::string size_label(std::uint64_t bytes)
{
    if (bytes % (1024 * 1024) == 0)
        return std::to_string(bytes / (1024 * 1024)) + "MiB";
    if (bytes % 1024 == 0)
        return std::to_string(bytes / 1024) + "KiB";
    return std::to_string(bytes) + "B";
}

// ------------------------------------------------------------- allocation

// The name the daemon gives the bench's unnamed buffers ("<comm>:<pid>"),
// used by the floor and raw cases too so that all create alike.
std::string &buffer_name()
{
    static std::string name = "ionsvc-bench:" + std::to_string(::getpid());
    return name;
}

// The memfd backend's allocation, step for step (daemon/memfd_backend.cpp).
UniqueFD allocate_memfd(std::uint64_t size)
{
    UniqueFD fd{::memfd_create(buffer_name().c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING)};
    if (!fd)
        return fd;
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) < 0 ||
        ::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        const int error = errno; // the caller reports it; close() must not change it
        fd.reset();
        errno = error;
    }
    return fd;
}

std::uint64_t page_align(std::uint64_t size)
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

Placement plan_placement(Pinning pinning)
{
    if (pinning == Pinning::kNone)
        return {};
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (::sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
        throw BenchError("sched_getaffinity failed: " + errno_text(errno));
    std::vector<int> cpus;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (CPU_ISSET(cpu, &allowed))
            cpus.push_back(cpu);
    }
    if (cpus.empty())
        throw BenchError("no CPU to run on");
    if (pinning == Pinning::kSame)
        return {cpus[0], cpus[0]};
    if (cpus.size() < 2)
        throw BenchError("--pin split needs two CPUs; this process may use one");
    return {cpus[0], cpus[1]};
}

// Pins the calling process; returns -errno, for children that cannot throw.
int pin_to(std::optional<int> cpu)
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
[[noreturn]] void run_floor_peer(UniqueFD socket)
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
            buffer = allocate_memfd(request.size);
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

// The bench's end of the floor: a socketpair and the peer process behind it.
class FloorPeer
{
public:
    explicit FloorPeer(std::optional<int> cpu)
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
            run_floor_peer(std::move(theirs));
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

private:
    pid_t pid_ = -1;
    UniqueFD socket_;
};

// ---------------------------------------------------------------- daemon

// An ionsvcd of our own on a temporary socket, stopped with SIGTERM.
class DaemonProcess
{
public:
    DaemonProcess(const std::string &executable, std::optional<int> cpu)
    {
        char pattern[] = "/tmp/ionsvc-bench.XXXXXX";
        if (!::mkdtemp(pattern))
            throw BenchError("mkdtemp failed: " + errno_text(errno));
        directory_ = pattern;
        socket_path_ = directory_ + "/ionsvc.sock";

        std::vector<std::string> arguments{executable, "--socket", socket_path_, "--backend",
                                           "memfd", "--log-level", "warn"};
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

    // SIGTERM, then the exit status: a daemon that does not stop cleanly is
    // a failed run.
    void stop()
    {
        if (::kill(pid_, SIGTERM) < 0)
            throw BenchError("cannot signal ionsvcd: " + errno_text(errno));
        const int status = wait_bounded(std::chrono::seconds(10));
        remove_directory();
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            throw BenchError("ionsvcd did not exit cleanly on SIGTERM (wait status " +
                             std::to_string(status) + ")");
    }

private:
    // On the error path: stop the daemon, never hang on it.
    void stop_quietly() noexcept
    {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            try {
                wait_bounded(std::chrono::seconds(10));
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

// ---------------------------------------------------------------- cases

struct Case
{
    std::string name;   // e.g. "daemon/4KiB"
    std::string kind;   // daemon, floor, floor2, raw, rtt; "part" in rows
    std::uint64_t size = 0;
    std::string baseline; // the case this one is compared with; empty: none
    // The floor with the daemon's second round trip added; empty: none.
    std::string two_trip_baseline;
    // One iteration. A case with split set stores, in *split, the moment
    // its first part (the Alloc round trip) ended.
    std::function<void(Clock::time_point *split)> run;
    bool has_split = false;

    std::vector<std::int64_t> samples_ns;
    std::vector<std::int64_t> first_part_ns; // has_split only
};

struct Summary
{
    double p50_us = 0;
    double p99_us = 0;
    double min_us = 0;
    double mean_us = 0;
};

// Nearest-rank percentile of sorted samples.
double percentile_us(const std::vector<std::int64_t> &sorted, double percent)
{
    const auto n = sorted.size();
    auto rank = static_cast<std::size_t>(std::ceil(percent / 100.0 * static_cast<double>(n)));
    rank = std::clamp<std::size_t>(rank, 1, n);
    return static_cast<double>(sorted[rank - 1]) / 1000.0;
}

Summary summarize(std::vector<std::int64_t> samples)
{
    std::sort(samples.begin(), samples.end());
    Summary summary;
    summary.p50_us = percentile_us(samples, 50);
    summary.p99_us = percentile_us(samples, 99);
    summary.min_us = static_cast<double>(samples.front()) / 1000.0;
    double total = 0;
    for (const auto sample : samples)
        total += static_cast<double>(sample);
    summary.mean_us = total / static_cast<double>(samples.size()) / 1000.0;
    return summary;
}

void run_iteration(Case &bench_case, bool record)
{
    if (interrupted)
        throw BenchError("interrupted");
    Clock::time_point split{};
    const auto start = Clock::now();
    bench_case.run(&split);
    const auto end = Clock::now();
    if (!record)
        return;
    bench_case.samples_ns.push_back(
        std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count());
    if (bench_case.has_split)
        bench_case.first_part_ns.push_back(
            std::chrono::duration_cast<std::chrono::nanoseconds>(split - start).count());
}

struct Options
{
    // About 19 s for the whole run on the 2-core VM of docs/PERFORMANCE.md.
    std::size_t iterations = 30'000;
    std::size_t warmup = 0; // 0: a tenth of iterations, at least 100
    std::size_t rounds = 10;
    std::vector<std::uint64_t> sizes{4 * 1024, 64 * 1024, 1024 * 1024, 8 * 1024 * 1024};
    Pinning pinning = Pinning::kSame;
    std::vector<std::string> only; // case kinds to run; empty: all
    bool smoke = false;
    bool json = false;
    std::string socket_path;
    std::string daemon_path;
};

// Warm-up for every case, then the measured iterations in rounds, the
// cases taking turns round by round.
void measure(std::vector<Case> &cases, const Options &options)
{
    for (auto &bench_case : cases) {
        for (std::size_t i = 0; i < options.warmup; ++i)
            run_iteration(bench_case, false);
        bench_case.samples_ns.reserve(options.iterations);
        bench_case.first_part_ns.reserve(bench_case.has_split ? options.iterations : 0);
    }
    const std::size_t rounds = std::clamp<std::size_t>(options.rounds, 1, options.iterations);
    for (std::size_t round = 0; round < rounds; ++round) {
        // Spread the remainder over the first rounds: the total is exact.
        const std::size_t count =
            options.iterations / rounds + (round < options.iterations % rounds ? 1 : 0);
        for (auto &bench_case : cases) {
            for (std::size_t i = 0; i < count; ++i)
                run_iteration(bench_case, true);
        }
    }
}

std::vector<Case> make_cases(bufclient::Client &client, FloorPeer &peer, const Options &options)
{
    std::vector<Case> cases;
    for (const std::uint64_t size : options.sizes) {
        const std::string label = size_label(size);

        Case daemon;
        daemon.name = "daemon/" + label;
        daemon.kind = "daemon";
        daemon.size = size;
        daemon.baseline = "floor/" + label;
        daemon.two_trip_baseline = "floor2/" + label;
        daemon.has_split = true;
        bufclient::AllocOptions request;
        request.size = size;
        request.count = 1;
        daemon.run = [&client, request](Clock::time_point *split) {
            auto buffers = client.allocate(request);
            if (!buffers)
                throw BenchError("allocate failed: " + buffers.error().message);
            *split = Clock::now();
            if (buffers->size() != 1)
                throw BenchError("allocate returned " + std::to_string(buffers->size()) + " buffers");
            if (auto freed = client.free(buffers->front()); !freed)
                throw BenchError("free failed: " + freed.error().message);
            // The Buffer goes out of scope here: its fd closes inside the timing.
        };
        cases.push_back(std::move(daemon));

        Case floor;
        floor.name = "floor/" + label;
        floor.kind = "floor";
        floor.size = size;
        floor.run = [&peer, size](Clock::time_point *) {
            UniqueFD fd = peer.transact(page_align(size));
            // fd closes here, inside the timing, as the daemon case's does.
        };
        cases.push_back(std::move(floor));

        // The daemon's protocol needs a second round trip (Free); this is
        // the floor with a bare one added, to tell the cost of the protocol
        // from the cost of the daemon's code.
        Case floor2;
        floor2.name = "floor2/" + label;
        floor2.kind = "floor2";
        floor2.size = size;
        floor2.run = [&peer, size](Clock::time_point *) {
            UniqueFD fd = peer.transact(page_align(size));
            peer.transact(0);
        };
        cases.push_back(std::move(floor2));

        Case raw;
        raw.name = "raw/" + label;
        raw.kind = "raw";
        raw.size = size;
        raw.run = [size](Clock::time_point *) {
            UniqueFD fd = allocate_memfd(page_align(size));
            if (!fd)
                throw BenchError("raw memfd allocation failed: " + errno_text(errno));
        };
        cases.push_back(std::move(raw));
    }

    Case rtt;
    rtt.name = "rtt";
    rtt.kind = "rtt";
    rtt.run = [&peer](Clock::time_point *) { peer.transact(0); };
    cases.push_back(std::move(rtt));

    if (!options.only.empty()) {
        std::erase_if(cases, [&](const Case &bench_case) {
            return std::find(options.only.begin(), options.only.end(), bench_case.kind) ==
                   options.only.end();
        });
    }
    return cases;
}

// The books must show this client holding nothing afterwards, and having
// held something: accounting was on and every Free landed.
void check_books(bufclient::Client &client)
{
    auto stats = client.stats(::getpid(), bufclient::StatsView::kPids);
    if (!stats)
        throw BenchError("stats failed: " + stats.error().message);
    for (const auto &entry : stats->clients) {
        if (entry.client_id != client.server().client_id)
            continue;
        bool held_something = false;
        for (const auto &usage : entry.heaps) {
            if (usage.bytes != 0 || usage.buffers != 0)
                throw BenchError("the daemon still accounts " + std::to_string(usage.buffers) +
                                 " buffers (" + std::to_string(usage.bytes) +
                                 " bytes) to the bench in heap " + usage.heap);
            held_something = held_something || usage.peak_bytes > 0;
        }
        if (!held_something)
            throw BenchError("the daemon's books show no allocation by the bench");
        return;
    }
    throw BenchError("the daemon's stats do not list the bench's client");
}

struct Row
{
    std::string name;
    std::string kind;
    std::uint64_t size = 0;
    std::size_t iterations = 0;
    Summary summary;
    std::optional<std::string> baseline;
    std::optional<double> baseline_p50_us;
    std::optional<double> ratio;
    std::optional<double> ratio_two_trips;
};

Row make_row(std::string name, std::string kind, std::uint64_t size,
             const std::vector<std::int64_t> &samples)
{
    Row row;
    row.name = std::move(name);
    row.kind = std::move(kind);
    row.size = size;
    row.iterations = samples.size();
    row.summary = summarize(samples);
    return row;
}

std::vector<Row> make_rows(const std::vector<Case> &cases)
{
    std::vector<Row> rows;
    for (const auto &bench_case : cases) {
        const auto p50_of = [&cases](const std::string &name) -> std::optional<double> {
            const auto it = std::find_if(cases.begin(), cases.end(),
                                         [&](const Case &other) { return other.name == name; });
            if (name.empty() || it == cases.end())
                return std::nullopt;
            return summarize(it->samples_ns).p50_us;
        };
        Row row = make_row(bench_case.name, bench_case.kind, bench_case.size, bench_case.samples_ns);
        if (const auto baseline = p50_of(bench_case.baseline)) {
            row.baseline = bench_case.baseline;
            row.baseline_p50_us = *baseline;
            row.ratio = row.summary.p50_us / *baseline;
        }
        if (const auto baseline = p50_of(bench_case.two_trip_baseline))
            row.ratio_two_trips = row.summary.p50_us / *baseline;
        rows.push_back(row);
        if (bench_case.has_split) {
            std::vector<std::int64_t> second(bench_case.samples_ns.size());
            for (std::size_t i = 0; i < second.size(); ++i)
                second[i] = bench_case.samples_ns[i] - bench_case.first_part_ns[i];
            // The daemon case's Alloc round trip and its Free, told apart.
            rows.push_back(make_row(bench_case.name + ":alloc", "part", bench_case.size,
                                    bench_case.first_part_ns));
            rows.push_back(make_row(bench_case.name + ":free+close", "part", bench_case.size, second));
        }
    }
    return rows;
}

void print_json(const std::vector<Row> &rows)
{
    auto json = nlohmann::json::array();
    for (const auto &row : rows) {
        nlohmann::json object{{"name", row.name},
                              {"kind", row.kind},
                              {"size_bytes", row.size},
                              {"iterations", row.iterations},
                              {"p50_us", row.summary.p50_us},
                              {"p99_us", row.summary.p99_us},
                              {"min_us", row.summary.min_us},
                              {"mean_us", row.summary.mean_us}};
        object["baseline"] = row.baseline ? nlohmann::json(*row.baseline) : nlohmann::json(nullptr);
        object["baseline_p50_us"] =
            row.baseline_p50_us ? nlohmann::json(*row.baseline_p50_us) : nlohmann::json(nullptr);
        object["ratio"] = row.ratio ? nlohmann::json(*row.ratio) : nlohmann::json(nullptr);
        object["ratio_two_trips"] =
            row.ratio_two_trips ? nlohmann::json(*row.ratio_two_trips) : nlohmann::json(nullptr);
        json.push_back(std::move(object));
    }
    std::printf("%s\n", json.dump(2).c_str());
}

void print_table(const std::vector<Row> &rows, const Options &options)
{
    const char *pinning = options.pinning == Pinning::kSame    ? "same"
                          : options.pinning == Pinning::kSplit ? "split"
                                                               : "none";
    std::printf("ionsvc-bench: %zu iterations per case, %zu warm-up, %zu rounds, --pin %s\n\n",
                options.iterations, options.warmup,
                std::clamp<std::size_t>(options.rounds, 1, options.iterations), pinning);
    std::printf("%-30s %8s %9s %9s %9s %13s %7s %7s\n", "case", "iters", "p50 us", "p99 us",
                "min us", "baseline", "ratio", "ratio2");
    const auto ratio_text = [](std::optional<double> ratio) {
        char text[16];
        if (ratio)
            std::snprintf(text, sizeof(text), "%.2fx", *ratio);
        else
            std::snprintf(text, sizeof(text), "-");
        return std::string(text);
    };
    for (const auto &row : rows) {
        const std::string name = row.kind == "part" ? "  " + row.name : row.name;
        std::printf("%-30s %8zu %9.2f %9.2f %9.2f %13s %7s %7s\n", name.c_str(), row.iterations,
                    row.summary.p50_us, row.summary.p99_us, row.summary.min_us,
                    row.baseline ? row.baseline->c_str() : "-", ratio_text(row.ratio).c_str(),
                    ratio_text(row.ratio_two_trips).c_str());
    }
    std::printf(
        "\n"
        "daemon      client.allocate() + client.free() + close of the fd, through ionsvcd\n"
        "  :alloc    its Alloc round trip alone; :free+close the rest\n"
        "floor       one memfd allocation in a peer process + one SEQPACKET round trip\n"
        "            carrying its fd + close\n"
        "floor2      floor + one bare round trip: the floor of a two-trip protocol\n"
        "raw         memfd_create + ftruncate + seal + close, in-process\n"
        "rtt         one bare SEQPACKET round trip to the peer, no fd\n"
        "ratio       p50 / floor p50; ratio2: daemon p50 / floor2 p50\n");
}

// Busy and total jiffies of all CPUs, from /proc/stat.
std::optional<std::pair<double, double>> cpu_jiffies()
{
    std::FILE *file = std::fopen("/proc/stat", "r");
    if (!file)
        return std::nullopt;
    // cpu user nice system idle iowait irq softirq steal
    double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    const int fields = std::fscanf(file, "cpu %lf %lf %lf %lf %lf %lf %lf %lf", &user, &nice,
                                   &system, &idle, &iowait, &irq, &softirq, &steal);
    std::fclose(file);
    if (fields != 8)
        return std::nullopt;
    const double busy = user + nice + system + irq + softirq + steal;
    return std::pair{busy, busy + idle + iowait};
}

// Other work on the machine skews every number here, and not alike: look
// for it for a moment before starting (the bench itself is idle then) and
// say so. A load average would count the bench's own previous runs.
void warn_if_busy()
{
    const auto before = cpu_jiffies();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const auto after = cpu_jiffies();
    if (!before || !after || after->second <= before->second)
        return;
    const double cpus = static_cast<double>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
    const double busy_cpus =
        (after->first - before->first) / (after->second - before->second) * cpus;
    if (busy_cpus > 0.2)
        std::fprintf(stderr,
                     "ionsvc-bench: warning: other work kept %.2f CPUs busy just before the "
                     "run: the results are skewed\n",
                     busy_cpus);
}

int run(Options options)
{
    if (options.smoke) {
        options.iterations = 20;
        options.warmup = 5;
        options.rounds = 2;
    } else if (options.warmup == 0) {
        options.warmup = std::max<std::size_t>(options.iterations / 10, 100);
    }

    warn_if_busy();
    const Placement placement = plan_placement(options.pinning);
    if (const int error = pin_to(placement.client_cpu); error < 0)
        throw BenchError("cannot pin the bench: " + errno_text(-error));

    buffer_name(); // fixed before the fork: the peer names buffers as the bench does
    // The peer is forked before the daemon starts and before any connection
    // exists, so that it inherits nothing but its end of the socketpair.
    FloorPeer peer(placement.server_cpu);

    std::optional<DaemonProcess> daemon;
    std::string socket_path = options.socket_path;
    if (socket_path.empty()) {
        daemon.emplace(options.daemon_path, placement.server_cpu);
        socket_path = daemon->socket_path();
    }

    std::vector<Row> rows;
    {
        auto client = bufclient::Client::connect({.socket_path = socket_path,
                                                  .client_name = "ionsvc-bench"});
        if (!client)
            throw BenchError(client.error().message);

        std::vector<Case> cases = make_cases(*client, peer, options);
        measure(cases, options);
        const bool used_daemon = std::any_of(cases.begin(), cases.end(), [](const Case &c) {
            return c.kind == "daemon";
        });
        if (used_daemon)
            check_books(*client);
        rows = make_rows(cases);
    }

    if (daemon)
        daemon->stop();

    if (options.json)
        print_json(rows);
    else
        print_table(rows, options);
    return EXIT_SUCCESS;
}

} // namespace

int main(int argc, char **argv)
{
    Options options;
    CLI::App app{"ionsvc-bench: latency of one buffer through ionsvcd against the physical floor"};
    app.add_option("--iterations", options.iterations, "Measured iterations per case")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--warmup", options.warmup,
                   "Unmeasured iterations per case first (default: a tenth of --iterations, "
                   "at least 100)");
    app.add_option("--rounds", options.rounds,
                   "Rounds in which the cases take turns, against drift")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--sizes", options.sizes,
                   "Buffer sizes in bytes, comma-separated, suffixes K and M (default 4K,64K,1M,8M)")
        ->transform(CLI::AsSizeValue(false))
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 30))
        ->delimiter(',');
    std::string pinning = "same";
    app.add_option("--pin", pinning,
                   "CPU placement: same (bench, peer and daemon on one CPU), split (bench on "
                   "one, peer and daemon on another) or none. A daemon given with --socket is "
                   "never pinned: pin it yourself (taskset)")
        ->check(CLI::IsMember({"same", "split", "none"}))
        ->capture_default_str();
    app.add_option("--only", options.only,
                   "Run only these kinds of case (e.g. to profile one): daemon, floor, floor2, "
                   "raw, rtt")
        ->check(CLI::IsMember({"daemon", "floor", "floor2", "raw", "rtt"}))
        ->delimiter(',');
    app.add_flag("--smoke", options.smoke, "A few iterations of every case, to check that all run");
    app.add_flag("--json", options.json, "Print a JSON array, one object per case");
    auto *socket = app.add_option("--socket", options.socket_path,
                                  "Use the ionsvcd already listening here");
    auto *daemon = app.add_option("--daemon", options.daemon_path,
                                  "Start this ionsvcd on a temporary socket for the run")
                       ->check(CLI::ExistingFile);
    socket->excludes(daemon);
    CLI11_PARSE(app, argc, argv);
    options.pinning = pinning == "split" ? Pinning::kSplit
                      : pinning == "none" ? Pinning::kNone
                                          : Pinning::kSame;

    if (options.socket_path.empty() && options.daemon_path.empty()) {
        std::fprintf(stderr, "ionsvc-bench: give --socket PATH or --daemon PATH-TO-ionsvcd\n");
        return EXIT_FAILURE;
    }
    // A daemon gone mid-run shows as an error from send, not as a signal.
    ::signal(SIGPIPE, SIG_IGN);
    struct sigaction action{};
    action.sa_handler = on_interrupt;
    ::sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);

    try {
        return run(std::move(options));
    } catch (const std::exception &error) {
        std::fprintf(stderr, "ionsvc-bench: %s\n", error.what());
        return EXIT_FAILURE;
    }
}
