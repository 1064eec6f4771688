// SPDX-License-Identifier: MIT
#include "backends/dma_heap.h"

#include <fcntl.h>
#include <linux/dma-heap.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "backends/dma_buf.h"

namespace ionsvc {

namespace {

// dma-heaps say nothing of their memory but their name: the usual ones map
// onto the ION type of the same memory (ION's "dma" heap was CMA).
std::string_view type_from_node(std::string_view node)
{
    if (node.starts_with("system"))
        return "system";
    if (node.find("cma") != std::string_view::npos)
        return "dma";
    if (node.starts_with("carveout"))
        return "carveout";
    return "unknown";
}

class DmaHeap final : public Heap
{
public:
    DmaHeap(Syscalls &syscalls, std::string_view node, UniqueFD device, DmaBufNamer &namer)
        : syscalls_(syscalls), name_("dma-heap:" + std::string(node)), type_(type_from_node(node)),
          device_(std::move(device)), namer_(namer)
    {
    }

    std::string_view name() const override { return name_; }
    std::string_view type() const override { return type_; }
    bool exports_dma_buf() const override { return true; }

    // flags are not asked for: dma-heaps take no heap flags, and each heap
    // decides its own caching.
    Expected<UniqueFD, int> allocate(std::uint64_t size, std::uint32_t /*flags*/,
                                     std::string_view buffer_name) override
    {
        if (size == 0)
            return Unexpected{-EINVAL};
        dma_heap_allocation_data request{};
        request.len = size;
        request.fd_flags = O_RDWR | O_CLOEXEC;
        request.heap_flags = 0;
        const int ret = syscalls_.ioctl(device_.get(), DMA_HEAP_IOCTL_ALLOC, &request);
        if (ret < 0)
            return Unexpected{ret};
        return namer_.name(UniqueFD{static_cast<int>(request.fd)}, buffer_name);
    }

    int rename(int fd, std::string_view buffer_name) override { return namer_.rename(fd, buffer_name); }

private:
    Syscalls &syscalls_;
    std::string name_;
    std::string_view type_;
    UniqueFD device_;
    DmaBufNamer &namer_;
};

class DmaHeapBackend final : public Backend
{
public:
    explicit DmaHeapBackend(Syscalls &syscalls) : syscalls_(syscalls), namer_(syscalls, "dma-heap") {}

    void add_heap(std::string_view node, UniqueFD device)
    {
        heaps_.push_back(std::make_unique<DmaHeap>(syscalls_, node, std::move(device), namer_));
    }
    bool empty() const { return heaps_.empty(); }

    std::string_view name() const override { return "dma-heap"; }
    std::vector<Heap *> heaps() override { return heap_pointers(heaps_); }

private:
    Syscalls &syscalls_;
    DmaBufNamer namer_;
    std::vector<std::unique_ptr<DmaHeap>> heaps_;
};

} // namespace

Expected<std::unique_ptr<Backend>, std::string> open_dma_heap_backend(Syscalls &syscalls,
                                                                      const std::string &directory)
{
    auto nodes = syscalls.list_char_devices(directory.c_str());
    if (!nodes && nodes.error() == -ENOENT)
        return Unexpected{directory + " does not exist (kernel without CONFIG_DMABUF_HEAPS)"};
    if (!nodes)
        return Unexpected{describe_error(directory, nodes.error())};
    if (nodes->empty())
        return Unexpected{directory + " has no heaps"};
    // readdir's order is the filesystem's: sort for a stable heap order.
    std::sort(nodes->begin(), nodes->end());

    auto backend = std::make_unique<DmaHeapBackend>(syscalls);
    std::vector<std::string> failures;
    for (const std::string &node : *nodes) {
        auto fd = open_device(syscalls, directory + "/" + node, "removed while starting?");
        if (fd)
            backend->add_heap(node, std::move(*fd));
        else
            failures.push_back(std::move(fd).error());
    }
    if (backend->empty())
        return Unexpected{fmt::format("{}", fmt::join(failures, "; "))};
    // The backend is there, so nobody else says why these heaps are not.
    for (const std::string &why : failures)
        spdlog::warn("dma-heap: heap left out: {}", why);
    return std::unique_ptr<Backend>{std::move(backend)};
}

} // namespace ionsvc
