// SPDX-License-Identifier: MIT
// The books after a restart: restored clients and buffers charge as they
// did, a reconnecting client takes its record over, and those that never
// come back leave as at a disconnect.
#include <gtest/gtest.h>

#include "books/books.h"

namespace ionsvc {
namespace {

constexpr HeapIndex kHeap = 0;
constexpr ClientId kCamera = 7;
constexpr ClientId kDisplay = 9;
constexpr BufferId kFrame = 40;

ClientIdentity camera_identity(std::vector<gid_t> groups = {44})
{
    return {321, 1000, 1000, "camera", std::move(groups), "/camera.slice/camera.service"};
}

// The daemon's fd and the store's copy, and someone else's.
long someone_else_holds(int)
{
    return 3;
}

long nobody_else_holds(int)
{
    return 2;
}

RestoredBuffer frame(std::vector<std::pair<ClientId, bool>> holders)
{
    RestoredBuffer buffer;
    buffer.heap = kHeap;
    buffer.size = 8192;
    buffer.watched = true;
    buffer.inode = 77;
    buffer.holders = std::move(holders);
    buffer.allocated_by = std::make_shared<const ClientLabel>(ClientLabel{kCamera, 321, 1000, "camera", "cam"});
    return buffer;
}

TEST(RestoredBooks, ChargeTheSameClientsUidsGroupsAndHeapsAsBefore)
{
    Books books(1);
    books.restore_client(kCamera, camera_identity(), "cam", "secret");
    books.restore_client(kDisplay, {654, 1001, 1001, "display", {}, ""}, "disp", "other");
    ASSERT_EQ(books.restore_buffer(kFrame, frame({{kCamera, false}, {kDisplay, true}})), 0);

    EXPECT_EQ(books.client(kCamera)->usage[kHeap].bytes, 8192u);
    EXPECT_EQ(books.client(kCamera)->usage[kHeap].shared_bytes, 8192u);
    EXPECT_EQ(books.client(kDisplay)->usage[kHeap].imported_bytes, 8192u);
    EXPECT_EQ((*books.uid_usage(1000))[kHeap].bytes, 8192u);
    EXPECT_EQ((*books.gid_usage(44))[kHeap].bytes, 8192u);
    EXPECT_EQ(books.heap_usage(kHeap).bytes, 8192u);
    EXPECT_TRUE(books.client(kCamera)->awaiting_reclaim);
    EXPECT_EQ(books.buffer(kFrame)->own_references, 2);
    // New ids come after the restored ones.
    EXPECT_GT(books.add_client({1, 0, 0, "root"}), kDisplay);
}

TEST(RestoredBooks, RefuseABufferHeldByAClientTheyDoNotKnow)
{
    Books books(1);
    EXPECT_EQ(books.restore_buffer(kFrame, frame({{kCamera, false}})), -EINVAL);
    EXPECT_EQ(books.heap_usage(kHeap).buffers, 0u);
}

TEST(RestoredBooks, AReconnectingClientTakesItsRecordOverWithItsNewGroups)
{
    Books books(1);
    books.restore_client(kCamera, camera_identity({44}), "cam", "secret");
    ASSERT_EQ(books.restore_buffer(kFrame, frame({{kCamera, false}})), 0);
    const ClientId fresh = books.add_client(camera_identity({45}));

    ASSERT_EQ(books.adopt(fresh, kCamera), 0);
    EXPECT_EQ(books.client(fresh), nullptr);
    EXPECT_FALSE(books.client(kCamera)->awaiting_reclaim);
    EXPECT_TRUE(books.holds(kCamera, kFrame));
    EXPECT_EQ((*books.gid_usage(44))[kHeap].bytes, 0u) << "the old group still pays";
    EXPECT_EQ((*books.gid_usage(45))[kHeap].bytes, 8192u);
    EXPECT_EQ((*books.uid_usage(1000))[kHeap].bytes, 8192u);
    EXPECT_EQ(books.adopt(fresh, kCamera), -ENOENT) << "taken over twice";
}

TEST(RestoredBooks, AnotherUsersConnectionCannotTakeTheRecordOver)
{
    Books books(1);
    books.restore_client(kCamera, camera_identity(), "cam", "secret");
    const ClientId stranger = books.add_client({999, 1002, 1002, "thief"});
    EXPECT_EQ(books.adopt(stranger, kCamera), -EPERM);
    EXPECT_TRUE(books.client(kCamera)->awaiting_reclaim);
}

TEST(RestoredBooks, AClientThatNeverComesBackLeavesItsBuffersAsOrphansWhereTheyLive)
{
    Books books(1);
    books.restore_client(kCamera, camera_identity(), "cam", "secret");
    ASSERT_EQ(books.restore_buffer(kFrame, frame({{kCamera, false}})), 0);
    ASSERT_EQ(books.restore_buffer(kFrame + 1, frame({{kCamera, false}})), 0);

    // One is still held elsewhere, the other by nobody but the daemon.
    const auto count = [&](int) { return books.orphans().empty() ? someone_else_holds(0) : nobody_else_holds(0); };
    books.remove_client(kCamera, count);
    EXPECT_EQ(books.client(kCamera), nullptr);
    ASSERT_EQ(books.orphans().size(), 1u);
    EXPECT_EQ(books.orphans().begin()->second.uid, 1000u);
    EXPECT_EQ((*books.uid_usage(1000))[kHeap].bytes, 8192u) << "the orphan's uid stopped paying";
    EXPECT_EQ(books.heap_usage(kHeap).buffers, 1u);
}

TEST(RestoredBooks, ReleaseDetectionCountsTheStoresCopyAsTheDaemons)
{
    Books books(1);
    books.restore_client(kCamera, camera_identity(), "cam", "secret");
    ASSERT_EQ(books.restore_buffer(kFrame, frame({{kCamera, false}})), 0);
    EXPECT_EQ(books.release_unreferenced(kEveryBuffer, someone_else_holds), 0u);
    EXPECT_EQ(books.release_unreferenced(kEveryBuffer, nobody_else_holds), 1u);
    EXPECT_EQ(books.heap_usage(kHeap).bytes, 0u);
    EXPECT_EQ(books.take_left_store(), std::vector<BufferId>{kFrame}) << "its copy stays in the store";
}

} // namespace
} // namespace ionsvc
