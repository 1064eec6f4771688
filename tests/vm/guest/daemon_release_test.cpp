// SPDX-License-Identifier: MIT
// What ionsvcd's books do with buffers its clients let go of without a
// Free: a dma-buf leaves them once the kernel counts no holder but the
// daemon (it reads its own fdinfo before every stats reply); a memfd, of
// which the kernel tells nothing, stays until Free or disconnect; and a
// dma-buf whose client left while another process holds it is an orphan.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>

#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "daemon_e2e.h"
#include "raw_connection.h"

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
    // In every dma-buf heap, one buffer it closes and one it closes but
    // keeps mapped. It stays connected throughout: nothing but the closes
    // and the munmaps tells the daemon anything.
    ClientProcess client("e2e-closer", [&](Channel &parent) -> std::string {
        auto daemon_client = connect("closer");
        if (!daemon_client)
            return error_text("connect", daemon_client.error());
        std::vector<bufclient::Buffer> closed, mapped;
        std::vector<Mapping> mappings;
        for (const ServedHeap &heap : heaps) {
            auto one = daemon_client->allocate({.heap = heap.name, .size = kClosed});
            auto other = daemon_client->allocate({.heap = heap.name, .size = kMapped});
            if (!one || !other)
                return error_text("allocate from " + heap.name, one ? other.error() : one.error());
            closed.push_back(std::move(one->front()));
            mapped.push_back(std::move(other->front()));
            mappings.push_back(Mapping::map(mapped.back().fd(), kMapped));
            if (!mappings.back().is_valid())
                return heap.name + ": mmap: " + to_string(mappings.back().error());
        }
        if (std::string problem = parent.send("allocated"); !problem.empty())
            return problem;
        if (std::string problem = parent.expect("close"); !problem.empty())
            return problem;
        for (std::size_t i = 0; i < heaps.size(); ++i) {
            closed[i].take_fd().reset();
            mapped[i].take_fd().reset();
        }
        if (std::string problem = parent.send("closed"); !problem.empty())
            return problem;
        if (std::string problem = parent.expect("unmap"); !problem.empty())
            return problem;
        mappings.clear();
        if (std::string problem = parent.send("unmapped"); !problem.empty())
            return problem;
        return parent.expect("exit");
    });
    const pid_t pid = client.pid();
    // The books of every heap for pid, the heap's live bytes, and what the
    // kernel still holds of it (ion only: a reference the daemon drops
    // frees a buffer nobody else holds).
    const auto expect_everywhere = [&](std::uint64_t bytes, std::uint64_t buffers) {
        const json now = stats_json();
        const json listing = heaps_json();
        for (const ServedHeap &heap : heaps) {
            SCOPED_TRACE("heap " + heap.name);
            EXPECT_EQ(pid_bytes_in(now, pid, heap.name), bytes) << pid_entry_text(now, pid);
            EXPECT_EQ(pid_buffers_in(now, pid, heap.name), buffers) << pid_entry_text(now, pid);
            EXPECT_EQ(live_bytes_of(listing, heap.name), bytes) << listing.dump(2);
            if (const Heap *ion = ion_heap_of(heap.name)) {
                const HeapView view = read_heap_view(*ion);
                ASSERT_TRUE(is_parsed(view));
                EXPECT_EQ(view.total, bytes) << view.text;
            }
        }
    };

    ASSERT_EQ(client.channel().expect("allocated"), "");
    expect_everywhere(kClosed + kMapped, 2);

    // The closed buffer is gone, the mapped one still counted.
    ASSERT_EQ(client.channel().send("close"), "");
    ASSERT_EQ(client.channel().expect("closed"), "");
    expect_everywhere(kMapped, 1);

    ASSERT_EQ(client.channel().send("unmap"), "");
    ASSERT_EQ(client.channel().expect("unmapped"), "");
    expect_everywhere(0, 0);

    EXPECT_EQ(client.channel().send("exit"), "");
    EXPECT_TRUE(client.finished());
}

