// SPDX-License-Identifier: MIT
// libbufclient's deferred frees against the real daemon: by default the
// frees of small buffers wait for the client's next request, and go by
// themselves once too many bytes or ids wait, with a shared buffer's, or at
// flush_frees().
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>

#include "harness.h"

namespace ionsvc::testing {
namespace {

using bufclient::kDefaultDeferredFreeBytes;
using bufclient::kMaxDeferredFrees;

constexpr std::uint64_t kPage = 4096;

class DeferredFrees : public ::testing::Test
{
protected:
    DeferredFrees()
        : deferring_(connect_deferring()), observer_(daemon_.connect("observer"))
    {
    }

    // By default, or keeping back up to deferred_free_bytes.
    bufclient::Client connect_deferring(std::uint64_t deferred_free_bytes = kDefaultDeferredFreeBytes)
    {
        auto client = bufclient::Client::connect({.socket_path = daemon_.socket_path(),
                                                  .client_name = "deferring",
                                                  .deferred_free_bytes = deferred_free_bytes});
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

    std::vector<bufclient::Buffer> allocate(std::uint32_t count, std::uint64_t size = kPage)
    {
        auto buffers = deferring_.allocate({.size = size, .count = count});
        EXPECT_TRUE(buffers) << buffers.error().message;
        return buffers ? std::move(*buffers) : std::vector<bufclient::Buffer>{};
    }

    DaemonProcess daemon_;
    bufclient::Client deferring_;
    bufclient::Client observer_;
};

TEST_F(DeferredFrees, ByDefaultAFreedSmallBufferIsCountedUntilTheClientsNextRequestCarriesTheFree)
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

TEST_F(DeferredFrees, TheFreeThatPassesTheBytesKeptBackSendsThemAll)
{
    constexpr std::uint32_t kFitting = kDefaultDeferredFreeBytes / kPage;
    const auto buffers = allocate(kFitting + 1);
    ASSERT_EQ(buffers.size(), kFitting + 1);
    for (std::uint32_t i = 0; i < kFitting; ++i)
        ASSERT_TRUE(deferring_.free(buffers[i]));
    EXPECT_EQ(buffers_counted(), kFitting + 1);
    ASSERT_TRUE(deferring_.free(buffers[kFitting]));
    EXPECT_TRUE(eventually([&] { return buffers_counted() == 0; }));
}

TEST_F(DeferredFrees, AFreeOfABufferLargerThanTheBytesKeptBackGoesAtOnce)
{
    const auto buffers = allocate(1, kDefaultDeferredFreeBytes + kPage);
    ASSERT_EQ(buffers.size(), 1u);
    ASSERT_TRUE(deferring_.free(buffers[0]));
    EXPECT_TRUE(eventually([&] { return buffers_counted() == 0; }));
}

TEST_F(DeferredFrees, AFreeOfASharedBufferGoesAtOnceAndItsTokenWithIt)
{
    const auto buffers = allocate(1);
    ASSERT_EQ(buffers.size(), 1u);
    auto token = deferring_.share(buffers[0]);
    ASSERT_TRUE(token) << token.error().message;
    ASSERT_TRUE(deferring_.free(buffers[0]));
    EXPECT_TRUE(eventually([&] { return buffers_counted() == 0; }));
    const auto imported = observer_.import(*token);
    ASSERT_FALSE(imported);
    EXPECT_EQ(imported.error().code, StatusCode::kNotFound);
}

TEST_F(DeferredFrees, WithNoBytesToKeepBackEveryFreeGoesAtOnce)
{
    deferring_ = connect_deferring(0);
    const auto buffers = allocate(1);
    ASSERT_EQ(buffers.size(), 1u);
    ASSERT_TRUE(deferring_.free(buffers[0]));
    EXPECT_TRUE(eventually([&] { return buffers_counted() == 0; }));
}

TEST_F(DeferredFrees, TheFreeThatFillsTheIdsKeptBackSendsThemAtOnce)
{
    // However many bytes may wait, no more than kMaxDeferredFrees ids do.
    deferring_ = connect_deferring(std::numeric_limits<std::uint64_t>::max());
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
