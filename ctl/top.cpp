// SPDX-License-Identifier: MIT
#include "top.h"

#include <algorithm>
#include <cstdio>

#include "table.h"

namespace ionsvc::ctl {
namespace {

std::string change_text(const TopRow &row)
{
    if (row.new_here)
        return "new";
    if (row.change == 0)
        return "0";
    const std::uint64_t size = static_cast<std::uint64_t>(row.change < 0 ? -row.change : row.change);
    return (row.change < 0 ? "-" : "+") + human_size(size);
}

} // namespace

std::vector<TopRow> TopTracker::update(const std::vector<PidStats> &pids)
{
    std::map<std::uint32_t, History> next;
    std::vector<TopRow> rows;
    for (const PidStats &pid : pids) {
        TopRow row{pid.pid, pid.comm, pid.uid, pid.bytes, pid.buffers, 0, true, false};
        History history{pid.comm, pid.bytes, 0, false};
        const auto before = history_.find(pid.pid);
        if (before != history_.end() && before->second.comm == pid.comm) {
            const History &last = before->second;
            row.new_here = false;
            row.change = static_cast<std::int64_t>(pid.bytes) - static_cast<std::int64_t>(last.bytes);
            history.rises = last.rises + (row.change > 0);
            history.fell = last.fell || row.change < 0;
        }
        row.growing = history.rises >= kGrowingSamples && !history.fell;
        next.emplace(pid.pid, std::move(history));
        rows.push_back(std::move(row));
    }
    history_ = std::move(next);
    std::sort(rows.begin(), rows.end(), [](const TopRow &a, const TopRow &b) {
        return a.bytes != b.bytes ? a.bytes > b.bytes : a.pid < b.pid;
    });
    return rows;
}

std::string render_top_frame(const std::vector<TopRow> &rows, double interval_seconds, std::uint64_t sample,
                             std::size_t max_rows)
{
    std::uint64_t bytes = 0;
    std::uint64_t buffers = 0;
    for (const TopRow &row : rows) {
        bytes += row.bytes;
        buffers += row.buffers;
    }
    char title[160];
    std::snprintf(title, sizeof(title), "ionsvc-ctl top: sample %llu, every %.1fs; %zu processes hold %s in %llu buffers\n",
                  static_cast<unsigned long long>(sample), interval_seconds, rows.size(), human_size(bytes).c_str(),
                  static_cast<unsigned long long>(buffers));
    std::vector<std::vector<std::string>> cells;
    for (std::size_t i = 0; i < rows.size() && i < max_rows; ++i) {
        const TopRow &row = rows[i];
        cells.push_back({std::to_string(row.pid), row.comm, std::to_string(row.uid), std::to_string(row.buffers),
                         std::to_string(row.bytes), human_size(row.bytes), change_text(row),
                         row.growing ? "GROWING" : ""});
    }
    std::string frame = title + render_table(
                                    {
                                        {"PID", Align::kRight},
                                        {"COMM", Align::kLeft},
                                        {"UID", Align::kRight},
                                        {"BUFFERS", Align::kRight},
                                        {"BYTES", Align::kRight},
                                        {"SIZE", Align::kRight},
                                        {"CHANGE", Align::kRight},
                                        {"FLAG", Align::kLeft},
                                    },
                                    cells);
    if (rows.size() > max_rows)
        frame += "... and " + std::to_string(rows.size() - max_rows) + " more\n";
    frame += "GROWING: rose in " + std::to_string(kGrowingSamples) +
             " samples and never fell since first seen (a leak suspect). Ctrl-C ends.\n";
    return frame;
}

} // namespace ionsvc::ctl
