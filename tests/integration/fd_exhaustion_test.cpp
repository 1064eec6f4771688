// SPDX-License-Identifier: MIT
// A daemon whose every fd an unprivileged attacker holds (buffers up to a
// low RLIMIT_NOFILE, under a config that lifts the built-in uid quota): root still connects
// and looks, another user is told why not instead of hanging, and all
// comes back once the attacker leaves.
#include <sys/resource.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"

namespace ionsvc::testing {
namespace {

using ::testing::HasSubstr;

constexpr uid_t kAttacker = 65534;
constexpr uid_t kBystander = 65533;
constexpr rlim_t kDaemonFds = 256;

// Child exit codes.
constexpr int kUserChange = 10;
constexpr int kConnect = 11;
constexpr int kNeverExhausted = 12;
constexpr int kOtherFailure = 22;

class FdExhaustion : public ::testing::Test
{
protected:
    void SetUp() override
    {
        IONSVC_NEED_ROOT("to run the attacker as another user");
        open_.emplace("[quota]\nuid = {}\n", fd_limit(kDaemonFds));
    }

    void TearDown() override
    {
        if (open_)
            open_->expect_back_to_baseline();
    }

    // Allocates until the daemon has no fd left, then holds it all.
    ChildProcess attacker(Signal &ready, Signal &release)
    {
        ChildProcess child([&] {
            release.close_write_end();
            if (!become_user(kAttacker))
                return kUserChange;
            auto client = bufclient::Client::connect({.socket_path = open_->daemon().socket_path(),
                                                      .client_name = "hoarder"});
            if (!client)
                return kConnect;
            std::vector<bufclient::Buffer> hoard;
            for (rlim_t i = 0; i < kDaemonFds; ++i) {
                auto buffers = client->allocate({.size = 4096});
                if (!buffers) {
                    if (buffers.error().code != StatusCode::kResourceExhausted)
                        return kOtherFailure;
                    ready.raise();
                    release.wait();
                    return 0;
                }
                hoard.push_back(std::move((*buffers)[0]));
            }
            return kNeverExhausted;
        });
        ready.close_write_end();
        return child;
    }

    // What a second, well-behaved user gets.
    AllocationAttempt bystander_allocation() { return allocate_as(open_->daemon().socket_path(), kBystander); }

    std::optional<OpenDaemon> open_;
};

TEST_F(FdExhaustion, RootStillLooksAndAnotherUserIsToldWhyWhenTheAttackerHoldsEveryFd)
{
    Signal ready, release;
    ChildProcess child = attacker(ready, release);
    ASSERT_TRUE(ready.wait()) << "attacker step " << child.wait();

    const CommandResult stats =
        run_command({ionsvc_ctl_path(), "--socket", open_->daemon().socket_path(), "stats", "--view", "clients",
                     "--pid", std::to_string(child.pid())});
    EXPECT_EQ(stats.exit_code, 0) << stats.err;
    EXPECT_THAT(stats.out, HasSubstr("hoarder"));

    const AllocationAttempt bystander = bystander_allocation();
    EXPECT_EQ(bystander.code, StatusCode::kResourceExhausted);
    EXPECT_THAT(bystander.message, HasSubstr("ionsvcd is out of file descriptors"));
    EXPECT_THAT(bystander.message, HasSubstr("up to its limit of 256 (RLIMIT_NOFILE"));

    release.close_write_end();
    EXPECT_EQ(child.wait(), 0);
    EXPECT_TRUE(eventually([&] { return bystander_allocation().code == StatusCode::kOk; })) << "room once the attacker left";
}

} // namespace
} // namespace ionsvc::testing
