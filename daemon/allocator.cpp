// SPDX-License-Identifier: MIT
#include "allocator.h"

#include <unistd.h>

#include <cerrno>

#include "memfd_backend.h"

namespace ionsvc {

Allocator::Allocator(std::vector<std::unique_ptr<Backend>> backends)
    : backends_(std::move(backends))
{
    for (auto &backend : backends_) {
        for (Heap *heap : backend->heaps())
            heaps_.push_back({heap, backend->name()});
    }
}

Expected<HeapIndex, int> Allocator::find_heap(std::string_view name) const
{
    if (heaps_.empty())
        return Unexpected{-ENODEV};
    if (name.empty())
        return HeapIndex{0};
    for (std::size_t i = 0; i < heaps_.size(); ++i) {
        if (heaps_[i].heap->name() == name)
            return static_cast<HeapIndex>(i);
    }
    return Unexpected{-ENODEV};
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
    std::string names;
    for (const auto &entry : heaps_) {
        if (!names.empty())
            names += ", ";
        names += entry.heap->name();
    }
    return names;
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
    OpenedBackends opened;
    // memfd needs nothing from the machine: it is always there.
    if (choice == "auto" || choice == "memfd")
        opened.backends.push_back(make_memfd_backend(syscalls));
    return opened;
}

} // namespace ionsvc
