// SPDX-License-Identifier: MIT
#include "server/listener.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

namespace ionsvc {

namespace {

std::string errno_text(int error)
{
    return std::strerror(error);
}

Expected<sockaddr_un, std::string> socket_address(std::string_view path)
{
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(address.sun_path))
        return Unexpected{fmt::format("socket path '{}' must have 1 to {} bytes", path,
                                      sizeof(address.sun_path) - 1)};
    std::memcpy(address.sun_path, path.data(), path.size());
    return address;
}

// True if a daemon answers at address.
bool someone_listens(const sockaddr_un &address)
{
    UniqueFD probe{::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)};
    if (!probe)
        return false;
    return ::connect(probe.get(), reinterpret_cast<const sockaddr *>(&address), sizeof(address)) == 0;
}

} // namespace

Expected<Listener, std::string> listener_from_systemd()
{
    char **names = nullptr;
    const int count = sd_listen_fds_with_names(1, &names);
    if (count < 0)
        return Unexpected{fmt::format("sd_listen_fds failed: {}", errno_text(-count))};
    Listener listener;
    std::size_t sockets = 0;
    for (int i = 0; i < count; ++i) {
        UniqueFD fd{SD_LISTEN_FDS_START + i};
        std::string name = names && names[i] ? names[i] : "";
        if (sd_is_socket(fd.get(), AF_UNSPEC, 0, -1) > 0) {
            ++sockets;
            listener.socket = std::move(fd);
        } else {
            listener.stored.emplace_back(std::move(name), std::move(fd));
        }
    }
    if (names) {
        for (int i = 0; i < count; ++i)
            std::free(names[i]);
        std::free(names);
    }
    if (sockets == 0)
        return listener;
    if (sockets > 1)
        return Unexpected{fmt::format("systemd passed {} sockets; ionsvcd takes exactly one", sockets)};
    if (sd_is_socket_unix(listener.socket.get(), SOCK_SEQPACKET, 1, nullptr, 0) <= 0)
        return Unexpected{std::string(
            "the socket systemd passed is not a listening AF_UNIX SOCK_SEQPACKET socket "
            "(set ListenSequentialPacket= in the socket unit)")};
    listener.from_systemd = true;
    return listener;
}

namespace {

// Sets the umask for as long as it lives: the daemon is single-threaded
// while it makes its socket.
class ScopedUmask
{
public:
    explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
    ~ScopedUmask() { ::umask(old_); }
    ScopedUmask(const ScopedUmask &) = delete;
    ScopedUmask &operator=(const ScopedUmask &) = delete;

private:
    mode_t old_;
};

// Creates the missing directories above file, each with mode: 0 or -errno.
int create_directories(const std::filesystem::path &file, mode_t mode, std::string &failed)
{
    std::filesystem::path directory;
    for (const auto &part : file.parent_path()) {
        directory /= part;
        if (::mkdir(directory.c_str(), 0700) < 0) {
            if (errno == EEXIST)
                continue;
            failed = directory;
            return -errno;
        }
        // Made owner-only under the umask, then opened up as asked.
        if (::chmod(directory.c_str(), mode) < 0) {
            failed = directory;
            return -errno;
        }
    }
    return 0;
}

// The bound socket file's group and mode, as access says: 0 or -errno.
int set_socket_access(const char *path, const SocketAccess &access)
{
    if (access.group && ::chown(path, static_cast<uid_t>(-1), *access.group) < 0)
        return -errno;
    if (::chmod(path, access.mode) < 0)
        return -errno;
    return 0;
}

} // namespace

Expected<Listener, std::string> listen_on(std::string_view path, const SocketAccess &access)
{
    auto address = socket_address(path);
    if (!address)
        return Unexpected{std::move(address).error()};

    // Whatever is created below starts owner-only.
    const ScopedUmask umask(0077);
    std::string failed;
    if (const int ret = create_directories(std::filesystem::path{path}, access.directory_mode, failed); ret < 0)
        return Unexpected{fmt::format("cannot create '{}', the directory of '{}': {}", failed, path,
                                      errno_text(-ret))};

    struct stat status{};
    if (::lstat(address->sun_path, &status) == 0) {
        if (!S_ISSOCK(status.st_mode))
            return Unexpected{fmt::format("'{}' exists and is not a socket; not touching it", path)};
        if (someone_listens(*address))
            return Unexpected{fmt::format("another daemon already listens on '{}'", path)};
        ::unlink(address->sun_path);
    }

    UniqueFD socket{::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)};
    if (!socket)
        return Unexpected{fmt::format("socket(AF_UNIX, SOCK_SEQPACKET) failed: {}", errno_text(errno))};
    if (::bind(socket.get(), reinterpret_cast<const sockaddr *>(&*address), sizeof(*address)) < 0)
        return Unexpected{fmt::format("cannot bind '{}': {}", path, errno_text(errno))};
    if (const int ret = set_socket_access(address->sun_path, access); ret < 0) {
        ::unlink(address->sun_path);
        return Unexpected{fmt::format("cannot give '{}' mode {:04o}{}: {}", path, access.mode,
                                      access.group ? fmt::format(" and group {}", *access.group) : "",
                                      errno_text(-ret))};
    }
    if (::listen(socket.get(), SOMAXCONN) < 0) {
        const int saved = errno;
        ::unlink(address->sun_path);
        return Unexpected{fmt::format("cannot listen on '{}': {}", path, errno_text(saved))};
    }
    return Listener{std::move(socket), false};
}

} // namespace ionsvc
