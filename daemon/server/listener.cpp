// SPDX-License-Identifier: MIT
#include "server/listener.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include <cerrno>
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
    const int count = sd_listen_fds(1);
    if (count < 0)
        return Unexpected{fmt::format("sd_listen_fds failed: {}", errno_text(-count))};
    if (count == 0)
        return Listener{};
    if (count > 1)
        return Unexpected{fmt::format("systemd passed {} sockets; ionsvcd takes exactly one", count)};

    UniqueFD socket{SD_LISTEN_FDS_START};
    const int is_seqpacket = sd_is_socket_unix(socket.get(), SOCK_SEQPACKET, 1, nullptr, 0);
    if (is_seqpacket <= 0)
        return Unexpected{std::string(
            "the socket systemd passed is not a listening AF_UNIX SOCK_SEQPACKET socket "
            "(set ListenSequentialPacket= in the socket unit)")};
    return Listener{std::move(socket), true};
}

Expected<Listener, std::string> listen_on(std::string_view path)
{
    auto address = socket_address(path);
    if (!address)
        return Unexpected{std::move(address).error()};

    const std::filesystem::path file{path};
    std::error_code error;
    if (file.has_parent_path())
        std::filesystem::create_directories(file.parent_path(), error);
    if (error)
        return Unexpected{fmt::format("cannot create the directory of '{}': {}", path, error.message())};

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
    if (::listen(socket.get(), SOMAXCONN) < 0) {
        const int saved = errno;
        ::unlink(address->sun_path);
        return Unexpected{fmt::format("cannot listen on '{}': {}", path, errno_text(saved))};
    }
    return Listener{std::move(socket), false};
}

} // namespace ionsvc
