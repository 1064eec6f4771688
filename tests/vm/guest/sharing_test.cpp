// SPDX-License-Identifier: MIT
// ION buffers shared between processes, and what their mappings show.
#include <fcntl.h>
#include <linux/dma-buf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include <ionsvc/fd_passing.h>

#include "vm_helpers.h"

namespace ionsvc::vmtest {
namespace {

constexpr std::size_t kShared = 1 * MiB;


class Sharing : public IonVmTest
{
};

TEST_F(Sharing, APatternWrittenThroughMmapIsReadByAForkedChildAndBack)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    for (const Heap &heap : kAllHeaps) {
        SCOPED_TRACE(heap.name);
        AllocationResult buffer = allocate(ion.fd.get(), kShared, mask_of(heap), ION_FLAG_CACHED);
        ASSERT_EQ(buffer.error, kSuccess);
        const int fd = buffer.fd.get();
        const Mapping mapping = Mapping::map(fd, kShared);
        ASSERT_TRUE(mapping.is_valid()) << to_string(mapping.error());
        ASSERT_TRUE(write_pattern_through_mmap(fd, kShared, 1));

        // The child reads through the mapping it inherited and through one
        // of its own, then answers in the second half.
        ChildProcess child([&] {
            const Mapping own = Mapping::map(fd, kShared, 0, PROT_READ | PROT_WRITE);
            if (!own.is_valid())
                return 2;
            if (!check_pattern(own.bytes(), 0, 1).empty())
                return 3;
            if (!check_pattern(mapping.bytes(), 0, 1).empty())
                return 4;
            CpuAccess access(fd, DMA_BUF_SYNC_WRITE);
            fill_pattern(own.bytes().subspan(kShared / 2), kShared / 2, 2);
            return access.finish() == kSuccess ? 0 : 5;
        });
        ASSERT_EQ(child.wait(), 0) << "2: mmap, 3/4: pattern (own/inherited mapping), 5: sync";

        CpuAccess access(fd, DMA_BUF_SYNC_READ);
        EXPECT_EQ(check_pattern(mapping.bytes().first(kShared / 2), 0, 1), "");
        EXPECT_EQ(check_pattern(mapping.bytes().subspan(kShared / 2), kShared / 2, 2), "");
    }
}

// Runs this executable again as the hidden fd reader, its socket on fd 3.
int exec_reader(int socket)
{
    if (socket == kReaderSocketFd) {
        if (::fcntl(socket, F_SETFD, 0) != 0)
            return 30;
    } else if (::dup2(socket, kReaderSocketFd) != kReaderSocketFd) {
        return 31;
    }
    ::execl("/proc/self/exe", "ion_vm_test", kReaderOption, static_cast<char *>(nullptr));
    return 32;
}

TEST_F(Sharing, AnUnrelatedProcessReadsThePatternFromAnFdPassedOverASocket)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    for (const Heap &heap : kAllHeaps) {
        SCOPED_TRACE(heap.name);
        AllocationResult buffer = allocate(ion.fd.get(), kShared, mask_of(heap));
        ASSERT_EQ(buffer.error, kSuccess);
        ASSERT_TRUE(write_pattern_through_mmap(buffer.fd.get(), kShared, 3));

        auto sockets = socket_pair();
        ASSERT_EQ(sockets.error, kSuccess);
        // A new program image: it shares nothing with us but the socket.
        ChildProcess reader([&] { return exec_reader(sockets.second.get()); });
        sockets.second.reset();

        const ReaderRequest request{.size = kShared, .seed = 3};
        const int lent[] = {buffer.fd.get()};
        ASSERT_EQ(send_packet(sockets.first.get(), std::as_bytes(std::span{&request, 1}), lent),
                  static_cast<ssize_t>(sizeof request));
        std::byte answer[1];
        const auto received = receive_packet(sockets.first.get(), answer, 0);
        EXPECT_EQ(received.status, 1);
        EXPECT_EQ(answer[0], std::byte{0}) << "the reader saw a different pattern";
        EXPECT_EQ(reader.wait(), 0) << "see the reader's stderr; 30-32: exec failed";
    }
}

