// SPDX-License-Identifier: MIT
#include <ionsvc/fd_passing.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace ionsvc {

namespace {

// The kernel's SCM_MAX_FD: the most descriptors one sendmsg() may carry.
constexpr std::size_t kKernelMaxFds = 253;

// Takes ownership of every descriptor in the SCM_RIGHTS messages of msg,
// into fds (empty).
void collect_fds(msghdr &msg, std::vector<UniqueFD> &fds)
{
    for (cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
            continue;
        const std::size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *numbers = CMSG_DATA(cmsg);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, numbers + i * sizeof(int), sizeof(int));
            fds.emplace_back(fd);
        }
    }
}

} // namespace

ssize_t send_packet(int socket, std::span<const std::byte> data, std::span<const int> fds, int flags)
{
    iovec iov{const_cast<std::byte *>(data.data()), data.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;

    // Sized for the most descriptors a packet may carry; aligned for cmsghdr.
    alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * kKernelMaxFds)];
    if (!fds.empty()) {
        if (fds.size() > kKernelMaxFds)
            return -E2BIG;
        const std::size_t bytes = sizeof(int) * fds.size();
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(bytes);
        cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(bytes);
        std::memcpy(CMSG_DATA(cmsg), fds.data(), bytes);
    }

    const ssize_t sent = ::sendmsg(socket, &msg, flags | MSG_NOSIGNAL);
    if (sent < 0)
        return -errno;
    return sent;
}

ReceiveResult receive_packet(int socket, std::span<std::byte> data, std::size_t max_fds, int flags)
{
    ReceiveResult result;
    receive_packet(socket, data, max_fds, result, flags);
    return result;
}

void receive_packet(int socket, std::span<std::byte> data, std::size_t max_fds, ReceiveResult &result, int flags)
{
    result.fds.clear();
    iovec iov{data.data(), data.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;

    alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * kKernelMaxFds)];
    if (max_fds > kKernelMaxFds)
        max_fds = kKernelMaxFds;
    // Even a receiver that expects no descriptors offers room for one, so
    // that a peer sending some is seen (and its fds closed) rather than
    // silently dropped by the kernel.
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (max_fds ? max_fds : 1));

    const ssize_t received = ::recvmsg(socket, &msg, flags | MSG_CMSG_CLOEXEC);
    if (received < 0) {
        result.status = -errno;
        return;
    }

    collect_fds(msg, result.fds);
    if (msg.msg_flags & MSG_CTRUNC) {
        // The kernel also truncates the fds it cannot install: probe the fd
        // table while the ones that did arrive still fill it.
        const UniqueFD probe{::fcntl(socket, F_DUPFD_CLOEXEC, 0)};
        const bool table_full = !probe && errno == EMFILE;
        result.fds.clear();
        result.status = table_full ? -EMFILE : -EPROTO;
    } else if (msg.msg_flags & MSG_TRUNC) {
        result.fds.clear();
        result.status = -EMSGSIZE;
    } else if (result.fds.size() > max_fds) {
        result.fds.clear();
        result.status = -EPROTO;
    } else {
        result.status = received;
    }
}

ssize_t peek_packet_size(int socket, int flags)
{
    // No control buffer: the kernel installs no descriptors on a peek
    // without one.
    char byte;
    const ssize_t size = ::recv(socket, &byte, sizeof(byte), flags | MSG_PEEK | MSG_TRUNC);
    if (size < 0)
        return -errno;
    return size;
}

bool peer_has_hung_up(int socket)
{
    pollfd pfd{socket, POLLRDHUP, 0};
    if (::poll(&pfd, 1, 0) < 0)
        return true;
    return (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

} // namespace ionsvc
