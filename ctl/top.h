// SPDX-License-Identifier: MIT
// `ionsvc-ctl top`: the pids view again and again, largest first, with the
// change since the last sample and a flag on processes whose holdings only
// grow (a leak suspect). The model and the frame are pure functions of the
// samples; the loop that takes them is in main.cpp.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "render.h"

namespace ionsvc::ctl {

// One process in one frame.
struct TopRow
{
    std::uint32_t pid = 0;
    std::string comm;
    std::uint32_t uid = 0;
    std::uint64_t bytes = 0;
    std::uint64_t buffers = 0;
    std::int64_t change = 0; // bytes since the last sample; 0 in its first
    bool new_here = false;   // not in the last sample
    bool growing = false;    // rose in kGrowingSamples samples and never fell since first seen
};

// Samples with a rise, without a fall, that make a process a leak suspect.
inline constexpr unsigned kGrowingSamples = 3;

class TopTracker
{
public:
    // Folds in one sample (the pids view's aggregation) and returns its
    // rows, the most bytes first (then by pid). A pid gone is forgotten; a
    // pid whose comm changed is a new process.
    std::vector<TopRow> update(const std::vector<PidStats> &pids);

private:
    struct History
    {
        std::string comm;
        std::uint64_t bytes = 0;
        unsigned rises = 0;
        bool fell = false;
    };
    std::map<std::uint32_t, History> history_;
};

// One frame: a title line (the interval, the sample's number, the totals),
// a table PID COMM UID BUFFERS BYTES SIZE CHANGE FLAG with at most max_rows
// rows (the largest; a last line says how many more), and the meaning of
// the flags. CHANGE is +/- bytes for humans ("+4.0KiB"), "new" for a
// process the last sample did not have; FLAG is "GROWING" for a suspect.
std::string render_top_frame(const std::vector<TopRow> &rows, double interval_seconds, std::uint64_t sample,
                             std::size_t max_rows);

} // namespace ionsvc::ctl
