// SPDX-License-Identifier: MIT
#include "summary.h"

#include <algorithm>
#include <cmath>

namespace ionsvc_bench {

namespace {

// Nearest-rank percentile of sorted samples.
double percentile_us(const std::vector<std::int64_t> &sorted, double percent)
{
    const auto n = sorted.size();
    auto rank = static_cast<std::size_t>(std::ceil(percent / 100.0 * static_cast<double>(n)));
    rank = std::clamp<std::size_t>(rank, 1, n);
    return static_cast<double>(sorted[rank - 1]) / 1000.0;
}

} // namespace

Summary summarize(std::vector<std::int64_t> samples_ns)
{
    Summary summary;
    if (samples_ns.empty())
        return summary;
    std::sort(samples_ns.begin(), samples_ns.end());
    summary.p50_us = percentile_us(samples_ns, 50);
    summary.p99_us = percentile_us(samples_ns, 99);
    summary.min_us = static_cast<double>(samples_ns.front()) / 1000.0;
    double total = 0;
    for (const auto sample : samples_ns)
        total += static_cast<double>(sample);
    summary.mean_us = total / static_cast<double>(samples_ns.size()) / 1000.0;
    return summary;
}

std::int64_t elapsed_ns(Clock::time_point start, Clock::time_point end)
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count();
}

Row make_row(std::string name, std::string kind, std::uint64_t size,
             const std::vector<std::int64_t> &samples_ns)
{
    Row row;
    row.name = std::move(name);
    row.kind = std::move(kind);
    row.size = size;
    row.iterations = samples_ns.size();
    row.summary = summarize(samples_ns);
    return row;
}

void set_baseline(Row &row, const std::string &baseline_name, double baseline_p50_us)
{
    row.baseline = baseline_name;
    row.baseline_p50_us = baseline_p50_us;
    row.ratio = baseline_p50_us > 0 ? std::optional(row.summary.p50_us / baseline_p50_us)
                                    : std::nullopt;
}

} // namespace ionsvc_bench
