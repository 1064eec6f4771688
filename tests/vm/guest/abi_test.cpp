// SPDX-License-Identifier: MIT
// The ioctl ABI of /dev/ion: heap query, allocation from every heap, and
// every way an allocation is refused.
#include <fcntl.h>
#include <linux/dma-buf.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "vm_helpers.h"

namespace ionsvc::vmtest {
namespace {

ion_heap_query query_for(std::span<ion_heap_data> heaps)
{
    ion_heap_query query{};
    query.cnt = static_cast<std::uint32_t>(heaps.size());
    query.heaps = reinterpret_cast<std::uintptr_t>(heaps.data());
    return query;
}

std::string name_of(const ion_heap_data &entry)
{
    return std::string{entry.name, strnlen(entry.name, sizeof entry.name)};
}

// Checks one entry against the heap its id names.
::testing::AssertionResult describes_a_heap(const ion_heap_data &entry)
{
    if (entry.heap_id >= kAllHeaps.size())
        return ::testing::AssertionFailure() << "unknown heap id " << entry.heap_id;
    const Heap &heap = kAllHeaps[entry.heap_id];
    if (strnlen(entry.name, sizeof entry.name) == sizeof entry.name)
        return ::testing::AssertionFailure() << "name of heap " << entry.heap_id
                                             << " is not NUL-terminated";
    if (name_of(entry) != heap.name || entry.type != heap.type)
        return ::testing::AssertionFailure()
               << "heap " << entry.heap_id << " is \"" << name_of(entry) << "\" type "
               << entry.type << ", expected \"" << heap.name << "\" type " << heap.type;
    if (entry.reserved0 != 0 || entry.reserved1 != 0 || entry.reserved2 != 0)
        return ::testing::AssertionFailure() << "reserved fields of heap " << entry.heap_id
                                             << " are not 0";
    return ::testing::AssertionSuccess();
}

bool is_untouched(const ion_heap_data &entry)
{
    const auto *bytes = reinterpret_cast<const unsigned char *>(&entry);
    return std::all_of(bytes, bytes + sizeof entry, [](unsigned char b) { return b == 0xa5; });
}

class HeapQuery : public IonVmTest
{
};

TEST_F(HeapQuery, ReportsTheNumberOfHeapsWhenGivenNoArray)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    ion_heap_query query{};
    query.cnt = 77; // overwritten: with no array, cnt is an output only
    ASSERT_EQ(heap_query(ion.fd.get(), query), kSuccess);
    EXPECT_EQ(query.cnt, kAllHeaps.size());
}

TEST_F(HeapQuery, FillsEveryHeapWithItsNameTypeAndId)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    std::array<ion_heap_data, 3> heaps;
    std::memset(heaps.data(), 0xa5, sizeof heaps);
    ion_heap_query query = query_for(heaps);
    ASSERT_EQ(heap_query(ion.fd.get(), query), kSuccess);
    ASSERT_EQ(query.cnt, 3u);

    // The order of entries is the driver's choice; the set is not.
    std::sort(heaps.begin(), heaps.end(),
              [](const auto &a, const auto &b) { return a.heap_id < b.heap_id; });
    for (std::size_t i = 0; i < heaps.size(); ++i) {
        EXPECT_EQ(heaps[i].heap_id, i);
        EXPECT_TRUE(describes_a_heap(heaps[i]));
    }
}

TEST_F(HeapQuery, CopiesOnlyAsManyEntriesAsTheArrayHolds)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    for (std::uint32_t room = 1; room < kAllHeaps.size(); ++room) {
        SCOPED_TRACE("room for " + std::to_string(room));
        std::array<ion_heap_data, 3> heaps;
        std::memset(heaps.data(), 0xa5, sizeof heaps);
        ion_heap_query query = query_for(heaps);
        query.cnt = room;
        ASSERT_EQ(heap_query(ion.fd.get(), query), kSuccess);
        EXPECT_EQ(query.cnt, room);
        for (std::uint32_t i = 0; i < room; ++i)
            EXPECT_TRUE(describes_a_heap(heaps[i]));
        if (room == 2) {
            EXPECT_NE(heaps[0].heap_id, heaps[1].heap_id);
        }
        // Nothing is written past what the caller said it has.
        for (std::size_t i = room; i < heaps.size(); ++i)
            EXPECT_TRUE(is_untouched(heaps[i])) << "entry " << i << " was written";
    }
}

