// SPDX-License-Identifier: MIT
// ionsvc-ctl: shows what ionsvcd has handed out, to whom.
//
//   ionsvc-ctl [--socket PATH] stats [--view pids|cgroups|heaps|clients] [--pid N] [--json]
//              [--format table|json|openmetrics|prometheus] [--output FILE]
//   ionsvc-ctl [--socket PATH] heaps [--json]
//   ionsvc-ctl [--socket PATH] buffers [--pid N] [--heap H] [--json]
//   ionsvc-ctl [--socket PATH] top [--interval SECONDS] [--samples N]
//   ionsvc-ctl dmabufs [--csv | --json] [--all]   (reads /proc; no daemon needed)
//
// Exit status: 0 on success, 1 when the daemon or the output fails, CLI11's
// status for usage errors.
#include <sys/types.h>

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <exception>
#include <iostream>
#include <map>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <bufclient/bufclient.h>

#include "dmabufs_render.h"
#include "dmabufs_scan.h"
#include "render.h"
#include "top_loop.h"

namespace {

using namespace ionsvc::ctl;

constexpr int kFailure = 1;

struct Options
{
    std::string socket_path = bufclient::default_socket_path();
    bufclient::StatsView view = bufclient::StatsView::kPids;
    int pid = 0;
    bool json = false;
    std::string format = "table"; // stats: table, json, openmetrics, prometheus
    std::string output;           // stats: a file to replace instead of stdout
};

// stdout may be a closed pipe or a full disk: say so rather than exit 0.
int print(const std::string &text)
{
    std::cout << text << std::flush;
    if (!std::cout) {
        std::cerr << "ionsvc-ctl: cannot write the output\n";
        return kFailure;
    }
    return 0;
}

// text as the whole of path, replaced in one rename: a reader (node_exporter
// scraping a textfile) sees the old file or the new one, never half.
int write_file(const std::string &path, const std::string &text)
{
    const std::string temporary = path + ".tmp." + std::to_string(::getpid());
    {
        std::ofstream file(temporary, std::ios::trunc);
        file << text;
        file.flush();
        if (!file) {
            std::cerr << "ionsvc-ctl: cannot write " << temporary << '\n';
            ::unlink(temporary.c_str());
            return kFailure;
        }
    }
    if (std::rename(temporary.c_str(), path.c_str()) != 0) {
        std::cerr << "ionsvc-ctl: cannot rename " << temporary << " to " << path << ": " << std::strerror(errno) << '\n';
        ::unlink(temporary.c_str());
        return kFailure;
    }
    return 0;
}

int fail(const bufclient::Error &error)
{
    std::cerr << error_text(error) << '\n';
    return kFailure;
}

// timeout: the longest wait for one reply.
bufclient::Result<bufclient::Client> connect(const Options &options,
                                             std::chrono::milliseconds timeout = std::chrono::seconds(30))
{
    bufclient::ConnectOptions connect_options;
    connect_options.socket_path = options.socket_path;
    connect_options.client_name = "ionsvc-ctl";
    connect_options.timeout = timeout;
    return bufclient::Client::connect(connect_options);
}

int run_stats(const Options &options, bool pid_given)
{
    auto client = connect(options);
    if (!client)
        return fail(client.error());
    const std::optional<pid_t> pid = pid_given ? std::optional<pid_t>(options.pid) : std::nullopt;
    auto stats = client->stats(pid, options.view);
    if (!stats)
        return fail(stats.error());
    make_printable(*stats);
    // ionsvc-ctl's own connection holds nothing: leave it out of the views.
    std::erase_if(stats->clients, [&](const bufclient::ClientStats &entry) {
        return entry.client_id == client->server().client_id;
    });

    if (options.format == "openmetrics" || options.format == "prometheus") {
        auto heaps = client->list_heaps();
        if (!heaps)
            return fail(heaps.error());
        make_printable(*heaps);
        const std::string text = render_metrics(*stats, *heaps,
                                                options.format == "openmetrics" ? MetricsFormat::kOpenMetrics
                                                                                : MetricsFormat::kPrometheus);
        return options.output.empty() ? print(text) : write_file(options.output, text);
    }
    if (!options.output.empty())
        return write_file(options.output, json_text(stats_to_json(*stats)));
    if (options.json || options.format == "json")
        return print(json_text(stats_to_json(*stats)));
    switch (options.view) {
    case bufclient::StatsView::kPids: return print(render_pids_table(*stats) + render_limits(stats->limits));
    case bufclient::StatsView::kHeaps: return print(render_ion_heaps(*stats));
    case bufclient::StatsView::kClients: return print(render_ion_clients(*stats));
    case bufclient::StatsView::kCgroups: return print(render_cgroups_table(*stats));
    }
    return kFailure;
}

int run_heaps(const Options &options)
{
    auto client = connect(options);
    if (!client)
        return fail(client.error());
    auto heaps = client->list_heaps();
    if (!heaps)
        return fail(heaps.error());
    make_printable(*heaps);
    return print(options.json ? json_text(heaps_to_json(*heaps)) : render_heap_list(*heaps));
}

int run_buffers(const Options &options, const bufclient::BufferFilter &filter)
{
    auto client = connect(options);
    if (!client)
        return fail(client.error());
    auto buffers = client->list_buffers(filter);
    if (!buffers)
        return fail(buffers.error());
    make_printable(*buffers);
    sort_largest_first(*buffers);
    return print(options.json ? json_text(buffers_to_json(*buffers)) : render_buffers_table(*buffers));
}

int run_top_command(const Options &options, const TopOptions &top)
{
    auto client = connect(options);
    if (!client)
        return fail(client.error());
    return run_top(*client, top);
}

struct DmabufsOptions
{
    bool csv = false;
    bool json = false;
    bool all = false;
};

// The daemon's buffers, to mark them among the machine's dma-bufs by
// inode; none if it cannot be reached (the view says so). Each is named by
// a client that holds it now, else by the last one (an orphan's).
IonsvcBuffers daemon_buffers(const Options &options)
{
    // The view needs no daemon: a silent one costs a moment, not 30 s.
    auto client = connect(options, std::chrono::seconds(2));
    if (!client)
        return std::nullopt;
    auto buffers = client->list_buffers();
    if (!buffers)
        return std::nullopt;
    std::vector<IonsvcBuffer> list;
    for (const bufclient::BufferEntry &buffer : *buffers) {
        const bufclient::ClientLabel &owner = !buffer.holders.empty() ? buffer.holders.front()
                                              : buffer.orphan_of      ? *buffer.orphan_of
                                                                      : buffer.allocated_by;
        list.push_back({buffer.inode, buffer.id, buffer.heap, owner.pid, owner.comm, owner.uid});
    }
    make_printable(list);
    return list;
}

// Every dma-buf of the machine, read from /proc by this process; ionsvc is
// the daemon's list of its buffers to mark them, nullopt without one.
int run_dmabufs(const DmabufsOptions &options, const IonsvcBuffers &ionsvc)
{
    auto scan = scan_dmabufs();
    if (!scan) {
        std::cerr << "ionsvc-ctl: cannot read " << scan.error() << '\n';
        return kFailure;
    }
    const DmabufFormat format = options.json  ? DmabufFormat::kJson
                                : options.csv ? DmabufFormat::kCsv
                                              : DmabufFormat::kText;
    return print(render_dmabufs(*scan, ionsvc, format, options.all));
}

int run(int argc, char **argv)
{
    Options options;
    CLI::App app{"Shows the buffers ionsvcd has handed out, per process, heap and client.", "ionsvc-ctl"};
    app.set_version_flag("--version", "ionsvc-ctl " + std::string(IONSVC_VERSION));
    app.require_subcommand(1);
    // Lets --socket come after the subcommand too.
    app.fallthrough();
    app.add_option("--socket", options.socket_path, "ionsvcd's socket ($IONSVC_SOCKET overrides the default)")
        ->capture_default_str();

    CLI::App *stats = app.add_subcommand("stats", "Buffer usage per pid, or ION's debugfs heaps/clients files");
    std::string view = "pids";
    stats->add_option("--view", view, "pids: a table per pid and heap; cgroups: per cgroup and systemd unit; heaps, clients: as ION's debugfs")
        ->check(CLI::IsMember({"pids", "heaps", "clients", "cgroups"}))
        ->capture_default_str();
    CLI::Option *pid = stats->add_option("--pid", options.pid, "Only the clients of this process")
                           ->check(CLI::Range(1, INT_MAX));
    stats->add_flag("--json", options.json, "All views' data as JSON (--format json)");
    stats->add_option("--format", options.format,
                      "table (the view), json, openmetrics (OpenMetrics 1.0), prometheus (text format 0.0.4, "
                      "for node_exporter's textfile collector)")
        ->check(CLI::IsMember({"table", "json", "openmetrics", "prometheus"}))
        ->capture_default_str();
    stats->add_option("--output", options.output,
                      "Replace this file (in one rename) instead of printing; json unless --format says");

    CLI::App *heaps = app.add_subcommand("heaps", "The daemon's heaps and their live and peak usage");
    heaps->add_flag("--json", options.json, "As JSON");

    CLI::App *buffers = app.add_subcommand("buffers", "Every live buffer: who allocated it, who holds it, largest first");
    bufclient::BufferFilter filter;
    int buffers_pid = 0;
    CLI::Option *buffers_pid_option =
        buffers->add_option("--pid", buffers_pid, "Only the buffers this process holds or left as orphans")
            ->check(CLI::Range(1, INT_MAX));
    buffers->add_option("--heap", filter.heap, "Only the buffers of this heap (a name or alias)");
    buffers->add_flag("--json", options.json, "As JSON");

    CLI::App *top = app.add_subcommand("top", "The pids view live: largest first, the change since the last "
                                               "sample, and processes whose holdings only grow flagged");
    TopOptions top_options;
    top->add_option("--interval", top_options.interval_seconds, "Seconds between samples")
        ->check(CLI::Range(0.1, 3600.0))
        ->capture_default_str();
    top->add_option("--samples", top_options.samples, "Stop after this many samples (0: at Ctrl-C)")
        ->capture_default_str();

    DmabufsOptions dmabufs_options;
    CLI::App *dmabufs = app.add_subcommand(
        "dmabufs", "Every dma-buf of the machine from /proc, per process (Rss, Pss) and per buffer");
    CLI::Option *csv = dmabufs->add_flag("--csv", dmabufs_options.csv, "As CSV: a row per buffer and process");
    dmabufs->add_flag("--json", dmabufs_options.json, "As JSON")->excludes(csv);
    dmabufs->add_flag("--all", dmabufs_options.all, "Also a grid of each buffer's fd/map references per process");
    dmabufs->footer("Needs no daemon. As a user other than root, it sees only that user's processes. "
                    "See docs/DMABUFS.md.");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError &error) {
        return app.exit(error);
    }

    if (dmabufs->parsed())
        return run_dmabufs(dmabufs_options, daemon_buffers(options));
    if (top->parsed())
        return run_top_command(options, top_options);
    if (buffers->parsed()) {
        if (buffers_pid_option->count() > 0)
            filter.pid = buffers_pid;
        return run_buffers(options, filter);
    }
    if (stats->parsed()) {
        const std::map<std::string, bufclient::StatsView> views = {
            {"pids", bufclient::StatsView::kPids},
            {"heaps", bufclient::StatsView::kHeaps},
            {"clients", bufclient::StatsView::kClients},
            {"cgroups", bufclient::StatsView::kCgroups},
        };
        options.view = views.at(view);
        return run_stats(options, pid->count() > 0);
    }
    return run_heaps(options);
}

} // namespace

int main(int argc, char **argv)
{
    // Nothing is meant to throw past run(); bad_alloc and the like still get
    // a message and a status instead of std::terminate.
    try {
        return run(argc, argv);
    } catch (const std::exception &error) {
        std::cerr << "ionsvc-ctl: " << error.what() << '\n';
    } catch (...) {
        std::cerr << "ionsvc-ctl: unknown error\n";
    }
    return kFailure;
}
