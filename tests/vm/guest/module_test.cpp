// SPDX-License-Identifier: MIT
// ion_simple as a module: what keeps it loaded, reloading it, and its
// parameters. Every test here leaves the standard state behind
// (ModuleStateTest reloads it).
#include <fcntl.h>

#include <string>

#include <gtest/gtest.h>

#include "vm_helpers.h"

namespace ionsvc::vmtest {
namespace {

class ModuleLifetime : public ModuleStateTest
{
};

TEST_F(ModuleLifetime, AnOpenIonDeviceKeepsTheModuleLoaded)
{
    {
        auto ion = open_ion();
        ASSERT_EQ(ion.error, kSuccess);
        EXPECT_EQ(unload_module(kIonModule), Errno{EWOULDBLOCK});
        EXPECT_TRUE(module_is_loaded(kIonModule));
    }
    EXPECT_EQ(unload_module(kIonModule), kSuccess);
}

TEST_F(ModuleLifetime, ALiveBufferKeepsTheModuleLoadedAfterItsClientCloses)
{
    UniqueFD buffer;
    {
        auto ion = open_ion();
        ASSERT_EQ(ion.error, kSuccess);
        AllocationResult allocated = allocate(ion.fd.get(), 64 * KiB, mask_of(kSystemHeap));
        ASSERT_EQ(allocated.error, kSuccess);
        buffer = std::move(allocated.fd);
    }
    EXPECT_EQ(unload_module(kIonModule), Errno{EWOULDBLOCK});
    buffer.reset();
    EXPECT_EQ(unload_module(kIonModule), kSuccess);
}

TEST_F(ModuleLifetime, AMappingAloneKeepsTheModuleLoaded)
{
    for (const Heap &heap : kAllHeaps) {
        SCOPED_TRACE(heap.name);
        ensure_standard_modules();
        Mapping mapping;
        {
            auto ion = open_ion();
            ASSERT_EQ(ion.error, kSuccess);
            AllocationResult buffer = allocate(ion.fd.get(), 2 * kPageSize, mask_of(heap));
            ASSERT_EQ(buffer.error, kSuccess);
            mapping = Mapping::map(buffer.fd.get(), 2 * kPageSize);
            ASSERT_TRUE(mapping.is_valid()) << to_string(mapping.error());
        }
        // No fd and no client left, only the VMA.
        EXPECT_EQ(unload_module(kIonModule), Errno{EWOULDBLOCK});
        mapping.data()[0] = std::byte{1}; // still backed and writable
        mapping.reset();
        EXPECT_EQ(unload_module(kIonModule), kSuccess);
    }
}

TEST_F(ModuleLifetime, LoadsAndUnloadsTwentyTimesServingEveryHeapEachTime)
{
    ASSERT_EQ(unload_module(kIonModule), kSuccess);
    for (int cycle = 0; cycle < 20; ++cycle) {
        SCOPED_TRACE("cycle " + std::to_string(cycle));
        ASSERT_EQ(load_module(module_file(kIonModule), kStandardIonParameters), kSuccess);
        {
            auto ion = open_ion();
            ASSERT_EQ(ion.error, kSuccess);
            for (const Heap &heap : kAllHeaps) {
                // The carveout region is reserved again on every load.
                const std::uint64_t len = heap.id == kCarveoutHeap.id ? 16 * MiB : 64 * KiB;
                AllocationResult buffer = allocate(ion.fd.get(), len, mask_of(heap));
                ASSERT_EQ(buffer.error, kSuccess) << heap.name;
            }
        }
        ASSERT_EQ(unload_module(kIonModule), kSuccess);
        EXPECT_FALSE(path_exists("/dev/ion"));
    }
}

// ---------------------------------------------------------------- parameters

class ModuleParameters : public ModuleStateTest
{
protected:
    // Reloads ion_simple with parameters instead of the standard ones.
    void reload_with(const std::string &parameters)
    {
        ASSERT_EQ(unload_module(kIonModule), kSuccess);
        ASSERT_EQ(load_module(module_file(kIonModule), parameters), kSuccess)
            << "parameters \"" << parameters << "\"";
    }
};

TEST_F(ModuleParameters, WithoutACarveoutSizeThereIsNoCarveoutHeap)
{
    reload_with("");
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    ion_heap_query query{};
    ASSERT_EQ(heap_query(ion.fd.get(), query), kSuccess);
    EXPECT_EQ(query.cnt, 2u);
    EXPECT_FALSE(path_exists(heap_view_path(kCarveoutHeap)));
    EXPECT_EQ(allocate(ion.fd.get(), 64 * KiB, mask_of(kCarveoutHeap)).error, Errno{ENODEV});

    // A mask naming all three is served by the highest heap there is.
    AllocationResult buffer = allocate(ion.fd.get(), 64 * KiB, 0x7);
    ASSERT_EQ(buffer.error, kSuccess);
    const HeapView contig = read_heap_view(kContigHeap);
    ASSERT_TRUE(is_parsed(contig));
    EXPECT_EQ(contig.total, 64 * KiB) << contig.text;
}

TEST_F(ModuleParameters, TheCarveoutSizeTakesSuffixesAndBoundsTheCarveout)
{
    for (const auto &[parameter, size] : {std::pair<std::string, std::uint64_t>{"8M", 8 * MiB},
                                          {"4096K", 4 * MiB},
                                          {"2097152", 2 * MiB}}) {
        SCOPED_TRACE("carveout_size=" + parameter);
        reload_with("carveout_size=" + parameter);
        auto ion = open_ion();
        ASSERT_EQ(ion.error, kSuccess);
        const std::uint32_t carveout = mask_of(kCarveoutHeap);
        EXPECT_EQ(allocate(ion.fd.get(), size + kPageSize, carveout).error, Errno{ENOMEM});
        AllocationResult half = allocate(ion.fd.get(), size / 2, carveout);
        ASSERT_EQ(half.error, kSuccess);
        EXPECT_EQ(allocate(ion.fd.get(), size / 2 + kPageSize, carveout).error, Errno{ENOMEM});
    }
}

TEST_F(ModuleParameters, TheCarveoutSizeIsReadOnlyAtRuntime)
{
    const std::string path = module_parameter_path("carveout_size");
    ASSERT_TRUE(path_exists(path)) << path;
    // Root too: sysfs refuses to open a file without write permission.
    EXPECT_EQ(open_file(path, O_WRONLY).error, Errno{EACCES});
}

TEST_F(ModuleParameters, MaxAllocSizeCanAlsoBeGivenAtLoadTime)
{
    reload_with(std::string{kStandardIonParameters} + " max_alloc_size=1M");
    auto ion = open_ion();
    ASSERT_EQ(ion.error, kSuccess);
    for (const Heap &heap : kAllHeaps) {
        EXPECT_EQ(allocate(ion.fd.get(), 1 * MiB, mask_of(heap)).error, kSuccess) << heap.name;
        EXPECT_EQ(allocate(ion.fd.get(), 1 * MiB + 1, mask_of(heap)).error, Errno{ENOMEM})
            << heap.name;
    }
}

} // namespace
} // namespace ionsvc::vmtest
