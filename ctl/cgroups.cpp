// SPDX-License-Identifier: MIT
// `ionsvc-ctl stats --view cgroups`: the clients summed per cgroup, with the
// systemd unit the path names.
#include <array>
#include <map>
#include <set>

#include "render.h"
#include "table.h"

namespace ionsvc::ctl {
namespace {

constexpr std::array<std::string_view, 7> kUnitSuffixes = {".service", ".scope", ".slice", ".socket",
                                                           ".mount",   ".swap",  ".target"};

bool names_a_unit(std::string_view component)
{
    for (const std::string_view suffix : kUnitSuffixes) {
        if (component.size() > suffix.size() && component.ends_with(suffix))
            return true;
    }
    return false;
}

} // namespace

std::string systemd_unit_of(std::string_view cgroup)
{
    // The deepest component that names a unit: a service's own cgroups
    // (delegated subtrees) sit below it.
    std::string_view unit;
    for (std::size_t start = 0; start < cgroup.size();) {
        std::size_t end = cgroup.find('/', start);
        if (end == std::string_view::npos)
            end = cgroup.size();
        const std::string_view component = cgroup.substr(start, end - start);
        if (names_a_unit(component))
            unit = component;
        start = end + 1;
    }
    return std::string(unit);
}

std::vector<CgroupStats> aggregate_by_cgroup(const bufclient::Stats &stats)
{
    std::map<std::string, CgroupStats> by_cgroup;
    std::map<std::string, std::set<std::uint32_t>> pids;
    for (const bufclient::ClientStats &client : stats.clients) {
        CgroupStats &entry = by_cgroup[client.cgroup];
        entry.cgroup = client.cgroup;
        ++entry.clients;
        pids[client.cgroup].insert(client.pid);
        for (const bufclient::HeapUsage &usage : client.heaps) {
            entry.bytes += usage.bytes;
            entry.buffers += usage.buffers;
            entry.shared_bytes += usage.shared_bytes;
        }
    }
    std::vector<CgroupStats> cgroups;
    for (auto &[path, entry] : by_cgroup) {
        entry.unit = systemd_unit_of(path);
        entry.pids = pids[path].size();
        cgroups.push_back(std::move(entry));
    }
    return cgroups;
}

std::string render_cgroups_table(const bufclient::Stats &stats)
{
    std::vector<std::vector<std::string>> rows;
    CgroupStats total;
    for (const CgroupStats &cgroup : aggregate_by_cgroup(stats)) {
        rows.push_back({cgroup.cgroup.empty() ? "?" : cgroup.cgroup, cgroup.unit.empty() ? "-" : cgroup.unit,
                        std::to_string(cgroup.pids), std::to_string(cgroup.clients), std::to_string(cgroup.buffers),
                        std::to_string(cgroup.bytes), human_size(cgroup.bytes), std::to_string(cgroup.shared_bytes)});
        total.pids += cgroup.pids;
        total.clients += cgroup.clients;
        total.buffers += cgroup.buffers;
        total.bytes += cgroup.bytes;
        total.shared_bytes += cgroup.shared_bytes;
    }
    rows.push_back({"total", "", std::to_string(total.pids), std::to_string(total.clients),
                    std::to_string(total.buffers), std::to_string(total.bytes), human_size(total.bytes),
                    std::to_string(total.shared_bytes)});
    return render_table(
        {
            {"CGROUP", Align::kLeft},
            {"UNIT", Align::kLeft},
            {"PIDS", Align::kRight},
            {"CLIENTS", Align::kRight},
            {"BUFFERS", Align::kRight},
            {"BYTES", Align::kRight},
            {"SIZE", Align::kRight},
            {"SHARED", Align::kRight},
        },
        rows);
}

nlohmann::json cgroups_to_json(const bufclient::Stats &stats)
{
    nlohmann::json array = nlohmann::json::array();
    for (const CgroupStats &cgroup : aggregate_by_cgroup(stats)) {
        array.push_back({
            {"cgroup", cgroup.cgroup},
            {"unit", cgroup.unit.empty() ? nlohmann::json(nullptr) : nlohmann::json(cgroup.unit)},
            {"pids", cgroup.pids},
            {"clients", cgroup.clients},
            {"buffers", cgroup.buffers},
            {"bytes", cgroup.bytes},
            {"shared_bytes", cgroup.shared_bytes},
        });
    }
    return array;
}

} // namespace ionsvc::ctl
