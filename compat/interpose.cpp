// SPDX-License-Identifier: MIT
// libionsvc-compat's entry points: the libc functions it stands in front of
// (LD_PRELOAD). Only opens of /dev/dma_heap/<name> and /dev/ion, and the
// fds they return, are served here; every other call goes to libc as it
// came.
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "devices.h"

static_assert(sizeof(long) == 8, "open64 and friends are aliases of open: 64-bit targets only");

namespace {

using ionsvc::compat::Device;

// libc's own function of that name.
template<typename Function>
Function *next(const char *name)
{
    return reinterpret_cast<Function *>(::dlsym(RTLD_NEXT, name));
}

// An open of a device this layer serves: a stand-in, or, if the daemon
// cannot be reached, the kernel's node (kernel_open) if the process may
// open it, else the kernel's errno with a line on stderr.
template<typename KernelOpen>
int open_served(const Device &device, const char *path, int flags, KernelOpen &&kernel_open)
{
    const int fd = ionsvc::compat::open_device(device, flags);
    if (fd >= 0)
        return fd;
    if (fd != -EAGAIN) {
        errno = -fd;
        return -1;
    }
    const int kernel_fd = kernel_open();
    if (kernel_fd < 0) {
        const int error = errno;
        std::fprintf(stderr, "ionsvc-compat: %s: ionsvcd cannot be reached (IONSVC_SOCKET), and the node: %s\n",
                     path, std::strerror(error));
        errno = error;
    }
    return kernel_fd;
}

// The mode an open that creates passes; reading it otherwise would read
// past what the caller passed.
mode_t mode_argument(int flags, va_list arguments)
{
    const bool creates = (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE;
    return creates ? va_arg(arguments, mode_t) : 0;
}

int open_at(int directory, const char *path, int flags, mode_t mode)
{
    using OpenAt = int(int, const char *, int, ...);
    static OpenAt *const real = next<OpenAt>("openat");
    // Only absolute device paths: relative ones would need the directory's path.
    if (path && path[0] == '/') {
        if (const auto device = ionsvc::compat::device_of_path(path))
            return open_served(*device, path, flags, [&] { return real(directory, path, flags, mode); });
    }
    return real(directory, path, flags, mode);
}

int duplicated(int fd, int result)
{
    if (result >= 0)
        ionsvc::compat::device_duplicated(fd, result);
    return result;
}

} // namespace

// Only these are the library's symbols (CXX_VISIBILITY_PRESET hidden).
#pragma GCC visibility push(default)
extern "C" {

int open(const char *path, int flags, ...)
{
    va_list arguments;
    va_start(arguments, flags);
    const mode_t mode = mode_argument(flags, arguments);
    va_end(arguments);
    return open_at(AT_FDCWD, path, flags, mode);
}

int openat(int directory, const char *path, int flags, ...)
{
    va_list arguments;
    va_start(arguments, flags);
    const mode_t mode = mode_argument(flags, arguments);
    va_end(arguments);
    return open_at(directory, path, flags, mode);
}

// _FORTIFY_SOURCE's checked opens: no mode.
int __open_2(const char *path, int flags)
{
    return open_at(AT_FDCWD, path, flags, 0);
}

int __openat_2(int directory, const char *path, int flags)
{
    return open_at(directory, path, flags, 0);
}

// On 64-bit targets the 64 variants are the same calls.
int open64(const char *path, int flags, ...) __attribute__((alias("open")));
int openat64(int directory, const char *path, int flags, ...) __attribute__((alias("openat")));
int __open64_2(const char *path, int flags) __attribute__((alias("__open_2")));
int __openat64_2(int directory, const char *path, int flags) __attribute__((alias("__openat_2")));

int ioctl(int fd, unsigned long request, ...)
{
    va_list arguments;
    va_start(arguments, request);
    void *argument = va_arg(arguments, void *);
    va_end(arguments);
    if (const auto device = ionsvc::compat::device_at(fd)) {
        const int result = ionsvc::compat::device_ioctl(*device, request, argument);
        if (result < 0) {
            errno = -result;
            return -1;
        }
        return result;
    }
    using Ioctl = int(int, unsigned long, ...);
    static Ioctl *const real = next<Ioctl>("ioctl");
    return real(fd, request, argument);
}

int close(int fd)
{
    using Close = int(int);
    static Close *const real = next<Close>("close");
    ionsvc::compat::device_closed(fd);
    return real(fd);
}

int close_range(unsigned first, unsigned last, int flags)
{
    using CloseRange = int(unsigned, unsigned, int);
    static CloseRange *const real = next<CloseRange>("close_range");
    const int result = real(first, last, flags);
    // CLOSE_RANGE_CLOEXEC only marks them.
    if (result == 0 && (flags & CLOSE_RANGE_CLOEXEC) == 0)
        ionsvc::compat::devices_closed(static_cast<int>(std::min(first, unsigned{INT_MAX})),
                                       static_cast<int>(std::min(last, unsigned{INT_MAX})));
    return result;
}

int dup(int fd)
{
    using Dup = int(int);
    static Dup *const real = next<Dup>("dup");
    return duplicated(fd, real(fd));
}

int dup2(int fd, int target)
{
    using Dup2 = int(int, int);
    static Dup2 *const real = next<Dup2>("dup2");
    const int result = real(fd, target);
    if (result >= 0 && fd != target)
        ionsvc::compat::device_duplicated(fd, result);
    return result;
}

int dup3(int fd, int target, int flags)
{
    using Dup3 = int(int, int, int);
    static Dup3 *const real = next<Dup3>("dup3");
    const int result = real(fd, target, flags);
    if (result >= 0)
        ionsvc::compat::device_duplicated(fd, result);
    return result;
}

int fcntl(int fd, int command, ...)
{
    va_list arguments;
    va_start(arguments, command);
    // Every command's argument is an int or a pointer: pass a pointer-sized word.
    void *argument = va_arg(arguments, void *);
    va_end(arguments);
    using Fcntl = int(int, int, ...);
    static Fcntl *const real = next<Fcntl>("fcntl");
    const int result = real(fd, command, argument);
    if (command == F_DUPFD || command == F_DUPFD_CLOEXEC)
        return duplicated(fd, result);
    return result;
}

} // extern "C"
#pragma GCC visibility pop
