// SPDX-License-Identifier: MIT
#include "syscalls.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

namespace ionsvc {

namespace {

class KernelSyscalls final : public Syscalls
{
public:
    Expected<UniqueFD, int> memfd_create(const char *name, unsigned int flags) override
    {
        const int fd = ::memfd_create(name, flags);
        if (fd < 0)
            return Unexpected{-errno};
        return UniqueFD{fd};
    }

    int ftruncate(int fd, off_t length) override
    {
        return ::ftruncate(fd, length) < 0 ? -errno : 0;
    }

    int add_seals(int fd, int seals) override
    {
        return ::fcntl(fd, F_ADD_SEALS, seals) < 0 ? -errno : 0;
    }
};

} // namespace

Syscalls &real_syscalls()
{
    static KernelSyscalls syscalls;
    return syscalls;
}

} // namespace ionsvc
