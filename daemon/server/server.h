// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <ionsvc/unique_fd.h>

#include "policy/config.h"
#include "protocol/service.h"
#include "server/fd_reserve.h"
#include "server/session.h"

namespace ionsvc {

// Accepts clients on a listening SOCK_SEQPACKET socket and runs one Session
// per connection, all on one event loop.
class Server
{
public:
    Server(boost::asio::io_context &io, Service &service, UniqueFD listening_socket);
    ~Server();

    void start();
    // Stops accepting and hangs up on every client.
    void stop();

    std::size_t session_count() const { return sessions_.size(); }

    // How many connections each uid and all clients may hold, and how long
    // one may wait before Hello: for the connections that come next.
    // unread_buffers: for every connection, at its next request.
    void set_connection_limits(const ConnectionLimits &limits)
    {
        limits_ = limits;
        service_.set_connection_limits(limits);
    }

private:
    friend class Session;

    void accept_next();
    void on_accept(const boost::system::error_code &error, SeqPacket::socket socket);
    // Starts a session for a new connection; false if it was refused. One
    // let in on the fd reserve stays only if it is an admin's.
    bool admit(SeqPacket::socket socket, bool on_reserve = false);
    // accept() failed for want of fds: lets the next waiting client in on
    // spare fds. False if the reserve has none to spare, or if accept()
    // still finds no fd free.
    bool accept_on_reserve();
    // Why a client of identity may not connect now, if it may not.
    std::optional<std::string> connection_refusal(const ClientIdentity &identity) const;
    // Answers a refused connection with why, and hangs up.
    void refuse(SeqPacket::socket &socket, const ClientIdentity &identity, const std::string &why);
    void forget(Session *session);
    // Arms the release detection timer if there are buffers to watch.
    void schedule_release_check();
    // After delay, checks the next slice of a round with round_left buffers
    // still to check (0: a new round), and goes on until the round is done.
    void check_release_after(std::chrono::steady_clock::duration delay, std::size_t round_left);
    // One buffer for every session's incoming packets: the loop reads one
    // packet at a time and handles it before it reads the next.
    std::vector<std::byte> &receive_buffer() { return receive_buffer_; }

    boost::asio::io_context &io_;
    Service &service_;
    boost::asio::basic_socket_acceptor<SeqPacket> acceptor_;
    boost::asio::steady_timer accept_retry_;
    boost::asio::steady_timer release_check_;
    bool release_check_armed_ = false;
    std::size_t accept_failures_ = 0; // in a row, to log the first only
    struct SessionEntry
    {
        std::shared_ptr<Session> session;
        uid_t uid = 0;
    };
    std::unordered_map<Session *, SessionEntry> sessions_;
    std::unordered_map<uid_t, std::uint32_t> connections_of_uid_;
    ConnectionLimits limits_;
    FdReserve reserve_;
    std::chrono::steady_clock::time_point last_refusal_logged_{};
    std::vector<std::byte> receive_buffer_;
    bool stopped_ = false;
};

} // namespace ionsvc
