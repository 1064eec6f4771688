// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <ionsvc/expected.h>

#include "backends/heap.h"
#include "syscalls/syscalls.h"

namespace ionsvc {

// A heap of an ION driver (4.12+ uapi), as the driver reports it: what maps
// ION heap ids and heap_id_masks onto the daemon's heaps needs these.
class IonHeap : public Heap
{
public:
    // Bit position in ion_allocation_data.heap_id_mask.
    virtual std::uint32_t ion_heap_id() const = 0;
    // enum ion_heap_type.
    virtual std::uint32_t ion_heap_type() const = 0;

    bool exports_dma_buf() const override { return true; }
};

// The name of an ION heap type, as Heap::type() gives it ("system", ...).
std::string_view ion_heap_type_name(std::uint32_t type);

// ION: every heap the driver at device reports (ION_IOC_HEAP_QUERY) is a
// heap "ion:<ION heap name>", whatever its name and id. Buffers are
// allocated with the flags the client gave (ION_FLAG_*, which the protocol
// copies bit for bit). Fails, saying why, without a device or without heaps.
Expected<std::unique_ptr<Backend>, std::string> open_ion_backend(Syscalls &syscalls,
                                                                 const std::string &device = "/dev/ion");

} // namespace ionsvc
