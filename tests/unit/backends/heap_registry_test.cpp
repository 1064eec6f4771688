// SPDX-License-Identifier: MIT
#include <cerrno>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "backends/heap_registry.h"

namespace ionsvc {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

HeapDescription ion_heap(std::string name, std::string type, std::uint32_t id)
{
    return {"ion:" + name, "ion", std::move(type), id};
}

HeapDescription plain_heap(std::string name, std::string backend, std::string type = "system")
{
    return {std::move(name), std::move(backend), std::move(type), std::nullopt};
}

// Every source a 6.12 machine with our module has, in --backend auto order.
std::vector<HeapDescription> every_heap()
{
    return {ion_heap("ion_system_heap", "system", 0),
            ion_heap("ion_system_contig_heap", "system_contig", 1),
            ion_heap("ion_carveout_heap", "carveout", 2),
            plain_heap("dma-heap:system", "dma-heap"),
            plain_heap("udmabuf", "udmabuf"),
            plain_heap("memfd", "memfd")};
}

TEST(HeapRegistry, ResolvesEveryHeapByItsOwnName)
{
    const HeapRegistry registry(every_heap(), default_alias_rules());
    for (HeapIndex i = 0; i < registry.size(); ++i)
        EXPECT_EQ(registry.resolve(registry.heap(i).name).value(), i) << registry.heap(i).name;
}

TEST(HeapRegistry, SystemMeansTheIonSystemHeapWhenThereIsOne)
{
    const HeapRegistry registry(every_heap(), default_alias_rules());
    EXPECT_EQ(registry.heap(registry.resolve("system").value()).name, "ion:ion_system_heap");
    EXPECT_EQ(registry.heap(registry.resolve("contig").value()).name, "ion:ion_system_contig_heap");
}

TEST(HeapRegistry, SystemFallsBackToDmaHeapThenUdmabufThenMemfd)
{
    std::vector<HeapDescription> heaps = every_heap();
    heaps.erase(heaps.begin(), heaps.begin() + 3); // no ion
    EXPECT_EQ(HeapRegistry(heaps, default_alias_rules()).resolve("system").value(), 0u);

    heaps.erase(heaps.begin()); // no dma-heap either
    const HeapRegistry udmabuf_only(heaps, default_alias_rules());
    EXPECT_EQ(udmabuf_only.heap(udmabuf_only.resolve("system").value()).name, "udmabuf");

    const HeapRegistry memfd_only({plain_heap("memfd", "memfd")}, default_alias_rules());
    EXPECT_EQ(memfd_only.resolve("system").value(), 0u);
}

TEST(HeapRegistry, FindsTheIonSystemHeapByTypeWhateverTheDriverCallsIt)
{
    const HeapRegistry registry({ion_heap("vendor_heap", "system", 25), plain_heap("memfd", "memfd")},
                                default_alias_rules());
    EXPECT_EQ(registry.heap(registry.resolve("system").value()).name, "ion:vendor_heap");
}

TEST(HeapRegistry, ContigFallsBackToTheCmaDmaHeapAndElseLeadsNowhere)
{
    const HeapRegistry with_cma({plain_heap("dma-heap:linux,cma", "dma-heap"), plain_heap("memfd", "memfd")},
                                default_alias_rules());
    EXPECT_EQ(with_cma.resolve("contig").value(), 0u);

    const HeapRegistry without({plain_heap("memfd", "memfd")}, default_alias_rules());
    EXPECT_EQ(without.resolve("contig").error(), -ENODEV);
    EXPECT_THAT(without.describe_aliases(),
                ElementsAre("alias 'system' -> memfd",
                            "alias 'contig' leads nowhere: none of ion-type:system_contig, "
                            "dma-heap:default_cma_region, dma-heap:linux,cma, dma-heap:reserved is here"));
}

TEST(HeapRegistry, ContigTakesTheDefaultCmaRegionBeforeTheLegacyNameOfTheSameArea)
{
    // 6.17 and later: default_cma_region, and the default area's old name
    // beside it; any other CMA region of the device tree only by its name.
    const HeapRegistry newer({plain_heap("dma-heap:linux,cma", "dma-heap"),
                              plain_heap("dma-heap:default_cma_region", "dma-heap"),
                              plain_heap("dma-heap:framebuffer@80000000", "dma-heap")},
                             default_alias_rules());
    EXPECT_EQ(newer.heap(newer.resolve("contig").value()).name, "dma-heap:default_cma_region");
    EXPECT_EQ(newer.resolve("dma-heap:framebuffer@80000000").value(), 2u);

    const HeapRegistry reserved({plain_heap("dma-heap:reserved", "dma-heap")}, default_alias_rules());
    EXPECT_EQ(reserved.resolve("contig").value(), 0u);
}

TEST(HeapRegistry, AnEmptyNameIsTheSystemAliasElseTheFirstHeap)
{
    const HeapRegistry registry(every_heap(), default_alias_rules());
    EXPECT_EQ(registry.resolve("").value(), 0u);

    const HeapRegistry no_system({plain_heap("dma-heap:other", "dma-heap"), plain_heap("dma-heap:more", "dma-heap")},
                                 {});
    EXPECT_EQ(no_system.resolve("").value(), 0u);
}

TEST(HeapRegistry, AnUnknownNameOrAnEmptyRegistryIsNoDevice)
{
    EXPECT_EQ(HeapRegistry(every_heap(), default_alias_rules()).resolve("nonsense").error(), -ENODEV);
    EXPECT_EQ(HeapRegistry({}, default_alias_rules()).resolve("").error(), -ENODEV);
}

TEST(HeapRegistry, AHeapNameHidesAnAliasOfTheSameName)
{
    const HeapRegistry registry({plain_heap("memfd", "memfd"), plain_heap("udmabuf", "udmabuf")},
                                {{"memfd", {"udmabuf"}}});
    EXPECT_EQ(registry.resolve("memfd").value(), 0u);
    EXPECT_THAT(registry.aliases_of(1), IsEmpty());
    EXPECT_THAT(registry.describe_aliases(),
                ElementsAre("alias 'memfd' is ignored: a heap has that name"));
}

TEST(HeapRegistry, ListsTheAliasesThatLeadToEachHeap)
{
    const HeapRegistry registry(every_heap(), {{"system", {"memfd"}}, {"scratch", {"memfd"}}});
    EXPECT_THAT(registry.aliases_of(5), ElementsAre("system", "scratch"));
    EXPECT_THAT(registry.aliases_of(0), IsEmpty());
    EXPECT_EQ(registry.known_names(),
              "ion:ion_system_heap, ion:ion_system_contig_heap, ion:ion_carveout_heap, "
              "dma-heap:system, udmabuf, memfd (aliases: system, scratch)");
}

TEST(HeapRegistry, AnIonMaskSelectsItsIonHeapsHighestIdFirst)
{
    // every_heap(): ion ids 0, 1, 2 at indexes 0, 1, 2.
    const HeapRegistry registry(every_heap(), default_alias_rules());
    EXPECT_THAT(registry.resolve_ion_mask(0b001), ElementsAre(0u));
    EXPECT_THAT(registry.resolve_ion_mask(0b011), ElementsAre(1u, 0u));
    EXPECT_THAT(registry.resolve_ion_mask(0b111), ElementsAre(2u, 1u, 0u));
    EXPECT_THAT(registry.resolve_ion_mask(0b101), ElementsAre(2u, 0u));
    // Ids no heap has are skipped, as ION skipped them.
    EXPECT_THAT(registry.resolve_ion_mask(0xfffffffcu), ElementsAre(2u));
    EXPECT_THAT(registry.resolve_ion_mask(0xfffffff9u), ElementsAre(0u));
}

TEST(HeapRegistry, AnIonMaskWithoutAnIonHeapSelectsNothing)
{
    EXPECT_THAT(HeapRegistry(every_heap(), {}).resolve_ion_mask(0b1000), IsEmpty());
    EXPECT_THAT(HeapRegistry(every_heap(), {}).resolve_ion_mask(0), IsEmpty());
    EXPECT_THAT(HeapRegistry({plain_heap("memfd", "memfd")}, {}).resolve_ion_mask(~0u), IsEmpty());
}

TEST(HeapRegistry, NamesTheIonHeapIdsForMessages)
{
    EXPECT_EQ(HeapRegistry(every_heap(), {}).ion_heap_ids(),
              "ion:ion_system_heap (id 0), ion:ion_system_contig_heap (id 1), ion:ion_carveout_heap (id 2)");
    EXPECT_EQ(HeapRegistry({plain_heap("memfd", "memfd")}, {}).ion_heap_ids(), "none");
}

} // namespace
} // namespace ionsvc
