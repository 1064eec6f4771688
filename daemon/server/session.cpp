// SPDX-License-Identifier: MIT
#include "server/session.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <ionsvc/fd_passing.h>
#include <ionsvc/protocol.h>

#include "server/guard.h"
#include "server/server.h"

namespace ionsvc {

namespace {

// Packets one session may handle in a row before it lets others run.
constexpr int kPacketsPerWakeup = 16;

// How soon, and at most how seldom, a stalled session looks whether its
// client has read its replies.
constexpr std::chrono::milliseconds kFirstReaderCheck{1};
constexpr std::chrono::milliseconds kLastReaderCheck{250};

} // namespace

Session::Session(Server &server, SeqPacket::socket socket, ClientId id, std::chrono::milliseconds hello_timeout)
    : server_(server), socket_(std::move(socket)), hello_deadline_(socket_.get_executor()),
      hello_timeout_(hello_timeout), reader_check_(socket_.get_executor())
{
    context_.id = id;
}

void Session::start()
{
    wait_for_hello();
    wait_readable();
}

void Session::wait_for_hello()
{
    // An idle connection holds an fd of the daemon's: it may not wait for
    // ever. Weak, so that a closed session does not live on until then.
    hello_deadline_.expires_after(hello_timeout_);
    hello_deadline_.async_wait([weak = weak_from_this()](const boost::system::error_code &error) {
        const auto self = weak.lock();
        if (error || !self || self->closed_ || self->context_.greeted)
            return;
        run_guarded("closing a client's session", [&] {
            self->close(fmt::format("no Hello within {} ms (connections.hello_timeout_ms)",
                                    self->hello_timeout_.count()));
        });
    });
}

void Session::close(std::string_view reason)
{
    if (closed_)
        return;
    closed_ = true;

    // Logged before the hang-up, so that whoever sees the hang-up finds
    // the line already written.
    if (const ClientRecord *record = server_.service_.books().client(context_.id)) {
        spdlog::info("client {} disconnected: pid {} uid {} comm '{}' name '{}' ({})", context_.id,
                     record->identity.pid, record->identity.uid, record->identity.comm,
                     record->name, reason);
    }

    hello_deadline_.cancel();
    reader_check_.cancel();
    // The pending reply lends fds owned by the books: drop it first.
    pending_.clear();
    boost::system::error_code ignored;
    socket_.close(ignored);
    server_.service_.disconnect(context_.id);
    server_.schedule_release_check();
    server_.forget(this);
}

void Session::wait_readable()
{
    socket_.async_wait(SeqPacket::socket::wait_read,
                       [self = shared_from_this()](const boost::system::error_code &error) {
                           self->on_readable(error);
                       });
}

void Session::wait_writable()
{
    socket_.async_wait(SeqPacket::socket::wait_write,
                       [self = shared_from_this()](const boost::system::error_code &error) {
                           self->on_writable(error);
                       });
}

bool Session::client_keeps_up()
{
    if (unread_buffers_ < server_.limits_.unread_buffers)
        return true;
    // SIOCOUTQ: the bytes of replies still queued to the client. Past the
    // limit it must have read them all; a failure lets it go on, as the
    // daemon did before it could look.
    int queued = 0;
    if (::ioctl(socket_.native_handle(), SIOCOUTQ, &queued) < 0 || queued == 0) {
        unread_buffers_ = 0;
        return true;
    }
    return false;
}

void Session::wait_for_reader(std::chrono::milliseconds delay)
{
    if (delay == kFirstReaderCheck) {
        spdlog::info("client {}: {} buffers sent that it has not read; its requests wait until it reads "
                     "them (connections.unread_buffers = {})",
                     context_.id, unread_buffers_, server_.limits_.unread_buffers);
    }
    reader_check_.expires_after(delay);
    reader_check_.async_wait([self = shared_from_this(), delay](const boost::system::error_code &error) {
        if (error || self->closed_)
            return;
        self->guarded([&] {
            if (self->client_keeps_up())
                self->serve_packets();
            else
                self->wait_for_reader(std::min(delay * 2, kLastReaderCheck));
        });
    });
}

template<typename Step>
void Session::guarded(Step &&step)
{
    // Fixed texts: nothing to build on every wakeup. close() logs the id.
    if (run_guarded("serving a client", std::forward<Step>(step)))
        return;
    run_guarded("closing a client's session", [this] { close("internal error"); });
}

void Session::on_readable(const boost::system::error_code &error)
{
    if (closed_)
        return;
    if (error) {
        close(fmt::format("wait failed: {}", error.message()));
        return;
    }

    guarded([this] { serve_packets(); });
}

void Session::on_writable(const boost::system::error_code &error)
{
    if (closed_)
        return;
    if (error) {
        close(fmt::format("wait failed: {}", error.message()));
        return;
    }
    guarded([this] {
        if (send_pending())
            serve_packets();
    });
}

Disposition Session::handle(std::span<const std::byte> packet)
{
    try {
        return server_.service_.handle_packet(context_, packet, pending_);
    } catch (const std::exception &error) {
        spdlog::error("client {}: handling a request failed: {}", context_.id, error.what());
        close_reason_ = fmt::format("internal error: {}", error.what());
    }
    // Buffers it put in the books leave them again with the session.
    pending_.clear();
    set_error(pending_, StatusCode::kInternal, close_reason_);
    return Disposition::kClose;
}

void Session::serve_packets()
{
    for (int served = 0; served < kPacketsPerWakeup; ++served) {
        if (!serve_one_packet())
            return;
    }
    wait_readable();
}

bool Session::serve_one_packet()
{
    if (!client_keeps_up()) {
        wait_for_reader(kFirstReaderCheck);
        return false;
    }
    std::vector<std::byte> &buffer = server_.receive_buffer();
    // No fds are expected: any that arrive are closed by receive_packet.
    ReceiveResult received = receive_packet(socket_.native_handle(), buffer, 0, MSG_DONTWAIT);
    const ssize_t status = received.status;
    pending_.clear();
    Disposition disposition = Disposition::kKeepOpen;

    if (status == -EAGAIN || status == -EINTR) {
        wait_readable();
        return false;
    } else if (status == -EMSGSIZE) {
        set_error(pending_, StatusCode::kInvalidArgument,
                  fmt::format("packet larger than the limit of {} bytes", kMaxRequestBytes));
        disposition = Disposition::kClose;
    } else if (status == -EPROTO || status == -EMFILE) {
        // With no fd free, any fd sent is dropped as one too many is.
        set_error(pending_, StatusCode::kInvalidArgument,
                  "requests carry no file descriptors; the ones sent were closed");
    } else if (status < 0) {
        close(fmt::format("receive failed: {}", std::strerror(static_cast<int>(-status))));
        return false;
    } else if (status == 0 && peer_has_hung_up(socket_.native_handle())) {
        close("client hung up");
        return false;
    } else {
        disposition = handle(std::span<const std::byte>(buffer.data(), static_cast<std::size_t>(status)));
        server_.schedule_release_check();
    }

    if (pending_.silent) {
        pending_.clear();
        return true;
    }
    if (disposition == Disposition::kClose && close_reason_.empty())
        close_reason_ = "protocol violation: " + pending_.reply.message();
    if (!pending_.reply.SerializeToString(&outgoing_)) {
        close("could not serialize a reply");
        return false;
    }
    return send_pending();
}

bool Session::send_pending()
{
    const auto *data = reinterpret_cast<const std::byte *>(outgoing_.data());
    const ssize_t sent = send_packet(socket_.native_handle(), {data, outgoing_.size()},
                                     pending_.fds, MSG_DONTWAIT);
    if (sent == -EAGAIN || sent == -EINTR) {
        wait_writable();
        return false;
    }
    if (sent < 0 && !pending_.fds.empty() && sent != -EPIPE && sent != -ECONNRESET) {
        // The fds could not travel (e.g. ETOOMANYREFS): take the
        // buffers back and tell the client why.
        const int error = static_cast<int>(sent);
        server_.service_.undo_allocation(context_, pending_);
        const std::size_t count = pending_.fds.size();
        pending_.clear();
        set_error(pending_, status_from_errno(error),
                  fmt::format("could not pass {} buffer fds: {}", count, std::strerror(-error)));
        if (pending_.reply.SerializeToString(&outgoing_))
            return send_pending();
    }
    if (sent < 0) {
        close(fmt::format("send failed: {}", std::strerror(static_cast<int>(-sent))));
        return false;
    }

    server_.service_.delivered(context_, pending_);
    unread_buffers_ += pending_.fds.size();
    pending_.clear();
    if (!close_reason_.empty()) {
        close(close_reason_);
        return false;
    }
    return true;
}

} // namespace ionsvc
