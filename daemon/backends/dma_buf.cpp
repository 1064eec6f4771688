// SPDX-License-Identifier: MIT
#include "backends/dma_buf.h"

#include <fcntl.h>
#include <linux/dma-buf.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "syscalls/proc_text.h"

namespace ionsvc {

static_assert(kMaxDmaBufNameLength + 1 == DMA_BUF_NAME_LEN);

namespace {

bool is_utf8_continuation(char byte)
{
    return (static_cast<unsigned char>(byte) & 0xc0) == 0x80;
}

} // namespace

std::string dma_buf_name(std::string_view buffer_name)
{
    // The kernel copies a C string: whatever follows a NUL is lost anyway.
    std::string_view name = buffer_name.substr(0, buffer_name.find('\0'));
    if (name.size() > kMaxDmaBufNameLength) {
        std::size_t length = kMaxDmaBufNameLength;
        // Never leave half a character: back up to the start of the one cut.
        while (length > 0 && is_utf8_continuation(name[length]))
            --length;
        name = name.substr(0, length);
    }
    if (name.empty())
        return "ionsvc";
    return std::string(name);
}

Expected<UniqueFD, int> DmaBufNamer::name(UniqueFD dma_buf, std::string_view buffer_name)
{
    if (const int ret = rename(dma_buf.get(), buffer_name); ret < 0)
        return Unexpected{ret};
    return dma_buf;
}

int DmaBufNamer::rename(int dma_buf, std::string_view buffer_name)
{
    if (!kernel_names_)
        return 0;
    std::string name = dma_buf_name(buffer_name);
    const int ret = syscalls_.ioctl(dma_buf, DMA_BUF_SET_NAME_B, name.data());
    if (ret == -ENOTTY) {
        if (kernel_names_.exchange(false))
            spdlog::warn("{}: this kernel cannot name dma-bufs (DMA_BUF_SET_NAME_B: {}); its buffers "
                         "stay unnamed",
                         backend_, std::strerror(ENOTTY));
        return 0;
    }
    return ret < 0 ? ret : 0;
}

Expected<UniqueFD, std::string> open_device(Syscalls &syscalls, const std::string &path,
                                            std::string_view absent_hint)
{
    auto fd = syscalls.open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd)
        return std::move(*fd);
    std::string why = describe_error(path, fd.error());
    // ENXIO, ENODEV: a node whose driver is gone.
    if (fd.error() == -ENOENT || fd.error() == -ENODEV || fd.error() == -ENXIO)
        why += fmt::format(" ({})", absent_hint);
    return Unexpected{std::move(why)};
}

Expected<long, int> fdinfo_count(std::string_view text)
{
    const auto value = proc_field(text, "count:");
    if (!value)
        return Unexpected{-ENODATA};
    long count = 0;
    const auto [last, error] = std::from_chars(value->data(), value->data() + value->size(), count);
    if (error != std::errc() || last != value->data() + value->size())
        return Unexpected{-ENODATA};
    return count;
}

Expected<long, int> dma_buf_reference_count(Syscalls &syscalls, int fd)
{
    // A dma-buf's fdinfo is five short lines; its name is at most 32 bytes.
    std::array<char, 512> text;
    const auto length = syscalls.read_fdinfo(fd, text);
    if (!length)
        return Unexpected{length.error()};
    return fdinfo_count({text.data(), *length});
}

std::string describe_error(std::string_view what, int error)
{
    return fmt::format("{}: {}", what, std::strerror(-error));
}

} // namespace ionsvc
