// SPDX-License-Identifier: MIT
// ionsvc_render: libbufclient's stats as text and JSON, for ionsvc-ctl.
// Pure functions: no I/O, so every output is unit-tested against golden text.
//
// Text views of `ionsvc-ctl stats`:
//   pids     a table, one row per (pid, heap) summed over the pid's
//            connections, then a `total` row (see render_pids_table).
//   heaps    for each heap, a title line `==> heaps/<heap> <==` and then the
//            body of Android ION's debugfs file heaps/<heap>, byte for byte.
//   clients  for each client, a title line
//            `==> clients/<pid>-<client_id> (<comm>, "<name>") <==` and then
//            the body of ION's debugfs file clients/<pid>-<serial>.
//   Titles follow head(1)'s multi-file layout; one blank line separates
//   sections. ION's bodies carry no comm or name, so the titles do.
//
// JSON of `ionsvc-ctl stats --json` (the same for every view):
//   {
//     "clients": [ { "client_id", "pid", "uid", "gid", "comm", "name", "cgroup",
//                    "bytes", "buffers",        // sums over "heaps"
//                    "heaps": [ <usage> ] } ],  // heaps ever used, peak > 0
//     "heaps":   [ { "name", "backend", "type",
//                    "live_bytes", "live_buffers",  // of the scope, orphans included
//                                               // (the names of `heaps --json`)
//                    "orphaned": [ { "comm", "pid", "size", "map_count",
//                                    "refcount" } ],
//                    "orphaned_bytes" } ],
//     "pids":    [ { "pid", "comm", "uid",
//                    "clients",                 // number of connections
//                    "client_ids": [ ... ],
//                    "bytes", "buffers",        // live, over all its heaps
//                    "shared_bytes",            // of bytes, held by other clients too
//                    "heaps": [ <usage> ] } ],  // summed over connections
//     "limits":  [ { "setting", "scope", "unit", "used", "limit" } ],
//                                               // those that hold for the asker
//     "cgroups": [ ... ]                        // see render_cgroups_table
//   }
//   <usage> = { "heap", "bytes", "buffers", "peak_bytes", "shared_bytes",
//               "shared_buffers" }. A buffer shared between clients counts
//   in each of them (as ION counted it in each client with a handle) and
//   once in its heap's totals; "shared_*" say how much of a usage that is.
//   A pid's "bytes" is exactly what its processes hold now; a pid's
//   "peak_bytes" per heap is the sum of its connections' peaks, so with
//   several connections it is an upper bound of the pid's own peak.
//   Sizes are exact integers; pids are sorted ascending; heaps follow the
//   daemon's heap order.
//
// JSON of `ionsvc-ctl heaps --json`:
//   { "heaps": [ { "name", "backend", "type", "live_bytes", "live_buffers",
//                  "peak_bytes", "aliases": [names],
//                  "ion_heap_id" (null for heaps that are not ion) } ] }
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <bufclient/bufclient.h>
#include <nlohmann/json.hpp>

