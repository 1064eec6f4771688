// SPDX-License-Identifier: MIT
#include "render.h"
#include "table.h"

#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <iterator>
#include <map>
#include <string_view>

#include <ionsvc/status.h>
#include <ionsvc/text.h>

namespace ionsvc::ctl {
namespace {

// printf into a std::string. The heaps and clients views use ION's own
// printf formats, which is the surest way to match its output exactly; the
// attribute lets the compiler check every format against its arguments.
[[gnu::format(printf, 1, 2)]] std::string c_format(const char *format, ...)
{
    std::va_list args;
    va_start(args, format);
    std::va_list again;
    va_copy(again, args);
    const int length = std::vsnprintf(nullptr, 0, format, args);
    va_end(args);
    std::string text;
    if (length > 0) {
        text.resize(static_cast<std::size_t>(length));
        // C++17 strings own their terminator slot, so length + 1 is in bounds.
        std::vsnprintf(text.data(), text.size() + 1, format, again);
    }
    va_end(again);
    return text;
}

// ION's formats, verbatim except that ION prints size_t with %zu and our
// sizes are uint64_t, hence PRIu64: the same digits on every target.
// The most of one text (a name, a comm, an error message) shown.

constexpr const char *kIonDashes = "----------------------------------------------------\n";
constexpr const char *kIonOrphanedTitle = "orphaned allocations (info is from last known client):\n";

std::string ion_heap_client_line(const std::string &comm, std::uint32_t pid, std::uint64_t size)
{
    return c_format("%16s %16u %16" PRIu64 "\n", comm.c_str(), pid, size);
}

std::string ion_heap_orphan_line(const bufclient::OrphanedBuffer &orphan)
{
    return c_format("%16s %16u %16" PRIu64 " %d %d\n", orphan.comm.c_str(), orphan.pid, orphan.size,
                    orphan.map_count, orphan.refcount);
}

std::string ion_heap_total_line(const char *label, std::uint64_t bytes)
{
    return c_format("%16s %16" PRIu64 "\n", label, bytes);
}

std::uint64_t orphaned_bytes(const bufclient::HeapStats &heap)
{
    std::uint64_t bytes = 0;
    for (const bufclient::OrphanedBuffer &orphan : heap.orphaned)
        bytes += orphan.size;
    return bytes;
}

// ION's heaps/<heap> body.
std::string ion_heap_body(const bufclient::HeapStats &heap, const std::vector<bufclient::ClientStats> &clients)
{
    std::string text = c_format("%16s %16s %16s\n", "client", "pid", "size");
    text += kIonDashes;
    for (const bufclient::ClientStats &client : clients) {
        for (const bufclient::HeapUsage &usage : client.heaps) {
            // ION lists only clients holding something in the heap now.
            if (usage.heap == heap.name && usage.bytes > 0)
                text += ion_heap_client_line(client.comm, client.pid, usage.bytes);
        }
    }
    text += kIonDashes;
    text += kIonOrphanedTitle;
    for (const bufclient::OrphanedBuffer &orphan : heap.orphaned)
        text += ion_heap_orphan_line(orphan);
    text += kIonDashes;
    text += ion_heap_total_line("total orphaned", orphaned_bytes(heap));
    // HeapStats::total_bytes already counts the orphans, as ION's total does.
    text += ion_heap_total_line("total ", heap.total_bytes);
    // Like the page pools ION's system heap listed: memory held, nobody's.
    if (heap.pool_bytes > 0)
        text += ion_heap_total_line("total pool", heap.pool_bytes);
    text += kIonDashes;
    return text;
}

// ION's clients/<client> body.
std::string ion_client_body(const bufclient::ClientStats &client)
{
    std::string text = c_format("%16.16s: %16.16s\n", "heap_name", "size_in_bytes");
    for (const bufclient::HeapUsage &usage : client.heaps)
        text += c_format("%16.16s: %16" PRIu64 "\n", usage.heap.c_str(), usage.bytes);
    return text;
}

// Sections in head(1)'s way: "==> title <==", the body, a blank line between.
void append_section(std::string &text, const std::string &title, const std::string &body)
{
    if (!text.empty())
        text += '\n';
    text += "==> " + title + " <==\n";
    text += body;
}

// The heap's position in the daemon's order; heaps it did not list go last.
std::size_t heap_rank(const bufclient::Stats &stats, const std::string &name)
{
    const auto found = std::find_if(stats.heaps.begin(), stats.heaps.end(),
                                    [&](const bufclient::HeapStats &heap) { return heap.name == name; });
    return static_cast<std::size_t>(std::distance(stats.heaps.begin(), found));
}

nlohmann::json usage_to_json(const bufclient::HeapUsage &usage)
{
    return {
        {"heap", usage.heap},
        {"bytes", usage.bytes},
        {"buffers", usage.buffers},
        {"peak_bytes", usage.peak_bytes},
        {"shared_bytes", usage.shared_bytes},
        {"shared_buffers", usage.shared_buffers},
    };
}

nlohmann::json usages_to_json(const std::vector<bufclient::HeapUsage> &usages)
{
    nlohmann::json array = nlohmann::json::array();
    for (const bufclient::HeapUsage &usage : usages)
        array.push_back(usage_to_json(usage));
    return array;
}

} // namespace

std::vector<PidStats> aggregate_by_pid(const bufclient::Stats &stats)
{
    // Lowest client_id first, so a pid's comm and uid are its first connection's.
    std::vector<const bufclient::ClientStats *> clients;
    for (const bufclient::ClientStats &client : stats.clients)
        clients.push_back(&client);
    std::stable_sort(clients.begin(), clients.end(),
                     [](const auto *a, const auto *b) { return a->client_id < b->client_id; });

    std::map<std::uint32_t, PidStats> by_pid;
    for (const bufclient::ClientStats *client : clients) {
        auto [entry, first] = by_pid.try_emplace(client->pid);
        PidStats &pid = entry->second;
        if (first) {
            pid.pid = client->pid;
            pid.comm = client->comm;
            pid.uid = client->uid;
        }
        pid.client_ids.push_back(client->client_id);
        for (const bufclient::HeapUsage &usage : client->heaps) {
            auto same_heap = std::find_if(pid.heaps.begin(), pid.heaps.end(),
                                          [&](const bufclient::HeapUsage &held) { return held.heap == usage.heap; });
            if (same_heap == pid.heaps.end()) {
                pid.heaps.push_back({usage.heap, 0, 0, 0, 0, 0});
                same_heap = std::prev(pid.heaps.end());
            }
            same_heap->bytes += usage.bytes;
            same_heap->buffers += usage.buffers;
            same_heap->peak_bytes += usage.peak_bytes;
            same_heap->shared_bytes += usage.shared_bytes;
            same_heap->shared_buffers += usage.shared_buffers;
            pid.shared_bytes += usage.shared_bytes;
            pid.bytes += usage.bytes;
            pid.buffers += usage.buffers;
        }
    }

    std::vector<PidStats> pids;
    for (auto &[number, pid] : by_pid) {
        std::stable_sort(pid.heaps.begin(), pid.heaps.end(), [&](const auto &a, const auto &b) {
            return heap_rank(stats, a.heap) < heap_rank(stats, b.heap);
        });
        pids.push_back(std::move(pid));
    }
    return pids;
}

std::string render_pids_table(const bufclient::Stats &stats)
{
    const std::vector<PidStats> pids = aggregate_by_pid(stats);
    std::vector<std::vector<std::string>> rows;
    std::uint64_t clients = 0;
    std::uint64_t buffers = 0;
    std::uint64_t bytes = 0;
    std::uint64_t shared_bytes = 0;
    for (const PidStats &pid : pids) {
        const std::vector<std::string> who = {std::to_string(pid.pid), pid.comm, std::to_string(pid.uid),
                                              std::to_string(pid.client_ids.size())};
        clients += pid.client_ids.size();
        if (pid.heaps.empty()) {
            // Connected but never allocated: still worth a line.
            auto row = who;
            row.insert(row.end(), {"-", "0", "0", human_size(0), "0", "0"});
            rows.push_back(std::move(row));
        }
        for (const bufclient::HeapUsage &usage : pid.heaps) {
            auto row = who;
            row.insert(row.end(), {usage.heap, std::to_string(usage.buffers), std::to_string(usage.bytes),
                                   human_size(usage.bytes), std::to_string(usage.shared_bytes),
                                   std::to_string(usage.peak_bytes)});
            rows.push_back(std::move(row));
            buffers += usage.buffers;
            bytes += usage.bytes;
            shared_bytes += usage.shared_bytes;
        }
    }
    // Peaks of different pids do not add up to anything meaningful: left blank.
    rows.push_back({"total", "", "", std::to_string(clients), "", std::to_string(buffers), std::to_string(bytes),
                    human_size(bytes), std::to_string(shared_bytes), ""});

    std::string text = render_table(
        {
            {"PID", Align::kRight},
            {"COMM", Align::kLeft},
            {"UID", Align::kRight},
            {"CLIENTS", Align::kRight},
            {"HEAP", Align::kLeft},
            {"BUFFERS", Align::kRight},
            {"BYTES", Align::kRight},
            {"SIZE", Align::kRight},
            {"SHARED", Align::kRight},
            {"PEAK", Align::kRight},
        },
        rows);

    std::uint64_t orphans = 0;
    std::uint64_t orphan_bytes = 0;
    for (const bufclient::HeapStats &heap : stats.heaps) {
        orphans += heap.orphaned.size();
        orphan_bytes += orphaned_bytes(heap);
    }
    if (orphans > 0)
        text += c_format("orphaned buffers: %" PRIu64 ", bytes: %" PRIu64 " (no live client; see --view heaps)\n",
                         orphans, orphan_bytes);
    return text;
}

std::string render_ion_heaps(const bufclient::Stats &stats)
{
    std::string text;
    for (const bufclient::HeapStats &heap : stats.heaps)
        append_section(text, "heaps/" + heap.name, ion_heap_body(heap, stats.clients));
    return text;
}

std::string render_ion_clients(const bufclient::Stats &stats)
{
    std::string text;
    for (const bufclient::ClientStats &client : stats.clients) {
        const std::string title = c_format("clients/%u-%" PRIu64 " (%s, \"%s\")", client.pid, client.client_id,
                                           client.comm.c_str(), client.name.c_str());
        append_section(text, title, ion_client_body(client));
    }
    return text;
}

namespace {

std::string join_names(const std::vector<std::string> &names)
{
    std::string joined;
    for (const std::string &name : names)
        joined += (joined.empty() ? "" : ",") + name;
    return joined;
}

} // namespace

std::string render_heap_list(const std::vector<bufclient::HeapInfo> &heaps)
{
    std::vector<std::vector<std::string>> rows;
    for (const bufclient::HeapInfo &heap : heaps)
        rows.push_back({heap.name, heap.backend, heap.type,
                        heap.ion_heap_id ? std::to_string(*heap.ion_heap_id) : "-",
                        heap.aliases.empty() ? "-" : join_names(heap.aliases),
                        std::to_string(heap.live_buffers), std::to_string(heap.live_bytes),
                        human_size(heap.live_bytes), std::to_string(heap.peak_bytes),
                        std::to_string(heap.pool_buffers), human_size(heap.pool_bytes)});
    return render_table(
        {
            {"HEAP", Align::kLeft},
            {"BACKEND", Align::kLeft},
            {"TYPE", Align::kLeft},
            {"ION_ID", Align::kRight},
            {"ALIASES", Align::kLeft},
            {"BUFFERS", Align::kRight},
            {"BYTES", Align::kRight},
            {"SIZE", Align::kRight},
            {"PEAK", Align::kRight},
            {"POOL", Align::kRight},
            {"POOL_SIZE", Align::kRight},
        },
        rows);
}

nlohmann::json stats_to_json(const bufclient::Stats &stats)
{
    nlohmann::json clients = nlohmann::json::array();
    for (const bufclient::ClientStats &client : stats.clients) {
        std::uint64_t bytes = 0;
        std::uint64_t buffers = 0;
        for (const bufclient::HeapUsage &usage : client.heaps) {
            bytes += usage.bytes;
            buffers += usage.buffers;
        }
        clients.push_back({
            {"client_id", client.client_id},
            {"pid", client.pid},
            {"uid", client.uid},
            {"gid", client.gid},
            {"comm", client.comm},
            {"name", client.name},
            {"cgroup", client.cgroup},
            {"awaiting_reclaim", client.awaiting_reclaim},
            {"bytes", bytes},
            {"buffers", buffers},
            {"heaps", usages_to_json(client.heaps)},
        });
    }

    nlohmann::json heaps = nlohmann::json::array();
    for (const bufclient::HeapStats &heap : stats.heaps) {
        nlohmann::json orphaned = nlohmann::json::array();
        for (const bufclient::OrphanedBuffer &orphan : heap.orphaned) {
            orphaned.push_back({
                {"comm", orphan.comm},
                {"pid", orphan.pid},
                {"size", orphan.size},
                {"map_count", orphan.map_count},
                {"refcount", orphan.refcount},
            });
        }
        heaps.push_back({
            {"name", heap.name},
            {"backend", heap.backend},
            {"type", heap.type},
            {"live_bytes", heap.total_bytes},
            {"live_buffers", heap.total_buffers},
            {"orphaned", std::move(orphaned)},
            {"orphaned_bytes", orphaned_bytes(heap)},
            {"pool_bytes", heap.pool_bytes},
            {"pool_buffers", heap.pool_buffers},
        });
    }

    nlohmann::json pids = nlohmann::json::array();
    for (const PidStats &pid : aggregate_by_pid(stats)) {
        pids.push_back({
            {"pid", pid.pid},
            {"comm", pid.comm},
            {"uid", pid.uid},
            {"clients", pid.client_ids.size()},
            {"client_ids", pid.client_ids},
            {"bytes", pid.bytes},
            {"buffers", pid.buffers},
            {"shared_bytes", pid.shared_bytes},
            {"heaps", usages_to_json(pid.heaps)},
        });
    }

    nlohmann::json json = {{"clients", std::move(clients)},
                           {"heaps", std::move(heaps)},
                           {"pids", std::move(pids)},
                           {"limits", limits_to_json(stats.limits)},
                           {"cgroups", cgroups_to_json(stats)}};
    if (stats.recovery) {
        const bufclient::Recovery &recovery = *stats.recovery;
        json["recovery"] = {{"enabled", recovery.enabled},
                            {"stored_buffers", recovery.stored_buffers},
                            {"store_limit", recovery.store_limit},
                            {"pending_changes", recovery.pending_changes},
                            {"unstored_buffers", recovery.unstored_buffers},
                            {"restored_buffers", recovery.restored_buffers},
                            {"awaiting_reclaim", recovery.awaiting_reclaim}};
    }
    return json;
}

nlohmann::json heaps_to_json(const std::vector<bufclient::HeapInfo> &heaps)
{
    nlohmann::json array = nlohmann::json::array();
    for (const bufclient::HeapInfo &heap : heaps) {
        array.push_back({
            {"name", heap.name},
            {"backend", heap.backend},
            {"type", heap.type},
            {"live_bytes", heap.live_bytes},
            {"live_buffers", heap.live_buffers},
            {"peak_bytes", heap.peak_bytes},
            {"aliases", heap.aliases},
            {"ion_heap_id", heap.ion_heap_id ? nlohmann::json(*heap.ion_heap_id) : nlohmann::json()},
            {"pool_bytes", heap.pool_bytes},
            {"pool_buffers", heap.pool_buffers},
        });
    }
    return {{"heaps", std::move(array)}};
}

std::string json_text(const nlohmann::json &json)
{
    return json.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string human_size(std::uint64_t bytes)
{
    if (bytes < 1024)
        return std::to_string(bytes) + "B";
    static constexpr const char *kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double value = static_cast<double>(bytes) / 1024;
    std::size_t unit = 0;
    // 1023.95 would print as "1024.0"; step up a unit instead.
    while (value >= 1023.95 && unit + 1 < std::size(kUnits)) {
        value /= 1024;
        ++unit;
    }
    return c_format("%.1f%s", value, kUnits[unit]);
}

std::string error_text(const bufclient::Error &error)
{
    std::string text = "ionsvc-ctl: ";
    text += ionsvc::status_name(error.code);
    text += ": ";
    text += ionsvc::printable_text(error.message, kMaxShownText);
    return text;
}

void make_printable(std::string &text, std::size_t limit)
{
    text = ionsvc::printable_text(text, limit);
}

void make_printable(bufclient::Stats &stats)
{
    for (bufclient::ClientStats &client : stats.clients) {
        make_printable(client.comm);
        make_printable(client.name);
        make_printable(client.cgroup);
        for (bufclient::HeapUsage &usage : client.heaps)
            make_printable(usage.heap);
    }
    for (bufclient::HeapStats &heap : stats.heaps) {
        make_printable(heap.name);
        make_printable(heap.backend);
        make_printable(heap.type);
        for (bufclient::OrphanedBuffer &orphan : heap.orphaned)
            make_printable(orphan.comm);
    }
    for (bufclient::LimitUsage &limit : stats.limits) {
        make_printable(limit.setting);
        make_printable(limit.scope);
        make_printable(limit.unit);
    }
}

void make_printable(std::vector<bufclient::HeapInfo> &heaps)
{
    for (bufclient::HeapInfo &heap : heaps) {
        make_printable(heap.name);
        make_printable(heap.backend);
        make_printable(heap.type);
        for (std::string &alias : heap.aliases)
            make_printable(alias);
    }
}

} // namespace ionsvc::ctl
