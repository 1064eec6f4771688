// SPDX-License-Identifier: MIT
// The ion backend against a mocked ION driver: this host has no /dev/ion
// (tests/vm runs the real one).
#include <cstring>

#include <gtest/gtest.h>

#include "fakes/fake_devices.h"
#include "fakes/fake_ion.h"
#include "fd_count.h"
#include "backends/ion.h"

namespace ionsvc {
namespace {

using ::testing::_;
using ::testing::HasSubstr;
using ::testing::NiceMock;
using ::testing::Return;
using testing::answer_heap_query;
using testing::ion_heap;
using testing::NameGiven;

constexpr std::uint64_t kSize = 64 * 1024;

const std::vector<ion_heap_data> kOurDriversHeaps = {
    ion_heap("ion_system_heap", ION_HEAP_TYPE_SYSTEM, 0),
    ion_heap("ion_system_contig_heap", ION_HEAP_TYPE_SYSTEM_CONTIG, 1),
    ion_heap("ion_carveout_heap", ION_HEAP_TYPE_CARVEOUT, 2),
};

class IonBackend : public ::testing::Test
{
protected:
    IonBackend() { testing::accept_names(syscalls_, &names_); }

    // The backend on a driver that reports heaps; the test fails without one.
    std::unique_ptr<Backend> open_with(const std::vector<ion_heap_data> &heaps)
    {
        device_ = testing::expect_device(syscalls_, "/dev/ion");
        EXPECT_CALL(syscalls_, ioctl(device_, ION_IOC_HEAP_QUERY, _))
            .WillRepeatedly(answer_heap_query(heaps));
        auto backend = open_ion_backend(syscalls_);
        EXPECT_TRUE(backend) << backend.error();
        return backend ? std::move(*backend) : nullptr;
    }

    // The reason the backend gives for not opening on a driver that answers
    // the heap query with query.
    template<typename Action>
    std::string why_not_with(Action query)
    {
        device_ = testing::expect_device(syscalls_, "/dev/ion");
        EXPECT_CALL(syscalls_, ioctl(device_, ION_IOC_HEAP_QUERY, _)).WillRepeatedly(query);
        auto backend = open_ion_backend(syscalls_);
        EXPECT_FALSE(backend);
        return backend ? "" : backend.error();
    }

