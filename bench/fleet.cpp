// SPDX-License-Identifier: MIT
#include "fleet.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <numeric>

#include <bufclient/bufclient.h>
#include <ionsvc/protocol.h>

namespace ionsvc_bench {

namespace {

// One-byte commands from the bench to a client process, and its answers.
constexpr char kGo = 'g';       // concurrency: start allocating
constexpr char kAllocate = 'a'; // scale: allocate and hold the buffers
constexpr char kDone = 0;       // the step worked
constexpr char kFailed = 1;     // it did not; the client said why on stderr

// How long a scale holder waits for a reply (libbufclient's default: 30 s).
constexpr std::chrono::milliseconds kHolderTimeout = std::chrono::minutes(30);

// The control socket's number in a client process: every other fd the
// bench had is closed there, so that a client holds no end of another
// client's control socket (and sees EOF when the bench hangs up).
constexpr int kControlFd = 3;

bool reply(char status)
{
    return ::send(kControlFd, &status, 1, MSG_NOSIGNAL) == 1;
}

// The next command; nullopt when the bench hung up or failed.
std::optional<char> next_command()
{
    char command = 0;
    if (::recv(kControlFd, &command, 1, 0) != 1)
        return std::nullopt;
    return command;
}

// Memory shared with the client processes (MAP_SHARED | MAP_ANONYMOUS, so
// no fd): where they leave their samples.
class SharedSamples
{
public:
    explicit SharedSamples(std::size_t count) : count_(count)
    {
        void *data = ::mmap(nullptr, std::max<std::size_t>(count, 1) * sizeof(std::int64_t),
                            PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (data == MAP_FAILED)
            throw BenchError("mmap failed: " + errno_text(errno));
        data_ = static_cast<std::int64_t *>(data);
    }
    SharedSamples(const SharedSamples &) = delete;
    SharedSamples &operator=(const SharedSamples &) = delete;
    ~SharedSamples() { ::munmap(data_, std::max<std::size_t>(count_, 1) * sizeof(std::int64_t)); }

    std::int64_t *data() const { return data_; }
    std::vector<std::int64_t> copy(std::size_t first, std::size_t count) const
    {
        return {data_ + first, data_ + first + count};
    }

private:
    std::size_t count_;
    std::int64_t *data_ = nullptr;
};

// Client processes, forked, each running body(index) with its control
// socket at kControlFd; a body returns its exit status.
class Fleet
{
public:
    using Body = std::function<int(std::size_t index)>;

    Fleet(std::size_t count, const Body &body)
    {
        controls_.reserve(count);
        pids_.reserve(count);
        for (std::size_t index = 0; index < count; ++index)
            spawn(index, body);
    }
    Fleet(const Fleet &) = delete;
    Fleet &operator=(const Fleet &) = delete;
    ~Fleet() { stop_quietly(); }

    void broadcast(char command)
    {
        for (const auto &control : controls_) {
            if (::send(control.get(), &command, 1, MSG_NOSIGNAL) != 1)
                throw BenchError("a client process is gone: " + errno_text(errno));
        }
    }

    // Every client's answer to the last step.
    void collect(const char *step)
    {
        for (const auto &control : controls_) {
            if (interrupted)
                throw BenchError("interrupted");
            char status = kFailed;
            if (::recv(control.get(), &status, 1, 0) != 1 || status != kDone)
                throw BenchError(std::string("a client process failed to ") + step);
        }
    }

    // Hangs up on all (each then closes its connection and exits), then
    // waits for all: a client that did not exit 0 fails the run.
    void stop()
    {
        controls_.clear();
        int failures = 0;
        for (const pid_t pid : pids_) {
            int status = 0;
            if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                ++failures;
        }
        pids_.clear();
        if (failures > 0)
            throw BenchError(std::to_string(failures) + " client processes did not exit cleanly");
    }

private:
    void spawn(std::size_t index, const Body &body)
    {
        int ends[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) < 0)
            throw BenchError("socketpair failed: " + errno_text(errno));
        UniqueFD mine{ends[0]};
        UniqueFD theirs{ends[1]};
        std::fflush(nullptr); // no buffered output printed twice
        const pid_t pid = ::fork();
        if (pid < 0)
            throw BenchError("fork failed: " + errno_text(errno));
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            ::signal(SIGINT, SIG_DFL);
            ::signal(SIGTERM, SIG_DFL);
            if (::dup2(theirs.get(), kControlFd) < 0)
                ::_exit(EXIT_FAILURE);
            ::close_range(kControlFd + 1, ~0U, 0);
            (void)theirs.release(); // closed by close_range, or it is kControlFd
            (void)mine.release();
            ::_exit(body(index));
        }
        pids_.push_back(pid);
        controls_.push_back(std::move(mine));
    }

