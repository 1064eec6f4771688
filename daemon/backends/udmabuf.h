// SPDX-License-Identifier: MIT
#pragma once

#include <memory>
#include <string>

#include <ionsvc/expected.h>

#include "backends/heap.h"
#include "syscalls/syscalls.h"

namespace ionsvc {

// udmabuf: one heap "udmabuf" whose buffers are dma-bufs made of a sealed
// memfd's pages (UDMABUF_CREATE on device, opened once here). Fails, saying
// why, without the device.
Expected<std::unique_ptr<Backend>, std::string> open_udmabuf_backend(
    Syscalls &syscalls, const std::string &device = "/dev/udmabuf");

} // namespace ionsvc
