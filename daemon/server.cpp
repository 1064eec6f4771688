// SPDX-License-Identifier: MIT
#include "server.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>

#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <ionsvc/fd_passing.h>
#include <ionsvc/protocol.h>

#include "guard.h"

namespace ionsvc {

namespace {

// Back-off after accept() fails for want of fds, so that a pending
// connection does not spin the loop.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

// Packets one session may handle in a row before it lets others run.
constexpr int kPacketsPerWakeup = 16;

// Between two rounds of release detection. A round counts the references
// of a few hundred dma-bufs at most (ServiceLimits::release_check_budget).
constexpr auto kReleaseCheckInterval = std::chrono::milliseconds(100);

// A round runs in slices of this many buffers, each a turn of the event
// loop of its own: the clients' requests are served between slices, not
// after the whole round (a few hundred fdinfo reads, 2 ms or more). A
// request that comes in during a slice waits for it: 8 reads, about 60 µs.
constexpr std::size_t kReleaseSlice = 8;

std::string read_comm(pid_t pid)
{
    std::ifstream file(fmt::format("/proc/{}/comm", pid));
    std::string comm;
    if (!std::getline(file, comm))
        return "?";
    return comm;
}

Expected<ClientIdentity, int> peer_identity(int socket)
{
    ucred credentials{};
    socklen_t length = sizeof(credentials);
    if (::getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &credentials, &length) < 0)
        return Unexpected{-errno};
    ClientIdentity identity{credentials.pid, credentials.uid, credentials.gid, read_comm(credentials.pid), {}};
    // The peer's supplementary groups as they were at connect(). A kernel
    // without SO_PEERGROUPS (before 4.13) leaves them out: the access rules
    // and group quotas then see the primary group only.
    std::vector<gid_t> groups(64);
    for (;;) {
        socklen_t size = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
        if (::getsockopt(socket, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &size) == 0) {
            groups.resize(size / sizeof(gid_t));
            identity.groups = std::move(groups);
            break;
        }
        if (errno != ERANGE)
            break;
        groups.resize(size / sizeof(gid_t));
    }
    return identity;
}

} // namespace

// One connected client: reads a request, handles it, sends the reply (with
// its fds), and only then reads the next request. A client that never reads
// its replies therefore stalls itself, never the daemon or its memory.
class Session : public std::enable_shared_from_this<Session>
{
public:
    Session(Server &server, SeqPacket::socket socket, ClientId id)
        : server_(server), socket_(std::move(socket))
    {
        context_.id = id;
    }

    void start() { wait_readable(); }

    void close(std::string_view reason)
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

        // The pending reply lends fds owned by the books: drop it first.
        pending_.clear();
        boost::system::error_code ignored;
        socket_.close(ignored);
        server_.service_.disconnect(context_.id);
        server_.schedule_release_check();
        server_.forget(this);
    }

private:
    void wait_readable()
    {
        socket_.async_wait(SeqPacket::socket::wait_read,
                           [self = shared_from_this()](const boost::system::error_code &error) {
                               self->on_readable(error);
                           });
    }

    void wait_writable()
    {
        socket_.async_wait(SeqPacket::socket::wait_write,
                           [self = shared_from_this()](const boost::system::error_code &error) {
                               self->on_writable(error);
                           });
    }

    void on_readable(const boost::system::error_code &error)
    {
        if (closed_)
            return;
        if (error) {
            close(fmt::format("wait failed: {}", error.message()));
            return;
        }

        guarded([this] { serve_packets(); });
    }

    // Runs a step of this session's work; if it throws, this session ends
    // and the event loop goes on serving the others.
    template<typename Step>
    void guarded(Step &&step)
    {
        // Fixed texts: nothing to build on every wakeup. close() logs the id.
        if (run_guarded("serving a client", std::forward<Step>(step)))
            return;
        run_guarded("closing a client's session", [this] { close("internal error"); });
    }

    // Handles one request. An exception (bad_alloc, a bug's out_of_range)
    // fails this request with INTERNAL and then ends the session, whose
    // state it may have left half done; nobody else notices.
    Disposition handle(std::span<const std::byte> packet)
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

    // Reads on until the socket is empty, the reply must wait for room, or
    // the budget is spent: a request is often queued behind the one just
    // answered (a Free, then the next Alloc), and reading it now saves a
    // trip through the event loop. The budget keeps one busy client from
    // starving the others.
    void serve_packets()
    {
        for (int served = 0; served < kPacketsPerWakeup; ++served) {
            if (!serve_one_packet())
                return;
        }
        wait_readable();
    }

    // Reads and handles one packet. Returns true if its reply (if any) is
    // out and the next packet may be read; otherwise the session has moved
    // on (to waiting or closing).
    bool serve_one_packet()
    {
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

    void on_writable(const boost::system::error_code &error)
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

    // Sends the pending reply. Returns true once it is out; false if the
    // session now waits for room or has closed.
    bool send_pending()
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
        pending_.clear();
        if (!close_reason_.empty()) {
            close(close_reason_);
            return false;
        }
        return true;
    }

    Server &server_;
    SeqPacket::socket socket_;
    ClientContext context_;
    Response pending_;
    std::string outgoing_;
    std::string close_reason_; // set: hang up once the reply is out
    bool closed_ = false;
};