TEST_F(Sharing, TheBufferOutlivesTheProcessThatAllocatedIt)
{
    auto sockets = socket_pair();
    ASSERT_EQ(sockets.error, kSuccess);
    // The exporter allocates, fills, sends the fd, closes /dev/ion and
    // exits; only then is the buffer mapped here.
    ChildProcess exporter([&] {
        sockets.first.reset();
        auto ion = open_ion();
        if (ion.error != kSuccess)
            return 2;
        AllocationResult buffer = allocate(ion.fd.get(), kShared, mask_of(kSystemHeap));
        if (buffer.error != kSuccess)
            return 3;
        if (!write_pattern_through_mmap(buffer.fd.get(), kShared, 4))
            return 4;
        const int lent[] = {buffer.fd.get()};
        if (send_packet(sockets.second.get(), {}, lent) < 0)
            return 5;
        return 0;
    });
    const pid_t exporter_pid = exporter.pid();
    sockets.second.reset();

    std::byte nothing[1];
    auto received = receive_packet(sockets.first.get(), nothing, 1);
    ASSERT_EQ(received.status, 0);
    ASSERT_EQ(received.fds.size(), 1u);
    ASSERT_EQ(exporter.wait(), 0) << "2: open, 3: allocate, 4: write, 5: send";
    // Its client is gone with it.
    EXPECT_TRUE(client_serials(exporter_pid).empty());

    const int fd = received.fds[0].get();
    EXPECT_EQ(dma_buf_size(fd), static_cast<off_t>(kShared));
    EXPECT_TRUE(holds_pattern_through_mmap(fd, kShared, 4));
}

// ---------------------------------------------------------------- mmap

class Mmap : public IonVmTest
{
};

TEST_F(Mmap, UnmappingTheMiddlePagesLeavesTheOuterPagesIntact)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    for (const Heap &heap : kAllHeaps) {
        SCOPED_TRACE(heap.name);
        AllocationResult buffer = allocate(ion.fd.get(), 4 * kPageSize, mask_of(heap));
        ASSERT_EQ(buffer.error, kSuccess);
        ASSERT_TRUE(write_pattern_through_mmap(buffer.fd.get(), 4 * kPageSize, 5));
        const Mapping mapping = Mapping::map(buffer.fd.get(), 4 * kPageSize);
        ASSERT_TRUE(mapping.is_valid()) << to_string(mapping.error());

        ASSERT_EQ(::munmap(mapping.data() + kPageSize, 2 * kPageSize), 0)
            << to_string(last_errno());
        EXPECT_EQ(check_pattern(mapping.bytes().first(kPageSize), 0, 5), "");
        EXPECT_EQ(check_pattern(mapping.bytes().subspan(3 * kPageSize), 3 * kPageSize, 5), "");

        // The hole maps again, at its own offset.
        const Mapping middle = Mapping::map(buffer.fd.get(), 2 * kPageSize, kPageSize);
        ASSERT_TRUE(middle.is_valid()) << to_string(middle.error());
        EXPECT_EQ(check_pattern(middle.bytes(), kPageSize, 5), "");
    }
}