TEST_F(HeapQuery, ReportsOnlyTheHeapsThereAreWhenTheArrayIsLarger)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    std::array<ion_heap_data, 8> heaps;
    std::memset(heaps.data(), 0xa5, sizeof heaps);
    ion_heap_query query = query_for(heaps);
    ASSERT_EQ(heap_query(ion.fd.get(), query), kSuccess);
    ASSERT_EQ(query.cnt, 3u);
    for (std::size_t i = 0; i < 3; ++i)
        EXPECT_TRUE(describes_a_heap(heaps[i]));
    for (std::size_t i = 3; i < heaps.size(); ++i)
        EXPECT_TRUE(is_untouched(heaps[i])) << "entry " << i << " was written";
}

TEST_F(HeapQuery, RejectsEachNonZeroReservedField)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    std::array<ion_heap_data, 3> heaps{};
    for (const bool with_array : {false, true}) {
        for (int field = 0; field < 3; ++field) {
            SCOPED_TRACE("reserved" + std::to_string(field) +
                         (with_array ? " with an array" : " without an array"));
            ion_heap_query query = with_array ? query_for(heaps) : ion_heap_query{};
            (field == 0 ? query.reserved0 : field == 1 ? query.reserved1 : query.reserved2) = 1;
            EXPECT_EQ(heap_query(ion.fd.get(), query), Errno{EINVAL});
        }
    }
}

TEST_F(HeapQuery, FaultsOnABadQueryPointer)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    const InaccessiblePage page;
    ASSERT_NE(page.address(), nullptr);
    EXPECT_EQ(ioctl_errno(ion.fd.get(), ION_IOC_HEAP_QUERY, page.address()), Errno{EFAULT});
    EXPECT_EQ(ioctl_errno(ion.fd.get(), ION_IOC_HEAP_QUERY, nullptr), Errno{EFAULT});
}

TEST_F(HeapQuery, FaultsOnABadHeapArrayPointer)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    const InaccessiblePage page;
    ASSERT_NE(page.address(), nullptr);
    ion_heap_query query{};
    query.cnt = 3;
    query.heaps = reinterpret_cast<std::uintptr_t>(page.address());
    EXPECT_EQ(heap_query(ion.fd.get(), query), Errno{EFAULT});
}

// ---------------------------------------------------------------- allocation

constexpr std::uint32_t kUnusedMarker = 0x5eed1e55;
constexpr std::uint32_t kFlagSets[] = {0, ION_FLAG_CACHED,
                                       ION_FLAG_CACHED | ION_FLAG_CACHED_NEEDS_SYNC};
constexpr std::uint64_t kSizes[] = {4 * KiB, 64 * KiB, 1 * MiB, 4 * MiB, 16 * MiB, 5000};

// Allocates every size with every flag set from one heap and checks what
// comes back: the struct, the fd, the size, the heap it was charged to, and
// a zeroed, writable mapping.
void check_allocations_from(const Heap &heap)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    for (const std::uint32_t flags : kFlagSets) {
        for (const std::uint64_t len : kSizes) {
            SCOPED_TRACE(std::string{heap.name} + ", flags " + std::to_string(flags) + ", len " +
                         std::to_string(len));
            const std::uint64_t size = page_rounded(len);
            const HeapView before = read_heap_view(heap);
            ASSERT_TRUE(is_parsed(before));

            AllocationResult allocation =
                allocate(ion.fd.get(), len, mask_of(heap), flags, kUnusedMarker);
            ASSERT_EQ(allocation.error, kSuccess);
            EXPECT_EQ(allocation.data.len, len);
            EXPECT_EQ(allocation.data.heap_id_mask, mask_of(heap));
            EXPECT_EQ(allocation.data.flags, flags);
            EXPECT_EQ(allocation.data.unused, kUnusedMarker);
            const int fd = allocation.fd.get();
            ASSERT_GE(fd, 0);
            const int fd_flags = ::fcntl(fd, F_GETFD);
            ASSERT_GE(fd_flags, 0) << to_string(last_errno());
            EXPECT_TRUE(fd_flags & FD_CLOEXEC) << "the dma-buf fd is not close-on-exec";
            EXPECT_EQ(dma_buf_size(fd), static_cast<off_t>(size));

            // Charged to this heap and no other.
            const HeapView during = read_heap_view(heap);
            ASSERT_TRUE(is_parsed(during));
            EXPECT_EQ(during.total, before.total + size) << during.text;

            const Mapping mapping = Mapping::map(fd, size);
            ASSERT_TRUE(mapping.is_valid()) << to_string(mapping.error());
            {
                CpuAccess access(fd, DMA_BUF_SYNC_RW);
                ASSERT_EQ(access.started(), kSuccess);
                EXPECT_EQ(check_zeroed(mapping.bytes()), "");
                fill_pattern(mapping.bytes(), 0, len);
                EXPECT_EQ(access.finish(), kSuccess);
            }
            CpuAccess access(fd, DMA_BUF_SYNC_READ);
            EXPECT_EQ(check_pattern(mapping.bytes(), 0, len), "");
        }
    }
}

