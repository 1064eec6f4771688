// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

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
    // Backs bytes [0, length) of a file with pages now (fallocate mode 0).
    virtual int fallocate(int fd, off_t length) = 0;

    // Device nodes: /dev/ion, /dev/dma_heap/<heap>, /dev/udmabuf.
    virtual Expected<UniqueFD, int> open(const char *path, int flags) = 0;
    // The ioctl's non-negative result or -errno. An ioctl that makes an fd
    // hands it back in its argument or its result: the caller wraps it in a
    // UniqueFD at once.
    virtual int ioctl(int fd, unsigned long request, void *arg) = 0;
    // Names of the character devices in directory (not sorted).
    virtual Expected<std::vector<std::string>, int> list_char_devices(const char *directory) = 0;

    // Reads /proc/self/fdinfo/<fd> into text; the bytes read or -errno.
    // How the daemon learns how many references a dma-buf has.
    virtual Expected<std::size_t, int> read_fdinfo(int fd, std::span<char> text) = 0;

    // The text of a small file, such as a module parameter under
    // /sys/module, or -errno.
    virtual Expected<std::string, int> read_text(const char *path) = 0;

    // What /proc/self/fd/<fd> links to ("/memfd:<name> (deleted)",
    // "/dmabuf:<name>", ...), or -errno. A buffer listing reads names here.
    virtual Expected<std::string, int> fd_link(int fd) = 0;
    // The inode number of the file behind fd (fstat), or -errno: the same in
    // every process that holds the file, which is how views of /proc match
    // a buffer to the daemon's.
    virtual Expected<std::uint64_t, int> inode(int fd) = 0;

    // Fills bytes from the kernel's random pool (getrandom): 0 or -errno.
    virtual int get_random(std::span<std::byte> bytes) = 0;
};

// The process-wide implementation that calls the kernel.
Syscalls &real_syscalls();

} // namespace ionsvc