    void stop_quietly() noexcept
    {
        controls_.clear();
        for (const pid_t pid : pids_) {
            int status = 0;
            ::waitpid(pid, &status, 0);
        }
        pids_.clear();
    }

    std::vector<UniqueFD> controls_;
    std::vector<pid_t> pids_;
};

std::optional<bufclient::Client> connect_client(const std::string &socket_path, const char *name,
                                               std::chrono::milliseconds timeout = std::chrono::seconds(30))
{
    auto client = bufclient::Client::connect({.socket_path = socket_path, .client_name = name, .timeout = timeout});
    if (!client) {
        std::fprintf(stderr, "ionsvc-bench: %s: connect failed: %s\n", name,
                     client.error().message.c_str());
        return std::nullopt;
    }
    return std::move(*client);
}

// One allocate + free of one buffer; the fd closes before it returns.
bool allocate_and_free(bufclient::Client &client, const bufclient::AllocOptions &request)
{
    auto buffers = client.allocate(request);
    if (!buffers || buffers->size() != 1) {
        std::fprintf(stderr, "ionsvc-bench: allocate failed: %s\n",
                     buffers ? "wrong count" : buffers.error().message.c_str());
        return false;
    }
    if (auto freed = client.free(buffers->front()); !freed) {
        std::fprintf(stderr, "ionsvc-bench: free failed: %s\n", freed.error().message.c_str());
        return false;
    }
    return true;
}

// While the concurrency case runs, the bench's daemon may use every CPU the
// bench was given, as the clients may: the case is about what the daemon
// does with more than one core. Afterwards it goes back where it was.
class DaemonOnAllCpus
{
public:
    explicit DaemonOnAllCpus(const FleetOptions &options) : options_(options)
    {
        if (active())
            allow_cpus(*options_.daemon_pid, options_.all_cpus);
    }
    DaemonOnAllCpus(const DaemonOnAllCpus &) = delete;
    DaemonOnAllCpus &operator=(const DaemonOnAllCpus &) = delete;
    ~DaemonOnAllCpus()
    {
        if (active())
            allow_cpus(*options_.daemon_pid, {*options_.placement.server_cpu});
    }

private:
    bool active() const
    {
        return options_.daemon_is_ours && options_.daemon_pid && options_.placement.server_cpu;
    }
    const FleetOptions &options_;
};

Row run_concurrency_with(const FleetOptions &options, std::size_t clients)
{
    const std::size_t per_client = std::max<std::size_t>(options.concurrency_allocations / clients, 1);
    // Per client: its samples, then its first start and its last end.
    const std::size_t stride = per_client + 2;
    SharedSamples shared(clients * stride);
    const bufclient::AllocOptions request{.heap = options.heap, .size = options.size, .count = 1};

    Fleet fleet(clients, [&](std::size_t index) {
        if (allow_cpus(0, options.all_cpus) < 0)
            return EXIT_FAILURE;
        auto client = connect_client(options.socket_path, "ionsvc-bench-concurrency");
        if (!client)
            return EXIT_FAILURE;
        const std::size_t warmup = std::max<std::size_t>(per_client / 10, 1);
        for (std::size_t i = 0; i < warmup; ++i) {
            if (!allocate_and_free(*client, request)) {
                reply(kFailed);
                return EXIT_FAILURE;
            }
        }
        if (!reply(kDone) || next_command() != kGo)
            return EXIT_FAILURE;
        std::int64_t *samples = shared.data() + index * stride;
        const auto first = Clock::now();
        auto start = first;
        for (std::size_t i = 0; i < per_client; ++i) {
            if (!allocate_and_free(*client, request)) {
                reply(kFailed);
                return EXIT_FAILURE;
            }
            const auto end = Clock::now();
            samples[i] = elapsed_ns(start, end);
            start = end;
        }
        samples[per_client] = first.time_since_epoch().count();
        samples[per_client + 1] = start.time_since_epoch().count();
        if (!reply(kDone))
            return EXIT_FAILURE;
        next_command(); // until the bench hangs up
        return EXIT_SUCCESS;
    });
    fleet.collect("connect and warm up");
    fleet.broadcast(kGo);
    fleet.collect("allocate and free");
    fleet.stop();

    std::vector<std::int64_t> samples;
    samples.reserve(clients * per_client);
    std::int64_t first_start = INT64_MAX;
    std::int64_t last_end = INT64_MIN;
    for (std::size_t index = 0; index < clients; ++index) {
        auto mine = shared.copy(index * stride, per_client);
        samples.insert(samples.end(), mine.begin(), mine.end());
        first_start = std::min(first_start, shared.data()[index * stride + per_client]);
        last_end = std::max(last_end, shared.data()[index * stride + per_client + 1]);
    }
    // Clock ticks are nanoseconds (steady_clock is CLOCK_MONOTONIC here,
    // the same in every process).
    const double seconds = static_cast<double>(last_end - first_start) / 1e9;
    Row row = make_row("concurrency/" + std::to_string(clients), "concurrency", options.size, samples);
    row.extra["clients"] = clients;
    row.extra["allocations_per_client"] = per_client;
    row.extra["allocs_per_s"] = seconds > 0 ? static_cast<double>(samples.size()) / seconds : 0.0;
    return row;
}

// p50 and p99 of iterations calls of step, after a tenth as many unmeasured.
template<typename Step>
std::vector<std::int64_t> time_steps(std::size_t iterations, Step step)
{
    for (std::size_t i = 0; i < std::max<std::size_t>(iterations / 10, 1); ++i)
        step();
    std::vector<std::int64_t> samples;
    samples.reserve(iterations);
    for (std::size_t i = 0; i < iterations; ++i) {
        if (interrupted)
            throw BenchError("interrupted");
        const auto start = Clock::now();
        step();
        samples.push_back(elapsed_ns(start, Clock::now()));
    }
    return samples;
}

// What scale measures at one load: one more client's allocate+free, stats
// on its connection, and a new connection's stats (what `ionsvc-ctl stats`
// does, without starting a process).
struct LoadSamples
{
    std::vector<std::int64_t> allocation;
    std::vector<std::int64_t> stats;
    std::vector<std::int64_t> connect_and_stats;
    std::size_t clients_listed = 0;
    std::uint64_t live_buffers = 0;
};

LoadSamples measure_load(bufclient::Client &client, const FleetOptions &options)
{
    const bufclient::AllocOptions request{.heap = options.heap, .size = options.size, .count = 1};
    LoadSamples load;
    load.allocation = time_steps(options.scale_iterations, [&] {
        if (!allocate_and_free(client, request))
            throw BenchError("scale: allocate or free failed");
    });
    load.stats = time_steps(options.stats_iterations, [&] {
        auto stats = client.stats();
        if (!stats)
            throw BenchError("scale: stats failed: " + stats.error().message);
        load.clients_listed = stats->clients.size();
        load.live_buffers = 0;
        for (const auto &heap : stats->heaps)
            load.live_buffers += heap.total_buffers;
    });
    load.connect_and_stats = time_steps(options.stats_iterations, [&] {
        auto other = connect_client(options.socket_path, "ionsvc-bench-ctl");
        if (!other)
            throw BenchError("scale: connect failed");
        if (auto stats = other->stats(); !stats)
            throw BenchError("scale: stats failed: " + stats.error().message);
    });
    return load;
}

std::uint64_t rss_or_zero(const FleetOptions &options)
{
    if (!options.daemon_pid)
        return 0;
    return resident_bytes(*options.daemon_pid).value_or(0);
}

} // namespace

