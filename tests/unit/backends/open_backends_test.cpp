// SPDX-License-Identifier: MIT
// Which backends --backend opens, with the machine's devices mocked: this
// host has none of them.
#include <gtest/gtest.h>

#include "backends/allocator.h"
#include "fakes/fake_devices.h"
#include "fakes/fake_ion.h"

namespace ionsvc {
namespace {

using ::testing::_;
using ::testing::AnyNumber;
using ::testing::NiceMock;
using ::testing::Return;
using ::testing::StrEq;

class OpenBackends : public ::testing::Test
{
protected:
    // A machine without ION, without dma-buf heaps and with a udmabuf that
    // only root may open.
    void without_devices()
    {
        // Expectations, not defaults: a test may expect more calls on top.
        EXPECT_CALL(syscalls_, open(StrEq("/dev/ion"), _))
            .Times(AnyNumber())
            .WillRepeatedly(testing::open_fails(ENOENT));
        EXPECT_CALL(syscalls_, list_char_devices(StrEq("/dev/dma_heap")))
            .Times(AnyNumber())
            .WillRepeatedly(Return(Unexpected{-ENOENT}));
        EXPECT_CALL(syscalls_, open(StrEq("/dev/udmabuf"), _))
            .Times(AnyNumber())
            .WillRepeatedly(testing::open_fails(EACCES));
    }

    // A machine with every source: an ION driver with one heap, a dma-heap
    // "system", and udmabuf.
    void with_every_device()
    {
        const int ion = testing::expect_device(syscalls_, "/dev/ion");
        EXPECT_CALL(syscalls_, ioctl(ion, ION_IOC_HEAP_QUERY, _))
            .WillRepeatedly(
                testing::answer_heap_query({testing::ion_heap("ion_system_heap", ION_HEAP_TYPE_SYSTEM, 0)}));
        EXPECT_CALL(syscalls_, list_char_devices(StrEq("/dev/dma_heap")))
            .WillOnce(Return(std::vector<std::string>{"system"}));
        testing::expect_device(syscalls_, "/dev/dma_heap/system");
        testing::expect_device(syscalls_, "/dev/udmabuf");
    }

    static std::vector<std::string> names_of(const OpenedBackends &opened)
    {
        std::vector<std::string> names;
        for (const auto &backend : opened.backends)
            names.emplace_back(backend->name());
        return names;
    }