TEST_F(Mmap, AnOffsetMappingShowsThePagesAtThatOffset)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    for (const Heap &heap : kAllHeaps) {
        SCOPED_TRACE(heap.name);
        AllocationResult buffer = allocate(ion.fd.get(), 4 * kPageSize, mask_of(heap));
        ASSERT_EQ(buffer.error, kSuccess);
        ASSERT_TRUE(write_pattern_through_mmap(buffer.fd.get(), 4 * kPageSize, 6));

        const Mapping second = Mapping::map(buffer.fd.get(), kPageSize, kPageSize);
        ASSERT_TRUE(second.is_valid()) << to_string(second.error());
        EXPECT_EQ(check_pattern(second.bytes(), kPageSize, 6), "");
        const Mapping last = Mapping::map(buffer.fd.get(), kPageSize, 3 * kPageSize);
        ASSERT_TRUE(last.is_valid()) << to_string(last.error());
        EXPECT_EQ(check_pattern(last.bytes(), 3 * kPageSize, 6), "");

        // A write through the offset mapping lands on that page only.
        std::memset(second.data(), 0x5a, kPageSize);
        const Mapping whole = Mapping::map(buffer.fd.get(), 4 * kPageSize);
        ASSERT_TRUE(whole.is_valid()) << to_string(whole.error());
        EXPECT_EQ(check_pattern(whole.bytes().first(kPageSize), 0, 6), "");
        EXPECT_EQ(whole.data()[kPageSize], std::byte{0x5a});
        EXPECT_EQ(whole.data()[2 * kPageSize - 1], std::byte{0x5a});
        EXPECT_EQ(check_pattern(whole.bytes().subspan(2 * kPageSize), 2 * kPageSize, 6), "");
    }
}

TEST_F(Mmap, AMappingPastTheEndIsInvalid)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    for (const Heap &heap : kAllHeaps) {
        SCOPED_TRACE(heap.name);
        // 5000 bytes: two pages.
        AllocationResult buffer = allocate(ion.fd.get(), 5000, mask_of(heap));
        ASSERT_EQ(buffer.error, kSuccess);
        const int fd = buffer.fd.get();
        EXPECT_TRUE(Mapping::map(fd, 2 * kPageSize).is_valid());
        EXPECT_EQ(Mapping::map(fd, 3 * kPageSize).error(), Errno{EINVAL});
        EXPECT_EQ(Mapping::map(fd, 2 * kPageSize, kPageSize).error(), Errno{EINVAL});
        EXPECT_EQ(Mapping::map(fd, kPageSize, 2 * kPageSize).error(), Errno{EINVAL});
        EXPECT_EQ(Mapping::map(fd, kPageSize, 64 * kPageSize).error(), Errno{EINVAL});
    }
}

class DmaBufSync : public IonVmTest
{
};

TEST_F(Mmap, APrivateMappingIsInvalid)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    for (const Heap &heap : kAllHeaps) {
        SCOPED_TRACE(heap.name);
        AllocationResult buffer = allocate(ion.fd.get(), 2 * kPageSize, mask_of(heap));
        ASSERT_EQ(buffer.error, kSuccess);
        // Copy-on-write of device memory has no meaning; read-only too.
        for (int prot : {PROT_READ | PROT_WRITE, PROT_READ}) {
            void *address = ::mmap(nullptr, 2 * kPageSize, prot, MAP_PRIVATE, buffer.fd.get(), 0);
            const int saved_errno = errno;
            if (address != MAP_FAILED)
                ::munmap(address, 2 * kPageSize);
            EXPECT_EQ(address, MAP_FAILED);
            EXPECT_EQ(saved_errno, EINVAL);
        }
    }
}

TEST_F(DmaBufSync, StartsAndEndsWithNoDeviceAttached)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    for (const Heap &heap : kAllHeaps) {
        for (const std::uint32_t flags :
             {0u, std::uint32_t{ION_FLAG_CACHED},
              std::uint32_t{ION_FLAG_CACHED | ION_FLAG_CACHED_NEEDS_SYNC}}) {
            SCOPED_TRACE(std::string{heap.name} + ", flags " + std::to_string(flags));
            AllocationResult buffer = allocate(ion.fd.get(), 64 * KiB, mask_of(heap), flags);
            ASSERT_EQ(buffer.error, kSuccess);
            for (const std::uint64_t direction :
                 {DMA_BUF_SYNC_READ, DMA_BUF_SYNC_WRITE, DMA_BUF_SYNC_RW}) {
                EXPECT_EQ(dma_buf_sync(buffer.fd.get(), DMA_BUF_SYNC_START | direction), kSuccess);
                EXPECT_EQ(dma_buf_sync(buffer.fd.get(), DMA_BUF_SYNC_END | direction), kSuccess);
            }
        }
    }
}

} // namespace
} // namespace ionsvc::vmtest
