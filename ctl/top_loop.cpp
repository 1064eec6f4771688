// SPDX-License-Identifier: MIT
// `ionsvc-ctl top`'s loop: a sample, a frame, a wait, until Ctrl-C.
#include "top_loop.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <iostream>
#include <limits>

#include "top.h"

namespace ionsvc::ctl {
namespace {

volatile sig_atomic_t stop_requested = 0;

void request_stop(int)
{
    stop_requested = 1;
}

// Rows a frame may have on this terminal: its height less the title, the
// header, the "more" line and the legend; no limit when not a terminal.
std::size_t rows_that_fit()
{
    winsize size{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) < 0 || size.ws_row < 8)
        return std::numeric_limits<std::size_t>::max();
    return size.ws_row - 5u;
}

// Sleeps seconds, or less if a signal asks to stop.
void wait_for(double seconds)
{
    timespec left{static_cast<time_t>(seconds), static_cast<long>(std::fmod(seconds, 1.0) * 1e9)};
    while (!stop_requested && ::nanosleep(&left, &left) < 0 && errno == EINTR) {
    }
}

} // namespace

int run_top(bufclient::Client &client, const TopOptions &options)
{
    struct sigaction action{};
    action.sa_handler = request_stop;
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    const bool terminal = ::isatty(STDOUT_FILENO) == 1;
    TopTracker tracker;
    for (std::uint64_t sample = 1; !stop_requested && (options.samples == 0 || sample <= options.samples); ++sample) {
        if (sample > 1)
            wait_for(options.interval_seconds);
        if (stop_requested)
            break;
        auto stats = client.stats();
        if (!stats) {
            std::cerr << error_text(stats.error()) << '\n';
            return 1;
        }
        make_printable(*stats);
        std::erase_if(stats->clients, [&](const bufclient::ClientStats &entry) {
            return entry.client_id == client.server().client_id;
        });
        const std::string frame = render_top_frame(tracker.update(aggregate_by_pid(*stats)),
                                                   options.interval_seconds, sample, rows_that_fit());
        // On a terminal each frame replaces the last (cursor home, clear);
        // into a pipe or file, frames follow one another.
        std::cout << (terminal ? "\x1b[H\x1b[2J" : sample > 1 ? "\n" : "") << frame << std::flush;
        if (!std::cout) {
            std::cerr << "ionsvc-ctl: cannot write the output\n";
            return 1;
        }
    }
    return 0;
}

} // namespace ionsvc::ctl
