// SPDX-License-Identifier: MIT
#include "udmabuf_backend.h"

#include <linux/udmabuf.h>

#include "dma_buf.h"
#include "memfd_backend.h"

namespace ionsvc {

namespace {

class UdmabufHeap final : public Heap
{
public:
    UdmabufHeap(Syscalls &syscalls, UniqueFD device)
        : syscalls_(syscalls), memfds_(make_memfd_backend(syscalls)), device_(std::move(device)),
          namer_(syscalls, "udmabuf")
    {
    }

    std::string_view name() const override { return "udmabuf"; }
    std::string_view type() const override { return "system"; }
    bool exports_dma_buf() const override { return true; }

    // flags are not asked for: the pages are shmem's, mapped cached.
    Expected<UniqueFD, int> allocate(std::uint64_t size, std::uint32_t /*flags*/,
                                     std::string_view buffer_name) override
    {
        // The memfd heap's buffer is what udmabuf wants: sealed against
        // shrinking (the pages must stay under the device) and not against
        // writing, which udmabuf refuses. It seals GROW and SEAL too, which
        // udmabuf does not mind.
        auto memfd = memfds_->heaps().front()->allocate(size, 0, buffer_name);
        if (!memfd)
            return memfd;

        udmabuf_create request{};
        request.memfd = static_cast<std::uint32_t>(memfd->get());
        request.flags = UDMABUF_FLAGS_CLOEXEC;
        request.offset = 0;
        request.size = size;
        // The new dma-buf fd is the ioctl's result. It keeps the pages: the
        // memfd closes on the way out.
        const int ret = syscalls_.ioctl(device_.get(), UDMABUF_CREATE, &request);
        if (ret < 0)
            return Unexpected{ret};
        return namer_.name(UniqueFD{ret}, buffer_name);
    }

private:
    Syscalls &syscalls_;
    std::unique_ptr<Backend> memfds_;
    UniqueFD device_;
    DmaBufNamer namer_;
};

class UdmabufBackend final : public Backend
{
public:
    UdmabufBackend(Syscalls &syscalls, UniqueFD device) : heap_(syscalls, std::move(device)) {}

    std::string_view name() const override { return "udmabuf"; }
    std::vector<Heap *> heaps() override { return {&heap_}; }

private:
    UdmabufHeap heap_;
};

} // namespace

Expected<std::unique_ptr<Backend>, std::string> open_udmabuf_backend(Syscalls &syscalls,
                                                                     const std::string &device)
{
    auto fd = open_device(syscalls, device, "module udmabuf not loaded, or a kernel without CONFIG_UDMABUF?");
    if (!fd)
        return Unexpected{std::move(fd).error()};
    return std::unique_ptr<Backend>{std::make_unique<UdmabufBackend>(syscalls, std::move(*fd))};
}

} // namespace ionsvc
