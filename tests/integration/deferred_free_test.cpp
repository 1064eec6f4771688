// SPDX-License-Identifier: MIT
// ConnectOptions::defer_frees against the real daemon: frees kept back
// until the client's next request, a full batch, or flush_frees().
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"

namespace ionsvc::testing {
namespace {

using bufclient::kMaxDeferredFrees;

class DeferredFrees : public ::testing::Test
{
protected:
    DeferredFrees()
        : deferring_(connect_deferring()), observer_(daemon_.connect("observer"))
    {
    }

    bufclient::Client connect_deferring()
    {
        auto client = bufclient::Client::connect(
            {.socket_path = daemon_.socket_path(), .client_name = "deferring", .defer_frees = true});
        EXPECT_TRUE(client) << client.error().message;
        if (!client)
            std::abort();
        return std::move(*client);
    }

    // What the daemon counts as the deferring client's, asked by another
    // connection (which sends nothing on the deferring one's behalf).
    std::uint64_t buffers_counted()
    {
        auto stats = observer_.stats(::getpid());
        EXPECT_TRUE(stats) << stats.error().message;
        if (stats) {
            for (const auto &client : stats->clients) {
                if (client.client_id == deferring_.server().client_id)
                    return client.heaps.empty() ? 0 : client.heaps.at(0).buffers;
            }
        }
        return ~0ull;
    }

    std::vector<bufclient::Buffer> allocate(std::uint32_t count)
    {
        auto buffers = deferring_.allocate({.size = 4096, .count = count});
        EXPECT_TRUE(buffers) << buffers.error().message;
        return buffers ? std::move(*buffers) : std::vector<bufclient::Buffer>{};
    }

    DaemonProcess daemon_;
    bufclient::Client deferring_;
    bufclient::Client observer_;
};

TEST_F(DeferredFrees, AFreedBufferIsCountedUntilTheClientsNextRequestCarriesTheFree)
{
    const auto buffers = allocate(2);
    ASSERT_EQ(buffers.size(), 2u);
    ASSERT_TRUE(deferring_.free(buffers[0]));
    // Nothing was sent: the daemon cannot know yet.
    EXPECT_EQ(buffers_counted(), 2u);

    ASSERT_TRUE(deferring_.list_heaps());
    EXPECT_EQ(buffers_counted(), 1u);
}

TEST_F(DeferredFrees, FlushFreesSendsThemWithoutAnotherRequest)
{
    const auto buffers = allocate(3);
    ASSERT_TRUE(deferring_.free(buffers[0]));
    ASSERT_TRUE(deferring_.free(buffers[1]));
    EXPECT_EQ(buffers_counted(), 3u);
    ASSERT_TRUE(deferring_.flush_frees());
    // A Free without reply: the daemon takes it in its own time.
    EXPECT_TRUE(eventually([&] { return buffers_counted() == 1; }));
    // Nothing is left to flush.
    ASSERT_TRUE(deferring_.flush_frees());
    EXPECT_EQ(buffers_counted(), 1u);
}

TEST_F(DeferredFrees, TheLastFreeThatFillsTheBatchSendsItAtOnce)
{
    // Two batches: one Alloc holds at most kMaxBatchCount.
    auto buffers = allocate(static_cast<std::uint32_t>(kMaxDeferredFrees));
    for (auto &buffer : allocate(1))
        buffers.push_back(std::move(buffer));
    ASSERT_EQ(buffers.size(), kMaxDeferredFrees + 1);
    for (std::size_t i = 0; i + 1 < kMaxDeferredFrees; ++i)
        ASSERT_TRUE(deferring_.free(buffers[i]));
    EXPECT_EQ(buffers_counted(), kMaxDeferredFrees + 1);
    ASSERT_TRUE(deferring_.free(buffers[kMaxDeferredFrees - 1]));
    EXPECT_TRUE(eventually([&] { return buffers_counted() == 1; }));
}

TEST_F(DeferredFrees, AFreeOfABufferFreedAlreadyIsStillRefused)
{
    const auto buffers = allocate(1);
    ASSERT_TRUE(deferring_.free(buffers[0]));
    const auto again = deferring_.free(buffers[0]);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, StatusCode::kNotFound);
}

TEST_F(DeferredFrees, FreesKeptBackAtDisconnectLeaveNothingInTheBooks)
{
    const auto buffers = allocate(4);
    for (const auto &buffer : buffers)
        ASSERT_TRUE(deferring_.free(buffer));
    const std::uint64_t id = deferring_.server().client_id;
    deferring_ = connect_deferring();
    EXPECT_TRUE(eventually([&] {
        auto stats = observer_.stats(::getpid());
        if (!stats)
            return false;
        for (const auto &client : stats->clients) {
            if (client.client_id == id)
                return false;
        }
        return stats->heaps.at(0).total_buffers == 0;
    }));
}

} // namespace
} // namespace ionsvc::testing