Server::Server(boost::asio::io_context &io, Service &service, UniqueFD listening_socket)
    : io_(io), service_(service), acceptor_(io), accept_retry_(io), release_check_(io),
      receive_buffer_(kMaxRequestBytes)
{
    acceptor_.assign(SeqPacket(AF_UNIX, 0), listening_socket.release());
}

Server::~Server()
{
    stop();
}

void Server::start()
{
    accept_next();
}

void Server::stop()
{
    if (stopped_)
        return;
    stopped_ = true;
    service_.shut_down();
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    accept_retry_.cancel();
    release_check_.cancel();
    // close() removes each session from the map: iterate over a copy.
    auto sessions = sessions_;
    for (auto &[raw, session] : sessions)
        session->close("daemon shutting down");
}

void Server::accept_next()
{
    acceptor_.async_accept([this](const boost::system::error_code &error, SeqPacket::socket socket) {
        on_accept(error, std::move(socket));
    });
}

void Server::on_accept(const boost::system::error_code &error, SeqPacket::socket socket)
{
    if (stopped_ || error == boost::asio::error::operation_aborted)
        return;
    if (error) {
        // Said once, not every retry: out of fds, it fails until buffers go.
        if (accept_failures_++ == 0)
            spdlog::warn("accept failed: {}; retrying every {} ms until it works", error.message(),
                         kAcceptRetryDelay.count());
        accept_retry_.expires_after(kAcceptRetryDelay);
        accept_retry_.async_wait([this](const boost::system::error_code &wait_error) {
            if (!wait_error && !stopped_)
                accept_next();
        });
        return;
    }

    if (accept_failures_ > 0) {
        spdlog::info("accepting clients again after {} failed attempts", accept_failures_);
        accept_failures_ = 0;
    }
    accept_next();
    run_guarded("accepting a client", [&] { admit(std::move(socket)); });
}

void Server::admit(SeqPacket::socket socket)
{
    auto identity = peer_identity(socket.native_handle());
    if (!identity) {
        spdlog::warn("dropping a connection: SO_PEERCRED failed: {}", std::strerror(-identity.error()));
        return;
    }
    boost::system::error_code ignored;
    socket.non_blocking(true, ignored);

    const ClientId id = service_.connect(*identity);
    spdlog::info("client {} connected: pid {} uid {} gid {} comm '{}'", id, identity->pid,
                 identity->uid, identity->gid, identity->comm);
    std::shared_ptr<Session> session;
    try {
        session = std::make_shared<Session>(*this, std::move(socket), id);
        sessions_.emplace(session.get(), session);
    } catch (...) {
        service_.disconnect(id); // no session will ever do it
        throw;
    }
    session->start();
}

void Server::schedule_release_check()
{
    // The timer runs only while there are dma-bufs to watch: an idle daemon
    // does not wake up ten times a second for nothing.
    if (release_check_armed_ || stopped_ || !service_.has_watched_buffers())
        return;
    release_check_armed_ = true;
    check_release_after(kReleaseCheckInterval, 0);
}

void Server::check_release_after(std::chrono::steady_clock::duration delay, std::size_t round_left)
{
    // The timer even between slices (with no delay): stop() cancels it, and
    // the loop polls the sockets before it fires.
    release_check_.expires_after(delay);
    release_check_.async_wait([this, round_left](const boost::system::error_code &error) {
        if (error || stopped_) {
            release_check_armed_ = false;
            return;
        }
        std::size_t left = round_left ? round_left : service_.release_round_size();
        const std::size_t slice = std::min(left, kReleaseSlice);
        run_guarded("release detection", [&] {
            if (const std::size_t released = service_.release_unreferenced(slice))
                SPDLOG_DEBUG("release detection: {} buffers nobody holds any more left the books", released);
        });
        left -= slice;
        if (left > 0) {
            check_release_after(std::chrono::steady_clock::duration::zero(), left);
            return;
        }
        release_check_armed_ = false;
        schedule_release_check();
    });
}

void Server::forget(Session *session)
{
    // Deferred: the caller is a member of the session being forgotten.
    auto it = sessions_.find(session);
    if (it == sessions_.end())
        return;
    auto keep_alive = std::move(it->second);
    sessions_.erase(it);
    boost::asio::post(io_, [keep_alive = std::move(keep_alive)] {});
}

} // namespace ionsvc
