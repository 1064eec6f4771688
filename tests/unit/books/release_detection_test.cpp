// SPDX-License-Identifier: MIT
// Release detection and orphans in the books, with the kernel's reference
// counts played by the test: a count of 1 is the daemon's own reference.
#include <fcntl.h>
#include <sys/eventfd.h>

#include <map>

#include <gtest/gtest.h>

#include "books/books.h"

namespace ionsvc {
namespace {

constexpr HeapIndex kHeap = 0;
constexpr HeapIndex kOtherHeap = 1;
constexpr bool kDmaBuf = true;
constexpr bool kMemfd = false;

// The kernel's reference counts, per fd, as the test sets them.
class FakeKernel
{
public:
    // A new fd the books can own, counted as only the daemon's.
    UniqueFD buffer(long references = 1)
    {
        UniqueFD fd{::eventfd(0, EFD_CLOEXEC)};
        references_[fd.get()] = references;
        return fd;
    }
    void set(int fd, long references) { references_[fd] = references; }

    ReferenceCounter counter()
    {
        return [this](int fd) {
            ++counted_;
            const auto it = references_.find(fd);
            return it == references_.end() ? -EBADF : it->second;
        };
    }
    int counted() const { return counted_; }

private:
    std::map<int, long> references_;
    int counted_ = 0;
};

bool is_open(int fd)
{
    return ::fcntl(fd, F_GETFD) >= 0;
}

class ReleaseDetection : public ::testing::Test
{
protected:
    // A delivered dma-buf of size bytes for client; its fd number in *fd.
    BufferId delivered_buffer(ClientId client, std::uint64_t size = 4096, long references = 1,
                              int *fd = nullptr, HeapIndex heap = kHeap)
    {
        UniqueFD buffer = kernel_.buffer(references);
        if (fd)
            *fd = buffer.get();
        const BufferId id = books_.add_buffer(client, heap, size, std::move(buffer), kDmaBuf);
        const BufferId ids[] = {id};
        books_.delivered(client, ids);
        return id;
    }

    std::size_t release_all() { return books_.release_unreferenced(1000, kernel_.counter()); }
    // The fresh count before a stats reply, for pid (every client if none).
    std::size_t release_now(std::optional<pid_t> pid)
    {
        return books_.release_unreferenced_now(pid, std::nullopt, kEveryBuffer, kernel_.counter());
    }