std::vector<Row> run_concurrency(const FleetOptions &options)
{
    DaemonOnAllCpus placement(options);
    std::vector<Row> rows;
    std::optional<double> single_client_rate;
    for (const std::size_t clients : options.client_counts) {
        Row row = run_concurrency_with(options, clients);
        const double rate = row.extra["allocs_per_s"].get<double>();
        if (clients == 1)
            single_client_rate = rate;
        row.extra["throughput_vs_1_client"] =
            single_client_rate && *single_client_rate > 0 ? nlohmann::json(rate / *single_client_rate)
                                                         : nlohmann::json(nullptr);
        rows.push_back(std::move(row));
    }
    return rows;
}

std::uint64_t scale_fds_needed(const FleetOptions &options)
{
    // + room for the daemon's own fds, the measuring client and its buffers.
    return options.scale_clients * (options.scale_buffers + 1) + 256;
}

std::optional<std::string> scale_cannot_run(const FleetOptions &options)
{
    if (!options.daemon_pid)
        return std::nullopt;
    const auto limit = open_files_limit(*options.daemon_pid);
    if (!limit || *limit >= scale_fds_needed(options))
        return std::nullopt;
    return "the daemon's fd limit is " + std::to_string(*limit) + "; " +
           std::to_string(options.scale_clients) + " clients x " +
           std::to_string(options.scale_buffers) + " buffers need about " +
           std::to_string(scale_fds_needed(options)) +
           ". Raise the hard limit before the run (needs CAP_SYS_RESOURCE) or lower "
           "--scale-clients / --scale-buffers";
}

