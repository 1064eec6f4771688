// SPDX-License-Identifier: MIT
// `ionsvc-ctl top`: the change between samples, the leak flag, the frame.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "top.h"

namespace ionsvc::ctl {
namespace {

using ::testing::HasSubstr;

PidStats pid(std::uint32_t number, std::uint64_t bytes, std::string comm = "camera")
{
    PidStats stats;
    stats.pid = number;
    stats.comm = std::move(comm);
    stats.uid = 1000;
    stats.bytes = bytes;
    stats.buffers = bytes / 4096;
    return stats;
}

TEST(TopTracker, ShowsTheChangeSinceTheLastSampleAndNewProcessesAsNew)
{
    TopTracker tracker;
    std::vector<TopRow> rows = tracker.update({pid(10, 8192)});
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_TRUE(rows[0].new_here);
    rows = tracker.update({pid(10, 4096), pid(11, 65536)});
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].pid, 11u) << "the most bytes first";
    EXPECT_TRUE(rows[0].new_here);
    EXPECT_FALSE(rows[1].new_here);
    EXPECT_EQ(rows[1].change, -4096);
}

TEST(TopTracker, FlagsAProcessThatRoseInThreeSamplesAndNeverFell)
{
    TopTracker tracker;
    tracker.update({pid(10, 4096)});
    EXPECT_FALSE(tracker.update({pid(10, 8192)})[0].growing);
    EXPECT_FALSE(tracker.update({pid(10, 8192)})[0].growing) << "a sample without change is no rise";
    EXPECT_FALSE(tracker.update({pid(10, 12288)})[0].growing) << "two rises";
    EXPECT_TRUE(tracker.update({pid(10, 16384)})[0].growing);
    EXPECT_FALSE(tracker.update({pid(10, 12288)})[0].growing) << "it fell: no longer a suspect";
    EXPECT_FALSE(tracker.update({pid(10, 65536)})[0].growing) << "once fallen, not a suspect again";
}

TEST(TopTracker, ForgetsAPidThatLeftAndTakesAPidWithAnotherCommForANewProcess)
{
    TopTracker tracker;
    tracker.update({pid(10, 4096)});
    tracker.update({});
    EXPECT_TRUE(tracker.update({pid(10, 4096)})[0].new_here);
    EXPECT_TRUE(tracker.update({pid(10, 8192, "encoder")})[0].new_here);
}

TEST(TopFrame, HasATitleTheTableWithChangeAndFlagAndTheLegend)
{
    std::vector<TopRow> rows = {
        {812, "camera", 1000, 65536, 16, 4096, false, true},
        {955, "display", 1001, 4096, 1, -8192, false, false},
        {960, "encoder", 1001, 4096, 1, 0, true, false},
    };
    EXPECT_EQ(render_top_frame(rows, 2.0, 7, 10),
              "ionsvc-ctl top: sample 7, every 2.0s; 3 processes hold 72.0KiB in 18 buffers\n"
              "PID  COMM      UID  BUFFERS  BYTES     SIZE   CHANGE  FLAG\n"
              "812  camera   1000       16  65536  64.0KiB  +4.0KiB  GROWING\n"
              "955  display  1001        1   4096   4.0KiB  -8.0KiB\n"
              "960  encoder  1001        1   4096   4.0KiB      new\n"
              "GROWING: rose in 3 samples and never fell since first seen (a leak suspect). Ctrl-C ends.\n");
}

TEST(TopFrame, ShowsOnlyTheRowsThatFitAndSaysHowManyMore)
{
    std::vector<TopRow> rows(5, TopRow{1, "a", 0, 4096, 1, 0, false, false});
    const std::string frame = render_top_frame(rows, 1.0, 1, 2);
    EXPECT_THAT(frame, HasSubstr("... and 3 more\n"));
}

} // namespace
} // namespace ionsvc::ctl
