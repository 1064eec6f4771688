// SPDX-License-Identifier: MIT
// Access rules against the real daemon, with clients that are other users
// (setresuid in forked children): who may use a heap, who sees whom.
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"

namespace ionsvc::testing {
namespace {

constexpr uid_t kAllowed = 65534;
constexpr uid_t kStranger = 65533;
constexpr uid_t kAdmin = 65532;
constexpr gid_t kCameraGroup = 4242;
constexpr gid_t kAdminGroup = 4243;

// Child exit codes: which step failed.
constexpr int kUserChange = 10;
constexpr int kOtherFailure = 22;

class Access : public ::testing::Test
{
protected:
    void start(const std::string &config)
    {
        IONSVC_NEED_ROOT("to run clients as other users");
        write_config(config);
        daemon_.emplace(std::vector<std::string>{"--config", config_directory_.path() + "/ionsvc.conf"});
        ASSERT_EQ(::chmod(daemon_->directory().c_str(), 0755), 0);
        ASSERT_EQ(::chmod(daemon_->socket_path().c_str(), 0666), 0);
    }

    void write_config(const std::string &config) const
    {
        std::ofstream(config_directory_.path() + "/ionsvc.conf") << config;
    }

    // What an allocation from memfd gets as uid with groups.
    StatusCode allocation_as(uid_t uid, const std::vector<gid_t> &groups, std::string *message = nullptr)
    {
        const AllocationAttempt attempt = allocate_as(daemon_->socket_path(), uid, groups, "memfd");
        EXPECT_TRUE(attempt.became_user);
        if (message)
            *message = attempt.message;
        return attempt.code;
    }

    TemporaryDirectory config_directory_;
    std::optional<DaemonProcess> daemon_;
};

TEST_F(Access, AHeapKeptForOneUserRefusesOthersWithPermissionDenied)
{
    start("[access.heaps.memfd]\nuids = [65534]\n");
    std::string message;
    EXPECT_EQ(allocation_as(kStranger, {}, &message), StatusCode::kPermissionDenied);
    EXPECT_EQ(message, "uid 65533 may not use heap memfd (access.heaps.memfd)");
    EXPECT_EQ(allocation_as(kAllowed, {}), StatusCode::kOk);
    EXPECT_TRUE(daemon_->connect("root").allocate({.size = 4096})) << "root always may";
}

TEST_F(Access, TheMembersOfAnAllowedGroupMayUseTheHeap)
{
    start("[access.heaps.memfd]\ngroups = [4242]\n");
    EXPECT_EQ(allocation_as(kStranger, {kCameraGroup}), StatusCode::kOk) << "a supplementary group counts";
    EXPECT_EQ(allocation_as(kStranger, {}), StatusCode::kPermissionDenied);
}

TEST_F(Access, ARuleChangedBySighupHoldsForTheNextAllocation)
{
    start("[access.heaps.memfd]\nuids = [65534]\n");
    ASSERT_EQ(allocation_as(kStranger, {}), StatusCode::kPermissionDenied);

    write_config("[access.heaps.memfd]\nuids = [65533]\n");
    ASSERT_TRUE(daemon_->reload()) << daemon_->log();
    EXPECT_THAT(daemon_->log(), ::testing::HasSubstr("reloaded"));
    EXPECT_EQ(allocation_as(kStranger, {}), StatusCode::kOk);
    EXPECT_EQ(allocation_as(kAllowed, {}), StatusCode::kPermissionDenied) << "the old rule is gone";
}

TEST_F(Access, StatsShowWhoIsNotAnAdminOnlyTheClientsOfItsOwnUid)
{
    start("[access]\nadmin_group = \"4243\"\n");
    // A holder of its own: a client of another uid the others may or may not see.
    Signal ready, release;
    ChildProcess holder([&] {
        release.close_write_end();
        if (!become_user(kAllowed, std::nullopt, {}))
            return kUserChange;
        auto client = daemon_->connect("holder");
        if (!client.allocate({.size = 8192}))
            return kOtherFailure;
        ready.raise();
        release.wait();
        return 0;
    });
    ASSERT_TRUE(ready.wait()) << "the holder failed at " << holder.wait();

    // The number of clients and heap bytes stats show as uid with groups.
    const auto seen_as = [&](uid_t uid, const std::vector<gid_t> &groups) {
        ChildProcess observer([&] {
            if (!become_user(uid, std::nullopt, groups))
                return kUserChange;
            auto client = daemon_->connect("observer");
            auto stats = client.stats();
            if (!stats)
                return kOtherFailure;
            // Exit code: clients seen * 10 + whether the holder's bytes count.
            return static_cast<int>(stats->clients.size()) * 10 + (stats->heaps.front().total_bytes == 8192);
        });
        return observer.wait();
    };
    EXPECT_EQ(seen_as(kStranger, {}), 10) << "only itself, and none of the holder's bytes";
    EXPECT_EQ(seen_as(kAllowed, {}), 21) << "itself and the holder, of its own uid";
    EXPECT_EQ(seen_as(kAdmin, {kAdminGroup}), 21) << "the admin group sees every client";
    release.raise();
    EXPECT_EQ(holder.wait(), 0);
}

} // namespace
} // namespace ionsvc::testing