class Allocation : public IonVmTest
{
};

TEST_F(Allocation, FromTheSystemHeapIsZeroedCloexecAndPageRoundedAtEverySizeAndFlag)
{
    check_allocations_from(kSystemHeap);
}

TEST_F(Allocation, FromTheContiguousHeapIsZeroedCloexecAndPageRoundedAtEverySizeAndFlag)
{
    check_allocations_from(kContigHeap);
}

TEST_F(Allocation, FromTheCarveoutHeapIsZeroedCloexecAndPageRoundedAtEverySizeAndFlag)
{
    check_allocations_from(kCarveoutHeap);
}

TEST_F(Allocation, ClosingTheFdGivesTheBytesBackToTheHeap)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    for (const Heap &heap : kAllHeaps) {
        SCOPED_TRACE(heap.name);
        AllocationResult allocation = allocate(ion.fd.get(), 256 * KiB, mask_of(heap));
        ASSERT_EQ(allocation.error, kSuccess);
        allocation.fd.reset();
        const HeapView view = read_heap_view(heap);
        ASSERT_TRUE(is_parsed(view));
        EXPECT_EQ(view.total, 0u) << view.text;
    }
}

// ---------------------------------------------------------------- refusals

class AllocationRefusal : public IonVmTest
{
protected:
    // Refusals must not leave buffers or fds behind.
    void SetUp() override
    {
        IonVmTest::SetUp();
        if (HasFatalFailure())
            return;
        fds_before_ = open_fd_count();
        check_on_tear_down_ = true;
    }
    void TearDown() override
    {
        if (!check_on_tear_down_)
            return;
        EXPECT_EQ(open_fd_count(), fds_before_) << "a refused allocation left an fd open";
        const auto totals = heap_totals();
        for (std::size_t i = 0; i < totals.size(); ++i)
            EXPECT_EQ(totals[i], std::optional<std::uint64_t>{0}) << kAllHeaps[i].name;
    }

private:
    std::size_t fds_before_ = 0;
    bool check_on_tear_down_ = false;
};

TEST_F(AllocationRefusal, AZeroLengthIsInvalid)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    for (const Heap &heap : kAllHeaps)
        EXPECT_EQ(allocate(ion.fd.get(), 0, mask_of(heap)).error, Errno{EINVAL}) << heap.name;
}

TEST_F(AllocationRefusal, FlagsOutsideCachedAndNeedsSyncAreInvalid)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    for (const std::uint32_t flags : {4u, 8u, 0x80000000u, ION_FLAG_CACHED | 4u,
                                      ION_FLAG_CACHED | ION_FLAG_CACHED_NEEDS_SYNC | 0x100u}) {
        EXPECT_EQ(allocate(ion.fd.get(), 4 * KiB, mask_of(kSystemHeap), flags).error,
                  Errno{EINVAL})
            << "flags " << flags;
    }
}

TEST_F(AllocationRefusal, AMaskWithoutARegisteredHeapFindsNoDevice)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    for (const std::uint32_t mask : {0u, 1u << 5, 1u << 31, 0xfffffff8u}) {
        EXPECT_EQ(allocate(ion.fd.get(), 4 * KiB, mask).error, Errno{ENODEV})
            << "mask " << std::hex << mask;
    }
}