namespace ionsvc::ctl {

// One process's usage: its connections' ClientStats summed.
struct PidStats
{
    std::uint32_t pid = 0;
    // Of the pid's first connection (lowest client_id). A process keeps
    // them across connections unless it renames itself or changes uid.
    std::string comm;
    std::uint32_t uid = 0;
    std::vector<std::uint64_t> client_ids;
    std::uint64_t bytes = 0;
    std::uint64_t buffers = 0;
    std::uint64_t shared_bytes = 0; // of bytes, in buffers other clients hold too
    // Every heap any of its connections has used, in the daemon's heap order.
    std::vector<bufclient::HeapUsage> heaps;
};

// One cgroup's clients summed (stats --view cgroups).
struct CgroupStats
{
    std::string cgroup; // its cgroup v2 path; empty: unknown
    std::string unit;   // the systemd unit the path names, if any
    std::uint64_t pids = 0;
    std::uint64_t clients = 0;
    std::uint64_t buffers = 0;
    std::uint64_t bytes = 0;
    std::uint64_t shared_bytes = 0; // of bytes, in buffers other clients hold too
};

// Makes every text the daemon sent printable (ionsvc/text.h) before it is
// shown: the daemon does so where client text enters, and a terminal is
// worth checking twice. Names, comms and heap names alike.
// How much of one text from the daemon a view shows.
inline constexpr std::size_t kMaxShownText = 4096;
// Text that came from the daemon, which any client may have chosen, made
// safe for a terminal in place (ionsvc::printable_text): every view does
// this once, where the text arrives.
void make_printable(std::string &text, std::size_t limit = kMaxShownText);
void make_printable(bufclient::Stats &stats);
void make_printable(std::vector<bufclient::HeapInfo> &heaps);

// The single place clients are summed per pid; both the pids table and the
// JSON's "pids" use it. Sorted by pid.
std::vector<PidStats> aggregate_by_pid(const bufclient::Stats &stats);

// The pids view: columns PID COMM UID CLIENTS HEAP BUFFERS BYTES SIZE SHARED
// PEAK. BYTES, SHARED and PEAK are exact byte counts, SIZE is BYTES for
// humans, SHARED the part of BYTES that other clients hold too. A pid
// without any heap gets one row with heap "-". Then a `total` row over the
// rows above, and, if the daemon reports orphaned buffers (counted by no
// pid), one line with their count and bytes.
std::string render_pids_table(const bufclient::Stats &stats);

// After the pids view: the limits that hold for the client that asked
// (LIMIT SCOPE USED OF UNIT), under a blank line and a title; nothing if
// none do.
std::string render_limits(const std::vector<bufclient::LimitUsage> &limits);
nlohmann::json limits_to_json(const std::vector<bufclient::LimitUsage> &limits);

// The heaps view: ION's debugfs heaps/<heap> for each heap.
std::string render_ion_heaps(const bufclient::Stats &stats);

// The clients view: ION's debugfs clients/<client> for each client.
std::string render_ion_clients(const bufclient::Stats &stats);

// The cgroups view (cgroups.cpp): a row per cgroup, sorted by path, with
// columns CGROUP (the path, "?" if unknown) UNIT (the deepest component
// that names a systemd unit: .service, .scope, .slice, ...; "-" if none)
// PIDS CLIENTS BUFFERS BYTES SIZE SHARED, then a `total` row. A buffer two
// clients hold counts in each, as in the pids view. JSON: "cgroups" in
// stats_to_json, [ { "cgroup", "unit" (or null), "pids", "clients",
// "buffers", "bytes", "shared_bytes" } ].
std::vector<CgroupStats> aggregate_by_cgroup(const bufclient::Stats &stats);
std::string render_cgroups_table(const bufclient::Stats &stats);
nlohmann::json cgroups_to_json(const bufclient::Stats &stats);
std::string systemd_unit_of(std::string_view cgroup);

// `ionsvc-ctl stats --format openmetrics|prometheus` (metrics.cpp): the
// stats and the heaps as metric families, each with TYPE and HELP (and
// UNIT in OpenMetrics), names and labels in Prometheus' conventions:
//   ionsvc_heap_{live,orphaned,pool,peak}_bytes, ionsvc_heap_live_buffers
//                                      {heap, backend}
//   ionsvc_uid_held_{bytes,buffers}    {uid}
//   ionsvc_cgroup_held_{bytes,buffers} {cgroup, unit}
//   ionsvc_connections
//   and, for root and the admin group, counters since the daemon started:
//   ionsvc_allocations_total, ionsvc_allocated_bytes_total,
//   ionsvc_imports_total, ionsvc_request_refusals_total {status}
// OpenMetrics 1.0 ends with "# EOF"; Prometheus' text format 0.0.4 (what
// node_exporter's textfile collector reads) names counters by their
// samples (_total) and has no UNIT lines.
enum class MetricsFormat { kOpenMetrics, kPrometheus };
std::string render_metrics(const bufclient::Stats &stats, const std::vector<bufclient::HeapInfo> &heaps,
                           MetricsFormat format);

// `ionsvc-ctl heaps`: columns HEAP BACKEND TYPE ION_ID ALIASES BUFFERS BYTES
// SIZE PEAK.
std::string render_heap_list(const std::vector<bufclient::HeapInfo> &heaps);

// `ionsvc-ctl buffers` (buffers.cpp): columns ID HEAP BYTES SIZE NAME
// ALLOCATED_BY (pid/comm, "(gone)" once that client disconnected) UID
// CLIENT (its name) STATE (held, shared, orphan) HOLDERS (pid/comm of each
// connected holder; for an orphan "last:pid/comm") POOL AGE, then a
// `total` row. JSON:
//   { "buffers": [ { "id", "heap", "size", "name", "inode",
//                    "allocated_by": <label> + "connected",
//                    "holders": [ <label> ], "shared",
//                    "orphan_of": <label> or null, "from_pool", "age_ms" } ],
//     "total_buffers", "total_bytes" }
//   <label> = { "client_id", "pid", "uid", "comm", "name" }
// Rows and JSON follow the order given: sort_largest_first() first.
void make_printable(std::vector<bufclient::BufferEntry> &buffers);
void sort_largest_first(std::vector<bufclient::BufferEntry> &buffers);
std::string render_buffers_table(const std::vector<bufclient::BufferEntry> &buffers);
nlohmann::json buffers_to_json(const std::vector<bufclient::BufferEntry> &buffers);
// An age for humans: "850ms", "12.3s", "5m03s", "2h10m", "3d04h".
std::string human_age(std::uint64_t ms);

nlohmann::json stats_to_json(const bufclient::Stats &stats);
nlohmann::json heaps_to_json(const std::vector<bufclient::HeapInfo> &heaps);

// Pretty-printed JSON and a newline. Strings that are not valid UTF-8 (a
// comm is whatever bytes the process chose) get U+FFFD instead of throwing.
std::string json_text(const nlohmann::json &json);

// A byte count for humans: "512B", "4.0KiB", "1.5MiB" (no space, so a
// table row stays one word per column).
std::string human_size(std::uint64_t bytes);

// How a libbufclient error reads on stderr: "ionsvc-ctl: <STATUS>: <message>".
std::string error_text(const bufclient::Error &error);

} // namespace ionsvc::ctl
