// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>

#include <bufclient/bufclient.h>

namespace ionsvc::ctl {

struct TopOptions
{
    double interval_seconds = 2.0;
    std::uint64_t samples = 0; // 0: until Ctrl-C (SIGINT) or SIGTERM
};

// Shows a frame per sample of client's stats (top.h), every interval,
// until options.samples are shown or a signal ends it: 0, or 1 with the
// error on stderr.
int run_top(bufclient::Client &client, const TopOptions &options);

} // namespace ionsvc::ctl
