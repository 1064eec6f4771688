// SPDX-License-Identifier: MIT
#pragma once

#include <memory>
#include <string>

#include <ionsvc/expected.h>

#include "backends/heap.h"
#include "syscalls/syscalls.h"

namespace ionsvc {

// dma-buf heaps: every character device in directory is a heap
// "dma-heap:<node>" (dma-heap:system, dma-heap:linux,cma, ...), opened once
// here. A node that cannot be opened is left out with a warning. Fails,
// saying why, without the directory or without a node that opens.
Expected<std::unique_ptr<Backend>, std::string> open_dma_heap_backend(
    Syscalls &syscalls, const std::string &directory = "/dev/dma_heap");

} // namespace ionsvc
