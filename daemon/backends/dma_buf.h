// SPDX-License-Identifier: MIT
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <ionsvc/expected.h>
#include <ionsvc/unique_fd.h>

#include "backends/heap.h"
#include "syscalls/syscalls.h"

namespace ionsvc {

// What the dma-buf backends (ion, dma-heap, udmabuf) share.

// The longest dma-buf name the kernel keeps: DMA_BUF_NAME_LEN less the NUL.
inline constexpr std::size_t kMaxDmaBufNameLength = 31;

// buffer_name as a dma-buf name: up to any NUL, cut at a UTF-8 character
// boundary to fit kMaxDmaBufNameLength; "ionsvc" if that leaves nothing.
std::string dma_buf_name(std::string_view buffer_name);

// Names the dma-bufs of one backend with DMA_BUF_SET_NAME_B, so that
// /proc/<pid>/fdinfo and the kernel's dma_buf/bufinfo say whose they are.
class DmaBufNamer
{
public:
    DmaBufNamer(Syscalls &syscalls, std::string_view backend) : syscalls_(syscalls), backend_(backend) {}

    // dma_buf, named; or -errno, dma_buf closed. A kernel without the ioctl
    // (ENOTTY) cannot name buffers: that is said once and the buffers go
    // unnamed, since failing every allocation for a label helps nobody.
    Expected<UniqueFD, int> name(UniqueFD dma_buf, std::string_view buffer_name);
    // The same for a dma-buf that stays with the caller: 0 or -errno.
    int rename(int dma_buf, std::string_view buffer_name);

private:
    Syscalls &syscalls_;
    std::string_view backend_;
    // Cleared by the event loop or the warm pool's thread, whichever learns
    // first that the kernel cannot name dma-bufs.
    std::atomic<bool> kernel_names_ = true;
};

// The device node at path, opened read-write and close-on-exec, or why not:
// "<path>: <error text>", with absent_hint added when the node or its
// driver is not there.
Expected<UniqueFD, std::string> open_device(Syscalls &syscalls, const std::string &path,
                                            std::string_view absent_hint);

// How many references the kernel counts to the dma-buf behind fd: every
// fd, mapping and fd in flight, the daemon's own included (the "count:" of
// /proc/self/fdinfo/<fd>). -ENODATA if fd shows no count (not a dma-buf),
// -errno if its fdinfo cannot be read.
Expected<long, int> dma_buf_reference_count(Syscalls &syscalls, int fd);

// The "count:" line of fdinfo text, or -ENODATA.
Expected<long, int> fdinfo_count(std::string_view text);

// "<what>: <error text>" for -errno error.
std::string describe_error(std::string_view what, int error);

// Backend::heaps() of a backend that owns its heaps one by one.
template<typename H>
std::vector<Heap *> heap_pointers(const std::vector<std::unique_ptr<H>> &heaps)
{
    std::vector<Heap *> pointers;
    pointers.reserve(heaps.size());
    for (const auto &heap : heaps)
        pointers.push_back(heap.get());
    return pointers;
}

} // namespace ionsvc
