// SPDX-License-Identifier: MIT
// ion_simple's buffers as a device driver sees them, through the
// ion_test_importer module: attach, DMA-map, vmap, CPU access.
#include <linux/dma-buf.h>
#include <sys/ioctl.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "vm_helpers.h"

namespace ionsvc::vmtest {
namespace {


// What each mapped attachment reported: the whole buffer, in one segment
// for a physically contiguous heap, in at most one per page otherwise.
::testing::AssertionResult dma_mapping_covers(const ion_test_importer_xfer &xfer,
                                              const Heap &heap, std::uint64_t size)
{
    if (xfer.size != size)
        return ::testing::AssertionFailure() << "dma-buf size " << xfer.size << ", expected "
                                             << size;
    for (std::uint32_t i = 0; i < ION_TEST_IMPORTER_MAX_ATTACHMENTS; ++i) {
        const bool mapped = i < xfer.attachments;
        const std::uint64_t expected_length = mapped ? size : 0;
        if (xfer.dma_len[i] != expected_length)
            return ::testing::AssertionFailure() << "attachment " << i << " maps "
                                                 << xfer.dma_len[i] << " bytes, expected "
                                                 << expected_length;
        const std::uint32_t segments = xfer.dma_segments[i];
        if (!mapped) {
            if (segments != 0)
                return ::testing::AssertionFailure() << "unused attachment " << i
                                                     << " reports segments";
            continue;
        }
        if (heap.contiguous && segments != 1)
            return ::testing::AssertionFailure() << heap.name << " attachment " << i << " has "
                                                 << segments << " DMA segments, expected 1";
        if (segments == 0 || segments > size / kPageSize)
            return ::testing::AssertionFailure() << "attachment " << i << " has " << segments
                                                 << " DMA segments for " << size << " bytes";
    }
    return ::testing::AssertionSuccess();
}

class Importer : public IonVmTest
{
protected:
    void SetUp() override
    {
        IonVmTest::SetUp();
        if (HasFatalFailure())
            return;
        auto opened = open_importer();
        ASSERT_EQ(opened.error, kSuccess) << "/dev/ion_test_importer";
        importer_ = std::move(opened.fd);
        auto ion = open_ion();
        ASSERT_EQ(ion.error, kSuccess);
        ion_ = std::move(ion.fd);
    }
    void TearDown() override
    {
        importer_.reset();
        ion_.reset();
    }

    // Pattern through mmap, read back through the importer, for cached
    // and uncached buffers of several sizes.
    void check_reads_back(const Heap &heap)
    {
        for (const std::uint32_t flags : {0u, std::uint32_t{ION_FLAG_CACHED}}) {
            for (const std::uint64_t size : {4 * KiB, 1 * MiB, 4 * MiB}) {
                SCOPED_TRACE(std::string{heap.name} + ", flags " + std::to_string(flags) +
                             ", size " + std::to_string(size));
                AllocationResult buffer = allocate(ion_.get(), size, mask_of(heap), flags);
                ASSERT_EQ(buffer.error, kSuccess);
                ASSERT_TRUE(write_pattern_through_mmap(buffer.fd.get(), size, size + flags));

                std::vector<std::byte> seen(size);
                const auto read = importer_read(importer_.get(), buffer.fd.get(), 0, seen);
                ASSERT_EQ(read.error, kSuccess);
                EXPECT_TRUE(dma_mapping_covers(read.xfer, heap, size));
                EXPECT_EQ(check_pattern(seen, 0, size + flags), "");
            }
        }
    }

