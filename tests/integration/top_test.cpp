// SPDX-License-Identifier: MIT
// `ionsvc-ctl top` in a real pseudo-terminal (tmux), against a real daemon
// and a client whose holdings grow one buffer at a time.
#include <unistd.h>

#include <algorithm>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"

namespace ionsvc::testing {
namespace {

using ::testing::HasSubstr;

// A detached tmux session running command in a 150x30 terminal; killed at
// the end of the test.
class TmuxSession
{
public:
    explicit TmuxSession(const std::string &command) : name_("ionsvc-top-" + std::to_string(::getpid()))
    {
        const CommandResult started =
            run_command({"/usr/bin/tmux", "new-session", "-d", "-s", name_, "-x", "150", "-y", "30", command});
        EXPECT_EQ(started.exit_code, 0) << started.err;
    }
    ~TmuxSession() { run_command({"/usr/bin/tmux", "kill-session", "-t", name_}); }

    // What the terminal shows now.
    std::string screen() const { return run_command({"/usr/bin/tmux", "capture-pane", "-p", "-t", name_}).out; }

private:
    std::string name_;
};

// The screen's line for pid, or "".
std::string line_of(const std::string &screen, pid_t pid)
{
    std::istringstream lines(screen);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream words(line);
        std::string first;
        if (words >> first && first == std::to_string(pid))
            return line;
    }
    return {};
}

TEST(Top, ShowsEachRiseAndFlagsAProcessWhoseHoldingsOnlyGrowUntilTheyFall)
{
    if (run_command({"/usr/bin/tmux", "-V"}).exit_code != 0)
        GTEST_FAIL() << "tmux is missing: run scripts/install-deps.sh";
    DaemonProcess daemon;
    Signal grow, grown;
    // Allocates 4 KiB at each of four signals, frees one at the fifth, and
    // tells each time it is done.
    ChildProcess grower([&] {
        auto client = daemon.connect("grower");
        std::vector<bufclient::Buffer> held;
        for (int step = 0; step < 5 && grow.wait(); ++step) {
            if (step < 4) {
                auto buffers = client.allocate({.size = 4096});
                if (!buffers)
                    return 1;
                held.push_back(std::move(buffers->front()));
            } else if (!client.free(held.back()) || !client.flush_frees()) {
                return 2;
            }
            grown.raise();
        }
        grow.wait(); // until the parent is done looking
        return 0;
    });

    TmuxSession top(ionsvc_ctl_path() + " --socket " + daemon.socket_path() + " top --interval 0.1");
    std::string screen;
    const auto shows = [&](const std::string &text) {
        return eventually([&] {
            screen = top.screen();
            return line_of(screen, grower.pid()).find(text) != std::string::npos;
        });
    };
    for (int step = 1; step <= 4; ++step) {
        grow.raise();
        ASSERT_TRUE(grown.wait());
        ASSERT_TRUE(shows(" " + std::to_string(step * 4096) + " ")) << "step " << step << ":\n" << screen;
    }
    ASSERT_TRUE(shows("GROWING")) << screen;
    EXPECT_THAT(screen, HasSubstr("GROWING: rose in 3 samples"));
    std::size_t titles = 0;
    for (std::size_t at = screen.find("ionsvc-ctl top: sample"); at != std::string::npos;
         at = screen.find("ionsvc-ctl top: sample", at + 1))
        ++titles;
    EXPECT_EQ(titles, 1u) << "each frame replaces the last on a terminal:\n" << screen;

    grow.raise(); // frees one
    ASSERT_TRUE(grown.wait());
    ASSERT_TRUE(shows("-4.0KiB")) << screen;
    EXPECT_THAT(line_of(screen, grower.pid()), ::testing::Not(HasSubstr("GROWING"))) << screen;
    grow.raise();
    EXPECT_EQ(grower.wait(), 0);
}

} // namespace
} // namespace ionsvc::testing
