// SPDX-License-Identifier: MIT
#include "backends/heap_registry.h"

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

namespace ionsvc {
namespace {

constexpr std::string_view kIonTypePrefix = "ion-type:";

std::string join(const std::vector<std::string> &items, std::string_view separator)
{
    std::string joined;
    for (const auto &item : items) {
        if (!joined.empty())
            joined += separator;
        joined += item;
    }
    return joined;
}

} // namespace

std::vector<AliasRule> default_alias_rules()
{
    return {
        {"system", {"ion-type:system", "dma-heap:system", "udmabuf", "memfd"}},
        // The CMA dma-heap: from 6.17 the default CMA area's heap is always
        // default_cma_region; before, it had the area's name, reserved (set
        // up by cma= or Kconfig) or its device-tree node's (linux,cma).  Newer
        // kernels keep a heap of that old name too, for the same memory, and
        // add one for every other reusable CMA region of the device tree,
        // named after its node: those are asked for by their dma-heap: name.
        {"contig",
         {"ion-type:system_contig", "dma-heap:default_cma_region", "dma-heap:linux,cma", "dma-heap:reserved"}},
    };
}

HeapRegistry::HeapRegistry(std::vector<HeapDescription> heaps, const std::vector<AliasRule> &rules)
    : heaps_(std::move(heaps))
{
    for (const AliasRule &rule : rules) {
        ResolvedAlias resolved{rule.alias, std::nullopt, rule.candidates};
        for (const std::string &candidate : rule.candidates) {
            resolved.heap = find_candidate(candidate);
            if (resolved.heap)
                break;
        }
        aliases_.push_back(std::move(resolved));
    }
    if (!heaps_.empty()) {
        const auto by_default = resolve(kDefaultAlias);
        unnamed_ = by_default ? by_default : Expected<HeapIndex, int>{HeapIndex{0}};
    }
}

std::optional<HeapIndex> HeapRegistry::find_by_name(std::string_view name) const
{
    for (std::size_t i = 0; i < heaps_.size(); ++i) {
        if (heaps_[i].name == name)
            return static_cast<HeapIndex>(i);
    }
    return std::nullopt;
}

std::optional<HeapIndex> HeapRegistry::find_candidate(std::string_view candidate) const
{
    if (!candidate.starts_with(kIonTypePrefix))
        return find_by_name(candidate);
    const std::string_view type = candidate.substr(kIonTypePrefix.size());
    for (std::size_t i = 0; i < heaps_.size(); ++i) {
        if (heaps_[i].ion_heap_id && heaps_[i].type == type)
            return static_cast<HeapIndex>(i);
    }
    return std::nullopt;
}

Expected<HeapIndex, int> HeapRegistry::resolve(std::string_view name) const
{
    if (name.empty())
        return unnamed_;
    if (heaps_.empty())
        return Unexpected{-ENODEV};
    if (const auto heap = find_by_name(name))
        return *heap;
    for (const ResolvedAlias &alias : aliases_) {
        if (alias.alias == name && alias.heap)
            return *alias.heap;
    }
    return Unexpected{-ENODEV};
}

std::vector<HeapIndex> HeapRegistry::resolve_ion_mask(std::uint32_t heap_id_mask) const
{
    std::vector<HeapIndex> selected;
    for (std::size_t i = 0; i < heaps_.size(); ++i) {
        const auto id = heaps_[i].ion_heap_id;
        if (id && *id < 32 && (heap_id_mask & (std::uint32_t{1} << *id)))
            selected.push_back(static_cast<HeapIndex>(i));
    }
    std::sort(selected.begin(), selected.end(), [this](HeapIndex a, HeapIndex b) {
        return *heaps_[a].ion_heap_id > *heaps_[b].ion_heap_id;
    });
    return selected;
}

std::string HeapRegistry::ion_heap_ids() const
{
    std::vector<std::string> entries;
    for (const HeapDescription &heap : heaps_) {
        if (heap.ion_heap_id)
            entries.push_back(fmt::format("{} (id {})", heap.name, *heap.ion_heap_id));
    }
    return entries.empty() ? "none" : join(entries, ", ");
}

std::vector<std::string> HeapRegistry::aliases_of(HeapIndex index) const
{
    std::vector<std::string> names;
    for (const ResolvedAlias &alias : aliases_) {
        // A heap's own name hides an alias of the same name.
        if (alias.heap == index && !find_by_name(alias.alias))
            names.push_back(alias.alias);
    }
    return names;
}

namespace {

std::string leads_nowhere(const std::string &alias, const std::vector<std::string> &candidates)
{
    return "alias '" + alias + "' leads nowhere: none of " + join(candidates, ", ") + " is here";
}

} // namespace

std::vector<std::string> HeapRegistry::describe_aliases() const
{
    std::vector<std::string> lines;
    for (const ResolvedAlias &alias : aliases_) {
        if (find_by_name(alias.alias))
            lines.push_back("alias '" + alias.alias + "' is ignored: a heap has that name");
        else if (alias.heap)
            lines.push_back("alias '" + alias.alias + "' -> " + heaps_[*alias.heap].name);
        else
            lines.push_back(leads_nowhere(alias.alias, alias.candidates));
    }
    return lines;
}

std::vector<std::string> HeapRegistry::alias_candidates(std::string_view name) const
{
    for (const ResolvedAlias &alias : aliases_) {
        if (alias.alias == name)
            return alias.candidates;
    }
    return {};
}

std::optional<std::string> HeapRegistry::why_alias_leads_nowhere(std::string_view name) const
{
    for (const ResolvedAlias &alias : aliases_) {
        if (alias.alias == name && !alias.heap && !find_by_name(name))
            return leads_nowhere(alias.alias, alias.candidates);
    }
    return std::nullopt;
}

std::string HeapRegistry::known_names() const
{
    std::vector<std::string> heap_names;
    for (const auto &heap : heaps_)
        heap_names.push_back(heap.name);
    std::vector<std::string> alias_names;
    for (const ResolvedAlias &alias : aliases_) {
        if (alias.heap && !find_by_name(alias.alias))
            alias_names.push_back(alias.alias);
    }
    std::string names = join(heap_names, ", ");
    if (!alias_names.empty())
        names += " (aliases: " + join(alias_names, ", ") + ")";
    return names;
}

} // namespace ionsvc
