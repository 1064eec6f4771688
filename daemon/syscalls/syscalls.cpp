// SPDX-License-Identifier: MIT
#include "syscalls/syscalls.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include <fmt/format.h>

namespace ionsvc {

namespace {

struct CloseDir
{
    void operator()(DIR *directory) const { ::closedir(directory); }
};

class KernelSyscalls final : public Syscalls
{
public:
    Expected<UniqueFD, int> memfd_create(const char *name, unsigned int flags) override
    {
        const int fd = ::memfd_create(name, flags);
        if (fd < 0)
            return Unexpected{-errno};
        return UniqueFD{fd};
    }

    int ftruncate(int fd, off_t length) override
    {
        return ::ftruncate(fd, length) < 0 ? -errno : 0;
    }

    int add_seals(int fd, int seals) override
    {
        return ::fcntl(fd, F_ADD_SEALS, seals) < 0 ? -errno : 0;
    }

    int fallocate(int fd, off_t length) override
    {
        return ::fallocate(fd, 0, 0, length) < 0 ? -errno : 0;
    }

    Expected<UniqueFD, int> open(const char *path, int flags) override
    {
        const int fd = ::open(path, flags);
        if (fd < 0)
            return Unexpected{-errno};
        return UniqueFD{fd};
    }

    int ioctl(int fd, unsigned long request, void *arg) override
    {
        const int result = ::ioctl(fd, request, arg);
        return result < 0 ? -errno : result;
    }

    Expected<std::vector<std::string>, int> list_char_devices(const char *directory) override
    {
        std::unique_ptr<DIR, CloseDir> stream{::opendir(directory)};
        if (!stream)
            return Unexpected{-errno};
        std::vector<std::string> names;
        for (;;) {
            // readdir tells the end from an error only through errno.
            errno = 0;
            const dirent *entry = ::readdir(stream.get());
            if (!entry) {
                if (errno != 0)
                    return Unexpected{-errno};
                return names;
            }
            unsigned char type = entry->d_type;
            if (type == DT_UNKNOWN) {
                // Filesystems without d_type: ask the inode.
                struct stat status{};
                if (::fstatat(::dirfd(stream.get()), entry->d_name, &status, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISCHR(status.st_mode))
                    type = DT_CHR;
            }
            if (type == DT_CHR)
                names.emplace_back(entry->d_name);
        }
    }

    Expected<std::size_t, int> read_fdinfo(int fd, std::span<char> text) override
    {
        char path[40];
        *fmt::format_to_n(path, sizeof(path) - 1, "/proc/self/fdinfo/{}", fd).out = '\0';
        const UniqueFD file{::open(path, O_RDONLY | O_CLOEXEC)};
        if (!file)
            return Unexpected{-errno};
        const ssize_t length = ::read(file.get(), text.data(), text.size());
        if (length < 0)
            return Unexpected{-errno};
        return static_cast<std::size_t>(length);
    }

    Expected<std::string, int> read_text(const char *path) override
    {
        const UniqueFD file{::open(path, O_RDONLY | O_CLOEXEC)};
        if (!file)
            return Unexpected{-errno};
        // Module parameters are a line; a page is plenty.
        std::string text(4096, '\0');
        const ssize_t length = ::read(file.get(), text.data(), text.size());
        if (length < 0)
            return Unexpected{-errno};
        text.resize(static_cast<std::size_t>(length));
        return text;
    }

    Expected<std::string, int> fd_link(int fd) override
    {
        char path[40];
        *fmt::format_to_n(path, sizeof(path) - 1, "/proc/self/fd/{}", fd).out = '\0';
        // Links longer than a memfd's 249-byte name and its decoration are
        // cut: they are labels.
        std::string target(512, '\0');
        const ssize_t length = ::readlink(path, target.data(), target.size());
        if (length < 0)
            return Unexpected{-errno};
        target.resize(static_cast<std::size_t>(length));
        return target;
    }

    Expected<std::uint64_t, int> inode(int fd) override
    {
        struct stat status{};
        if (::fstat(fd, &status) < 0)
            return Unexpected{-errno};
        return static_cast<std::uint64_t>(status.st_ino);
    }

    int get_random(std::span<std::byte> bytes) override
    {
        std::size_t filled = 0;
        // Reads of up to 256 bytes from a ready pool are never cut short;
        // a signal may still interrupt a larger one.
        while (filled < bytes.size()) {
            const ssize_t got = ::getrandom(bytes.data() + filled, bytes.size() - filled, 0);
            if (got < 0) {
                if (errno == EINTR)
                    continue;
                return -errno;
            }
            filled += static_cast<std::size_t>(got);
        }
        return 0;
    }
};

} // namespace

Syscalls &real_syscalls()
{
    static KernelSyscalls syscalls;
    return syscalls;
}

} // namespace ionsvc
