// SPDX-License-Identifier: MIT
#include <gtest/gtest.h>

#include <set>

#include "harness.h"

namespace ionsvc::testing {
namespace {

constexpr int kClients = 100;
constexpr std::uint64_t kSize = 8192;

TEST(ManyClients, AHundredProcessesHoldBuffersAtOnceAndAreEachAccounted)
{
    DaemonProcess daemon;
    // Counted after a round trip (connect says Hello), when the daemon is
    // surely serving and done with start-up's transient fds.
    auto observer = daemon.connect("observer");
    const std::size_t idle_fds = daemon.open_fds();
    Signal ready, release;
    std::vector<ChildProcess> children;
    for (int i = 0; i < kClients; ++i) {
        children.emplace_back([&, i] {
            release.close_write_end(); // so that the parent's close is seen
            auto client = bufclient::Client::connect(
                {.socket_path = daemon.socket_path(), .client_name = "client-" + std::to_string(i)});
            if (!client)
                return 10;
            auto buffers = client->allocate({.size = kSize, .count = 2});
            if (!buffers)
                return 11;
            auto mapping = buffers->front().map();
            if (!mapping)
                return 12;
            static_cast<int *>(mapping->data())[0] = i;
            ready.raise();
            release.wait();
            if (static_cast<int *>(mapping->data())[0] != i)
                return 13;
            return client->free(buffers->front()) ? 0 : 14;
        });
    }
    for (int i = 0; i < kClients; ++i)
        ASSERT_TRUE(ready.wait());

    auto stats = observer.stats();
    ASSERT_TRUE(stats) << stats.error().message;
    std::set<std::uint32_t> pids;
    for (const auto &client : stats->clients) {
        if (client.name == "observer")
            continue;
        pids.insert(client.pid);
        ASSERT_EQ(client.heaps.size(), 1u);
        EXPECT_EQ(client.heaps[0].bytes, 2 * kSize);
        EXPECT_EQ(client.heaps[0].buffers, 2u);
    }
    EXPECT_EQ(pids.size(), static_cast<std::size_t>(kClients));
    EXPECT_EQ(stats->heaps[0].total_bytes, kClients * 2 * kSize);

    release.close_write_end();
    for (auto &child : children)
        EXPECT_EQ(child.wait(), 0);

    EXPECT_TRUE(eventually([&] {
        auto now = observer.stats();
        return now && now->clients.size() == 1 && now->heaps[0].total_buffers == 0 &&
               daemon.open_fds() == idle_fds;
    })) << "daemon fds " << daemon.open_fds() << ", idle " << idle_fds << ", clients "
        << observer.stats()->clients.size() << "\n" << daemon.log().substr(0, 3000);
}

} // namespace
} // namespace ionsvc::testing
