// SPDX-License-Identifier: MIT
#pragma once

#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <ionsvc/expected.h>

namespace ionsvc {

// Index of a heap in the allocator's table; stable for the daemon's life.
using HeapIndex = std::uint32_t;

// What the registry needs to know of one heap.
struct HeapDescription
{
    std::string name;    // stable: "ion:ion_system_heap", "dma-heap:system", "memfd"
    std::string backend; // "ion", "dma-heap", "udmabuf", "memfd"
    std::string type;    // ION heap type name: "system", "system_contig", ...
    std::optional<std::uint32_t> ion_heap_id; // ion heaps only
};

// An alias and where it points: the first candidate that exists wins. A
// candidate is a heap name or "ion-type:<type>", the first ion heap of that
// ION heap type (ION drivers name their heaps as they like).
struct AliasRule
{
    std::string alias;
    std::vector<std::string> candidates;
};

// The aliases every machine gets unless the config file says otherwise.
std::vector<AliasRule> default_alias_rules();

// The alias an empty heap name means.
inline constexpr std::string_view kDefaultAlias = "system";

// Heap names and aliases, resolved once at start-up: the heaps a daemon
// serves do not change while it runs.
class HeapRegistry
{
public:
    HeapRegistry(std::vector<HeapDescription> heaps, const std::vector<AliasRule> &rules);

    std::size_t size() const { return heaps_.size(); }
    const HeapDescription &heap(HeapIndex index) const { return heaps_.at(index); }

    // The heap a name means: a heap's own name first, then an alias; an
    // empty name is the default alias, else the first heap. -ENODEV if none.
    Expected<HeapIndex, int> resolve(std::string_view name) const;
    // The ion heaps an ION heap_id_mask selects, highest id first: the
    // order in which ION tried them. Empty if the mask names none.
    std::vector<HeapIndex> resolve_ion_mask(std::uint32_t heap_id_mask) const;
    // "ion:a (id 0), ion:b (id 2)", or "none": for messages about masks.
    std::string ion_heap_ids() const;

    // The aliases that lead to a heap, in rule order.
    std::vector<std::string> aliases_of(HeapIndex index) const;
    // One line per alias and where it led, or why it leads nowhere.
    std::vector<std::string> describe_aliases() const;
    // "alias 'x' leads nowhere: none of a, b is here" if name is an alias
    // that leads to no heap.
    std::optional<std::string> why_alias_leads_nowhere(std::string_view name) const;
    // The candidates of the alias name, in order; none if it is no alias.
    std::vector<std::string> alias_candidates(std::string_view name) const;
    // "a, b, c (aliases: x, y)": for messages naming what does exist.
    std::string known_names() const;
    // The heap of exactly this name (no alias), as config sections that
    // name heaps mean them.
    std::optional<HeapIndex> find_by_name(std::string_view name) const;

private:
    struct ResolvedAlias
    {
        std::string alias;
        std::optional<HeapIndex> heap;
        std::vector<std::string> candidates;
    };

    std::optional<HeapIndex> find_candidate(std::string_view candidate) const;

    std::vector<HeapDescription> heaps_;
    std::vector<ResolvedAlias> aliases_;
    // What an empty name resolves to, fixed with the aliases: most
    // allocations name no heap.
    Expected<HeapIndex, int> unnamed_ = Unexpected{-ENODEV};
};

} // namespace ionsvc