std::vector<Row> run_scale(const FleetOptions &options)
{
    if (const auto problem = scale_cannot_run(options))
        throw BenchError("scale: " + *problem);
    auto client = connect_client(options.socket_path, "ionsvc-bench-scale");
    if (!client)
        throw BenchError("scale: connect failed");

    const LoadSamples idle = measure_load(*client, options);
    const std::uint64_t rss_idle = rss_or_zero(options);

    const bufclient::AllocOptions batch{.heap = options.heap, .size = options.size};
    Fleet fleet(options.scale_clients, [&](std::size_t) {
        // All holders ask at once, and the daemon serves them one after the
        // other: the last waits for every allocation before its own (100k
        // ION allocations under QEMU TCG take minutes). What is measured is
        // the load they leave, not how long they waited.
        auto holder = connect_client(options.socket_path, "ionsvc-bench-holder", kHolderTimeout);
        if (!holder || !reply(kDone) || next_command() != kAllocate)
            return EXIT_FAILURE;
        std::vector<bufclient::Buffer> held;
        held.reserve(options.scale_buffers);
        while (held.size() < options.scale_buffers) {
            bufclient::AllocOptions request = batch;
            request.count = static_cast<std::uint32_t>(
                std::min<std::size_t>(options.scale_buffers - held.size(), ionsvc::kMaxBatchCount));
            auto buffers = holder->allocate(request);
            if (!buffers) {
                std::fprintf(stderr, "ionsvc-bench: holder: allocate failed: %s\n",
                             buffers.error().message.c_str());
                reply(kFailed);
                return EXIT_FAILURE;
            }
            for (auto &buffer : *buffers)
                held.push_back(std::move(buffer));
        }
        if (!reply(kDone))
            return EXIT_FAILURE;
        next_command(); // hold them until the bench hangs up
        return EXIT_SUCCESS;
    });
    fleet.collect("connect");
    const std::uint64_t rss_connected = rss_or_zero(options);
    fleet.broadcast(kAllocate);
    fleet.collect("allocate its buffers");
    const std::uint64_t rss_loaded = rss_or_zero(options);

    const LoadSamples loaded = measure_load(*client, options);
    const std::uint64_t expected_buffers = options.scale_clients * options.scale_buffers;
    if (loaded.live_buffers < expected_buffers)
        throw BenchError("scale: the daemon's books show " + std::to_string(loaded.live_buffers) +
                         " live buffers, not " + std::to_string(expected_buffers));
    fleet.stop();

    const std::string load = std::to_string(options.scale_clients) + "x" +
                             std::to_string(options.scale_buffers);
    std::vector<Row> rows;
    Row idle_allocation = make_row("scale/alloc-idle", "scale", options.size, idle.allocation);
    Row allocation = make_row("scale/alloc@" + load, "scale", options.size, loaded.allocation);
    set_baseline(allocation, idle_allocation.name, idle_allocation.summary.p50_us);
    allocation.extra["clients"] = options.scale_clients;
    allocation.extra["live_buffers"] = loaded.live_buffers;
    allocation.extra["p99_over_idle_p50"] =
        idle_allocation.summary.p50_us > 0 ? allocation.summary.p99_us / idle_allocation.summary.p50_us
                                           : 0.0;
    if (options.daemon_pid && rss_idle > 0) {
        const auto per = [](std::uint64_t after, std::uint64_t before, std::uint64_t count) {
            // RSS can shrink (malloc gives memory back): shown as negative.
            return (static_cast<double>(after) - static_cast<double>(before)) /
                   static_cast<double>(std::max<std::uint64_t>(count, 1));
        };
        allocation.extra["daemon_rss_idle_bytes"] = rss_idle;
        allocation.extra["daemon_rss_connected_bytes"] = rss_connected;
        allocation.extra["daemon_rss_loaded_bytes"] = rss_loaded;
        allocation.extra["rss_per_client_bytes"] = per(rss_connected, rss_idle, options.scale_clients);
        allocation.extra["rss_per_live_buffer_bytes"] = per(rss_loaded, rss_connected, expected_buffers);
    }
    rows.push_back(std::move(idle_allocation));
    rows.push_back(std::move(allocation));

    Row idle_stats = make_row("scale/stats-idle", "scale", 0, idle.stats);
    Row stats = make_row("scale/stats@" + load, "scale", 0, loaded.stats);
    set_baseline(stats, idle_stats.name, idle_stats.summary.p50_us);
    stats.extra["clients_listed"] = loaded.clients_listed;
    Row idle_ctl = make_row("scale/connect+stats-idle", "scale", 0, idle.connect_and_stats);
    Row ctl = make_row("scale/connect+stats@" + load, "scale", 0, loaded.connect_and_stats);
    set_baseline(ctl, idle_ctl.name, idle_ctl.summary.p50_us);
    for (Row *row : {&idle_stats, &stats, &idle_ctl, &ctl})
        rows.push_back(std::move(*row));
    return rows;
}

} // namespace ionsvc_bench
