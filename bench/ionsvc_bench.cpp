// SPDX-License-Identifier: MIT
// ionsvc-bench: what one buffer costs through ionsvcd, next to what it costs
// at the least (the physical floor) in the same run.
//
// Cases, per buffer size, each iteration timed on its own:
//   daemon   client.allocate() + client.free() + close of the fd, through ionsvcd
//            with libbufclient's defaults (an Alloc round trip; the Free,
//            checked by libbufclient itself, rides on the next Alloc up to
//            64 KiB and is a message without reply above), timed as a whole
//            and split after the Alloc;
//   prompt   the same on a connection that sends every Free at once
//            (deferred_free_bytes = 0): a message per Free at every size;
//   floor    one request/reply round trip over a SOCK_SEQPACKET socketpair to a
//            forked peer process that allocates a buffer as the daemon's
//            backend does (for memfd: memfd_create() + ftruncate() + seals),
//            replies with its fd (SCM_RIGHTS) and closes its own copy;
//            the client then closes the received fd;
//   floor2   floor followed by one bare round trip: what a two-trip protocol
//            costs at the least;
//   raw      that allocation + close() in-process (raw_allocation.h);
// and, once, a bare round trip over the same socketpair with no fd and no
// allocation (rtt), to split the floor into its parts; and, at 4 KiB,
//   batch    one Alloc of 16 buffers and one Free of all 16, against
//   singles  16 Allocs of one buffer and 16 Frees of one.
// fleet.h has the cases with many client processes (concurrency, scale),
// pool.h the populated allocations with and without the warm pool.
//
// The cases take turns in rounds so that drift on a shared machine (a VM's
// neighbours, frequency changes) lands on all of them alike, and the bench,
// the peer and the daemon are pinned (see Pinning). docs/PERFORMANCE.md has
// the results and what they mean.
#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <bufclient/bufclient.h>
#include <nlohmann/json.hpp>

#include "fleet.h"
#include "pool.h"
#include "processes.h"
#include "raw_allocation.h"
#include "summary.h"

namespace ionsvc_bench {
namespace {

// ---------------------------------------------------------------- cases

struct Case
{
    std::string name;   // e.g. "daemon/4KiB"
    std::string kind;   // daemon, floor, floor2, raw, rtt; "part" in rows
    std::uint64_t size = 0;
    std::string baseline; // the case this one is compared with; empty: none
    // The floor with the daemon's second round trip added; empty: none.
    std::string two_trip_baseline;
    // The allocation alone, in-process; empty: none.
    std::string raw_baseline;
    // Buffers one iteration handles: such a case runs that many times fewer
    // iterations, so that every case takes about as long.
    std::size_t buffers_per_iteration = 1;
    // One iteration. A case with split set stores, in *split, the moment
    // its first part (the Alloc round trip) ended.
    std::function<void(Clock::time_point *split)> run;
    bool has_split = false;

