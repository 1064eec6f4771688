// SPDX-License-Identifier: MIT
// Quotas against the real daemon: the limits of its config file, reloaded
// on SIGHUP without dropping anyone.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
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

    void reload() { ASSERT_TRUE(daemon_->reload()) << daemon_->log(); }

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

    // Lets clients of other users reach the daemon.
    void open_to_everyone() const
    {
        ASSERT_EQ(::chmod(daemon_->directory().c_str(), 0755), 0);
        ASSERT_EQ(::chmod(daemon_->socket_path().c_str(), 0666), 0);
    }

    // Whether an allocation was refused with QUOTA_EXCEEDED saying usage.
    static bool refused_for_quota(const bufclient::Result<std::vector<bufclient::Buffer>> &result,
                                  std::string_view usage)
    {
        return !result && result.error().code == StatusCode::kQuotaExceeded &&
               result.error().message.find(usage) != std::string::npos;
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

TEST_F(Quota, ABatchThatWouldCrossTheByteLimitAllocatesNothing)
{
    start("[quota]\nclient = { bytes = \"64K\" }\n");
    auto client = daemon_->connect("camera");
    ASSERT_TRUE(client.allocate({.size = 16 * kKiB, .count = 3}));
    auto batch = client.allocate({.size = 16 * kKiB, .count = 2});
    ASSERT_FALSE(batch);
    EXPECT_EQ(batch.error().code, StatusCode::kQuotaExceeded);
    EXPECT_THAT(batch.error().message, HasSubstr("holds 49152 bytes in 3 buffers; 2 more of 16384 bytes"));
    auto heaps = client.list_heaps();
    ASSERT_TRUE(heaps);
    EXPECT_EQ(heaps->front().live_buffers, 3u);
    EXPECT_EQ(heaps->front().live_bytes, 48 * kKiB);
    EXPECT_TRUE(client.allocate({.size = 16 * kKiB})) << "what fits still fits";
}

TEST_F(Quota, AHeapLimitHoldsWithinThatHeap)
{
    start("[quota.heaps.memfd]\nclient = { bytes = \"64K\" }\n");
    auto client = daemon_->connect("camera");
    ASSERT_TRUE(client.allocate({.heap = "memfd", .size = 64 * kKiB}));
    auto over = client.allocate({.heap = "system", .size = 4096}); // an alias of memfd here
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error().code, StatusCode::kQuotaExceeded);
    EXPECT_EQ(over.error().message, "quota exceeded: this client holds 65536 bytes in 1 buffers in heap memfd; "
                                    "1 more of 4096 bytes would pass its limit of 65536 bytes "
                                    "(quota.heaps.memfd.client)");
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
    IONSVC_NEED_ROOT("to run a client as another user");
    start("[quota.uids]\n65534 = { bytes = \"128K\" }\n");
    open_to_everyone();
    ChildProcess nobody([&] {
        if (!become_user(65534, 65534, {}))
            return 10;
        auto first = daemon_->connect("first");
        auto second = daemon_->connect("second");
        if (!first.allocate({.size = 64 * kKiB}) || !second.allocate({.size = 64 * kKiB}))
            return 11;
        if (!refused_for_quota(second.allocate({.size = 4096}), "uid 65534 holds 131072 bytes in 2 buffers"))
            return 12;
        return 0;
    });
    EXPECT_EQ(nobody.wait(), 0);
    EXPECT_TRUE(daemon_->connect("root").allocate({.size = 1024 * kKiB})) << "root is not limited";
}

TEST_F(Quota, AGroupLimitSpansItsMembersByPrimaryAndSupplementaryGroup)
{
    IONSVC_NEED_ROOT("to run clients as other users");
    start("[quota.groups]\n4242 = { bytes = \"128K\" }\n");
    open_to_everyone();

    // A member by a supplementary group holds 64 KiB until released.
    Signal ready, release;
    ChildProcess holder([&] {
        release.close_write_end();
        if (!become_user(65534, 65534, {4242}))
            return 10;
        auto client = daemon_->connect("holder");
        if (!client.allocate({.size = 64 * kKiB}))
            return 11;
        ready.raise();
        release.wait();
        return 0;
    });
    ASSERT_TRUE(ready.wait()) << "the holder failed at " << holder.wait();

    // A member by its primary group shares the group's 128 KiB with it.
    ChildProcess member([&] {
        if (!become_user(65533, 4242, {}))
            return 10;
        auto client = daemon_->connect("member");
        if (!client.allocate({.size = 64 * kKiB}))
            return 11;
        if (!refused_for_quota(client.allocate({.size = 4096}), "group 4242 holds 131072 bytes in 2 buffers"))
            return 12;
        return 0;
    });
    EXPECT_EQ(member.wait(), 0);
    EXPECT_TRUE(daemon_->connect("root").allocate({.size = 1024 * kKiB})) << "outside the group, no limit";
    release.raise();
    EXPECT_EQ(holder.wait(), 0);
}

TEST_F(Quota, ReloadsUnderLoadDropNobodyAndRefuseOnlyWithQuotaExceeded)
{
    const std::string tight = "[quota]\nclient = { bytes = \"64K\" }\n";
    const std::string loose = "[quota]\nclient = { bytes = \"256K\" }\nuid = { bytes = \"256K\" }\n";
    start(tight);
    constexpr int kClients = 4;
    constexpr int kReloads = 10;
    // The clients run until the write end of stop closes.
    int stop_ends[2];
    ASSERT_EQ(::pipe2(stop_ends, O_CLOEXEC | O_NONBLOCK), 0);
    UniqueFD stop_read{stop_ends[0]};
    UniqueFD stop_write{stop_ends[1]};
    Signal running;

    // Each client takes two 64 KiB buffers and frees them, over and over.
    // Exit code: 0, or which step went wrong.
    const auto client_body = [&] {
        stop_write.reset();
        auto client = daemon_->connect("loader");
        running.raise();
        for (;;) {
            char byte;
            if (::read(stop_read.get(), &byte, 1) == 0)
                return 0;
            std::vector<bufclient::Buffer> held;
            for (int i = 0; i < 2; ++i) {
                auto buffers = client.allocate({.size = 64 * kKiB});
                if (buffers)
                    held.push_back(std::move(buffers->front()));
                else if (buffers.error().code != StatusCode::kQuotaExceeded)
                    return 20 + static_cast<int>(buffers.error().code);
            }
            for (const bufclient::Buffer &buffer : held) {
                if (!client.free(buffer))
                    return 11;
            }
        }
    };
    std::vector<ChildProcess> clients;
    for (int i = 0; i < kClients; ++i)
        clients.emplace_back(client_body);
    for (int i = 0; i < kClients; ++i)
        ASSERT_TRUE(running.wait());

    for (int i = 0; i < kReloads; ++i) {
        write_config(i % 2 == 0 ? loose : tight);
        reload();
    }
    EXPECT_THAT(daemon_->log(), ::testing::Not(HasSubstr("reload failed")));
    stop_write.reset();
    for (ChildProcess &client : clients)
        EXPECT_EQ(client.wait(), 0);

    auto observer = daemon_->connect("observer");
    EXPECT_TRUE(eventually([&] {
        const auto heaps = observer.list_heaps();
        return heaps && heaps->front().live_bytes == 0 && heaps->front().live_buffers == 0;
    })) << "the books end at zero";
    EXPECT_TRUE(observer.allocate({.size = 64 * kKiB})) << "the daemon serves on, under the last config";
    EXPECT_FALSE(observer.allocate({.size = 4096}));
}

} // namespace
} // namespace ionsvc::testing
