// SPDX-License-Identifier: MIT
#pragma once

#include <memory>

#include "backends/heap.h"
#include "syscalls/syscalls.h"

namespace ionsvc {

// memfd: the embedded default. Needs no device node and no privilege, so it
// works on every Linux machine. A buffer is a memfd of the page-aligned
// size, sealed so that nobody can shrink or grow it under a mapping.
std::unique_ptr<Backend> make_memfd_backend(Syscalls &syscalls);

} // namespace ionsvc
