// SPDX-License-Identifier: MIT
#include "raw_allocation.h"

#include <fcntl.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/udmabuf.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "kernel/uapi/ion.h"
#include "processes.h"

namespace ionsvc_bench {

namespace {

// The daemon's device nodes, at their default paths.
constexpr const char *kIonDevice = "/dev/ion";
constexpr const char *kDmaHeapDirectory = "/dev/dma_heap/";
constexpr const char *kUdmabufDevice = "/dev/udmabuf";

constexpr std::string_view kIonPrefix = "ion:";
constexpr std::string_view kDmaHeapPrefix = "dma-heap:";

UniqueFD open_device(const std::string &path, const char *absent_hint)
{
    UniqueFD fd{::open(path.c_str(), O_RDWR | O_CLOEXEC)};
    if (!fd) {
        const int error = errno;
        throw BenchError("cannot open " + path + ": " + errno_text(error) +
                         (error == ENOENT || error == ENODEV || error == ENXIO
                              ? std::string(" (") + absent_hint + ")"
                              : std::string()));
    }
    return fd;
}

// Every heap ION reports whose id fits a heap_id_mask, in the driver's order.
std::vector<ion_heap_data> ion_heaps(int device)
{
    ion_heap_query query{};
    if (::ioctl(device, ION_IOC_HEAP_QUERY, &query) < 0)
        throw BenchError(std::string(kIonDevice) + ": ION_IOC_HEAP_QUERY failed: " + errno_text(errno));
    std::vector<ion_heap_data> heaps(std::min<std::uint32_t>(query.cnt, ION_NUM_HEAP_IDS));
    if (heaps.empty())
        return heaps;
    query = {};
    query.cnt = static_cast<std::uint32_t>(heaps.size());
    query.heaps = reinterpret_cast<std::uintptr_t>(heaps.data());
    if (::ioctl(device, ION_IOC_HEAP_QUERY, &query) < 0)
        throw BenchError(std::string(kIonDevice) + ": ION_IOC_HEAP_QUERY failed: " + errno_text(errno));
    heaps.resize(std::min<std::size_t>(query.cnt, heaps.size()));
    std::erase_if(heaps, [](const ion_heap_data &data) { return data.heap_id >= ION_NUM_HEAP_IDS; });
    return heaps;
}

std::string ion_heap_name(const ion_heap_data &data)
{
    return std::string(kIonPrefix) + std::string(data.name, ::strnlen(data.name, sizeof data.name));
}

// errno of the failed call survives the cleanup that follows it.
UniqueFD failed(UniqueFD &&fd, int error)
{
    fd.reset();
    errno = error;
    return {};
}

} // namespace

std::string_view allocation_steps(std::string_view backend)
{
    if (backend == "ion")
        return "ION_IOC_ALLOC + DMA_BUF_SET_NAME_B";
    if (backend == "dma-heap")
        return "DMA_HEAP_IOCTL_ALLOC + DMA_BUF_SET_NAME_B";
    if (backend == "udmabuf")
        return "memfd_create + ftruncate + seal + UDMABUF_CREATE + close(memfd) + DMA_BUF_SET_NAME_B";
    return "memfd_create + ftruncate + seal";
}

RawAllocator::RawAllocator(std::string backend, const std::string &heap) : backend_(std::move(backend))
{
    if (backend_ == "memfd" || backend_ == "udmabuf") {
        heap_ = backend_;
        if (backend_ == "udmabuf")
            device_ = open_device(kUdmabufDevice, "module udmabuf not loaded, or a kernel without CONFIG_UDMABUF?");
    } else if (backend_ == "dma-heap") {
        heap_ = heap.empty() ? std::string(kDmaHeapPrefix) + "system" : heap;
        if (!heap_.starts_with(kDmaHeapPrefix) || heap_.find('/') != std::string::npos)
            throw BenchError("--heap " + heap_ + " is not a dma-heap heap (dma-heap:<node>)");
        device_ = open_device(kDmaHeapDirectory + heap_.substr(kDmaHeapPrefix.size()),
                              "a kernel without CONFIG_DMABUF_HEAPS, or no such heap?");
    } else if (backend_ == "ion") {
        device_ = open_device(kIonDevice, "module ion_simple not loaded?");
        const std::vector<ion_heap_data> heaps = ion_heaps(device_.get());
        const auto chosen = std::find_if(heaps.begin(), heaps.end(), [&](const ion_heap_data &data) {
            return heap.empty() ? data.type == ION_HEAP_TYPE_SYSTEM : ion_heap_name(data) == heap;
        });
        if (chosen == heaps.end()) {
            std::string known;
            for (const ion_heap_data &data : heaps)
                known += (known.empty() ? "" : ", ") + ion_heap_name(data);
            throw BenchError(std::string(kIonDevice) + " has no heap " +
                             (heap.empty() ? std::string("of type system") : heap) + " (it has: " +
                             (known.empty() ? "none" : known) + ")");
        }
        heap_ = ion_heap_name(*chosen);
        ion_heap_id_ = chosen->heap_id;
    } else {
        throw BenchError("unknown backend " + backend_);
    }
    if (!heap.empty() && heap != heap_)
        throw BenchError("--heap " + heap + " is not a heap of backend " + backend_ + " (that is " +
                         heap_ + ")");
}

UniqueFD RawAllocator::allocate(std::uint64_t size)
{
    if (backend_ == "memfd")
        return allocate_memfd(size);
    UniqueFD dma_buf = backend_ == "ion"        ? allocate_ion(size)
                       : backend_ == "dma-heap" ? allocate_dma_heap(size)
                                                : allocate_udmabuf(size);
    if (!dma_buf)
        return dma_buf;
    return name_dma_buf(std::move(dma_buf));
}

// daemon/backends/memfd.cpp: the name, then the size, then the seals.
UniqueFD RawAllocator::allocate_memfd(std::uint64_t size) const
{
    UniqueFD fd{::memfd_create(buffer_name().c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING)};
    if (!fd)
        return fd;
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) < 0 ||
        ::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        return failed(std::move(fd), errno);
    return fd;
}

