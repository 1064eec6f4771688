// SPDX-License-Identifier: MIT
// ionsvc-bench: one buffer made in-process the way one backend of ionsvcd
// makes it, syscall for syscall, naming included. The raw case calls it in
// the bench, the floor's peer in its own process: the daemon's cost is then
// compared with the same allocation done without it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <bufclient/bufclient.h>
#include <ionsvc/unique_fd.h>

namespace ionsvc_bench {

using ionsvc::UniqueFD;

// The backends --backend takes, as ionsvcd's --backend names them.
inline constexpr std::string_view kBackendNames[] = {"memfd", "ion", "dma-heap", "udmabuf"};

// What one allocation of backend does, for the table's legend.
std::string_view allocation_steps(std::string_view backend);

class RawAllocator
{
public:
    // Opens what backend allocates from (nothing for memfd) and picks its
    // heap: heap, a heap name as ionsvcd lists it ("ion:ion_system_heap",
    // "dma-heap:system", "udmabuf", "memfd"), or if empty the backend's
    // system heap (for ion the first heap of type system, as the daemon's
    // "system" alias picks it). Throws BenchError when it cannot.
    RawAllocator(std::string backend, const std::string &heap);

    RawAllocator(const RawAllocator &) = delete;
    RawAllocator &operator=(const RawAllocator &) = delete;

    const std::string &backend() const { return backend_; }
    // The heap's name as ionsvcd serves it.
    const std::string &heap() const { return heap_; }

    // A buffer of size bytes (a whole number of pages), named buffer_name()
    // where the daemon names it; invalid, errno set, if the kernel refused.
    UniqueFD allocate(std::uint64_t size);

private:
    UniqueFD allocate_memfd(std::uint64_t size) const;
    UniqueFD allocate_ion(std::uint64_t size) const;
    UniqueFD allocate_dma_heap(std::uint64_t size) const;
    UniqueFD allocate_udmabuf(std::uint64_t size) const;
    // DMA_BUF_SET_NAME_B as the daemon's DmaBufNamer does it: on a kernel
    // without it (ENOTTY) the buffers stay unnamed from then on.
    UniqueFD name_dma_buf(UniqueFD dma_buf);

    std::string backend_;
    std::string heap_;
    UniqueFD device_;             // /dev/ion, /dev/dma_heap/<node> or /dev/udmabuf
    std::uint32_t ion_heap_id_ = 0;
    bool kernel_names_ = true;
};

// Throws BenchError unless the daemon behind client serves heap from
// backend, saying which heaps it does serve.
void check_daemon_serves(bufclient::Client &client, const RawAllocator &allocator);

} // namespace ionsvc_bench