TEST_F(DaemonReleaseDetection, NeverDropsADmaBufWhoseReplyIsStillOnItsWay)
{
    // While the daemon cannot send a reply (its client reads nothing), the
    // buffers in it are referenced by the daemon alone: the kernel's count
    // says nobody holds them. A stats reply counts afresh, and must not
    // take them for released.
    const std::vector<ServedHeap> heaps = served_dma_buf_heaps();
    ASSERT_FALSE(heaps.empty());
    const std::string &heap = heaps.front().name;
    // Room for every reply's fd in this process.
    rlimit files{};
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &files), 0);
    const rlimit saved = files;
    files.rlim_cur = std::min<rlim_t>(files.rlim_max, 65536);
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &files), 0);

    std::size_t sent = 0;
    std::vector<UniqueFD> held;
    {
        harness::RawConnection raw(socket_path());
        ASSERT_EQ(raw.hello().status(), wire::OK);
        ASSERT_EQ(::fcntl(raw.fd(), F_SETFL, O_NONBLOCK), 0);
        wire::Request request;
        request.mutable_alloc()->set_heap(heap);
        request.mutable_alloc()->set_size(4 * KiB);
        request.mutable_alloc()->set_count(1);
        const std::string packet = request.SerializeAsString();
        // Until the daemon stops reading: it does once a reply to this
        // connection cannot go out, and keeps that reply until it can.
        while (sent < 100000 && raw.send_bytes(packet) > 0)
            ++sent;
        ASSERT_LT(sent, 100000u) << "the daemon kept reading from a client that reads nothing";

        // Counts every buffer's references afresh, the stalled one's too.
        const json stalled = stats_json();
        ASSERT_TRUE(stalled.is_object());

        ASSERT_EQ(::fcntl(raw.fd(), F_SETFL, 0), 0);
        for (std::size_t i = 0; i < sent; ++i) {
            std::vector<UniqueFD> fds;
            const wire::Reply reply = raw.receive(fds);
            ASSERT_EQ(reply.status(), wire::OK) << "reply " << i << ": " << reply.message();
            ASSERT_EQ(fds.size(), 1u) << "reply " << i;
            ASSERT_EQ(dma_buf_size(fds.front().get()), static_cast<off_t>(4 * KiB)) << "reply " << i;
            held.push_back(std::move(fds.front()));
        }
        // Every buffer this process holds is in the books, the one whose
        // reply waited included.
        const json delivered = stats_json();
        EXPECT_EQ(pid_buffers_in(delivered, ::getpid(), heap), sent) << pid_entry_text(delivered, ::getpid());
        EXPECT_EQ(pid_bytes_in(delivered, ::getpid(), heap), sent * 4 * KiB);
    }
    held.clear();
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
}

TEST_F(DaemonReleaseDetection, KeepsAMemfdClosedWithoutFreeUntilItIsFreedOrItsClientLeaves)
{
    constexpr std::uint64_t kFirst = 256 * KiB;
    constexpr std::uint64_t kSecond = 64 * KiB;
    ClientProcess client("e2e-memfd", [&](Channel &parent) -> std::string {
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
    const std::vector<ServedHeap> heaps = served_dma_buf_heaps();
    ASSERT_FALSE(heaps.empty());
    // A size of its own per heap: an orphan shown under the wrong heap shows.
    const auto size_in = [](std::size_t i) { return (256 + 16 * i) * KiB; };
    ChannelPair link = channel_pair();
    // Allocates from every dma-buf heap, passes the buffers on and exits
    // without a Free.
    ClientProcess allocator("e2e-orphaner", [&](Channel &) -> std::string {
        link.second.close();
        auto client = connect("orphaner");
        if (!client)
            return error_text("connect", client.error());
        std::vector<bufclient::Buffer> held;
        std::vector<int> lent;
        for (std::size_t i = 0; i < heaps.size(); ++i) {
            auto buffers = client->allocate({.heap = heaps[i].name, .size = size_in(i)});
            if (!buffers)
                return error_text("allocate from " + heaps[i].name, buffers.error());
            held.push_back(std::move(buffers->front()));
            lent.push_back(held.back().fd());
        }
        if (std::string problem = link.first.send("buffers", lent); !problem.empty())
            return problem;
        return link.first.expect("got them");
    });
    // Never a client of the daemon; it only holds the fds.
    ClientProcess holder("e2e-keeper", [&](Channel &parent) -> std::string {
        link.first.close();
        Channel::Message message = link.second.receive();
        if (!message.error.empty())
            return "waiting for the buffers: " + message.error;
        if (message.fds.size() != heaps.size())
            return "got " + std::to_string(message.fds.size()) + " fds instead of " +
                   std::to_string(heaps.size());
        if (std::string problem = link.second.send("got them"); !problem.empty())
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
    for (std::size_t i = 0; i < heaps.size(); ++i) {
        SCOPED_TRACE("heap " + heaps[i].name);
        const json *entry = find_by(now["heaps"], "name", heaps[i].name);
        ASSERT_NE(entry, nullptr) << now.dump(2);
        const json orphaned = entry->value("orphaned", json::array());
        const json *orphan = find_by(orphaned, "pid", allocator_pid);
        ASSERT_NE(orphan, nullptr)
            << "no orphan of pid " << allocator_pid << ":\n" << entry->dump(2);
        EXPECT_EQ(orphan->value("comm", ""), allocator.comm()) << orphan->dump();
        EXPECT_EQ(orphan->value("size", std::uint64_t{0}), size_in(i)) << orphan->dump();
        EXPECT_EQ(orphaned.size(), 1u) << entry->dump(2);
        EXPECT_EQ(entry->value("live_bytes", std::uint64_t{0}), size_in(i)) << entry->dump(2);
    }

    ASSERT_EQ(holder.channel().send("close"), "");
    ASSERT_EQ(holder.channel().expect("closed"), "");
    now = ctl_json({"stats", "--view", "heaps"});
    ASSERT_TRUE(now.is_object() && now.contains("heaps")) << now.dump(2);
    for (const ServedHeap &heap : heaps) {
        SCOPED_TRACE("heap " + heap.name);
        const json *entry = find_by(now["heaps"], "name", heap.name);
        ASSERT_NE(entry, nullptr) << now.dump(2);
        EXPECT_TRUE(entry->value("orphaned", json::array()).empty()) << entry->dump(2);
        EXPECT_EQ(entry->value("live_bytes", std::uint64_t{1}), 0u) << entry->dump(2);
    }

    EXPECT_EQ(holder.channel().send("exit"), "");
    EXPECT_TRUE(holder.finished());
}

} // namespace
} // namespace ionsvc::vmtest
