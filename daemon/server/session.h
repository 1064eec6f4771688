// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <boost/asio/generic/seq_packet_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include "protocol/service.h"

namespace ionsvc {

using SeqPacket = boost::asio::generic::seq_packet_protocol;

class Server;

// One connected client: reads a request, handles it, sends the reply (with
// its fds), and only then reads the next request. A client that does not
// read its replies stalls only itself: past connections.unread_buffers
// buffers sent and not yet read, its requests wait until it has read them.
class Session : public std::enable_shared_from_this<Session>
{
public:
    // A session that has not said Hello within hello_timeout is closed.
    Session(Server &server, SeqPacket::socket socket, ClientId id, std::chrono::milliseconds hello_timeout);

    void start();
    // Hangs up, logging why, and leaves the books and the server.
    void close(std::string_view reason);

private:
    // Closes the session if Hello has not come by the deadline.
    void wait_for_hello();
    void wait_readable();
    void wait_writable();
    // Whether the client has read enough of its replies to be served: it
    // may have up to unread_buffers buffers in replies it has not read.
    bool client_keeps_up();
    // Looks again, less and less often, until the client has read its
    // replies: the kernel says nothing when a reader empties the queue.
    void wait_for_reader(std::chrono::milliseconds delay);
    void on_readable(const boost::system::error_code &error);
    void on_writable(const boost::system::error_code &error);

    // Runs a step of this session's work; if it throws, this session ends
    // and the event loop goes on serving the others.
    template<typename Step>
    void guarded(Step &&step);

    // Handles one request. An exception (bad_alloc, a bug's out_of_range)
    // fails this request with INTERNAL and then ends the session, whose
    // state it may have left half done; nobody else notices.
    Disposition handle(std::span<const std::byte> packet);

    // Reads on until the socket is empty, the reply must wait for room, or
    // the budget is spent: a request is often queued behind the one just
    // answered (a Free, then the next Alloc), and reading it now saves a
    // trip through the event loop. The budget keeps one busy client from
    // starving the others.
    void serve_packets();
    // Reads and handles one packet. Returns true if its reply (if any) is
    // out and the next packet may be read; otherwise the session has moved
    // on (to waiting or closing).
    bool serve_one_packet();
    // Sends the pending reply. Returns true once it is out; false if the
    // session now waits for room or has closed.
    bool send_pending();

    Server &server_;
    SeqPacket::socket socket_;
    boost::asio::steady_timer hello_deadline_;
    std::chrono::milliseconds hello_timeout_;
    boost::asio::steady_timer reader_check_;
    // Buffers sent since the client was last seen with every reply read.
    std::uint64_t unread_buffers_ = 0;
    ClientContext context_;
    Response pending_;
    std::string outgoing_;
    std::string close_reason_; // set: hang up once the reply is out
    bool closed_ = false;
};

} // namespace ionsvc
