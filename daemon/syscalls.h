// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>

#include <cstdint>

#include <ionsvc/expected.h>
#include <ionsvc/unique_fd.h>

namespace ionsvc {

// The syscalls that make buffers, behind an interface so that unit tests can
// make them fail with ENOMEM, EMFILE, ... Each returns -errno, saved right
// after the failing call. Production code uses real_syscalls().
class Syscalls
{
public:
    virtual ~Syscalls() = default;

    virtual Expected<UniqueFD, int> memfd_create(const char *name, unsigned int flags) = 0;
    virtual int ftruncate(int fd, off_t length) = 0;
    virtual int add_seals(int fd, int seals) = 0;
};

// The process-wide implementation that calls the kernel.
Syscalls &real_syscalls();

} // namespace ionsvc