// daemon/backends/ion.cpp: one heap's bit in the mask, the client's flags (0).
UniqueFD RawAllocator::allocate_ion(std::uint64_t size) const
{
    ion_allocation_data request{};
    request.len = size;
    request.heap_id_mask = 1u << ion_heap_id_;
    request.flags = 0;
    if (::ioctl(device_.get(), ION_IOC_ALLOC, &request) < 0)
        return {};
    return UniqueFD{static_cast<int>(request.fd)};
}

// daemon/backends/dma_heap.cpp.
UniqueFD RawAllocator::allocate_dma_heap(std::uint64_t size) const
{
    dma_heap_allocation_data request{};
    request.len = size;
    request.fd_flags = O_RDWR | O_CLOEXEC;
    request.heap_flags = 0;
    if (::ioctl(device_.get(), DMA_HEAP_IOCTL_ALLOC, &request) < 0)
        return {};
    return UniqueFD{static_cast<int>(request.fd)};
}

// daemon/backends/udmabuf.cpp: the memfd heap's buffer, wrapped; the memfd
// closes once the dma-buf holds its pages.
UniqueFD RawAllocator::allocate_udmabuf(std::uint64_t size) const
{
    UniqueFD memfd = allocate_memfd(size);
    if (!memfd)
        return memfd;
    udmabuf_create request{};
    request.memfd = static_cast<std::uint32_t>(memfd.get());
    request.flags = UDMABUF_FLAGS_CLOEXEC;
    request.offset = 0;
    request.size = size;
    const int dma_buf = ::ioctl(device_.get(), UDMABUF_CREATE, &request);
    if (dma_buf < 0)
        return failed(std::move(memfd), errno);
    return UniqueFD{dma_buf};
}

UniqueFD RawAllocator::name_dma_buf(UniqueFD dma_buf)
{
    if (!kernel_names_)
        return dma_buf;
    // As daemon/backends/dma_buf.cpp cuts it; the bench's name is ASCII and short.
    std::string name = buffer_name().substr(0, DMA_BUF_NAME_LEN - 1);
    if (::ioctl(dma_buf.get(), DMA_BUF_SET_NAME_B, name.data()) < 0) {
        if (errno != ENOTTY)
            return failed(std::move(dma_buf), errno);
        kernel_names_ = false;
    }
    return dma_buf;
}

void check_daemon_serves(bufclient::Client &client, const RawAllocator &allocator)
{
    auto heaps = client.list_heaps();
    if (!heaps)
        throw BenchError("listing the daemon's heaps failed: " + heaps.error().message);
    std::string served;
    for (const auto &heap : *heaps) {
        if (heap.name == allocator.heap() && heap.backend == allocator.backend())
            return;
        served += (served.empty() ? "" : ", ") + heap.name + " (" + heap.backend + ")";
    }
    throw BenchError("the daemon does not serve heap " + allocator.heap() + " of backend " +
                     allocator.backend() + "; it serves: " + (served.empty() ? "nothing" : served));
}

} // namespace ionsvc_bench
