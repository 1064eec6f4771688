// SPDX-License-Identifier: MIT
// ionsvc-ctl: shows what ionsvcd has handed out, to whom.
//
//   ionsvc-ctl [--socket PATH] stats [--view pids|heaps|clients] [--pid N] [--json]
//   ionsvc-ctl [--socket PATH] heaps [--json]
//
// Exit status: 0 on success, 1 when the daemon or the output fails, CLI11's
// status for usage errors.
#include <sys/types.h>

#include <climits>
#include <exception>
#include <iostream>
#include <map>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <bufclient/bufclient.h>

#include "render.h"

namespace {

using namespace ionsvc::ctl;

constexpr int kFailure = 1;

struct Options
{
    std::string socket_path = bufclient::default_socket_path();
    bufclient::StatsView view = bufclient::StatsView::kPids;
    int pid = 0;
    bool json = false;
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

int fail(const bufclient::Error &error)
{
    std::cerr << error_text(error) << '\n';
    return kFailure;
}

bufclient::Result<bufclient::Client> connect(const Options &options)
{
    bufclient::ConnectOptions connect_options;
    connect_options.socket_path = options.socket_path;
    connect_options.client_name = "ionsvc-ctl";
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

    if (options.json)
        return print(json_text(stats_to_json(*stats)));
    switch (options.view) {
    case bufclient::StatsView::kPids: return print(render_pids_table(*stats) + render_limits(stats->limits));
    case bufclient::StatsView::kHeaps: return print(render_ion_heaps(*stats));
    case bufclient::StatsView::kClients: return print(render_ion_clients(*stats));
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
    stats->add_option("--view", view, "pids: a table per pid and heap; heaps, clients: as ION's debugfs")
        ->check(CLI::IsMember({"pids", "heaps", "clients"}))
        ->capture_default_str();
    CLI::Option *pid = stats->add_option("--pid", options.pid, "Only the clients of this process")
                           ->check(CLI::Range(1, INT_MAX));
    stats->add_flag("--json", options.json, "All views' data as JSON");

    CLI::App *heaps = app.add_subcommand("heaps", "The daemon's heaps and their live and peak usage");
    heaps->add_flag("--json", options.json, "As JSON");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError &error) {
        return app.exit(error);
    }

    if (stats->parsed()) {
        const std::map<std::string, bufclient::StatsView> views = {
            {"pids", bufclient::StatsView::kPids},
            {"heaps", bufclient::StatsView::kHeaps},
            {"clients", bufclient::StatsView::kClients},
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