TEST_F(AllocationRefusal, MoreThanMaxAllocSizeIsOutOfMemoryInEveryHeap)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    {
        // A suffix, as the parameter accepts them.
        const ParameterOverride limit("max_alloc_size", "64K");
        ASSERT_EQ(limit.error(), kSuccess);
        for (const Heap &heap : kAllHeaps) {
            SCOPED_TRACE(heap.name);
            EXPECT_EQ(allocate(ion.fd.get(), 64 * KiB, mask_of(heap)).error, kSuccess);
            // 64 KiB + 1 rounds up to 68 KiB, over the limit.
            EXPECT_EQ(allocate(ion.fd.get(), 64 * KiB + 1, mask_of(heap)).error, Errno{ENOMEM});
            EXPECT_EQ(allocate(ion.fd.get(), 1 * MiB, mask_of(heap)).error, Errno{ENOMEM});
        }
    }
    // Restored to 0: no limit again.
    EXPECT_EQ(allocate(ion.fd.get(), 1 * MiB, mask_of(kSystemHeap)).error, kSuccess);
}

std::uint64_t memtotal_bytes()
{
    const std::string meminfo = read_text_file("/proc/meminfo").text;
    const auto at = meminfo.find("MemTotal:");
    if (at == std::string::npos)
        return 0;
    return std::stoull(meminfo.substr(at + 9)) * 1024;
}

TEST_F(AllocationRefusal, MoreThanHalfOfRamIsOutOfMemoryWithoutAnOomKill)
{
    const std::uint64_t memtotal = memtotal_bytes();
    ASSERT_GT(memtotal, 0u) << read_text_file("/proc/meminfo").text;
    const std::uint64_t three_quarters = page_rounded(memtotal / 4 * 3);
    const ParameterOverride no_limit("max_alloc_size", "0");
    ASSERT_EQ(no_limit.error(), kSuccess);

    for (const std::uint32_t mask : {mask_of(kSystemHeap), mask_of(kContigHeap), 0x7u}) {
        SCOPED_TRACE("mask " + std::to_string(mask));
        // In a child, so an OOM kill shows up as SIGKILL instead of
        // taking the whole test run down.
        ChildProcess child([&] {
            auto ion = open_ion();
            if (ion.error != kSuccess)
                return 200;
            return allocate(ion.fd.get(), three_quarters, mask).error.value;
        });
        const int code = child.wait();
        ASSERT_LT(code, 128) << "the child was killed by signal " << code - 128
                             << " (9 is SIGKILL, the OOM killer's)";
        ASSERT_NE(code, 200) << "the child could not open /dev/ion";
        EXPECT_EQ(Errno{code}, Errno{ENOMEM}) << "asked for " << three_quarters << " of "
                                              << memtotal << " bytes";
    }
}

TEST_F(AllocationRefusal, MoreThanTheCarveoutHoldsIsOutOfMemory)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    const std::uint32_t carveout = mask_of(kCarveoutHeap);
    EXPECT_EQ(allocate(ion.fd.get(), kStandardCarveoutSize + kPageSize, carveout).error,
              Errno{ENOMEM});
    EXPECT_EQ(allocate(ion.fd.get(), 2 * kStandardCarveoutSize, carveout).error, Errno{ENOMEM});

    // With half of it held, the other half plus a page does not fit.
    AllocationResult half = allocate(ion.fd.get(), kStandardCarveoutSize / 2, carveout);
    ASSERT_EQ(half.error, kSuccess);
    EXPECT_EQ(allocate(ion.fd.get(), kStandardCarveoutSize / 2 + kPageSize, carveout).error,
              Errno{ENOMEM});
}

TEST_F(AllocationRefusal, ABadArgumentPointerFaults)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    const InaccessiblePage page;
    ASSERT_NE(page.address(), nullptr);
    EXPECT_EQ(ioctl_errno(ion.fd.get(), ION_IOC_ALLOC, page.address()), Errno{EFAULT});
    EXPECT_EQ(ioctl_errno(ion.fd.get(), ION_IOC_ALLOC, nullptr), Errno{EFAULT});
}

