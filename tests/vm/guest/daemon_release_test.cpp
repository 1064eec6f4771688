// SPDX-License-Identifier: MIT
// What ionsvcd's books do with buffers its clients let go of without a
// Free: a dma-buf leaves them once the kernel counts no holder but the
// daemon (it reads its own fdinfo before every stats reply); a memfd, of
// which the kernel tells nothing, stays until Free or disconnect; and a
// dma-buf whose client left while another process holds it is an orphan.
#include <unistd.h>

#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "daemon_e2e.h"

namespace ionsvc::vmtest {
namespace {

// The ION heap behind a daemon heap name, if it is one.
const Heap *ion_heap_of(const std::string &name)
{
    for (const Heap &heap : kAllHeaps) {
        if (name == "ion:" + std::string{heap.name})
            return &heap;
    }
    return nullptr;
}

class DaemonReleaseDetection : public DaemonTest
{
};

TEST_F(DaemonReleaseDetection, ForgetsADmaBufWhoseLastFdClosedWithoutFreeButNotAMappedOne)
{
    constexpr std::uint64_t kClosed = 192 * KiB;
    constexpr std::uint64_t kMapped = 128 * KiB;
    const std::vector<ServedHeap> heaps = served_dma_buf_heaps();
    ASSERT_FALSE(heaps.empty());
    for (const ServedHeap &heap : heaps) {
        SCOPED_TRACE("heap " + heap.name);
        // Stays connected throughout: nothing but the closes tells the
        // daemon anything.
        NobodyProcess client("e2e-closer", [&](Channel &parent) -> std::string {
            auto daemon_client = connect("closer");
            if (!daemon_client)
                return error_text("connect", daemon_client.error());
            auto closed = daemon_client->allocate({.heap = heap.name, .size = kClosed});
            auto mapped = daemon_client->allocate({.heap = heap.name, .size = kMapped});
            if (!closed || !mapped)
                return error_text("allocate", closed ? mapped.error() : closed.error());
            Mapping mapping = Mapping::map(mapped->front().fd(), kMapped);
            if (!mapping.is_valid())
                return "mmap: " + to_string(mapping.error());
            if (std::string problem = parent.send("allocated"); !problem.empty())
                return problem;
            if (std::string problem = parent.expect("close"); !problem.empty())
                return problem;
            closed->front().take_fd().reset();
            mapped->front().take_fd().reset();
            if (std::string problem = parent.send("closed"); !problem.empty())
                return problem;
            if (std::string problem = parent.expect("unmap"); !problem.empty())
                return problem;
            mapping.reset();
            if (std::string problem = parent.send("unmapped"); !problem.empty())
                return problem;
            return parent.expect("exit");
        });
        const pid_t pid = client.pid();
        const Heap *ion = ion_heap_of(heap.name);
        // What the kernel still holds of the heap (ion only: the daemon's
        // reference, dropped, frees the buffer).
        const auto expect_kernel_holds = [&](std::uint64_t bytes) {
            if (ion == nullptr)
                return;
            const HeapView view = read_heap_view(*ion);
            ASSERT_TRUE(is_parsed(view));
            EXPECT_EQ(view.total, bytes) << view.text;
        };

        ASSERT_EQ(client.channel().expect("allocated"), "");
        json now = stats_json();
        EXPECT_EQ(pid_bytes_in(now, pid, heap.name), kClosed + kMapped) << pid_entry_text(now, pid);
        EXPECT_EQ(pid_buffers_in(now, pid, heap.name), 2u) << pid_entry_text(now, pid);

        ASSERT_EQ(client.channel().send("close"), "");
        ASSERT_EQ(client.channel().expect("closed"), "");
        now = stats_json();
        EXPECT_EQ(pid_bytes_in(now, pid, heap.name), kMapped)
            << "the closed buffer must be gone, the mapped one still counted:\n"
            << pid_entry_text(now, pid);
        EXPECT_EQ(pid_buffers_in(now, pid, heap.name), 1u) << pid_entry_text(now, pid);
        EXPECT_EQ(live_bytes_of(heaps_json(), heap.name), kMapped);
        expect_kernel_holds(kMapped);

        ASSERT_EQ(client.channel().send("unmap"), "");
        ASSERT_EQ(client.channel().expect("unmapped"), "");
        now = stats_json();
        EXPECT_EQ(pid_bytes_in(now, pid, heap.name), 0u) << pid_entry_text(now, pid);
        EXPECT_EQ(pid_buffers_in(now, pid, heap.name), 0u) << pid_entry_text(now, pid);
        EXPECT_EQ(live_bytes_of(heaps_json(), heap.name), 0u);
        expect_kernel_holds(0);

        EXPECT_EQ(client.channel().send("exit"), "");
        EXPECT_TRUE(client.finished());
    }
}

TEST_F(DaemonReleaseDetection, KeepsAMemfdClosedWithoutFreeUntilItIsFreedOrItsClientLeaves)
{
    constexpr std::uint64_t kFirst = 256 * KiB;
    constexpr std::uint64_t kSecond = 64 * KiB;
    NobodyProcess client("e2e-memfd", [&](Channel &parent) -> std::string {
        std::optional<bufclient::Client> daemon_client;
        if (auto connected = connect("memfd-user"); connected)
            daemon_client.emplace(std::move(*connected));
        else
            return error_text("connect", connected.error());
        auto first = daemon_client->allocate({.heap = "memfd", .size = kFirst});
        auto second = daemon_client->allocate({.heap = "memfd", .size = kSecond});
        if (!first || !second)
            return error_text("allocate", first ? second.error() : first.error());
        // Never mapped, and now not held by this process at all.
        first->front().take_fd().reset();
        second->front().take_fd().reset();
        if (std::string problem = parent.send("closed"); !problem.empty())
            return problem;
        if (std::string problem = parent.expect("free"); !problem.empty())
            return problem;
        if (auto freed = daemon_client->free(first->front()); !freed)
            return error_text("free", freed.error());
        // A round trip: the daemon has seen the Free.
        if (auto listed = daemon_client->list_heaps(); !listed)
            return error_text("list_heaps", listed.error());
        if (std::string problem = parent.send("freed"); !problem.empty())
            return problem;
        if (std::string problem = parent.expect("leave"); !problem.empty())
            return problem;
        daemon_client.reset();
        if (std::string problem = parent.send("left"); !problem.empty())
            return problem;
        return parent.expect("exit");
    });
    const pid_t pid = client.pid();

    ASSERT_EQ(client.channel().expect("closed"), "");
    json now = stats_json();
    EXPECT_EQ(pid_bytes_in(now, pid, "memfd"), kFirst + kSecond) << pid_entry_text(now, pid);
    EXPECT_EQ(pid_buffers_in(now, pid, "memfd"), 2u) << pid_entry_text(now, pid);

    ASSERT_EQ(client.channel().send("free"), "");
    ASSERT_EQ(client.channel().expect("freed"), "");
    now = stats_json();
    EXPECT_EQ(pid_bytes_in(now, pid, "memfd"), kSecond) << pid_entry_text(now, pid);
    EXPECT_EQ(live_bytes_of(heaps_json(), "memfd"), kSecond);

    ASSERT_EQ(client.channel().send("leave"), "");
    ASSERT_EQ(client.channel().expect("left"), "");
    ASSERT_TRUE(disconnect_seen(pid));
    EXPECT_EQ(live_bytes_of(heaps_json(), "memfd"), 0u);

    EXPECT_EQ(client.channel().send("exit"), "");
    EXPECT_TRUE(client.finished());
}

// ---------------------------------------------------------------- orphans

class DaemonOrphans : public DaemonTest
{
};

TEST_F(DaemonOrphans, ADmaBufWhoseClientLeftIsListedUnderItsHeapUntilItsLastHolderClosesIt)
{
    constexpr std::uint64_t kSize = 320 * KiB;
    const std::vector<ServedHeap> heaps = served_dma_buf_heaps();
    ASSERT_FALSE(heaps.empty());
    for (const ServedHeap &heap : heaps) {
        SCOPED_TRACE("heap " + heap.name);
        ChannelPair link = channel_pair();
        // Allocates, passes the buffer on and exits without a Free.
        NobodyProcess allocator("e2e-orphaner", [&](Channel &) -> std::string {
            link.second.close();
            auto client = connect("orphaner");
            if (!client)
                return error_text("connect", client.error());
            auto buffers = client->allocate({.heap = heap.name, .size = kSize});
            if (!buffers)
                return error_text("allocate", buffers.error());
            const int lent[] = {buffers->front().fd()};
            if (std::string problem = link.first.send("buffer", lent); !problem.empty())
                return problem;
            return link.first.expect("got it");
        });
        // Never a client of the daemon; it only holds the fd.
        NobodyProcess holder("e2e-keeper", [&](Channel &parent) -> std::string {
            link.first.close();
            Channel::Message message = link.second.receive();
            if (!message.error.empty())
                return "waiting for the buffer: " + message.error;
            if (message.fds.size() != 1)
                return "got " + std::to_string(message.fds.size()) + " fds instead of one";
            if (std::string problem = link.second.send("got it"); !problem.empty())
                return problem;
            if (std::string problem = parent.send("holding"); !problem.empty())
                return problem;
            if (std::string problem = parent.expect("close"); !problem.empty())
                return problem;
            message.fds.clear();
            if (std::string problem = parent.send("closed"); !problem.empty())
                return problem;
            return parent.expect("exit");
        });
        link.first.close();
        link.second.close();
        ASSERT_EQ(holder.channel().expect("holding"), "");
        const pid_t allocator_pid = allocator.pid();
        ASSERT_TRUE(allocator.finished());
        ASSERT_TRUE(disconnect_seen(allocator_pid));

        json now = ctl_json({"stats", "--view", "heaps"});
        ASSERT_TRUE(now.is_object() && now.contains("heaps")) << now.dump(2);
        const json *entry = find_by(now["heaps"], "name", heap.name);
        ASSERT_NE(entry, nullptr) << now.dump(2);
        const json orphaned = entry->value("orphaned", json::array());
        const json *orphan = find_by(orphaned, "pid", allocator_pid);
        ASSERT_NE(orphan, nullptr)
            << "no orphan of pid " << allocator_pid << ":\n" << entry->dump(2);
        EXPECT_EQ(orphan->value("comm", ""), allocator.comm()) << orphan->dump();
        EXPECT_EQ(orphan->value("size", std::uint64_t{0}), kSize) << orphan->dump();
        EXPECT_EQ(orphaned.size(), 1u) << entry->dump(2);
        EXPECT_EQ(entry->value("total_bytes", std::uint64_t{0}), kSize) << entry->dump(2);

        ASSERT_EQ(holder.channel().send("close"), "");
        ASSERT_EQ(holder.channel().expect("closed"), "");
        now = ctl_json({"stats", "--view", "heaps"});
        entry = find_by(now["heaps"], "name", heap.name);
        ASSERT_NE(entry, nullptr) << now.dump(2);
        EXPECT_TRUE(entry->value("orphaned", json::array()).empty()) << entry->dump(2);
        EXPECT_EQ(entry->value("total_bytes", std::uint64_t{1}), 0u) << entry->dump(2);

        EXPECT_EQ(holder.channel().send("exit"), "");
        EXPECT_TRUE(holder.finished());
    }
}

} // namespace
} // namespace ionsvc::vmtest
