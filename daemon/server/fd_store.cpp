// SPDX-License-Identifier: MIT
#include "server/fd_store.h"

#include <poll.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace ionsvc {

FdStore::FdStore()
{
    const char *path = std::getenv("NOTIFY_SOCKET");
    const std::size_t length = path ? std::strlen(path) : 0;
    // A path, or "@name" in the abstract namespace; nothing else is a
    // Unix socket.
    if (length < 2 || length >= sizeof(address_.sun_path) || (path[0] != '/' && path[0] != '@'))
        return;
    address_.sun_family = AF_UNIX;
    std::memcpy(address_.sun_path, path, length);
    if (path[0] == '@')
        address_.sun_path[0] = '\0';
    address_length_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
    socket_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
}

void FdStore::store(UniqueFD fd, std::string name)
{
    queue_.push_back({std::move(fd), std::move(name)});
}

void FdStore::remove(std::string name)
{
    queue_.push_back({UniqueFD{}, std::move(name)});
}

void FdStore::send_some(std::size_t budget)
{
    for (; budget > 0 && !queue_.empty(); --budget) {
        if (send(queue_.front()) == -EAGAIN)
            return;
        queue_.pop_front();
    }
}

void FdStore::send_all(std::chrono::milliseconds limit)
{
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!queue_.empty()) {
        if (send(queue_.front()) != -EAGAIN) {
            queue_.pop_front();
            continue;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        pollfd writable{socket_.get(), POLLOUT, 0};
        if (left.count() <= 0 || ::poll(&writable, 1, static_cast<int>(left.count())) <= 0) {
            spdlog::warn("systemd took no more of the fd store within {} ms: {} operations not sent", limit.count(),
                         queue_.size());
            return;
        }
    }
}

int FdStore::send(const Operation &operation)
{
    // FDPOLL=0: a memfd cannot be polled, and a dma-buf's poll speaks of
    // fences, not of its end. systemd before 246 ignores the field.
    const std::string text = operation.fd ? fmt::format("FDSTORE=1\nFDPOLL=0\nFDNAME={}", operation.name)
                                          : fmt::format("FDSTOREREMOVE=1\nFDNAME={}", operation.name);
    iovec data{const_cast<char *>(text.data()), text.size()};
    msghdr message{};
    message.msg_name = &address_;
    message.msg_namelen = address_length_;
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (operation.fd) {
        message.msg_control = control;
        message.msg_controllen = sizeof control;
        cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int));
        const int fd = operation.fd.get();
        std::memcpy(CMSG_DATA(header), &fd, sizeof fd);
    }
    int error = ENOTCONN;
    if (socket_) {
        ssize_t sent;
        do {
            sent = ::sendmsg(socket_.get(), &message, MSG_NOSIGNAL);
        } while (sent < 0 && errno == EINTR);
        if (sent >= 0)
            return 0;
        error = errno;
        if (error == EAGAIN || error == EWOULDBLOCK)
            return -EAGAIN;
    }
    // The first says why; the rest would say it again.
    if (++failures_ == 1)
        spdlog::warn("the fd store did not take {} '{}': {}", operation.fd ? "fd" : "the removal of", operation.name,
                     error == ENOTCONN ? "no NOTIFY_SOCKET" : std::strerror(error));
    return 0;
}

} // namespace ionsvc
