// SPDX-License-Identifier: MIT
#include "backends/udmabuf.h"

#include <linux/udmabuf.h>

#include <charconv>
#include <cstdint>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "backends/dma_buf.h"
#include "backends/memfd.h"

namespace ionsvc {

namespace {

// The module refuses buffers larger than this many MiB (64 by default)
// with a bare EINVAL.
constexpr const char *kSizeLimitParameter = "/sys/module/udmabuf/parameters/size_limit_mb";

// The module's limit, read once: it is set at load time. None if it cannot
// be read (then the kernel's EINVAL is all a client hears).
std::optional<Heap::SizeLimit> read_size_limit(Syscalls &syscalls)
{
    const auto text = syscalls.read_text(kSizeLimitParameter);
    if (!text) {
        spdlog::info("udmabuf: no size limit known: {}", describe_error(kSizeLimitParameter, text.error()));
        return std::nullopt;
    }
    std::uint64_t megabytes = 0;
    const char *end = text->data() + text->size();
    const auto [rest, error] = std::from_chars(text->data(), end, megabytes);
    if (error != std::errc{} || (rest != end && *rest != '\n') || megabytes > (UINT64_MAX >> 20)) {
        spdlog::warn("udmabuf: no size limit known: {} holds '{}', not a number of MiB", kSizeLimitParameter,
                     *text);
        return std::nullopt;
    }
    return Heap::SizeLimit{megabytes << 20, fmt::format("the udmabuf module's size_limit_mb is {}", megabytes)};
}

class UdmabufHeap final : public Heap
{
public:
    UdmabufHeap(Syscalls &syscalls, UniqueFD device)
        : syscalls_(syscalls), memfds_(make_memfd_backend(syscalls)), device_(std::move(device)),
          namer_(syscalls, "udmabuf"), size_limit_(read_size_limit(syscalls))
    {
    }

    std::string_view name() const override { return "udmabuf"; }
    std::string_view type() const override { return "system"; }
    bool exports_dma_buf() const override { return true; }
    std::optional<SizeLimit> size_limit() const override { return size_limit_; }

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

    int rename(int fd, std::string_view buffer_name) override { return namer_.rename(fd, buffer_name); }

private:
    Syscalls &syscalls_;
    std::unique_ptr<Backend> memfds_;
    UniqueFD device_;
    DmaBufNamer namer_;
    std::optional<SizeLimit> size_limit_;
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
