// SPDX-License-Identifier: MIT
#include "backends/ion.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "backends/dma_buf.h"
#include "kernel/uapi/ion.h"

namespace ionsvc {

namespace {

// heap_id_mask has a bit per heap id: a heap above these cannot be asked for.
constexpr std::uint32_t kMaxIonHeaps = ION_NUM_HEAP_IDS;

class IonHeapOfDriver final : public IonHeap
{
public:
    IonHeapOfDriver(Syscalls &syscalls, int device, DmaBufNamer &namer, const ion_heap_data &data)
        : syscalls_(syscalls), device_(device), namer_(namer),
          // The driver should terminate the name; do not count on it.
          name_("ion:" + std::string(data.name, ::strnlen(data.name, sizeof data.name))),
          id_(data.heap_id), type_(data.type)
    {
    }

    std::string_view name() const override { return name_; }
    std::string_view type() const override { return ion_heap_type_name(type_); }
    std::uint32_t ion_heap_id() const override { return id_; }
    std::uint32_t ion_heap_type() const override { return type_; }

    Expected<UniqueFD, int> allocate(std::uint64_t size, std::uint32_t flags,
                                     std::string_view buffer_name) override
    {
        if (size == 0)
            return Unexpected{-EINVAL};
        ion_allocation_data request{};
        request.len = size;
        request.heap_id_mask = 1u << id_;
        request.flags = flags;
        const int ret = syscalls_.ioctl(device_, ION_IOC_ALLOC, &request);
        if (ret < 0)
            return Unexpected{ret};
        return namer_.name(UniqueFD{static_cast<int>(request.fd)}, buffer_name);
    }

    int rename(int fd, std::string_view buffer_name) override { return namer_.rename(fd, buffer_name); }

private:
    Syscalls &syscalls_;
    int device_; // lent by the backend, which outlives its heaps
    DmaBufNamer &namer_;
    std::string name_;
    std::uint32_t id_;
    std::uint32_t type_;
};

class IonBackend final : public Backend
{
public:
    IonBackend(Syscalls &syscalls, UniqueFD device, const std::vector<ion_heap_data> &heaps)
        : device_(std::move(device)), namer_(syscalls, "ion")
    {
        for (const ion_heap_data &data : heaps)
            heaps_.push_back(std::make_unique<IonHeapOfDriver>(syscalls, device_.get(), namer_, data));
    }

    std::string_view name() const override { return "ion"; }
    std::vector<Heap *> heaps() override { return heap_pointers(heaps_); }

private:
    UniqueFD device_;
    DmaBufNamer namer_;
    std::vector<std::unique_ptr<IonHeapOfDriver>> heaps_;
};

// Every heap the driver reports whose id fits a heap_id_mask, in the
// driver's order; or -errno.
Expected<std::vector<ion_heap_data>, int> query_heaps(Syscalls &syscalls, int device)
{
    // First the count (heaps == 0), then the array.
    ion_heap_query query{};
    int ret = syscalls.ioctl(device, ION_IOC_HEAP_QUERY, &query);
    if (ret < 0)
        return Unexpected{ret};
    std::vector<ion_heap_data> heaps(std::min(query.cnt, kMaxIonHeaps));
    if (heaps.empty())
        return heaps;

    query = {};
    query.cnt = static_cast<std::uint32_t>(heaps.size());
    query.heaps = reinterpret_cast<std::uintptr_t>(heaps.data());
    ret = syscalls.ioctl(device, ION_IOC_HEAP_QUERY, &query);
    if (ret < 0)
        return Unexpected{ret};
    // Fewer if heaps went away in between.
    heaps.resize(std::min<std::size_t>(query.cnt, heaps.size()));
    std::erase_if(heaps, [](const ion_heap_data &data) { return data.heap_id >= kMaxIonHeaps; });
    return heaps;
}

} // namespace

std::string_view ion_heap_type_name(std::uint32_t type)
{
    switch (type) {
    case ION_HEAP_TYPE_SYSTEM: return "system";
    case ION_HEAP_TYPE_SYSTEM_CONTIG: return "system_contig";
    case ION_HEAP_TYPE_CARVEOUT: return "carveout";
    case ION_HEAP_TYPE_CHUNK: return "chunk";
    case ION_HEAP_TYPE_DMA: return "dma";
    case ION_HEAP_TYPE_CUSTOM: return "custom";
    default: return "unknown";
    }
}

Expected<std::unique_ptr<Backend>, std::string> open_ion_backend(Syscalls &syscalls,
                                                                 const std::string &device)
{
    auto fd = open_device(syscalls, device, "module ion_simple not loaded?");
    if (!fd)
        return Unexpected{std::move(fd).error()};

    auto heaps = query_heaps(syscalls, fd->get());
    if (!heaps) {
        std::string why = describe_error(device + ": ION_IOC_HEAP_QUERY", heaps.error());
        // The ION before 4.12 had another uapi, without the query.
        if (heaps.error() == -ENOTTY)
            why += " (an ION older than Linux 4.12?)";
        return Unexpected{std::move(why)};
    }
    if (heaps->empty())
        return Unexpected{device + " reports no heaps"};

    return std::unique_ptr<Backend>{std::make_unique<IonBackend>(syscalls, std::move(*fd), *heaps)};
}

} // namespace ionsvc
