// SPDX-License-Identifier: MIT
// Quotas against the real daemon: the limits of its config file, reloaded
// on SIGHUP without dropping anyone.
#include <grp.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"

namespace ionsvc::testing {
namespace {

using ::testing::HasSubstr;

constexpr std::uint64_t kKiB = 1024;

class Quota : public ::testing::Test
{
protected:
    std::string config_path() const { return config_directory_.path() + "/ionsvc.conf"; }
    void write_config(const std::string &text) const { std::ofstream(config_path()) << text; }

    // SIGHUP, then waits for the daemon to say it read the file (the
    // reloads-th time), whichever way it went.
    void reload(int reloads = 1)
    {
        ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
        ASSERT_TRUE(eventually([&] {
            const std::string log = daemon_->log();
            std::size_t seen = 0;
            for (std::size_t at = 0; (at = log.find("reload", at)) != std::string::npos; at += 6)
                ++seen;
            return seen >= static_cast<std::size_t>(reloads);
        })) << daemon_->log();
    }

    void start(const std::string &config)
    {
        write_config(config);
        daemon_.emplace(std::vector<std::string>{"--config", config_path()});
    }

    // The owner shares a 64 KiB buffer with an importer that holds 64 KiB
    // of its own already.
    struct FullImporter
    {
        bufclient::Client owner;
        bufclient::Client importer;
        std::vector<bufclient::Buffer> shared;
        std::vector<bufclient::Buffer> own;
        std::string token;
    };
    FullImporter share_with_a_full_importer()
    {
        FullImporter setup{daemon_->connect("owner"), daemon_->connect("importer"), {}, {}, {}};
        auto shared = setup.owner.allocate({.size = 64 * kKiB});
        auto own = setup.importer.allocate({.size = 64 * kKiB});
        EXPECT_TRUE(shared && own);
        if (shared && own) {
            setup.shared = std::move(*shared);
            setup.own = std::move(*own);
            auto token = setup.owner.share(setup.shared.front());
            EXPECT_TRUE(token);
            setup.token = token ? *token : std::string{};
        }
        return setup;
    }

    TemporaryDirectory config_directory_;
    std::optional<DaemonProcess> daemon_;
};

TEST_F(Quota, AnAllocationPastTheClientLimitIsQuotaExceededWithTheUsageAndTheLimit)
{
    start("[quota]\nclient = { bytes = \"1M\" }\n");
    auto client = daemon_->connect("camera");
    ASSERT_TRUE(client.allocate({.size = 512 * kKiB}));
    ASSERT_TRUE(client.allocate({.size = 512 * kKiB})) << "exactly at the limit is within it";

    auto over = client.allocate({.size = 4096});
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error().code, StatusCode::kQuotaExceeded);
    EXPECT_EQ(over.error().message, "quota exceeded: this client holds 1048576 bytes in 2 buffers; 1 more of "
                                    "4096 bytes would pass its limit of 1048576 bytes (quota.client)");
    EXPECT_TRUE(daemon_->connect("another").allocate({.size = 512 * kKiB})) << "a limit per client";
}

TEST_F(Quota, ABatchThatWouldCrossTheLimitAllocatesNothing)
{
    start("[quota]\nclient = { buffers = 4 }\n");
    auto client = daemon_->connect("camera");
    ASSERT_TRUE(client.allocate({.size = 4096, .count = 3}));
    auto batch = client.allocate({.size = 4096, .count = 2});
    ASSERT_FALSE(batch);
    EXPECT_EQ(batch.error().code, StatusCode::kQuotaExceeded);
    auto heaps = client.list_heaps();
    ASSERT_TRUE(heaps);
    EXPECT_EQ(heaps->front().live_buffers, 3u);
    EXPECT_TRUE(client.allocate({.size = 4096, .count = 1}));
}

TEST_F(Quota, SighupAppliesANewLimitToConnectedClients)
{
    start("[quota]\nuid = { bytes = \"64K\" }\n");
    auto client = daemon_->connect("camera");
    ASSERT_TRUE(client.allocate({.size = 64 * kKiB}));
    auto refused = client.allocate({.size = 64 * kKiB});
    ASSERT_FALSE(refused);
    EXPECT_THAT(refused.error().message, HasSubstr("(quota.uid)"));

    write_config("[quota]\nuid = { bytes = \"128K\" }\n");
    reload();
    EXPECT_THAT(daemon_->log(), HasSubstr("reloaded " + config_path()));
    EXPECT_TRUE(client.allocate({.size = 64 * kKiB})) << "the same connection, under the new limit";
    EXPECT_FALSE(client.allocate({.size = 4096}));
}

TEST_F(Quota, ABrokenConfigOnReloadKeepsTheOldOneAndSaysWhereItIsBroken)
{
    start("[quota]\nclient = { bytes = \"64K\" }\n");
    auto client = daemon_->connect("camera");
    write_config("[quota]\nclient = { bytes = \"lots\" }\n");
    reload();
    EXPECT_THAT(daemon_->log(), HasSubstr("reload failed, keeping the config in use: " + config_path() + ":2:20:"));
    ASSERT_TRUE(client.allocate({.size = 64 * kKiB})) << "the connection survived";
    EXPECT_FALSE(client.allocate({.size = 4096})) << "the old limit still holds";
}

TEST_F(Quota, AnImportCountsAgainstTheImporterAndARefusalLeavesTheTokenUsable)
{
    start("[quota]\nclient = { bytes = \"64K\" }\n");
    FullImporter setup = share_with_a_full_importer();
    auto refused = setup.importer.import(setup.token);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, StatusCode::kQuotaExceeded);
    ASSERT_TRUE(setup.importer.free(setup.own.front()));
    EXPECT_TRUE(setup.importer.import(setup.token)) << "the refused import did not use the token up";
}

TEST_F(Quota, ImportsNeedNotCount)
{
    start("[quota]\nimports_count = false\nclient = { bytes = \"64K\" }\n");
    FullImporter setup = share_with_a_full_importer();
    ASSERT_TRUE(setup.importer.import(setup.token));
    ASSERT_TRUE(setup.importer.free(setup.own.front()));
    EXPECT_TRUE(setup.importer.allocate({.size = 64 * kKiB})) << "its import does not count against its allocations";
    EXPECT_FALSE(setup.importer.allocate({.size = 4096})) << "its allocations still do";
}

TEST_F(Quota, AUidLimitSpansEveryConnectionOfThatUser)
{
    if (::geteuid() != 0)
        GTEST_SKIP() << "needs root, to run a client as another user";
    start("[quota.uids]\n65534 = { bytes = \"128K\" }\n");
    ASSERT_EQ(::chmod(daemon_->directory().c_str(), 0755), 0);
    ASSERT_EQ(::chmod(daemon_->socket_path().c_str(), 0666), 0);
    ChildProcess nobody([&] {
        if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
            ::setresuid(65534, 65534, 65534) != 0)
            return 10;
        auto first = daemon_->connect("first");
        auto second = daemon_->connect("second");
        if (!first.allocate({.size = 64 * kKiB}) || !second.allocate({.size = 64 * kKiB}))
            return 11;
        auto third = second.allocate({.size = 4096});
        if (third || third.error().code != StatusCode::kQuotaExceeded ||
            third.error().message.find("uid 65534 holds 131072 bytes in 2 buffers") == std::string::npos)
            return 12;
        return 0;
    });
    EXPECT_EQ(nobody.wait(), 0);
    EXPECT_TRUE(daemon_->connect("root").allocate({.size = 1024 * kKiB})) << "root is not limited";
}

} // namespace
} // namespace ionsvc::testing