TEST_F(AllocationRefusal, AResultThatCannotBeWrittenBackFaultsAndLeaksNothing)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    // Readable but not writable: the request is read, the answer cannot be
    // written. The buffer and any fd made for it must go away again.
    void *page = ::mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
    ASSERT_NE(page, MAP_FAILED) << to_string(last_errno());
    const std::unique_ptr<void, void (*)(void *)> unmap{page,
                                                        [](void *p) { ::munmap(p, kPageSize); }};
    const ion_allocation_data request = {.len = 64 * KiB, .heap_id_mask = mask_of(kSystemHeap),
                                         .flags = 0, .fd = 0, .unused = 0};
    std::memcpy(page, &request, sizeof request);
    ASSERT_EQ(::mprotect(page, kPageSize, PROT_READ), 0) << to_string(last_errno());

    const std::vector<int> fds_before = open_fds();
    EXPECT_EQ(ioctl_errno(ion.fd.get(), ION_IOC_ALLOC, page), Errno{EFAULT});

    // An fd installed before the copy-out failed is unreachable for the
    // caller. Close any such fd here, so that one leak does not keep the
    // module loaded for every later test; the fixture checks the heaps.
    std::vector<int> leaked;
    for (const int fd : open_fds()) {
        if (!std::binary_search(fds_before.begin(), fds_before.end(), fd))
            leaked.push_back(fd);
    }
    for (const int fd : leaked)
        UniqueFD{fd}.reset();
    EXPECT_TRUE(leaked.empty()) << "the failed ioctl left " << leaked.size() << " fd(s) open";
}

class IonDevice : public IonVmTest
{
};

TEST_F(IonDevice, AnswersAnUnknownIoctlWithENOTTY)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    ion_allocation_data data{};
    // The pre-4.12 ION_IOC_FREE, a number never used, ALLOC's number with
    // the wrong size, and another driver's magic.
    for (const unsigned long request :
         {static_cast<unsigned long>(_IOWR(ION_IOC_MAGIC, 1, ion_allocation_data)),
          static_cast<unsigned long>(_IOWR(ION_IOC_MAGIC, 0x7f, ion_allocation_data)),
          static_cast<unsigned long>(_IOWR(ION_IOC_MAGIC, 0, std::uint64_t)),
          static_cast<unsigned long>(_IOWR('x', 0, ion_allocation_data))}) {
        EXPECT_EQ(ioctl_errno(ion.fd.get(), request, &data), Errno{ENOTTY}) << std::hex << request;
    }
}

// ---------------------------------------------------------------- heap choice

class HeapSelection : public IonVmTest
{
};

// Which heap's "total " grew by size when allocating with mask.
::testing::AssertionResult served_by(int ion, std::uint32_t mask, std::uint64_t size,
                                     const Heap &expected)
{
    const auto before = heap_totals();
    AllocationResult allocation = allocate(ion, size, mask);
    if (allocation.error != kSuccess)
        return ::testing::AssertionFailure() << "allocation failed: " << to_string(allocation.error);
    const auto during = heap_totals();
    for (std::size_t i = 0; i < kAllHeaps.size(); ++i) {
        if (!before[i] || !during[i])
            return ::testing::AssertionFailure() << kAllHeaps[i].name << " did not parse";
        const std::uint64_t grew = *during[i] - *before[i];
        const std::uint64_t expected_growth = kAllHeaps[i].id == expected.id ? size : 0;
        if (grew != expected_growth)
            return ::testing::AssertionFailure()
                   << kAllHeaps[i].name << " grew by " << grew << ", expected " << expected_growth;
    }
    return ::testing::AssertionSuccess();
}

TEST_F(HeapSelection, TheHighestRegisteredIdInTheMaskServes)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    constexpr std::uint32_t system = mask_of(kSystemHeap);
    constexpr std::uint32_t contig = mask_of(kContigHeap);
    constexpr std::uint32_t carveout = mask_of(kCarveoutHeap);
    EXPECT_TRUE(served_by(ion.fd.get(), system | contig | carveout, 64 * KiB, kCarveoutHeap));
    EXPECT_TRUE(served_by(ion.fd.get(), system | contig, 64 * KiB, kContigHeap));
    EXPECT_TRUE(served_by(ion.fd.get(), system | carveout, 64 * KiB, kCarveoutHeap));
    EXPECT_TRUE(served_by(ion.fd.get(), contig | carveout, 64 * KiB, kCarveoutHeap));
    // Unregistered bits are ignored when a registered one is set.
    EXPECT_TRUE(served_by(ion.fd.get(), system | (1u << 5), 64 * KiB, kSystemHeap));
    EXPECT_TRUE(served_by(ion.fd.get(), 0xffffffffu, 64 * KiB, kCarveoutHeap));
}

TEST_F(HeapSelection, TheNextHeapServesWhatTheHighestCannot)
{
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    // More than the carveout holds, so the system heap is tried next.
    EXPECT_TRUE(served_by(ion.fd.get(), mask_of(kSystemHeap) | mask_of(kCarveoutHeap),
                          kStandardCarveoutSize + kPageSize, kSystemHeap));
}

} // namespace
} // namespace ionsvc::vmtest
