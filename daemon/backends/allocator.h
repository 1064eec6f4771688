// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <ionsvc/expected.h>
#include <ionsvc/unique_fd.h>

#include "backends/heap.h"
#include "backends/heap_registry.h"
#include "syscalls/syscalls.h"

namespace ionsvc {

// A backend the daemon did not open, and why: what failed, or that
// --backend left it out (then it was not tried).
struct UnservedBackend
{
    std::string name;
    std::string reason;
    bool tried = true;
};

struct HeapEntry
{
    Heap *heap;
    std::string_view backend;
};

// Owns the backends and the table of every heap they serve.
class Allocator
{
public:
    // aliases: where names like "system" lead (see HeapRegistry).
    // unserved: the backends not opened, for messages about their heaps.
    explicit Allocator(std::vector<std::unique_ptr<Backend>> backends,
                       const std::vector<AliasRule> &aliases = default_alias_rules(),
                       std::vector<UnservedBackend> unserved = {});

    std::size_t heap_count() const { return heaps_.size(); }
    const HeapEntry &heap(HeapIndex index) const { return heaps_.at(index); }

    // The heap a name or alias means; an empty name is the "system" alias
    // (else the first heap). -ENODEV if there is none.
    Expected<HeapIndex, int> find_heap(std::string_view name) const;

    // A buffer of size bytes, which must be page-aligned, from one heap.
    Expected<UniqueFD, int> allocate(HeapIndex index, std::uint64_t size, std::uint32_t flags,
                                     std::string_view buffer_name);

    // Names of every heap and alias, for error messages.
    std::string heap_names() const;
    const HeapRegistry &registry() const { return registry_; }
    // "backend dma-heap is not served: ..." if name is a heap of a backend
    // that was not opened, or "alias 'contig' leads nowhere: ..." with the
    // backends not opened and why: why such a name is unknown here.
    std::optional<std::string> why_not_served(std::string_view heap_name) const;

private:
    std::vector<std::unique_ptr<Backend>> backends_;
    std::vector<UnservedBackend> unserved_;
    std::vector<HeapEntry> heaps_;
    HeapRegistry registry_;
};

// size rounded up to whole pages; -EOVERFLOW if that does not fit.
Expected<std::uint64_t, int> page_align(std::uint64_t size);

// Names accepted by --backend: "auto" or one backend.
inline constexpr std::string_view kBackendChoices[] = {"auto", "ion", "dma-heap", "udmabuf", "memfd"};

// Opens the backends that choice names ("auto": every one this machine
// has, in the order of kBackendChoices). Returns them with a line per
// backend that was left out, and why, e.g. "ion: /dev/ion: No such file or
// directory (...)". A backend named alone that cannot open is missing too,
// and nothing is opened in its place. unserved has every backend not
// opened, the ones --backend left out too, with the reason.
struct OpenedBackends
{
    std::vector<std::unique_ptr<Backend>> backends;
    std::vector<UnservedBackend> unserved;

    // "<backend>: <reason>" for each backend tried that did not open.
    std::vector<std::string> missing() const;
};
OpenedBackends open_backends(std::string_view choice, Syscalls &syscalls);

} // namespace ionsvc