    NiceMock<testing::MockSyscalls> syscalls_;
    int device_ = -1;
    std::vector<NameGiven> names_;
};

const IonHeap &as_ion_heap(const Heap *heap)
{
    const auto *ion = dynamic_cast<const IonHeap *>(heap);
    EXPECT_NE(ion, nullptr);
    return *ion;
}

TEST_F(IonBackend, DiscoversEveryHeapTheDriverReports)
{
    auto backend = open_with(kOurDriversHeaps);
    ASSERT_TRUE(backend);
    EXPECT_EQ(backend->name(), "ion");
    const auto heaps = backend->heaps();
    ASSERT_EQ(heaps.size(), 3u);
    EXPECT_EQ(heaps[0]->name(), "ion:ion_system_heap");
    EXPECT_EQ(heaps[0]->type(), "system");
    EXPECT_EQ(heaps[1]->name(), "ion:ion_system_contig_heap");
    EXPECT_EQ(heaps[1]->type(), "system_contig");
    EXPECT_EQ(heaps[2]->name(), "ion:ion_carveout_heap");
    EXPECT_EQ(heaps[2]->type(), "carveout");
    for (std::uint32_t i = 0; i < 3; ++i) {
        EXPECT_EQ(as_ion_heap(heaps[i]).ion_heap_id(), i);
        EXPECT_EQ(as_ion_heap(heaps[i]).ion_heap_type(), kOurDriversHeaps[i].type);
    }
}

TEST_F(IonBackend, TakesAnyDriversNamesIdsAndTypesAsTheyCome)
{
    auto backend = open_with({
        ion_heap("vendor_secure", ION_HEAP_TYPE_CUSTOM, 9),
        ion_heap("linux,cma", ION_HEAP_TYPE_DMA, 4),
        ion_heap("chunky", ION_HEAP_TYPE_CHUNK, 31),
    });
    ASSERT_TRUE(backend);
    const auto heaps = backend->heaps();
    ASSERT_EQ(heaps.size(), 3u);
    EXPECT_EQ(heaps[0]->name(), "ion:vendor_secure");
    EXPECT_EQ(heaps[0]->type(), "custom");
    EXPECT_EQ(as_ion_heap(heaps[0]).ion_heap_id(), 9u);
    EXPECT_EQ(heaps[1]->name(), "ion:linux,cma");
    EXPECT_EQ(heaps[1]->type(), "dma");
    EXPECT_EQ(heaps[2]->name(), "ion:chunky");
    EXPECT_EQ(heaps[2]->type(), "chunk");
    EXPECT_EQ(as_ion_heap(heaps[2]).ion_heap_id(), 31u);
}

TEST(IonHeapTypes, AreNamedAsIonNamesThemAndUnknownOtherwise)
{
    EXPECT_EQ(ion_heap_type_name(ION_HEAP_TYPE_SYSTEM), "system");
    EXPECT_EQ(ion_heap_type_name(ION_HEAP_TYPE_SYSTEM_CONTIG), "system_contig");
    EXPECT_EQ(ion_heap_type_name(ION_HEAP_TYPE_CARVEOUT), "carveout");
    EXPECT_EQ(ion_heap_type_name(ION_HEAP_TYPE_CHUNK), "chunk");
    EXPECT_EQ(ion_heap_type_name(ION_HEAP_TYPE_DMA), "dma");
    EXPECT_EQ(ion_heap_type_name(ION_HEAP_TYPE_CUSTOM), "custom");
    EXPECT_EQ(ion_heap_type_name(16), "unknown");
}

TEST_F(IonBackend, AsksForTheCountOfHeapsThenForTheArray)
{
    std::vector<ion_heap_query> queries;
    device_ = testing::expect_device(syscalls_, "/dev/ion");
    EXPECT_CALL(syscalls_, ioctl(device_, ION_IOC_HEAP_QUERY, _))
        .Times(2)
        .WillRepeatedly([&](int fd, unsigned long request, void *arg) {
            queries.push_back(*static_cast<ion_heap_query *>(arg));
            return answer_heap_query(kOurDriversHeaps)(fd, request, arg);
        });
    ASSERT_TRUE(open_ion_backend(syscalls_));
    ASSERT_EQ(queries.size(), 2u);
    EXPECT_EQ(queries[0].heaps, 0u);
    EXPECT_EQ(queries[1].cnt, 3u);
    EXPECT_NE(queries[1].heaps, 0u);
}

TEST_F(IonBackend, AsksForNoMoreHeapsThanAHeapIdMaskCanAddress)
{
    std::uint32_t asked = 0;
    device_ = testing::expect_device(syscalls_, "/dev/ion");
    EXPECT_CALL(syscalls_, ioctl(device_, ION_IOC_HEAP_QUERY, _))
        .WillRepeatedly([&](int, unsigned long, void *arg) {
            auto *query = static_cast<ion_heap_query *>(arg);
            if (query->heaps == 0) {
                query->cnt = 1000;
                return 0;
            }
            asked = query->cnt;
            auto *heaps = reinterpret_cast<ion_heap_data *>(query->heaps);
            for (std::uint32_t i = 0; i < query->cnt; ++i)
                heaps[i] = ion_heap("many", ION_HEAP_TYPE_SYSTEM, i);
            return 0;
        });
    auto backend = open_ion_backend(syscalls_);
    ASSERT_TRUE(backend);
    EXPECT_EQ(asked, 32u);
    EXPECT_EQ((*backend)->heaps().size(), 32u);
}

TEST_F(IonBackend, LeavesOutHeapsWhoseIdDoesNotFitTheMask)
{
    auto backend = open_with({
        ion_heap("too_high", ION_HEAP_TYPE_SYSTEM, 32),
        ion_heap("fits", ION_HEAP_TYPE_SYSTEM, 3),
    });
    ASSERT_TRUE(backend);
    const auto heaps = backend->heaps();
    ASSERT_EQ(heaps.size(), 1u);
    EXPECT_EQ(heaps[0]->name(), "ion:fits");
}

TEST_F(IonBackend, TakesTheFewerHeapsOfASecondAnswer)
{
    // A heap that goes away between the two queries.
    std::vector<ion_heap_data> heaps = kOurDriversHeaps;
    device_ = testing::expect_device(syscalls_, "/dev/ion");
    EXPECT_CALL(syscalls_, ioctl(device_, ION_IOC_HEAP_QUERY, _))
        .WillRepeatedly([&](int fd, unsigned long request, void *arg) {
            const int ret = answer_heap_query(heaps)(fd, request, arg);
            heaps.pop_back();
            return ret;
        });
    auto backend = open_ion_backend(syscalls_);
    ASSERT_TRUE(backend);
    EXPECT_EQ((*backend)->heaps().size(), 2u);
}

TEST_F(IonBackend, AllocatesWithTheMaskOfTheChosenHeap)
{
    auto backend = open_with(kOurDriversHeaps);
    ASSERT_TRUE(backend);
    int made = -1;
    ion_allocation_data seen{};
    EXPECT_CALL(syscalls_, ioctl(device_, ION_IOC_ALLOC, _))
        .WillOnce(testing::hand_out_dma_buf<ion_allocation_data>(&made, &seen));
    auto fd = backend->heaps()[2]->allocate(kSize, ION_FLAG_CACHED, "frame");
    ASSERT_TRUE(fd) << fd.error();
    EXPECT_EQ(fd->get(), made);
    EXPECT_EQ(seen.len, kSize);
    EXPECT_EQ(seen.heap_id_mask, 1u << 2);
    EXPECT_EQ(seen.flags, static_cast<std::uint32_t>(ION_FLAG_CACHED));
}

TEST_F(IonBackend, PassesTheClientsCachingFlagsThroughAsTheyAre)
{
    auto backend = open_with(kOurDriversHeaps);
    ASSERT_TRUE(backend);
    std::vector<std::uint32_t> flags_seen;
    int made = -1;
    EXPECT_CALL(syscalls_, ioctl(device_, ION_IOC_ALLOC, _))
        .Times(3)
        .WillRepeatedly([&](int fd, unsigned long request, void *arg) {
            flags_seen.push_back(static_cast<ion_allocation_data *>(arg)->flags);
            return testing::hand_out_dma_buf<ion_allocation_data>(&made)(fd, request, arg);
        });
    Heap &heap = *backend->heaps()[0];
    for (const std::uint32_t flags : {0u, 1u, 3u})
        ASSERT_TRUE(heap.allocate(kSize, flags, "frame"));
    EXPECT_EQ(flags_seen, (std::vector<std::uint32_t>{0, ION_FLAG_CACHED,
                                                      ION_FLAG_CACHED | ION_FLAG_CACHED_NEEDS_SYNC}));
}

TEST_F(IonBackend, NamesEachBufferItHandsOut)
{
    auto backend = open_with(kOurDriversHeaps);
    ASSERT_TRUE(backend);
    int made = -1;
    EXPECT_CALL(syscalls_, ioctl(device_, ION_IOC_ALLOC, _))
        .WillOnce(testing::hand_out_dma_buf<ion_allocation_data>(&made));
    ASSERT_TRUE(backend->heaps()[0]->allocate(kSize, 0, "camera:1234"));
    testing::expect_one_name(names_, made, "camera:1234");
}

class IonAllocFailure : public IonBackend, public ::testing::WithParamInterface<int>
{
};

TEST_P(IonAllocFailure, IsReturnedAsItsNegativeErrnoAndLeavesNoFd)
{
    auto backend = open_with(kOurDriversHeaps);
    ASSERT_TRUE(backend);
    EXPECT_CALL(syscalls_, ioctl(device_, ION_IOC_ALLOC, _)).WillOnce(Return(-GetParam()));
    testing::expect_failure_without_leak(*backend->heaps()[0], -GetParam());
}

INSTANTIATE_TEST_SUITE_P(IonBackend, IonAllocFailure,
                         ::testing::Values(ENOMEM, EMFILE, EIO, ENODEV, EFAULT, EINTR));

TEST_F(IonBackend, ABufferThatCannotBeNamedIsClosedAndItsErrorReturned)
{
    auto backend = open_with(kOurDriversHeaps);
    ASSERT_TRUE(backend);
    int made = -1;
    EXPECT_CALL(syscalls_, ioctl(device_, ION_IOC_ALLOC, _))
        .WillOnce(testing::hand_out_dma_buf<ion_allocation_data>(&made));
    EXPECT_CALL(syscalls_, ioctl(_, DMA_BUF_SET_NAME_B, _)).WillOnce(Return(-EFAULT));
    testing::expect_failure_without_leak(*backend->heaps()[0], -EFAULT);
}

// Opening /dev/ion fails as it does without the module, without the right
// to open it, ...
class IonOpenFailure : public ::testing::TestWithParam<int>
{
};

TEST_P(IonOpenFailure, MeansNoBackendAndSaysWhy)
{
    NiceMock<testing::MockSyscalls> syscalls;
    EXPECT_CALL(syscalls, open(::testing::StrEq("/dev/ion"), _)).WillOnce(Return(Unexpected{-GetParam()}));
    auto backend = open_ion_backend(syscalls);
    ASSERT_FALSE(backend);
    EXPECT_THAT(backend.error(), HasSubstr(std::string("/dev/ion: ") + std::strerror(GetParam())));
}

INSTANTIATE_TEST_SUITE_P(IonBackend, IonOpenFailure, ::testing::Values(ENOENT, EACCES, ENODEV, EMFILE));

TEST_F(IonBackend, AMissingDeviceHintsAtTheModule)
{
    NiceMock<testing::MockSyscalls> syscalls;
    EXPECT_CALL(syscalls, open(_, _)).WillOnce(Return(Unexpected{-ENOENT}));
    auto backend = open_ion_backend(syscalls);
    ASSERT_FALSE(backend);
    EXPECT_EQ(backend.error(), "/dev/ion: No such file or directory (module ion_simple not loaded?)");
}

TEST_F(IonBackend, ADriverWithoutHeapsIsNoBackendAndItsDeviceIsClosed)
{
    const std::size_t before = test_support::open_fd_count();
    EXPECT_EQ(why_not_with(answer_heap_query({})), "/dev/ion reports no heaps");
    EXPECT_EQ(test_support::open_fd_count(), before);
}

TEST_F(IonBackend, AnIonWithoutTheHeapQueryIsNoBackend)
{
    EXPECT_THAT(why_not_with(Return(-ENOTTY)), HasSubstr("an ION older than Linux 4.12?"));
}

class IonHeapQueryFailure : public IonBackend, public ::testing::WithParamInterface<int>
{
};

TEST_P(IonHeapQueryFailure, OfTheArrayIsNoBackendAndLeavesNoFd)
{
    const std::size_t before = test_support::open_fd_count();
    int calls = 0;
    const std::string why = why_not_with([&](int fd, unsigned long request, void *arg) {
        return ++calls == 1 ? answer_heap_query(kOurDriversHeaps)(fd, request, arg) : -GetParam();
    });
    EXPECT_EQ(why, std::string("/dev/ion: ION_IOC_HEAP_QUERY: ") + std::strerror(GetParam()));
    EXPECT_EQ(test_support::open_fd_count(), before);
}

INSTANTIATE_TEST_SUITE_P(IonBackend, IonHeapQueryFailure, ::testing::Values(EFAULT, EINVAL, EIO, ENOMEM));

} // namespace
} // namespace ionsvc