    std::vector<std::int64_t> samples_ns;
    std::vector<std::int64_t> first_part_ns; // has_split only
};

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
    bench_case.samples_ns.push_back(elapsed_ns(start, end));
    if (bench_case.has_split)
        bench_case.first_part_ns.push_back(elapsed_ns(start, split));
}

struct Options
{
    // About 19 s for the whole run on the 2-core VM of docs/PERFORMANCE.md.
    std::size_t iterations = 30'000;
    std::size_t warmup = 0; // 0: a tenth of iterations, at least 100
    std::size_t rounds = 10;
    std::vector<std::uint64_t> sizes{4 * 1024, 64 * 1024, 1024 * 1024, 8 * 1024 * 1024,
                                     32 * 1024 * 1024};
    Pinning pinning = Pinning::kSame;
    std::vector<std::string> only; // case kinds to run; empty: all
    bool smoke = false;
    bool json = false;
    std::string socket_path;
    std::string daemon_path;
    std::string backend = "memfd";
    std::string heap; // empty: the backend's system heap
    FleetOptions fleet;
    PoolOptions pool;
};

// Iterations of a case in total, or in a round of `rounds`.
std::size_t iterations_of(const Case &bench_case, std::size_t iterations)
{
    return std::max<std::size_t>(iterations / bench_case.buffers_per_iteration, 1);
}

// Warm-up for every case, then the measured iterations in rounds, the
// cases taking turns round by round.
void measure(std::vector<Case> &cases, const Options &options)
{
    for (auto &bench_case : cases) {
        for (std::size_t i = 0; i < iterations_of(bench_case, options.warmup); ++i)
            run_iteration(bench_case, false);
        bench_case.samples_ns.reserve(iterations_of(bench_case, options.iterations));
        bench_case.first_part_ns.reserve(
            bench_case.has_split ? iterations_of(bench_case, options.iterations) : 0);
    }
    const std::size_t rounds = std::clamp<std::size_t>(options.rounds, 1, options.iterations);
    for (std::size_t round = 0; round < rounds; ++round) {
        // Spread the remainder over the first rounds: the total is exact.
        const std::size_t count =
            options.iterations / rounds + (round < options.iterations % rounds ? 1 : 0);
        for (auto &bench_case : cases) {
            const std::size_t share = std::max<std::size_t>(count / bench_case.buffers_per_iteration,
                                                            round == 0 ? 1 : 0);
            for (std::size_t i = 0; i < share; ++i)
                run_iteration(bench_case, true);
        }
    }
}

// The heap every case allocates from (--backend, --heap): set once in run().
std::string daemon_heap;

// One buffer from the daemon; any failure ends the run.
bufclient::Buffer allocate_one(bufclient::Client &client, std::uint64_t size)
{
    auto buffers = client.allocate({.heap = daemon_heap, .size = size, .count = 1});
    if (!buffers)
        throw BenchError("allocate failed: " + buffers.error().message);
    if (buffers->size() != 1)
        throw BenchError("allocate returned " + std::to_string(buffers->size()) + " buffers");
    return std::move(buffers->front());
}

void free_one(bufclient::Client &client, const bufclient::Buffer &buffer)
{
    if (auto freed = client.free(buffer); !freed)
        throw BenchError("free failed: " + freed.error().message);
}

// client.allocate() + client.free() + close of the fd, split after the Alloc.
Case allocate_free_case(const std::string &kind, bufclient::Client &client, std::uint64_t size)
{
    const std::string label = size_label(size);
    Case allocate_free;
    allocate_free.name = kind + "/" + label;
    allocate_free.kind = kind;
    allocate_free.size = size;
    allocate_free.baseline = "floor/" + label;
    allocate_free.raw_baseline = "raw/" + label;
    allocate_free.has_split = true;
    allocate_free.run = [&client, size](Clock::time_point *split) {
        const bufclient::Buffer buffer = allocate_one(client, size);
        *split = Clock::now();
        free_one(client, buffer);
        // The Buffer goes out of scope here: its fd closes inside the timing.
    };
    return allocate_free;
}

// prompt_client: a second connection, which sends every Free at once.
std::vector<Case> make_cases(bufclient::Client &client, bufclient::Client &prompt_client, FloorPeer &peer,
                             const Options &options)
{
    std::vector<Case> cases;
    for (const std::uint64_t size : options.sizes) {
        const std::string label = size_label(size);

        cases.push_back(allocate_free_case("daemon", client, size));
        // The same with a Free message per buffer: two messages per buffer
        // instead of one, against the floor of a two-trip protocol too.
        Case prompt = allocate_free_case("prompt", prompt_client, size);
        prompt.two_trip_baseline = "floor2/" + label;
        cases.push_back(std::move(prompt));

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
        raw.run = [&peer, size](Clock::time_point *) {
            UniqueFD fd = peer.allocator().allocate(page_align(size));
            if (!fd)
                throw BenchError("raw " + peer.allocator().backend() +
                                 " allocation failed: " + errno_text(errno));
        };
        cases.push_back(std::move(raw));
    }

    // 16 buffers in one request against 16 requests of one.
    constexpr std::uint32_t kBatch = 16;
    constexpr std::uint64_t kBatchSize = 4096;
    const std::string batch_label = std::to_string(kBatch) + "x" + size_label(kBatchSize);
    Case batch;
    batch.name = "batch/" + batch_label;
    batch.kind = "batch";
    batch.size = kBatchSize;
    batch.baseline = "singles/" + batch_label;
    batch.buffers_per_iteration = kBatch;
    batch.run = [&client](Clock::time_point *) {
        auto buffers = client.allocate({.heap = daemon_heap, .size = kBatchSize, .count = kBatch});
        if (!buffers || buffers->size() != kBatch)
            throw BenchError("batch allocate failed: " +
                             (buffers ? std::string("wrong count") : buffers.error().message));
        std::vector<std::uint64_t> ids;
        for (const auto &buffer : *buffers)
            ids.push_back(buffer.id());
        if (auto freed = client.free(ids); !freed)
            throw BenchError("batch free failed: " + freed.error().message);
    };
    cases.push_back(std::move(batch));

    Case singles;
    singles.name = "singles/" + batch_label;
    singles.kind = "batch";
    singles.size = kBatchSize;
    singles.buffers_per_iteration = kBatch;
    singles.run = [&client](Clock::time_point *) {
        std::vector<bufclient::Buffer> held;
        for (std::uint32_t i = 0; i < kBatch; ++i)
            held.push_back(allocate_one(client, kBatchSize));
        for (const auto &buffer : held)
            free_one(client, buffer);
    };
    cases.push_back(std::move(singles));

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
        if (const auto baseline = p50_of(bench_case.baseline))
            set_baseline(row, bench_case.baseline, *baseline);
        if (const auto baseline = p50_of(bench_case.two_trip_baseline))
            row.ratio_two_trips = row.summary.p50_us / *baseline;
        if (const auto raw = p50_of(bench_case.raw_baseline)) {
            row.extra["raw_p50_us"] = *raw;
            row.extra["ratio_raw"] = row.summary.p50_us / *raw;
        }
        if (bench_case.buffers_per_iteration > 1)
            row.extra["buffers_per_iteration"] = bench_case.buffers_per_iteration;
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

void print_json(const std::vector<Row> &rows, const Options &options)
{
    auto json = nlohmann::json::array();
    for (const auto &row : rows) {
        nlohmann::json object{{"name", row.name},
                              {"kind", row.kind},
                              {"backend", options.backend},
                              {"heap", options.heap},
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
        for (const auto &[key, value] : row.extra.items())
            object[key] = value;
        json.push_back(std::move(object));
    }
    std::printf("%s\n", json.dump(2).c_str());
}

void print_table(const std::vector<Row> &rows, const Options &options)
{
    const char *pinning = options.pinning == Pinning::kSame    ? "same"
                          : options.pinning == Pinning::kSplit ? "split"
                                                               : "none";
    std::printf("ionsvc-bench: backend %s, heap %s, %zu iterations per case, %zu warm-up, "
                "%zu rounds, --pin %s\n\n",
                options.backend.c_str(), options.heap.c_str(), options.iterations, options.warmup,
                std::clamp<std::size_t>(options.rounds, 1, options.iterations), pinning);
    std::printf("%-34s %8s %9s %9s %9s %24s %7s %7s  %s\n", "case", "iters", "p50 us", "p99 us",
                "min us", "baseline", "ratio", "ratio2", "more");
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
        std::string more;
        for (const auto &[key, value] : row.extra.items()) {
            char text[96];
            if (value.is_number_float())
                std::snprintf(text, sizeof(text), "%s=%.2f ", key.c_str(), value.get<double>());
            else
                std::snprintf(text, sizeof(text), "%s=%s ", key.c_str(), value.dump().c_str());
            more += text;
        }
        std::printf("%-34s %8zu %9.2f %9.2f %9.2f %24s %7s %7s  %s\n", name.c_str(), row.iterations,
                    row.summary.p50_us, row.summary.p99_us, row.summary.min_us,
                    row.baseline ? row.baseline->c_str() : "-", ratio_text(row.ratio).c_str(),
                    ratio_text(row.ratio_two_trips).c_str(), more.c_str());
    }
    std::printf(
        "\n"
        "daemon      client.allocate() + client.free() + close of the fd, through ionsvcd;\n"
        "            up to 64 KiB each Free rides on the next Alloc (libbufclient's default)\n"
        "  :alloc    its Alloc round trip alone; :free+close the rest\n"
        "prompt      the same with every Free sent at once (deferred_free_bytes = 0)\n"
        "floor       one allocation as the backend does it, in a peer process, + one\n"
        "            SEQPACKET round trip carrying its fd + close\n"
        "floor2      floor + one bare round trip: the floor of a two-trip protocol\n"
        "raw         the allocation + close, in-process: %s\n"
        "rtt         one bare SEQPACKET round trip to the peer, no fd\n"
        "ratio       p50 / baseline p50; ratio2: prompt p50 / floor2 p50;\n"
        "            ratio_raw: daemon p50 / raw p50\n"
        "batch       one Alloc of 16 buffers + one Free of the 16, per iteration\n"
        "singles     16 Allocs of one buffer + 16 Frees of one, per iteration\n"
        "concurrency/N  N client processes allocate+free 4 KiB at once, daemon and clients\n"
        "            free to use every CPU; latency per allocate+free, allocs_per_s of all\n"
        "scale       one more client's allocate+free, stats, and connect+stats (what\n"
        "            ionsvc-ctl stats does) with no other client (-idle) and with\n"
        "            CLIENTSxBUFFERS live 4 KiB buffers held by client processes;\n"
        "            daemon RSS (/proc/<pid>/status VmRSS) per client and per live buffer\n"
        "pool        an Alloc of a populated buffer from the warm pool (pool/), made on\n"
        "            request (populated/), and in-process (raw-populated/); memfd only\n",
        std::string(allocation_steps(options.backend)).c_str());
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

bool wanted(const Options &options, const char *kind)
{
    return options.only.empty() ||
           std::find(options.only.begin(), options.only.end(), kind) != options.only.end();
}

int run(Options options)
{
    if (options.smoke) {
        options.iterations = 20;
        options.warmup = 5;
        options.rounds = 2;
        options.fleet.concurrency_allocations = 128;
        options.fleet.scale_clients = 20;
        options.fleet.scale_buffers = 10;
        options.fleet.scale_iterations = 20;
        options.fleet.stats_iterations = 3;
        options.pool.iterations = 5;
    } else if (options.warmup == 0) {
        options.warmup = std::max<std::size_t>(options.iterations / 10, 100);
    }

    warn_if_busy();
    const bool run_scale_case = wanted(options, "scale");
    if (run_scale_case) {
        // The daemon started below inherits these limits and raises its own
        // soft limit to the hard one; the bench holds a control socket per
        // client process.
        if (const auto problem = raise_fd_limits(scale_fds_needed(options.fleet)))
            std::fprintf(stderr, "ionsvc-bench: warning: %s\n", problem->c_str());
    }
    options.fleet.all_cpus = allowed_cpus();
    const Placement placement = plan_placement(options.pinning);
    if (const int error = pin_to(placement.client_cpu); error < 0)
        throw BenchError("cannot pin the bench: " + errno_text(-error));

    buffer_name(); // fixed before the fork: the peer names buffers as the bench does
    RawAllocator allocator(options.backend, options.heap);
    options.heap = daemon_heap = options.fleet.heap = allocator.heap();
    // The peer is forked before the daemon starts and before any connection
    // exists, so that it inherits nothing but its end of the socketpair (and
    // the allocator's device).
    FloorPeer peer(allocator, placement.server_cpu);

    std::optional<DaemonProcess> daemon;
    std::string socket_path = options.socket_path;
    if (socket_path.empty()) {
        // Every process of the bench is one uid, and the scale case holds
        // more buffers than the built-in quota lets one uid hold: a limit
        // of the same kind, but higher, keeps its check in every Alloc.
        daemon.emplace(options.daemon_path, options.backend, placement.server_cpu,
                       "[quota]\nuid = { bytes = \"1T\", buffers = 1048576 }\n");
        socket_path = daemon->socket_path();
    }

    std::vector<Row> rows;
    {
        auto client = bufclient::Client::connect({.socket_path = socket_path,
                                                  .client_name = "ionsvc-bench"});
        if (!client)
            throw BenchError(client.error().message);
        check_daemon_serves(*client, allocator);
        auto prompt = bufclient::Client::connect(
            {.socket_path = socket_path, .client_name = "ionsvc-bench-prompt", .deferred_free_bytes = 0});
        if (!prompt)
            throw BenchError(prompt.error().message);

        std::vector<Case> cases = make_cases(*client, *prompt, peer, options);
        measure(cases, options);
        const auto used = [&](const char *kind) {
            return std::any_of(cases.begin(), cases.end(), [&](const Case &c) { return c.kind == kind; });
        };
        // The stats request carries the frees still kept back.
        if (used("daemon") || used("batch"))
            check_books(*client);
        if (used("prompt"))
            check_books(*prompt);
        rows = make_rows(cases);
    }

    options.fleet.socket_path = socket_path;
    options.fleet.daemon_pid = daemon ? std::optional<pid_t>(daemon->pid()) : listener_pid(socket_path);
    options.fleet.daemon_is_ours = daemon.has_value();
    options.fleet.placement = placement;
    if (wanted(options, "concurrency")) {
        auto fleet_rows = run_concurrency(options.fleet);
        rows.insert(rows.end(), fleet_rows.begin(), fleet_rows.end());
    }
    // A scale case the daemon cannot hold is reported and fails the run,
    // after the other cases' results are printed.
    std::optional<std::string> scale_problem;
    if (run_scale_case) {
        scale_problem = scale_cannot_run(options.fleet);
        if (!scale_problem) {
            auto fleet_rows = run_scale(options.fleet);
            rows.insert(rows.end(), fleet_rows.begin(), fleet_rows.end());
        }
    }

    if (daemon)
        daemon->stop();
    // Needs daemons with configs of its own: only with --daemon. Its pool
    // and raw-populated cases are memfd's.
    if (wanted(options, "pool") && !options.daemon_path.empty() && options.backend == "memfd") {
        options.pool.daemon_path = options.daemon_path;
        options.pool.server_cpu = placement.server_cpu;
        auto pool_rows = run_pool(options.pool);
        rows.insert(rows.end(), pool_rows.begin(), pool_rows.end());
    }

    if (options.json)
        print_json(rows, options);
    else
        print_table(rows, options);
    if (scale_problem) {
        std::fprintf(stderr, "ionsvc-bench: the scale case did not run: %s\n", scale_problem->c_str());
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}

int parse_and_run(int argc, char **argv)
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
                   "Buffer sizes in bytes, comma-separated, suffixes K and M (default "
                   "4K,64K,1M,8M,32M)")
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
                   "prompt, raw, rtt, batch, concurrency, scale, pool")
        ->check(CLI::IsMember({"daemon", "floor", "floor2", "prompt", "raw", "rtt", "batch", "concurrency",
                               "scale", "pool"}))
        ->delimiter(',');
    app.add_option("--concurrency-clients", options.fleet.client_counts,
                   "Client processes at once in the concurrency case, comma-separated")
        ->check(CLI::Range(std::size_t{1}, std::size_t{4096}))
        ->delimiter(',')
        ->capture_default_str();
    app.add_option("--concurrency-allocations", options.fleet.concurrency_allocations,
                   "Allocations per client count, all its clients together")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--scale-clients", options.fleet.scale_clients,
                   "Client processes holding buffers in the scale case")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--scale-buffers", options.fleet.scale_buffers,
                   "Live buffers each of them holds")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--backend", options.backend,
                   "The daemon's backend: the bench's own ionsvcd serves it alone, and the "
                   "floor and raw cases allocate as it does")
        ->check(CLI::IsMember(std::vector<std::string>(std::begin(kBackendNames),
                                                       std::end(kBackendNames))))
        ->capture_default_str();
    app.add_option("--heap", options.heap,
                   "The heap of that backend, as ionsvcd names it (default: its system heap: "
                   "memfd, the first ion:<name> of type system, dma-heap:system, udmabuf)");
    app.add_option("--pool-iterations", options.pool.iterations,
                   "Populated allocations per size, from the warm pool and without it")
        ->capture_default_str();
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

} // namespace
} // namespace ionsvc_bench

int main(int argc, char **argv)
{
    return ionsvc_bench::parse_and_run(argc, argv);
}