    FakeKernel kernel_;
    Books books_{2};
    const ClientId camera_ = books_.add_client({100, 1000, 1000, "camera"});
    const ClientId display_ = books_.add_client({200, 1000, 1000, "display"});
};

TEST_F(ReleaseDetection, ABufferNobodyButTheDaemonHoldsLeavesTheBooks)
{
    int fd = -1;
    const BufferId buffer = delivered_buffer(camera_, 8192, 1, &fd);

    EXPECT_EQ(release_all(), 1u);
    EXPECT_FALSE(books_.holds(camera_, buffer));
    EXPECT_EQ(books_.client(camera_)->usage[kHeap].bytes, 0u);
    EXPECT_EQ(books_.client(camera_)->usage[kHeap].peak_bytes, 8192u);
    EXPECT_EQ(books_.heap_usage(kHeap).bytes, 0u);
    EXPECT_EQ(books_.heap_usage(kHeap).buffers, 0u);
    EXPECT_FALSE(is_open(fd)) << "the daemon's reference must be closed with it";
}

TEST_F(ReleaseDetection, ABufferSomeoneElseHoldsStays)
{
    int fd = -1;
    const BufferId buffer = delivered_buffer(camera_, 4096, 2, &fd);

    EXPECT_EQ(release_all(), 0u);
    EXPECT_TRUE(books_.holds(camera_, buffer));
    EXPECT_EQ(books_.heap_usage(kHeap).bytes, 4096u);
    EXPECT_TRUE(is_open(fd));

    kernel_.set(fd, 1); // the client closed its fd and unmapped
    EXPECT_EQ(release_all(), 1u);
    EXPECT_FALSE(books_.holds(camera_, buffer));
}

TEST_F(ReleaseDetection, ABufferWhoseReplyIsNotOutYetIsNeverReleased)
{
    const BufferId buffer = books_.add_buffer(camera_, kHeap, 4096, kernel_.buffer(1), kDmaBuf);

    EXPECT_EQ(release_all(), 0u);
    EXPECT_EQ(release_now(std::nullopt), 0u);
    EXPECT_TRUE(books_.holds(camera_, buffer));
    EXPECT_EQ(kernel_.counted(), 0) << "an fd in flight must not even be counted";

    const BufferId ids[] = {buffer};
    books_.delivered(camera_, ids);
    EXPECT_EQ(release_all(), 1u);
}

TEST_F(ReleaseDetection, MemfdBuffersAreNeverCountedOrReleased)
{
    const BufferId buffer = books_.add_buffer(camera_, kHeap, 4096, kernel_.buffer(1), kMemfd);
    const BufferId ids[] = {buffer};
    books_.delivered(camera_, ids);

    EXPECT_FALSE(books_.has_watched_buffers());
    EXPECT_EQ(release_all(), 0u);
    EXPECT_EQ(release_now(std::nullopt), 0u);
    EXPECT_EQ(kernel_.counted(), 0);
    EXPECT_TRUE(books_.holds(camera_, buffer));
}

TEST_F(ReleaseDetection, ACountThatCannotBeReadKeepsTheBuffer)
{
    int fd = -1;
    const BufferId buffer = delivered_buffer(camera_, 4096, 1, &fd);
    kernel_.set(fd, -EMFILE);

    EXPECT_EQ(release_all(), 0u);
    EXPECT_TRUE(books_.holds(camera_, buffer));
    // Checked again later, once it can be counted.
    kernel_.set(fd, 1);
    EXPECT_EQ(release_all(), 1u);
}

TEST_F(ReleaseDetection, ARoundCountsNoMoreBuffersThanItsBudgetAndTakesTurns)
{
    std::vector<BufferId> buffers;
    for (int i = 0; i < 5; ++i)
        buffers.push_back(delivered_buffer(camera_, 4096, 2));

    EXPECT_EQ(books_.release_unreferenced(2, kernel_.counter()), 0u);
    EXPECT_EQ(kernel_.counted(), 2);
    EXPECT_EQ(books_.release_unreferenced(2, kernel_.counter()), 0u);
    EXPECT_EQ(books_.release_unreferenced(2, kernel_.counter()), 0u);
    // Five buffers in turns of two: the third round wrapped around to the
    // first, so every buffer was counted at least once.
    EXPECT_EQ(kernel_.counted(), 6);
    EXPECT_TRUE(books_.has_watched_buffers());
}

TEST_F(ReleaseDetection, ABufferFreedBeforeItsLastFdClosedIsCheckedBeforeTheQueue)
{
    // Many watched buffers ahead of it in the queue, each still referenced.
    for (int i = 0; i < 5; ++i)
        delivered_buffer(camera_, 4096, 2);
    int fd = -1;
    const BufferId freed = delivered_buffer(camera_, 8192, 2, &fd);
    // Freed while the client still had its fd open: an orphan.
    ASSERT_EQ(books_.remove_buffer(camera_, freed, kernel_.counter()), 0);
    ASSERT_TRUE(books_.buffer(freed));
    kernel_.set(fd, 1); // now the client has closed it

    // A budget of one: the next round's first count is the orphan.
    EXPECT_EQ(books_.release_unreferenced(1, kernel_.counter()), 1u);
    EXPECT_FALSE(books_.buffer(freed));
    EXPECT_FALSE(is_open(fd));
    EXPECT_TRUE(books_.orphans().empty());

    // Checked once ahead of the queue: an orphan still referenced waits for
    // its turn there like every other buffer.
    int shared_fd = -1;
    const BufferId shared = delivered_buffer(display_, 4096, 2, &shared_fd);
    ASSERT_EQ(books_.remove_buffer(display_, shared, kernel_.counter()), 0);
    EXPECT_EQ(books_.release_unreferenced(1, kernel_.counter()), 0u);
    kernel_.set(shared_fd, 1);
    EXPECT_EQ(books_.release_unreferenced(1, kernel_.counter()), 0u) << "the queue's first buffer came next";
    EXPECT_TRUE(books_.buffer(shared));
    EXPECT_EQ(release_all(), 1u) << "its turn in the queue came";
    EXPECT_FALSE(books_.buffer(shared));
}

TEST_F(ReleaseDetection, FreshOrphansTakeHalfARoundAtMostAndTheQueueTheRest)
{
    // Two buffers nobody references in the queue, then four fresh orphans.
    delivered_buffer(camera_, 4096, 1);
    delivered_buffer(camera_, 4096, 1);
    for (int i = 0; i < 4; ++i) {
        const BufferId id = delivered_buffer(display_, 4096, 2);
        ASSERT_EQ(books_.remove_buffer(display_, id, kernel_.counter()), 0);
    }
    ASSERT_EQ(books_.orphans().size(), 4u);

    const int before = kernel_.counted();
    // A budget of four: two orphans (still referenced), then the queue's
    // first two buffers, which nobody references.
    EXPECT_EQ(books_.release_unreferenced(4, kernel_.counter()), 2u);
    EXPECT_EQ(kernel_.counted() - before, 4);
    EXPECT_EQ(books_.client(camera_)->handles.size(), 0u);
    EXPECT_EQ(books_.orphans().size(), 4u);
}

TEST_F(ReleaseDetection, FreedBuffersCostARoundNoCount)
{
    const BufferId first = delivered_buffer(camera_);
    const BufferId second = delivered_buffer(camera_);
    const BufferId third = delivered_buffer(camera_);
    ASSERT_EQ(books_.remove_buffer(camera_, first, kernel_.counter()), 0);
    ASSERT_EQ(books_.remove_buffer(camera_, second, kernel_.counter()), 0);

    // A budget of one reaches the live buffer behind two freed ones.
    const int counted_at_free = kernel_.counted();
    EXPECT_EQ(books_.release_unreferenced(1, kernel_.counter()), 1u);
    EXPECT_EQ(kernel_.counted() - counted_at_free, 1);
    EXPECT_FALSE(books_.holds(camera_, third));
    EXPECT_FALSE(books_.has_watched_buffers()) << "nothing left to watch: the timer may rest";
}

TEST_F(ReleaseDetection, AReleasedBufferMayStillBeFreedOnce)
{
    const BufferId buffer = delivered_buffer(camera_);
    ASSERT_EQ(release_all(), 1u);

    EXPECT_TRUE(books_.holds_or_released(camera_, buffer));
    EXPECT_FALSE(books_.holds_or_released(display_, buffer));
    EXPECT_EQ(books_.remove_buffer(display_, buffer, kernel_.counter()), -ENOENT);
    EXPECT_EQ(books_.remove_buffer(camera_, buffer, kernel_.counter()), 0);
    EXPECT_FALSE(books_.holds_or_released(camera_, buffer));
    EXPECT_EQ(books_.remove_buffer(camera_, buffer, kernel_.counter()), -ENOENT);
}

TEST_F(ReleaseDetection, OnlyTheLatestReleasesAreRemembered)
{
    std::vector<BufferId> buffers;
    for (int i = 0; i < 100; ++i)
        buffers.push_back(delivered_buffer(camera_));
    ASSERT_EQ(release_all(), 100u);

    EXPECT_FALSE(books_.holds_or_released(camera_, buffers.front()));
    EXPECT_TRUE(books_.holds_or_released(camera_, buffers.back()));
    EXPECT_LE(books_.client(camera_)->recently_released.size(), 64u);
}

TEST_F(ReleaseDetection, ReleasingNowChecksOnlyTheClientsOfThePidAskedFor)
{
    const BufferId cameras = delivered_buffer(camera_);
    const BufferId displays = delivered_buffer(display_);

    EXPECT_EQ(release_now(pid_t{100}), 1u);
    EXPECT_FALSE(books_.holds(camera_, cameras));
    EXPECT_TRUE(books_.holds(display_, displays));

    EXPECT_EQ(release_now(std::nullopt), 1u);
    EXPECT_FALSE(books_.holds(display_, displays));
}

TEST_F(ReleaseDetection, AFreshCountOfEveryClientStartsWithTheBuffersCountedLongestAgo)
{
    // Four buffers still referenced elsewhere, in the queue in this order.
    int fds[4];
    for (int &fd : fds)
        delivered_buffer(camera_, 4096, 2, &fd);
    // A round of one counts the first and puts it at the back.
    books_.release_unreferenced(1, kernel_.counter());
    // Then the second and the third die.
    kernel_.set(fds[1], 1);
    kernel_.set(fds[2], 1);

    // A budget of two reaches just those two, next in the queue.
    EXPECT_EQ(books_.release_unreferenced_now(std::nullopt, std::nullopt, 2, kernel_.counter()), 2u);
    EXPECT_EQ(books_.client(camera_)->handles.size(), 2u);
}

TEST_F(ReleaseDetection, AFreshCountOfEveryClientTakesOrphansFirst)
{
    // An orphan: the camera freed it while someone else held it, and now
    // that holder is gone too.
    int orphan_fd;
    const BufferId orphan = delivered_buffer(camera_, 4096, 2, &orphan_fd);
    for (int i = 0; i < 3; ++i)
        delivered_buffer(display_, 4096, 2);
    ASSERT_EQ(books_.remove_buffer(camera_, orphan, kernel_.counter()), 0);
    kernel_.set(orphan_fd, 1);

    // A budget of one: the orphan, not the first buffer of the queue.
    EXPECT_EQ(books_.release_unreferenced_now(std::nullopt, std::nullopt, 1, kernel_.counter()), 1u);
    EXPECT_TRUE(books_.orphans().empty());
}

TEST_F(ReleaseDetection, AFreshCountWithNothingWatchedCountsNothing)
{
    books_.add_buffer(camera_, kHeap, 4096, kernel_.buffer(), kMemfd);
    EXPECT_EQ(release_now(std::nullopt), 0u);
    EXPECT_EQ(kernel_.counted(), 0);
}

TEST_F(ReleaseDetection, ALeavingClientsBuffersHeldElsewhereBecomeOrphans)
{
    int shared_fd = -1;
    int dead_fd = -1;
    const BufferId shared = delivered_buffer(camera_, 8192, 3, &shared_fd);
    delivered_buffer(camera_, 4096, 1, &dead_fd, kOtherHeap);
    // memfd: no count to tell, so it leaves with its client.
    books_.add_buffer(camera_, kHeap, 16384, kernel_.buffer(2), kMemfd);

    books_.remove_client(camera_, kernel_.counter());

    EXPECT_EQ(books_.client(camera_), nullptr);
    ASSERT_EQ(books_.orphans().size(), 1u);
    const OrphanRecord &orphan = books_.orphans().at(shared);
    EXPECT_EQ(orphan.pid, 100);
    EXPECT_EQ(orphan.comm, "camera");
    ASSERT_NE(books_.buffer(shared), nullptr);
    EXPECT_EQ(books_.buffer(shared)->size, 8192u);
    EXPECT_TRUE(books_.buffer(shared)->holders.empty());
    EXPECT_EQ(orphan.references, 2) << "references besides the daemon's";
    // The heap still counts the orphan, and only it.
    EXPECT_EQ(books_.heap_usage(kHeap).bytes, 8192u);
    EXPECT_EQ(books_.heap_usage(kHeap).buffers, 1u);
    EXPECT_EQ(books_.heap_usage(kOtherHeap).bytes, 0u);
    EXPECT_TRUE(is_open(shared_fd));
    EXPECT_FALSE(is_open(dead_fd));

    // The last holder lets go: the orphan dies on the next round.
    kernel_.set(shared_fd, 1);
    EXPECT_EQ(release_all(), 1u);
    EXPECT_TRUE(books_.orphans().empty());
    EXPECT_EQ(books_.heap_usage(kHeap).bytes, 0u);
    EXPECT_FALSE(is_open(shared_fd));
}

TEST_F(ReleaseDetection, ABufferFreedWhileHeldElsewhereBecomesAnOrphanItsUidAndGroupStillPayFor)
{
    int held_fd = -1;
    int dead_fd = -1;
    const BufferId held = delivered_buffer(camera_, 8192, 2, &held_fd);
    const BufferId dead = delivered_buffer(camera_, 4096, 1, &dead_fd);

    ASSERT_EQ(books_.remove_buffer(camera_, held, kernel_.counter()), 0);
    ASSERT_EQ(books_.remove_buffer(camera_, dead, kernel_.counter()), 0);
    EXPECT_FALSE(books_.holds(camera_, held));
    EXPECT_EQ(books_.client(camera_)->usage[kHeap].bytes, 0u);
    ASSERT_EQ(books_.orphans().size(), 1u);
    EXPECT_EQ(books_.orphans().at(held).pid, 100);
    EXPECT_EQ(books_.orphans().at(held).references, 1);
    EXPECT_EQ(books_.heap_usage(kHeap).bytes, 8192u);
    EXPECT_EQ(books_.uid_usage(1000)->at(kHeap).bytes, 8192u);
    EXPECT_EQ(books_.gid_usage(1000)->at(kHeap).bytes, 8192u);
    EXPECT_TRUE(is_open(held_fd));
    EXPECT_FALSE(is_open(dead_fd)) << "nobody else referenced it: gone at once";

    kernel_.set(held_fd, 1);
    EXPECT_EQ(release_all(), 1u);
    EXPECT_TRUE(books_.orphans().empty());
    EXPECT_EQ(books_.heap_usage(kHeap).bytes, 0u);
    EXPECT_EQ(books_.uid_usage(1000)->at(kHeap).bytes, 0u);
    EXPECT_EQ(books_.gid_usage(1000)->at(kHeap).bytes, 0u);
    EXPECT_FALSE(is_open(held_fd));
}

TEST_F(ReleaseDetection, AFreedMemfdBufferLeavesTheBooksEvenIfHeldElsewhere)
{
    const BufferId buffer = books_.add_buffer(camera_, kHeap, 4096, kernel_.buffer(2), kMemfd);
    const BufferId ids[] = {buffer};
    books_.delivered(camera_, ids);

    ASSERT_EQ(books_.remove_buffer(camera_, buffer, kernel_.counter()), 0);
    EXPECT_TRUE(books_.orphans().empty());
    EXPECT_EQ(books_.heap_usage(kHeap).bytes, 0u);
    EXPECT_EQ(books_.uid_usage(1000)->at(kHeap).bytes, 0u);
    EXPECT_EQ(kernel_.counted(), 0) << "memfd has no count to ask for";
}

TEST_F(ReleaseDetection, AnOrphanOfALeavingClientStaysChargedToItsUidAndEveryGroupUntilItDies)
{
    const ClientId viewer = books_.add_client({300, 2000, 2000, "viewer", {44}});
    int fd = -1;
    delivered_buffer(viewer, 4096, 2, &fd);
    books_.remove_client(viewer, kernel_.counter());

    ASSERT_EQ(books_.orphans().size(), 1u);
    EXPECT_EQ(books_.uid_usage(2000)->at(kHeap).bytes, 4096u);
    EXPECT_EQ(books_.gid_usage(2000)->at(kHeap).bytes, 4096u);
    EXPECT_EQ(books_.gid_usage(44)->at(kHeap).bytes, 4096u);

    kernel_.set(fd, 1);
    EXPECT_EQ(release_all(), 1u);
    EXPECT_EQ(books_.uid_usage(2000)->at(kHeap).bytes, 0u);
    EXPECT_EQ(books_.gid_usage(2000)->at(kHeap).bytes, 0u);
    EXPECT_EQ(books_.gid_usage(44)->at(kHeap).buffers, 0u);
}

TEST_F(ReleaseDetection, AnImportersLastFreeOrphansTheBufferOnItsOwnUid)
{
    const ClientId stranger = books_.add_client({300, 2000, 2000, "stranger"});
    int fd = -1;
    const BufferId buffer = delivered_buffer(camera_, 4096, 3, &fd);
    ASSERT_EQ(books_.add_holder(stranger, buffer), 0);
    const BufferId ids[] = {buffer};
    books_.delivered(stranger, ids);

    ASSERT_EQ(books_.remove_buffer(camera_, buffer, kernel_.counter()), 0);
    ASSERT_EQ(books_.remove_buffer(stranger, buffer, kernel_.counter()), 0);
    ASSERT_EQ(books_.orphans().size(), 1u);
    EXPECT_EQ(books_.orphans().at(buffer).uid, 2000u);
    EXPECT_EQ(books_.uid_usage(2000)->at(kHeap).bytes, 4096u);
    EXPECT_EQ(books_.uid_usage(2000)->at(kHeap).imported_bytes, 0u) << "an orphan is nobody's import";
    EXPECT_EQ(books_.uid_usage(1000)->at(kHeap).bytes, 0u);
}

TEST_F(ReleaseDetection, AnOrphansReferencesAreRecountedBeforeStats)
{
    int fd = -1;
    delivered_buffer(camera_, 4096, 3, &fd);
    books_.remove_client(camera_, kernel_.counter());
    ASSERT_EQ(books_.orphans().size(), 1u);

    kernel_.set(fd, 2);
    EXPECT_EQ(release_now(pid_t{200}), 0u);
    EXPECT_EQ(books_.orphans().begin()->second.references, 2) << "another pid's orphans are left alone";
    EXPECT_EQ(release_now(pid_t{100}), 0u);
    EXPECT_EQ(books_.orphans().begin()->second.references, 1);

    kernel_.set(fd, 1);
    EXPECT_EQ(release_now(std::nullopt), 1u);
    EXPECT_TRUE(books_.orphans().empty());
}

TEST_F(ReleaseDetection, AnUncountableBufferOfALeavingClientIsKeptAsAnOrphan)
{
    int fd = -1;
    delivered_buffer(camera_, 4096, -EMFILE, &fd);
    books_.remove_client(camera_, kernel_.counter());

    ASSERT_EQ(books_.orphans().size(), 1u);
    EXPECT_EQ(books_.orphans().begin()->second.references, -1);
    kernel_.set(fd, 1);
    EXPECT_EQ(release_all(), 1u);
    EXPECT_TRUE(books_.orphans().empty());
}

TEST_F(ReleaseDetection, ABufferInFlightWhenItsClientLeavesIsDropped)
{
    int fd = -1;
    UniqueFD buffer = kernel_.buffer(1);
    fd = buffer.get();
    books_.add_buffer(camera_, kHeap, 4096, std::move(buffer), kDmaBuf);

    books_.remove_client(camera_, kernel_.counter());
    EXPECT_TRUE(books_.orphans().empty());
    EXPECT_EQ(books_.heap_usage(kHeap).bytes, 0u);
    EXPECT_FALSE(is_open(fd));
}

} // namespace
} // namespace ionsvc