    NiceMock<testing::MockSyscalls> syscalls_;
};

TEST_F(OpenBackends, TheChoicesAreAutoAndEachBackend)
{
    EXPECT_EQ(std::vector<std::string_view>(std::begin(kBackendChoices), std::end(kBackendChoices)),
              (std::vector<std::string_view>{"auto", "ion", "dma-heap", "udmabuf", "memfd"}));
}

TEST_F(OpenBackends, AutoSaysWhyEachMissingBackendIsMissing)
{
    without_devices();
    const OpenedBackends opened = open_backends("auto", syscalls_);
    EXPECT_EQ(names_of(opened), std::vector<std::string>{"memfd"});
    EXPECT_EQ(opened.missing(),
              (std::vector<std::string>{
                  "ion: /dev/ion: No such file or directory (module ion_simple not loaded?)",
                  "dma-heap: /dev/dma_heap does not exist (kernel without CONFIG_DMABUF_HEAPS)",
                  "udmabuf: /dev/udmabuf: Permission denied",
              }));
}

TEST_F(OpenBackends, AutoOpensEverySourcePresentIonFirstMemfdLast)
{
    with_every_device();
    const OpenedBackends opened = open_backends("auto", syscalls_);
    EXPECT_EQ(names_of(opened), (std::vector<std::string>{"ion", "dma-heap", "udmabuf", "memfd"}));
    EXPECT_TRUE(opened.missing().empty());
    EXPECT_EQ(opened.backends.front()->heaps().front()->name(), "ion:ion_system_heap");
}

TEST_F(OpenBackends, AnIonDeviceWithoutHeapsIsMissing)
{
    without_devices();
    const int ion = testing::expect_device(syscalls_, "/dev/ion");
    EXPECT_CALL(syscalls_, ioctl(ion, ION_IOC_HEAP_QUERY, _)).WillOnce(testing::answer_heap_query({}));
    const OpenedBackends opened = open_backends("auto", syscalls_);
    ASSERT_FALSE(opened.missing().empty());
    EXPECT_EQ(opened.missing().front(), "ion: /dev/ion reports no heaps");
}

TEST_F(OpenBackends, AnEmptyDmaHeapDirectoryIsMissing)
{
    without_devices();
    EXPECT_CALL(syscalls_, list_char_devices(StrEq("/dev/dma_heap")))
        .WillOnce(Return(std::vector<std::string>{}));
    const OpenedBackends opened = open_backends("auto", syscalls_);
    ASSERT_EQ(opened.missing().size(), 3u);
    EXPECT_EQ(opened.missing()[1], "dma-heap: /dev/dma_heap has no heaps");
}

TEST_F(OpenBackends, ABackendNamedAloneOpensNothingElse)
{
    with_every_device();
    for (const std::string_view choice : {"ion", "dma-heap", "udmabuf", "memfd"}) {
        const OpenedBackends opened = open_backends(choice, syscalls_);
        EXPECT_EQ(names_of(opened), std::vector<std::string>{std::string(choice)});
        EXPECT_TRUE(opened.missing().empty());
    }
}

TEST_F(OpenBackends, ABackendNamedAloneThatCannotOpenIsMissingAndNothingStandsIn)
{
    // main() then stops: there is no heap to serve.
    without_devices();
    for (const std::string_view choice : {"ion", "dma-heap", "udmabuf"}) {
        const OpenedBackends opened = open_backends(choice, syscalls_);
        EXPECT_TRUE(opened.backends.empty()) << choice;
        ASSERT_EQ(opened.missing().size(), 1u);
        EXPECT_EQ(opened.missing().front().rfind(std::string(choice) + ": ", 0), 0u) << opened.missing().front();
    }
}

TEST_F(OpenBackends, TheAllocatorSaysWhyAHeapOfAMissingBackendIsNotServed)
{
    without_devices();
    OpenedBackends opened = open_backends("auto", syscalls_);
    const Allocator allocator(std::move(opened.backends), default_alias_rules(), std::move(opened.unserved));
    EXPECT_EQ(allocator.why_not_served("ion:ion_system_heap"),
              "backend ion is not served: /dev/ion: No such file or directory (module ion_simple not loaded?)");
    EXPECT_EQ(allocator.why_not_served("udmabuf"), "backend udmabuf is not served: /dev/udmabuf: Permission denied");
    EXPECT_EQ(allocator.why_not_served("memfd"), std::nullopt) << "memfd is served";
    EXPECT_EQ(allocator.why_not_served("system"), std::nullopt) << "an alias belongs to no backend";
}

TEST_F(OpenBackends, ABackendLeftOutByTheChoiceIsNotServedBecauseItWasNotChosen)
{
    OpenedBackends opened = open_backends("memfd", syscalls_);
    const Allocator allocator(std::move(opened.backends), default_alias_rules(), std::move(opened.unserved));
    EXPECT_EQ(allocator.why_not_served("dma-heap:system"),
              "backend dma-heap is not served: not chosen (--backend memfd)");
}

TEST_F(OpenBackends, MemfdAloneTouchesNoDevice)
{
    EXPECT_CALL(syscalls_, open(_, _)).Times(0);
    EXPECT_CALL(syscalls_, list_char_devices(_)).Times(0);
    const OpenedBackends opened = open_backends("memfd", syscalls_);
    EXPECT_EQ(names_of(opened), std::vector<std::string>{"memfd"});
}

} // namespace
} // namespace ionsvc
