// SPDX-License-Identifier: MIT
// ionsvc-bench: percentiles of timed samples, and the row each case reports.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ionsvc_bench {

using Clock = std::chrono::steady_clock;

struct Summary
{
    double p50_us = 0;
    double p99_us = 0;
    double min_us = 0;
    double mean_us = 0;
};

// Nearest-rank p50 and p99, minimum and mean of samples in nanoseconds;
// all zero for no samples.
Summary summarize(std::vector<std::int64_t> samples_ns);

std::int64_t elapsed_ns(Clock::time_point start, Clock::time_point end);

// One reported case: a line of the table, an object of the JSON.
struct Row
{
    std::string name;
    std::string kind;
    std::uint64_t size = 0;
    std::size_t iterations = 0;
    Summary summary;
    std::optional<std::string> baseline;
    std::optional<double> baseline_p50_us;
    std::optional<double> ratio;
    std::optional<double> ratio_two_trips;
    // Case-specific fields (throughput, memory, ...), copied into the JSON
    // object as they are and shown in the table's last column.
    nlohmann::json extra = nlohmann::json::object();
};

Row make_row(std::string name, std::string kind, std::uint64_t size,
             const std::vector<std::int64_t> &samples_ns);

// Sets baseline, baseline_p50_us and ratio (row p50 / baseline p50).
void set_baseline(Row &row, const std::string &baseline_name, double baseline_p50_us);

} // namespace ionsvc_bench
