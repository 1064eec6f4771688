// SPDX-License-Identifier: MIT
#pragma once

#include <cerrno>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <ionsvc/expected.h>
#include <ionsvc/unique_fd.h>

namespace ionsvc {

// One source of buffers: ION's heap, a dma-buf heap node, memfd.
class Heap
{
public:
    virtual ~Heap() = default;

    // Stable name clients ask for, e.g. "memfd".
    virtual std::string_view name() const = 0;
    // ION heap type name: "system", "system_contig", "carveout", "dma", ...
    virtual std::string_view type() const = 0;

    // Its buffers are dma-bufs, whose references the kernel counts: the
    // daemon can tell when nobody but itself holds one (see Books).
    virtual bool exports_dma_buf() const = 0;

    // The largest buffer the kernel lets this heap make, where it sets one,
    // and what sets it: the Service refuses a larger request up front,
    // naming the limit, instead of passing on the kernel's bare EINVAL.
    struct SizeLimit
    {
        std::uint64_t bytes = 0;
        std::string source;
    };
    virtual std::optional<SizeLimit> size_limit() const { return std::nullopt; }

    // Allocates one buffer of size bytes (a whole number of pages) and
    // returns the fd that owns it, or -errno.
    // flags are ION's cache flags (ALLOC_FLAG_CACHED...); heaps without
    // such a choice ignore them.
    virtual Expected<UniqueFD, int> allocate(std::uint64_t size, std::uint32_t flags,
                                             std::string_view buffer_name) = 0;

    // Backs every page of a buffer of this heap now, so that its first use
    // does not fault them in: 0 or -errno. Heaps whose kernel allocator
    // backs buffers as it makes them (every dma-buf heap) have nothing to do.
    virtual int populate(int /*fd*/, std::uint64_t /*size*/) { return 0; }

    // Gives a buffer made earlier (by the warm pool) the name it would have
    // had if made now: 0 or -errno. Where the name is fixed at creation
    // (memfd), -EOPNOTSUPP.
    virtual int rename(int /*fd*/, std::string_view /*buffer_name*/) { return -EOPNOTSUPP; }
};

// A family of heaps behind one kernel interface (memfd, ION, dma-heap,
// udmabuf). Each backend lives in a file of its own and owns its heaps.
class Backend
{
public:
    virtual ~Backend() = default;

    virtual std::string_view name() const = 0;
    // The heaps this backend serves, in a stable order. The backend keeps
    // them alive for as long as it lives.
    virtual std::vector<Heap *> heaps() = 0;
};

} // namespace ionsvc
