// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <ionsvc/expected.h>
#include <ionsvc/unique_fd.h>

#include "heap.h"
#include "syscalls.h"

namespace ionsvc {

// Index of a heap in the allocator's table; stable for the daemon's life.
using HeapIndex = std::uint32_t;

struct HeapEntry
{
    Heap *heap;
    std::string_view backend;
};

// Owns the backends and the table of every heap they serve.
class Allocator
{
public:
    explicit Allocator(std::vector<std::unique_ptr<Backend>> backends);

    std::size_t heap_count() const { return heaps_.size(); }
    const HeapEntry &heap(HeapIndex index) const { return heaps_.at(index); }

    // The heap called name, or the default heap (the first) for an empty
    // name. -ENODEV if there is none.
    Expected<HeapIndex, int> find_heap(std::string_view name) const;

    // A buffer of size bytes, which must be page-aligned, from one heap.
    Expected<UniqueFD, int> allocate(HeapIndex index, std::uint64_t size, std::uint32_t flags,
                                     std::string_view buffer_name);

    // Names of every heap, comma separated, for error messages.
    std::string heap_names() const;

private:
    std::vector<std::unique_ptr<Backend>> backends_;
    std::vector<HeapEntry> heaps_;
};

// size rounded up to whole pages; -EOVERFLOW if that does not fit.
Expected<std::uint64_t, int> page_align(std::uint64_t size);

// Names accepted by --backend.
inline constexpr std::string_view kBackendChoices[] = {"auto", "memfd"};

// Opens the backends that choice names ("auto": every one this machine
// has). Returns them with a line per backend that was left out, and why.
struct OpenedBackends
{
    std::vector<std::unique_ptr<Backend>> backends;
    std::vector<std::string> missing;
};
OpenedBackends open_backends(std::string_view choice, Syscalls &syscalls);

} // namespace ionsvc
