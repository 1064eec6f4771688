// SPDX-License-Identifier: MIT
// What libionsvc-compat serves in place of the kernel: /dev/dma_heap/<name>
// and /dev/ion, opened as stand-in fds whose ioctls go to ionsvcd.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

namespace ionsvc::compat {

// A device node this layer serves: a dma-heap (its node name) or ION.
struct Device
{
    enum class Kind { kDmaHeap, kIon } kind = Kind::kDmaHeap;
    std::string heap_node; // dma-heap: "system", "linux,cma", ...
};

// The device path names, if it is one this layer intercepts:
// /dev/dma_heap/<name> (one level, no "..") or /dev/ion.
std::optional<Device> device_of_path(const char *path);

// Opens a stand-in fd for device with the open flags given (only
// O_CLOEXEC matters): a memfd, so that close, dup, fcntl and poll work as
// on any fd. Returns it, or -errno. Fails with -ENOENT, as the kernel
// would for a missing node, when the daemon serves nothing the device
// could lead to; with -EAGAIN when the daemon cannot be reached (the
// caller then tries the kernel's node).
int open_device(const Device &device, int flags);

// The device fd stands in for, if it is one of this process's stand-ins.
std::optional<Device> device_at(int fd);
// The stand-ins follow their fd: dup'ed, replaced or closed.
void device_duplicated(int fd, int duplicate);
void device_closed(int fd);
// close_range(first, last): every stand-in from first to last.
void devices_closed(int first, int last);

// An ioctl on a stand-in for device, served as the kernel would serve it
// on the real node: 0, or -errno. Unknown requests are -ENOTTY.
int device_ioctl(const Device &device, unsigned long request, void *argument);

// In a forked child: the parent's connection is not ours to use.
void forget_connection_after_fork();

} // namespace ionsvc::compat
