// SPDX-License-Identifier: MIT
// `ionsvc-ctl stats --format openmetrics|prometheus`: the stats as metrics.
#include <map>

#include "render.h"

namespace ionsvc::ctl {
namespace {

// One metric family: its samples are added as label sets and values.
struct Family
{
    std::string name; // without _total
    std::string type; // "gauge" or "counter"
    std::string unit; // "bytes", or empty
    std::string help;
    std::vector<std::pair<std::string, std::uint64_t>> samples; // rendered labels, value
};

std::string escape_label_value(std::string_view value)
{
    std::string escaped;
    for (const char c : value) {
        switch (c) {
        case '\\': escaped += "\\\\"; break;
        case '"': escaped += "\\\""; break;
        case '\n': escaped += "\\n"; break;
        default: escaped += c;
        }
    }
    return escaped;
}

// {a="1",b="2"}, or nothing without labels.
std::string labels(std::initializer_list<std::pair<std::string_view, std::string_view>> pairs)
{
    std::string text;
    for (const auto &[name, value] : pairs)
        text += (text.empty() ? "{" : ",") + std::string(name) + "=\"" + escape_label_value(value) + "\"";
    return text.empty() ? text : text + "}";
}

std::string render_family(const Family &family, MetricsFormat format)
{
    const bool open = format == MetricsFormat::kOpenMetrics;
    const bool counter = family.type == "counter";
    // Prometheus' own text format names a counter by its samples.
    const std::string declared = counter && !open ? family.name + "_total" : family.name;
    std::string text = "# TYPE " + declared + " " + family.type + "\n";
    if (open && !family.unit.empty())
        text += "# UNIT " + declared + " " + family.unit + "\n";
    text += "# HELP " + declared + " " + family.help + "\n";
    for (const auto &[label_text, value] : family.samples)
        text += family.name + (counter ? "_total" : "") + label_text + " " + std::to_string(value) + "\n";
    return text;
}

void add_heap_families(const bufclient::Stats &stats, const std::vector<bufclient::HeapInfo> &heaps,
                       std::vector<Family> &families)
{
    Family live{"ionsvc_heap_live_bytes", "gauge", "bytes", "Bytes of the buffers alive in each heap.", {}};
    Family buffers{"ionsvc_heap_live_buffers", "gauge", "", "Buffers alive in each heap.", {}};
    Family orphaned{"ionsvc_heap_orphaned_bytes", "gauge", "bytes",
                    "Of the live bytes, those that no client holds any more (alive elsewhere).", {}};
    Family pool{"ionsvc_heap_pool_bytes", "gauge", "bytes", "Bytes in the warm pool of each heap.", {}};
    Family peak{"ionsvc_heap_peak_bytes", "gauge", "bytes", "The most bytes each heap held at once.", {}};
    for (const bufclient::HeapStats &heap : stats.heaps) {
        const std::string label = labels({{"heap", heap.name}, {"backend", heap.backend}});
        std::uint64_t orphan_bytes = 0;
        for (const bufclient::OrphanedBuffer &orphan : heap.orphaned)
            orphan_bytes += orphan.size;
        live.samples.emplace_back(label, heap.total_bytes);
        buffers.samples.emplace_back(label, heap.total_buffers);
        orphaned.samples.emplace_back(label, orphan_bytes);
        pool.samples.emplace_back(label, heap.pool_bytes);
    }
    for (const bufclient::HeapInfo &heap : heaps)
        peak.samples.emplace_back(labels({{"heap", heap.name}, {"backend", heap.backend}}), heap.peak_bytes);
    for (Family *family : {&live, &buffers, &orphaned, &pool, &peak})
        families.push_back(std::move(*family));
}

void add_holder_families(const bufclient::Stats &stats, std::vector<Family> &families)
{
    std::map<std::uint32_t, std::pair<std::uint64_t, std::uint64_t>> by_uid; // bytes, buffers
    for (const bufclient::ClientStats &client : stats.clients) {
        for (const bufclient::HeapUsage &usage : client.heaps) {
            by_uid[client.uid].first += usage.bytes;
            by_uid[client.uid].second += usage.buffers;
        }
    }
    Family uid_bytes{"ionsvc_uid_held_bytes", "gauge", "bytes",
                     "Bytes the clients of each uid hold (a shared buffer counts in each holder).", {}};
    Family uid_buffers{"ionsvc_uid_held_buffers", "gauge", "", "Buffers the clients of each uid hold.", {}};
    for (const auto &[uid, held] : by_uid) {
        uid_bytes.samples.emplace_back(labels({{"uid", std::to_string(uid)}}), held.first);
        uid_buffers.samples.emplace_back(labels({{"uid", std::to_string(uid)}}), held.second);
    }
    Family cgroup_bytes{"ionsvc_cgroup_held_bytes", "gauge", "bytes",
                        "Bytes the clients of each cgroup hold, with the systemd unit it is in.", {}};
    Family cgroup_buffers{"ionsvc_cgroup_held_buffers", "gauge", "", "Buffers the clients of each cgroup hold.", {}};
    for (const CgroupStats &cgroup : aggregate_by_cgroup(stats)) {
        const std::string label = labels({{"cgroup", cgroup.cgroup}, {"unit", cgroup.unit}});
        cgroup_bytes.samples.emplace_back(label, cgroup.bytes);
        cgroup_buffers.samples.emplace_back(label, cgroup.buffers);
    }
    Family connections{"ionsvc_connections", "gauge", "", "Clients connected (of the asker's uid, unless an admin asks).", {}};
    connections.samples.emplace_back("", stats.clients.size());
    for (Family *family : {&uid_bytes, &uid_buffers, &cgroup_bytes, &cgroup_buffers, &connections})
        families.push_back(std::move(*family));
}

void add_counter_families(const bufclient::Counters &counters, std::vector<Family> &families)
{
    families.push_back({"ionsvc_allocations", "counter", "", "Buffers handed out by Alloc since the daemon started.",
                        {{"", counters.allocations}}});
    families.push_back({"ionsvc_allocated_bytes", "counter", "bytes",
                        "Bytes of the buffers handed out by Alloc since the daemon started.",
                        {{"", counters.allocated_bytes}}});
    families.push_back({"ionsvc_imports", "counter", "", "Buffers handed out by Import since the daemon started.",
                        {{"", counters.imports}}});
    Family refusals{"ionsvc_request_refusals", "counter", "",
                    "Requests answered with a status other than OK, by status, since the daemon started.", {}};
    for (const auto &[status, count] : counters.refusals)
        refusals.samples.emplace_back(labels({{"status", status_name(status)}}), count);
    families.push_back(std::move(refusals));
}

} // namespace

std::string render_metrics(const bufclient::Stats &stats, const std::vector<bufclient::HeapInfo> &heaps,
                           MetricsFormat format)
{
    std::vector<Family> families;
    add_heap_families(stats, heaps, families);
    add_holder_families(stats, families);
    if (stats.counters)
        add_counter_families(*stats.counters, families);
    std::string text;
    for (const Family &family : families)
        text += render_family(family, format);
    if (format == MetricsFormat::kOpenMetrics)
        text += "# EOF\n";
    return text;
}

} // namespace ionsvc::ctl