    UniqueFD importer_;
    UniqueFD ion_;
};

TEST_F(Importer, ReadsThePatternWrittenThroughMmapFromTheSystemHeap)
{
    check_reads_back(kSystemHeap);
}

TEST_F(Importer, ReadsThePatternWrittenThroughMmapFromTheContiguousHeap)
{
    check_reads_back(kContigHeap);
}

TEST_F(Importer, ReadsThePatternWrittenThroughMmapFromTheCarveoutHeap)
{
    check_reads_back(kCarveoutHeap);
}

TEST_F(Importer, MapsSeveralAttachmentsAtOnceEachWithTheWholeBuffer)
{
    constexpr std::uint64_t size = 2 * MiB;
    for (const Heap &heap : kAllHeaps) {
        AllocationResult buffer = allocate(ion_.get(), size, mask_of(heap), ION_FLAG_CACHED);
        ASSERT_EQ(buffer.error, kSuccess) << heap.name;
        ASSERT_TRUE(write_pattern_through_mmap(buffer.fd.get(), size, 7));
        for (const std::uint32_t attachments : {2u, 4u}) {
            SCOPED_TRACE(std::string{heap.name} + ", " + std::to_string(attachments) +
                         " attachments");
            std::vector<std::byte> seen(size);
            const auto read =
                importer_read(importer_.get(), buffer.fd.get(), 0, seen, attachments);
            ASSERT_EQ(read.error, kSuccess);
            EXPECT_TRUE(dma_mapping_covers(read.xfer, heap, size));
            // Each device gets its own mapping of the same pages.
            for (std::uint32_t i = 1; i < attachments; ++i)
                EXPECT_EQ(read.xfer.dma_segments[i], read.xfer.dma_segments[0]);
            EXPECT_EQ(check_pattern(seen, 0, 7), "");
        }
    }
}

TEST_F(Importer, ReadsAnUnalignedRangeInsideTheBuffer)
{
    for (const Heap &heap : kAllHeaps) {
        SCOPED_TRACE(heap.name);
        AllocationResult buffer = allocate(ion_.get(), 16 * KiB, mask_of(heap));
        ASSERT_EQ(buffer.error, kSuccess);
        ASSERT_TRUE(write_pattern_through_mmap(buffer.fd.get(), 16 * KiB, 8));
        std::vector<std::byte> seen(5000);
        const auto read = importer_read(importer_.get(), buffer.fd.get(), 4093, seen);
        ASSERT_EQ(read.error, kSuccess);
        EXPECT_EQ(check_pattern(seen, 4093, 8), "");
    }
}

TEST_F(Importer, WhatTheImporterWritesIsSeenThroughMmap)
{
    constexpr std::uint64_t size = 1 * MiB;
    for (const Heap &heap : kAllHeaps) {
        for (const std::uint32_t flags : {0u, std::uint32_t{ION_FLAG_CACHED}}) {
            SCOPED_TRACE(std::string{heap.name} + ", flags " + std::to_string(flags));
            AllocationResult buffer = allocate(ion_.get(), size, mask_of(heap), flags);
            ASSERT_EQ(buffer.error, kSuccess);
            std::vector<std::byte> written(size);
            fill_pattern(written, 0, 9);
            const auto write = importer_write(importer_.get(), buffer.fd.get(), 0, written);
            ASSERT_EQ(write.error, kSuccess);
            EXPECT_TRUE(dma_mapping_covers(write.xfer, heap, size));

            const Mapping mapping = Mapping::map(buffer.fd.get(), size, 0, PROT_READ);
            ASSERT_TRUE(mapping.is_valid()) << to_string(mapping.error());
            CpuAccess access(buffer.fd.get(), DMA_BUF_SYNC_READ);
            ASSERT_EQ(access.started(), kSuccess);
            EXPECT_EQ(check_pattern(mapping.bytes(), 0, 9), "");
        }
    }
}

TEST_F(Importer, RefusesRangesPastTheEndAndMalformedRequests)
{
    AllocationResult buffer = allocate(ion_.get(), 2 * kPageSize, mask_of(kSystemHeap));
    ASSERT_EQ(buffer.error, kSuccess);
    std::vector<std::byte> room(3 * kPageSize);
    const int importer = importer_.get();
    const int fd = buffer.fd.get();

    EXPECT_EQ(importer_read(importer, fd, 0, room).error, Errno{EINVAL});
    EXPECT_EQ(importer_read(importer, fd, kPageSize + 1, std::span{room}.first(kPageSize)).error,
              Errno{EINVAL});
    EXPECT_EQ(importer_read(importer, fd, ~std::uint64_t{0}, std::span{room}.first(2)).error,
              Errno{EINVAL});
    EXPECT_EQ(importer_read(importer, fd, 0, std::span{room}.first(8), 0).error, Errno{EINVAL});
    EXPECT_EQ(importer_read(importer, fd, 0, std::span{room}.first(8),
                            ION_TEST_IMPORTER_MAX_ATTACHMENTS + 1)
                  .error,
              Errno{EINVAL});

    ion_test_importer_xfer reserved{.dmabuf_fd = fd, .attachments = 1};
    reserved.reserved0 = 1;
    EXPECT_EQ(importer_ioctl(importer, ION_TEST_IMPORTER_IOC_READ, reserved).error, Errno{EINVAL});
    reserved.reserved0 = 0;
    reserved.reserved1 = 1;
    EXPECT_EQ(importer_ioctl(importer, ION_TEST_IMPORTER_IOC_READ, reserved).error, Errno{EINVAL});

    // Not a dma-buf, and no file at all.
    EXPECT_EQ(importer_read(importer, ion_.get(), 0, {}).error, Errno{EINVAL});
    EXPECT_EQ(importer_read(importer, -1, 0, {}).error, Errno{EBADF});

    const InaccessiblePage page;
    ASSERT_NE(page.address(), nullptr);
    const ion_test_importer_xfer unreadable_destination{
        .dmabuf_fd = fd, .attachments = 1, .offset = 0, .len = 16,
        .user_buf = reinterpret_cast<std::uintptr_t>(page.address())};
    EXPECT_EQ(importer_ioctl(importer, ION_TEST_IMPORTER_IOC_READ, unreadable_destination).error,
              Errno{EFAULT});

    ion_test_importer_xfer unused{};
    EXPECT_EQ(ioctl_errno(importer, _IOWR(ION_TEST_IMPORTER_IOC_MAGIC, 9, ion_test_importer_xfer),
                          &unused),
              Errno{ENOTTY});

    // None of the refusals left an attachment or a reference behind.
    buffer.fd.reset();
    const HeapView view = read_heap_view(kSystemHeap);
    ASSERT_TRUE(is_parsed(view));
    EXPECT_EQ(view.total, 0u) << view.text;
}

} // namespace
} // namespace ionsvc::vmtest
