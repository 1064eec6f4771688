// SPDX-License-Identifier: MIT
#include "raw_connection.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include <ionsvc/fd_passing.h>

namespace ionsvc::testing {

RawConnection::RawConnection(const std::string &path)
{
    socket_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    EXPECT_EQ(::connect(socket_.get(), reinterpret_cast<const sockaddr *>(&address), sizeof(address)), 0)
        << "connect(" << path << "): " << std::strerror(errno);
}

ssize_t RawConnection::send_bytes(const std::string &bytes, std::span<const int> fds)
{
    return send_packet(socket_.get(), {reinterpret_cast<const std::byte *>(bytes.data()), bytes.size()},
                       fds);
}

wire::Reply RawConnection::receive()
{
    std::vector<UniqueFD> fds;
    return receive(fds);
}

wire::Reply RawConnection::receive(std::vector<UniqueFD> &fds)
{
    std::vector<std::byte> buffer(1 << 20);
    auto received = receive_packet(socket_.get(), buffer, kMaxFdsPerMessage);
    wire::Reply reply;
    EXPECT_GT(received.status, 0) << "no reply";
    if (received.status > 0) {
        EXPECT_TRUE(reply.ParseFromArray(buffer.data(), static_cast<int>(received.status)));
    }
    fds = std::move(received.fds);
    return reply;
}

wire::Reply RawConnection::hello(std::uint32_t version)
{
    wire::Request request;
    request.mutable_hello()->set_protocol_version(version);
    send(request);
    return receive();
}

bool RawConnection::hung_up()
{
    std::byte byte[1];
    return receive_packet(socket_.get(), byte, 0).status == 0;
}

} // namespace ionsvc::testing
