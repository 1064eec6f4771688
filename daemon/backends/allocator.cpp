// SPDX-License-Identifier: MIT
#include "backends/allocator.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

#include "backends/dma_heap.h"
#include "backends/ion.h"
#include "backends/memfd.h"
#include "backends/udmabuf.h"

namespace ionsvc {

namespace {

std::vector<HeapEntry> heap_table(const std::vector<std::unique_ptr<Backend>> &backends)
{
    std::vector<HeapEntry> heaps;
    for (const auto &backend : backends) {
        for (Heap *heap : backend->heaps())
            heaps.push_back({heap, backend->name()});
    }
    return heaps;
}

std::vector<HeapDescription> describe(const std::vector<HeapEntry> &heaps)
{
    std::vector<HeapDescription> descriptions;
    for (const HeapEntry &entry : heaps) {
        HeapDescription description{std::string{entry.heap->name()}, std::string{entry.backend},
                                    std::string{entry.heap->type()}, std::nullopt};
        if (const auto *ion = dynamic_cast<const IonHeap *>(entry.heap))
            description.ion_heap_id = ion->ion_heap_id();
        descriptions.push_back(std::move(description));
    }
    return descriptions;
}

// The backend whose heaps are named like name ("ion:<heap>", an alias's
// "ion-type:<type>", "dma-heap:<node>", "udmabuf", "memfd"); empty for an
// alias or a typo.
std::string_view backend_of(std::string_view heap_name)
{
    if (heap_name.starts_with("ion:") || heap_name.starts_with("ion-type:"))
        return "ion";
    if (heap_name.starts_with("dma-heap:"))
        return "dma-heap";
    if (heap_name == "udmabuf" || heap_name == "memfd")
        return heap_name;
    return {};
}

} // namespace

Allocator::Allocator(std::vector<std::unique_ptr<Backend>> backends,
                     const std::vector<AliasRule> &aliases, std::vector<UnservedBackend> unserved)
    : backends_(std::move(backends)), unserved_(std::move(unserved)), heaps_(heap_table(backends_)),
      registry_(describe(heaps_), aliases)
{
}

std::optional<std::string> Allocator::why_not_served(std::string_view heap_name) const
{
    const std::string_view backend = backend_of(heap_name);
    if (backend.empty()) {
        // An alias: where it would have led, and why those are not here.
        auto why = registry_.why_alias_leads_nowhere(heap_name);
        if (!why)
            return std::nullopt;
        const std::vector<std::string> candidates = registry_.alias_candidates(heap_name);
        for (const UnservedBackend &unserved : unserved_) {
            const bool wanted = std::any_of(candidates.begin(), candidates.end(), [&](const std::string &candidate) {
                return backend_of(candidate) == unserved.name;
            });
            if (wanted)
                *why += "; backend " + unserved.name + " is not served: " + unserved.reason;
        }
        return why;
    }
    for (const UnservedBackend &unserved : unserved_) {
        if (unserved.name == backend)
            return "backend " + unserved.name + " is not served: " + unserved.reason;
    }
    return std::nullopt;
}

Expected<HeapIndex, int> Allocator::find_heap(std::string_view name) const
{
    return registry_.resolve(name);
}

Expected<UniqueFD, int> Allocator::allocate(HeapIndex index, std::uint64_t size,
                                            std::uint32_t flags, std::string_view buffer_name)
{
    if (index >= heaps_.size())
        return Unexpected{-ENODEV};
    return heaps_[index].heap->allocate(size, flags, buffer_name);
}

std::string Allocator::heap_names() const
{
    return registry_.known_names();
}

Expected<std::uint64_t, int> page_align(std::uint64_t size)
{
    static const std::uint64_t page_size = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    if (size > UINT64_MAX - (page_size - 1))
        return Unexpected{-EOVERFLOW};
    return (size + page_size - 1) / page_size * page_size;
}

OpenedBackends open_backends(std::string_view choice, Syscalls &syscalls)
{
    using Opener = Expected<std::unique_ptr<Backend>, std::string> (*)(Syscalls &);
    struct Source
    {
        std::string_view name;
        Opener open;
    };
    static constexpr Source kSources[] = {
        {"ion", [](Syscalls &s) { return open_ion_backend(s); }},
        {"dma-heap", [](Syscalls &s) { return open_dma_heap_backend(s); }},
        {"udmabuf", [](Syscalls &s) { return open_udmabuf_backend(s); }},
        // memfd needs nothing from the machine: it is always there.
        {"memfd", [](Syscalls &s) -> Expected<std::unique_ptr<Backend>, std::string> {
             return make_memfd_backend(s);
         }},
    };

    OpenedBackends opened;
    for (const Source &source : kSources) {
        if (choice != "auto" && choice != source.name) {
            opened.unserved.push_back(
                {std::string(source.name), fmt::format("not chosen (--backend {})", choice), false});
            continue;
        }
        auto backend = source.open(syscalls);
        if (backend)
            opened.backends.push_back(std::move(*backend));
        else
            opened.unserved.push_back({std::string(source.name), std::move(backend).error()});
    }
    return opened;
}

std::vector<std::string> OpenedBackends::missing() const
{
    std::vector<std::string> lines;
    for (const UnservedBackend &backend : unserved) {
        if (backend.tried)
            lines.push_back(backend.name + ": " + backend.reason);
    }
    return lines;
}

} // namespace ionsvc
