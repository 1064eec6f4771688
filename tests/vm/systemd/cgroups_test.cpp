// SPDX-License-Identifier: MIT
// Clients as systemd services in slices of their own (systemd-run): the
// daemon sees each client's cgroup, stats name the units, and a quota on
// one unit stops it and not the other.
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "systemd_guest.h"

namespace ionsvc::vmtest {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char *kCamera = "ionsvc-test-camera.service";
constexpr const char *kDisplay = "ionsvc-test-display.service";

std::string read_text(const std::string &path)
{
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

std::string test_binary()
{
    char path[4096] = {};
    const ssize_t length = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
    return length > 0 ? std::string(path, static_cast<std::size_t>(length)) : std::string{};
}

class ServicesInSlices : public ::testing::Test
{
protected:
    void SetUp() override
    {
        ASSERT_TRUE(environment_error().empty()) << environment_error();
        shipped_ = read_text(installed().config);
        ASSERT_FALSE(shipped_.empty());
        systemctl({"stop", kSocket, kService});
        std::ofstream(installed().config, std::ios::trunc)
            << shipped_ << "\n[quota.cgroups]\n\"/camera.slice/" << kCamera << "\" = { bytes = \"1M\" }\n";
        ASSERT_EQ(systemctl({"start", kSocket}).exit_code, 0);
    }

    void TearDown() override
    {
        systemctl({"stop", kCamera, kDisplay});
        systemctl({"reset-failed", kCamera, kDisplay});
        systemctl({"stop", kSocket, kService});
        systemctl({"reset-failed", kSocket, kService});
        std::ofstream(installed().config, std::ios::trunc) << shipped_;
    }

    // `ionsvc_systemd_test --hold sizes...` as unit in slice, run as user.
    static harness::CommandResult run_holder(const char *unit, const char *slice, const char *user,
                                             std::vector<std::uint64_t> sizes)
    {
        std::vector<std::string> argv = {"/usr/bin/systemd-run", "--quiet", "--unit=" + std::string(unit),
                                         "--slice=" + std::string(slice), "--uid=" + std::string(user),
                                         test_binary(), "--hold"};
        for (const std::uint64_t size : sizes)
            argv.push_back(std::to_string(size));
        return harness::run_command(argv);
    }

    static std::string journal_of(const char *unit)
    {
        return harness::run_command({"/usr/bin/journalctl", "--no-pager", "-q", "-o", "cat", "-u", unit}).out;
    }

    // The cgroups view as JSON, by cgroup path.
    static std::map<std::string, json> cgroups()
    {
        const harness::CommandResult view =
            harness::run_command({installed().ctl, "stats", "--view", "cgroups", "--json"});
        std::map<std::string, json> rows;
        const json stats = json::parse(view.out, nullptr, false);
        if (view.exit_code != 0 || stats.is_discarded())
            return rows;
        for (const json &row : stats["cgroups"])
            rows[row["cgroup"].get<std::string>()] = row;
        return rows;
    }

    std::string shipped_;
};

TEST_F(ServicesInSlices, StatsNameEachServiceAndAUnitQuotaStopsThatUnitAndNotTheOther)
{
    // 768 KiB and 512 KiB more would pass the camera's 1 MiB; the display
    // has no quota of its own.
    ASSERT_EQ(run_holder(kCamera, "camera.slice", "alice", {768 * 1024, 512 * 1024}).exit_code, 0);
    ASSERT_EQ(run_holder(kDisplay, "display.slice", "bob", {2 * 1024 * 1024, 512 * 1024}).exit_code, 0);
    const std::string camera = std::string("/camera.slice/") + kCamera;
    const std::string display = std::string("/display.slice/") + kDisplay;
    std::map<std::string, json> rows;
    // Both say they hold what they got; only then is the view read.
    ASSERT_TRUE(harness::eventually([&] {
        return journal_of(kCamera).find("holding") != std::string::npos &&
               journal_of(kDisplay).find("holding") != std::string::npos;
    })) << "the services never said they hold their buffers";
    rows = cgroups();
    ASSERT_TRUE(rows.contains(camera) && rows.contains(display)) << "the cgroups view lacks a service";
    EXPECT_EQ(rows[camera]["unit"], kCamera);
    EXPECT_EQ(rows[camera]["bytes"], 768 * 1024) << "the second allocation was not refused";
    EXPECT_EQ(rows[display]["unit"], kDisplay);
    EXPECT_EQ(rows[display]["bytes"], 2 * 1024 * 1024 + 512 * 1024) << "the camera's quota held the display too";
    EXPECT_THAT(journal_of(kCamera), HasSubstr("refused 524288 bytes: quota exceeded: cgroup " + camera +
                                               " holds 786432 bytes in 1 buffers"));
    EXPECT_THAT(journal_of(kDisplay), Not(HasSubstr("refused")));

    // The daemon (user ionsvc, no capability) read each client's comm too,
    // though the clients are other users' processes.
    const json stats = json::parse(harness::run_command({installed().ctl, "stats", "--json"}).out, nullptr, false);
    ASSERT_FALSE(stats.is_discarded());
    int seen = 0;
    for (const json &client : stats["clients"]) {
        if (client["cgroup"] != camera && client["cgroup"] != display)
            continue;
        ++seen;
        EXPECT_EQ(client["comm"], "ionsvc_systemd_") << client.dump();
    }
    EXPECT_EQ(seen, 2);
}

} // namespace
} // namespace ionsvc::vmtest
