// SPDX-License-Identifier: MIT
#include "backends/memfd.h"

#include <fcntl.h>
#include <linux/memfd.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <limits>
#include <string>

namespace ionsvc {

namespace {

// memfd names are cut by the kernel at 249 bytes; keep well inside.
constexpr std::size_t kMaxMemfdNameLength = 200;

class MemfdHeap final : public Heap
{
public:
    explicit MemfdHeap(Syscalls &syscalls) : syscalls_(syscalls) {}

    std::string_view name() const override { return "memfd"; }
    std::string_view type() const override { return "system"; }
    // The kernel counts no references a memfd's fdinfo would show.
    bool exports_dma_buf() const override { return false; }

    Expected<UniqueFD, int> allocate(std::uint64_t size, std::uint32_t /*flags*/,
                                     std::string_view buffer_name) override
    {
        if (size == 0 || size > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max()))
            return Unexpected{-EINVAL};

        // memfd_create wants a C string; shown as "memfd:<name>" in
        // /proc/<pid>/fd and maps. Made on the stack: no malloc per buffer.
        if (buffer_name.empty())
            buffer_name = "ionsvc";
        buffer_name = buffer_name.substr(0, kMaxMemfdNameLength);
        std::array<char, kMaxMemfdNameLength + 1> name;
        *std::copy(buffer_name.begin(), buffer_name.end(), name.begin()) = '\0';

        auto fd = syscalls_.memfd_create(name.data(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (!fd)
            return fd;

        int ret = syscalls_.ftruncate(fd->get(), static_cast<off_t>(size));
        if (ret < 0)
            return Unexpected{ret};

        // F_SEAL_SEAL too: nobody who receives the fd may lift the others.
        ret = syscalls_.add_seals(fd->get(), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
        if (ret < 0)
            return Unexpected{ret};

        return fd;
    }

    // Sealed against growing, not against backing what is there.
    int populate(int fd, std::uint64_t size) override
    {
        return syscalls_.fallocate(fd, static_cast<off_t>(size));
    }

private:
    Syscalls &syscalls_;
};

class MemfdBackend final : public Backend
{
public:
    explicit MemfdBackend(Syscalls &syscalls) : heap_(syscalls) {}

    std::string_view name() const override { return "memfd"; }
    std::vector<Heap *> heaps() override { return {&heap_}; }

private:
    MemfdHeap heap_;
};

} // namespace

std::unique_ptr<Backend> make_memfd_backend(Syscalls &syscalls)
{
    return std::make_unique<MemfdBackend>(syscalls);
}

} // namespace ionsvc
