// SPDX-License-Identifier: MIT
// Clients per cgroup against the real daemon: processes moved into real
// cgroup v2 groups (two "services" under a slice of this test's own), a
// quota on one service's subtree, the cgroups view, and a reload.
#include <unistd.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cgroups.h"
#include "harness.h"

namespace ionsvc::testing {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

constexpr int kSetupFailure = 90;

class CgroupQuota : public ::testing::Test
{
protected:
    void SetUp() override
    {
        IONSVC_NEED_ROOT("to make cgroups and move processes into them");
        ASSERT_TRUE(slice_.made()) << slice_.error();
        ASSERT_TRUE(camera_.made() && display_.made()) << camera_.error() << display_.error();
    }

    std::string config(const std::string &camera_bytes) const
    {
        return "[quota.cgroups]\n\"" + camera_.path() + "\" = { bytes = \"" + camera_bytes + "\" }\n";
    }

    // A process in cgroup that allocates size bytes (if any) as uid, then
    // once more 4 KiB; holds what it got until release. It says the second
    // allocation's refusal (empty: served) through last_refusal_, and exits
    // with its status.
    ChildProcess allocator(const TestCgroup &cgroup, uid_t uid, std::uint64_t size, Signal &ready,
                           Signal &release)
    {
        return ChildProcess([&, uid, size] {
            release.close_write_end();
            if (cgroup.add() < 0 || !become_user(uid))
                return kSetupFailure;
            auto client = open_->daemon().connect("worker");
            std::vector<bufclient::Buffer> held;
            if (size > 0) {
                auto first = client.allocate({.size = size});
                if (!first)
                    return kSetupFailure;
                held = std::move(*first);
            }
            auto second = client.allocate({.size = 4096});
            last_refusal_.write(second ? std::string{} : second.error().message);
            ready.raise();
            release.wait();
            return second ? 0 : static_cast<int>(second.error().code);
        });
    }

    // This test's own slice, with a service in it (and a helper cgroup
    // below that) and another service beside it.
    TestCgroup slice_{"ionsvc-test-" + std::to_string(::getpid()) + ".slice"};
    TestCgroup camera_{slice_, "camera.service"};
    TestCgroup display_{slice_, "display.service"};
    std::optional<OpenDaemon> open_;
    TextPipe last_refusal_;
};

TEST_F(CgroupQuota, AServicesQuotaStopsItsProcessesWhateverTheirUidAndLeavesItsNeighbourAlone)
{
    open_.emplace(config("64K"));
    Signal ready, release;
    TestCgroup helper{camera_, "helper"};
    ChildProcess camera = allocator(camera_, 2001, 32 * 1024, ready, release);
    ASSERT_TRUE(ready.wait()) << camera.wait();
    EXPECT_EQ(last_refusal_.read(), "") << "32 KiB + 4 KiB is within 64 KiB";
    ChildProcess helper_process = allocator(helper, 2002, 28 * 1024, ready, release);
    ASSERT_TRUE(ready.wait()) << helper_process.wait();
    const std::string refusal = last_refusal_.read();
    EXPECT_THAT(refusal, HasSubstr("cgroup " + camera_.path() + " holds 65536 bytes in 3 buffers"));
    EXPECT_THAT(refusal, HasSubstr("quota.cgroups.\"" + camera_.path() + "\""));
    ChildProcess display = allocator(display_, 2001, 1024 * 1024, ready, release);
    ASSERT_TRUE(ready.wait()) << display.wait();
    EXPECT_EQ(last_refusal_.read(), "") << "another service: the camera's quota is not its";

    const CommandResult view = run_command(
        {ionsvc_ctl_path(), "--socket", open_->daemon().socket_path(), "stats", "--view", "cgroups", "--json"});
    ASSERT_EQ(view.exit_code, 0) << view.err;
    std::map<std::string, json> rows;
    const json stats = json::parse(view.out);
    for (const json &row : stats["cgroups"])
        rows[row["cgroup"].get<std::string>()] = row;
    ASSERT_TRUE(rows.contains(camera_.path())) << view.out;
    EXPECT_EQ(rows[camera_.path()]["unit"], "camera.service");
    EXPECT_EQ(rows[camera_.path()]["bytes"], 36 * 1024);
    EXPECT_EQ(rows[helper.path()]["bytes"], 28 * 1024);
    EXPECT_EQ(rows[helper.path()]["unit"], "camera.service") << "a cgroup below a service is the service's";
    EXPECT_EQ(rows[display_.path()]["bytes"], 1024 * 1024 + 4096);

    release.raise();
    release.raise();
    release.raise();
    EXPECT_EQ(camera.wait(), 0);
    EXPECT_EQ(helper_process.wait(), static_cast<int>(StatusCode::kQuotaExceeded));
    EXPECT_EQ(display.wait(), 0);
    open_->expect_back_to_baseline();
}

TEST_F(CgroupQuota, AReloadAppliesANewServiceQuotaToWhatItsClientsHoldAlready)
{
    open_.emplace(config("1M"));
    Signal ready, release;
    ChildProcess camera = allocator(camera_, 2001, 512 * 1024, ready, release);
    ASSERT_TRUE(ready.wait()) << camera.wait();
    EXPECT_EQ(last_refusal_.read(), "");

    std::ofstream(open_->config_path()) << config("512K");
    ASSERT_TRUE(open_->daemon().reload()) << open_->daemon().log();
    ChildProcess again = allocator(camera_, 2002, 0, ready, release);
    ASSERT_TRUE(ready.wait()) << again.wait();
    EXPECT_THAT(last_refusal_.read(), HasSubstr("holds 528384 bytes")) << "what the camera held before the reload counts";
    release.raise();
    release.raise();
    EXPECT_EQ(camera.wait(), 0);
}

} // namespace
} // namespace ionsvc::testing
