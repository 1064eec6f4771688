// SPDX-License-Identifier: MIT
// /sys/kernel/debug/ion: who holds how much of which heap, per heap and per
// client, and buffers that outlived their client.
#include <sys/prctl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <ionsvc/fd_passing.h>

#include "vm_helpers.h"

namespace ionsvc::vmtest {
namespace {

class DebugfsHeaps : public IonVmTest
{
};

TEST_F(DebugfsHeaps, ShowThisProcessWithItsExactBytesInEachHeap)
{
    const pid_t pid = ::getpid();
    const std::string comm = this_process_comm();
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    // Two buffers in the system heap add up in one row.
    const std::array<std::uint64_t, 3> held = {64 * KiB + 8 * KiB, 1 * MiB, 4 * MiB};
    std::vector<UniqueFD> buffers;
    using Request = std::pair<Heap, std::uint64_t>;
    for (const auto &[heap, len] : {Request{kSystemHeap, 64 * KiB}, Request{kSystemHeap, 5000},
                                    Request{kContigHeap, 1 * MiB},
                                    Request{kCarveoutHeap, 4 * MiB}}) {
        AllocationResult buffer = allocate(ion.fd.get(), len, mask_of(heap));
        ASSERT_EQ(buffer.error, kSuccess) << heap.name;
        buffers.push_back(std::move(buffer.fd));
    }

    for (std::size_t i = 0; i < kAllHeaps.size(); ++i) {
        const HeapView view = read_heap_view(kAllHeaps[i]);
        ASSERT_TRUE(is_parsed(view));
        ASSERT_EQ(view.clients.size(), 1u) << view.text;
        EXPECT_EQ(view.clients[0].comm, comm) << view.text;
        EXPECT_EQ(view.clients[0].pid, pid) << view.text;
        EXPECT_EQ(view.clients[0].size, held[i]) << view.text;
        EXPECT_TRUE(view.orphans.empty()) << view.text;
        EXPECT_EQ(view.total_orphaned, 0u) << view.text;
        EXPECT_EQ(view.total, held[i]) << view.text;
    }

    // A second client of this process holding system memory is a second
    // row; the contiguous heap, where it holds nothing, does not list it.
    auto second = open_ion();
    ASSERT_EQ(second.error, kSuccess);
    AllocationResult more = allocate(second.fd.get(), 4 * KiB, mask_of(kSystemHeap));
    ASSERT_EQ(more.error, kSuccess);
    const HeapView system = read_heap_view(kSystemHeap);
    ASSERT_TRUE(is_parsed(system));
    EXPECT_EQ(system.rows_of(pid), (std::vector<std::uint64_t>{4 * KiB, held[0]})) << system.text;
    EXPECT_EQ(system.total, held[0] + 4 * KiB) << system.text;
    const HeapView contig = read_heap_view(kContigHeap);
    ASSERT_TRUE(is_parsed(contig));
    EXPECT_EQ(contig.rows_of(pid), (std::vector<std::uint64_t>{held[1]})) << contig.text;

    // Freed buffers leave the rows and the totals.
    buffers.clear();
    more.fd.reset();
    for (const Heap &heap : kAllHeaps) {
        const HeapView view = read_heap_view(heap);
        ASSERT_TRUE(is_parsed(view));
        EXPECT_TRUE(view.clients.empty()) << view.text;
        EXPECT_EQ(view.total, 0u) << view.text;
    }
}

class DebugfsClients : public IonVmTest
{
};

TEST_F(DebugfsClients, ShowAFileForThisClientWithItsBytesInEachHeap)
{
    const pid_t pid = ::getpid();
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    ASSERT_EQ(client_serials(pid), std::vector<unsigned>{0});

    ClientView view = read_client_view(pid, 0);
    ASSERT_TRUE(is_parsed(view));
    EXPECT_TRUE(view.rows.empty()) << view.text;

    AllocationResult a = allocate(ion.fd.get(), 64 * KiB, mask_of(kSystemHeap));
    AllocationResult b = allocate(ion.fd.get(), 128 * KiB, mask_of(kSystemHeap));
    AllocationResult c = allocate(ion.fd.get(), 2 * MiB, mask_of(kContigHeap));
    ASSERT_EQ(a.error, kSuccess);
    ASSERT_EQ(b.error, kSuccess);
    ASSERT_EQ(c.error, kSuccess);

    view = read_client_view(pid, 0);
    ASSERT_TRUE(is_parsed(view));
    EXPECT_EQ(view.rows.size(), 2u) << view.text;
    EXPECT_EQ(view.bytes_in(kSystemHeap), std::optional<std::uint64_t>{192 * KiB}) << view.text;
    EXPECT_EQ(view.bytes_in(kContigHeap), std::optional<std::uint64_t>{2 * MiB}) << view.text;
    EXPECT_EQ(view.bytes_in(kCarveoutHeap), std::nullopt) << view.text;

    c.fd.reset();
    view = read_client_view(pid, 0);
    ASSERT_TRUE(is_parsed(view));
    EXPECT_EQ(view.bytes_in(kContigHeap), std::nullopt) << view.text;
    EXPECT_EQ(view.bytes_in(kSystemHeap), std::optional<std::uint64_t>{192 * KiB}) << view.text;
}

TEST_F(DebugfsClients, EachNewClientGetsTheSerialAfterTheHighestLiveOne)
{
    const pid_t pid = ::getpid();
    auto first = open_ion();
    ASSERT_EQ(first.error, kSuccess);
    EXPECT_EQ(client_serials(pid), std::vector<unsigned>{0});
    auto second = open_ion();
    ASSERT_EQ(second.error, kSuccess);
    EXPECT_EQ(client_serials(pid), (std::vector<unsigned>{0, 1}));

    // Not the lowest free serial: one past the highest live one.
    first.fd.reset();
    EXPECT_EQ(client_serials(pid), std::vector<unsigned>{1});
    auto third = open_ion();
    ASSERT_EQ(third.error, kSuccess);
    EXPECT_EQ(client_serials(pid), (std::vector<unsigned>{1, 2}));

    // With none live, numbering starts again at 0.
    second.fd.reset();
    third.fd.reset();
    EXPECT_TRUE(client_serials(pid).empty());
    auto fourth = open_ion();
    ASSERT_EQ(fourth.error, kSuccess);
    EXPECT_EQ(client_serials(pid), std::vector<unsigned>{0});
}

TEST_F(DebugfsClients, TheFileDisappearsWhenTheClientCloses)
{
    const pid_t pid = ::getpid();
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    // Even while a buffer it allocated lives on.
    AllocationResult buffer = allocate(ion.fd.get(), 64 * KiB, mask_of(kSystemHeap));
    ASSERT_EQ(buffer.error, kSuccess);
    ASSERT_TRUE(path_exists(client_view_path(pid, 0)));
    ion.fd.reset();
    EXPECT_FALSE(path_exists(client_view_path(pid, 0)));
    EXPECT_TRUE(client_serials(pid).empty());
}

// ---------------------------------------------------------------- orphans

class DebugfsOrphans : public IonVmTest
{
};

constexpr const char *kChildComm = "ion-orphan-kid";
constexpr std::uint64_t kOrphanSize = 192 * KiB;

// A child under its own name opens /dev/ion, allocates, sends the dma-buf
// here, closes its client and exits. Returns the fd; child_pid is its pid.
UniqueFD receive_orphan(pid_t &child_pid)
{
    auto sockets = socket_pair();
    EXPECT_EQ(sockets.error, kSuccess);
    ChildProcess child([&] {
        sockets.first.reset();
        if (::prctl(PR_SET_NAME, kChildComm) != 0)
            return 2;
        auto ion = open_ion();
        if (ion.error != kSuccess)
            return 3;
        AllocationResult buffer = allocate(ion.fd.get(), kOrphanSize, mask_of(kSystemHeap));
        if (buffer.error != kSuccess)
            return 4;
        const int lent[] = {buffer.fd.get()};
        return send_packet(sockets.second.get(), {}, lent) < 0 ? 5 : 0;
    });
    child_pid = child.pid();
    sockets.second.reset();
    std::byte nothing[1];
    auto received = receive_packet(sockets.first.get(), nothing, 1);
    EXPECT_EQ(child.wait(), 0) << "2: prctl, 3: open, 4: allocate, 5: send";
    if (received.status != 0 || received.fds.size() != 1) {
        ADD_FAILURE() << "no dma-buf from the child (status " << received.status << ")";
        return UniqueFD{};
    }
    return std::move(received.fds[0]);
}

TEST_F(DebugfsOrphans, ABufferWhoseClientExitedIsListedWithThatClientsPidAndComm)
{
    pid_t child_pid = 0;
    UniqueFD orphan = receive_orphan(child_pid);
    ASSERT_TRUE(orphan.is_valid());

    const HeapView view = read_heap_view(kSystemHeap);
    ASSERT_TRUE(is_parsed(view));
    EXPECT_TRUE(view.clients.empty()) << "nobody's client holds it any more\n" << view.text;
    ASSERT_EQ(view.orphans.size(), 1u) << view.text;
    EXPECT_EQ(view.orphans[0].comm, kChildComm) << view.text;
    EXPECT_EQ(view.orphans[0].pid, child_pid) << view.text;
    EXPECT_EQ(view.orphans[0].size, kOrphanSize) << view.text;
    EXPECT_EQ(view.orphans[0].vmaps, 0) << view.text;
    EXPECT_GE(view.orphans[0].refs, 1) << view.text;
    EXPECT_EQ(view.total_orphaned, kOrphanSize) << view.text;
    EXPECT_EQ(view.total, kOrphanSize) << view.text;
    EXPECT_TRUE(client_serials(child_pid).empty()) << "the child's client file is still there";
}

TEST_F(DebugfsOrphans, AnOrphanIsGoneOnceItsLastFdCloses)
{
    pid_t child_pid = 0;
    UniqueFD orphan = receive_orphan(child_pid);
    ASSERT_TRUE(orphan.is_valid());
    orphan.reset();

    const HeapView view = read_heap_view(kSystemHeap);
    ASSERT_TRUE(is_parsed(view));
    EXPECT_TRUE(view.orphans.empty()) << view.text;
    EXPECT_EQ(view.total_orphaned, 0u) << view.text;
    EXPECT_EQ(view.total, 0u) << view.text;
}

TEST_F(DebugfsOrphans, AMappingAloneKeepsAnOrphanUntilItIsUnmapped)
{
    const pid_t pid = ::getpid();
    Mapping mapping;
    {
        auto ion = open_ion();
        ASSERT_EQ(ion.error, kSuccess);
        AllocationResult buffer = allocate(ion.fd.get(), 3 * kPageSize, mask_of(kContigHeap));
        ASSERT_EQ(buffer.error, kSuccess);
        mapping = Mapping::map(buffer.fd.get(), 3 * kPageSize);
        ASSERT_TRUE(mapping.is_valid()) << to_string(mapping.error());
    }
    HeapView view = read_heap_view(kContigHeap);
    ASSERT_TRUE(is_parsed(view));
    ASSERT_EQ(view.orphans.size(), 1u) << view.text;
    EXPECT_EQ(view.orphans[0].pid, pid) << view.text;
    EXPECT_EQ(view.orphans[0].size, 3 * kPageSize) << view.text;
    EXPECT_EQ(view.total_orphaned, 3 * kPageSize) << view.text;
    EXPECT_EQ(view.total, 3 * kPageSize) << view.text;

    mapping.reset();
    view = read_heap_view(kContigHeap);
    ASSERT_TRUE(is_parsed(view));
    EXPECT_TRUE(view.orphans.empty()) << view.text;
    EXPECT_EQ(view.total, 0u) << view.text;
}

} // namespace
} // namespace ionsvc::vmtest
