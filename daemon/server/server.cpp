// SPDX-License-Identifier: MIT
#include "server/server.h"

#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <ionsvc/fd_passing.h>
#include <ionsvc/protocol.h>

#include "server/guard.h"
#include "server/peer.h"
#include "server/session.h"

namespace ionsvc {

namespace {

// Back-off after accept() fails for want of fds, so that a pending
// connection does not spin the loop.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

// Between two rounds of release detection. A round counts the references
// of a few hundred dma-bufs at most (ServiceLimits::release_check_budget).
constexpr auto kReleaseCheckInterval = std::chrono::milliseconds(100);

// A round runs in slices of this many buffers, each a turn of the event
// loop of its own: the clients' requests are served between slices, not
// after the whole round (a few hundred fdinfo reads, 2 ms or more). A
// request that comes in during a slice waits for it: 8 reads, about 60 µs.
constexpr std::size_t kReleaseSlice = 8;

// Spare fds kept for accept() when every other fd is taken, and how many a
// client let in on them takes at once: its socket, and two that an admin's
// requests may need while its session lasts (/proc reads, a pipe).
constexpr std::size_t kReservedFds = 9;
constexpr std::size_t kFdsPerReservedAccept = 3;

// Why a user other than an admin cannot connect while the daemon has no fd.
std::string out_of_fds_refusal()
{
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    return fmt::format("ionsvcd is out of file descriptors: it holds one per live buffer and per client, up to "
                       "its limit of {} (RLIMIT_NOFILE; LimitNOFILE= in its unit); only root and the admin group "
                       "may connect until buffers are freed",
                       static_cast<unsigned long long>(limit.rlim_cur));
}

} // namespace

Server::Server(boost::asio::io_context &io, Service &service, UniqueFD listening_socket)
    : io_(io), service_(service), acceptor_(io), accept_retry_(io), release_check_(io),
      reserve_(kReservedFds), receive_buffer_(kMaxRequestBytes)
{
    acceptor_.assign(SeqPacket(AF_UNIX, 0), listening_socket.release());
}

Server::~Server()
{
    stop();
}

void Server::start()
{
    reserve_.fill();
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
    for (auto &[raw, entry] : sessions)
        entry.session->close("daemon shutting down");
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
    // Out of fds (every one a client's buffer or connection): the spare
    // ones let the waiting client in, so that nobody hangs at connect.
    const bool out_of_fds = error == boost::asio::error::no_descriptors || error.value() == ENFILE;
    if (out_of_fds && accept_on_reserve()) {
        accept_next();
        return;
    }
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

bool Server::accept_on_reserve()
{
    if (!reserve_.release(kFdsPerReservedAccept))
        return false;
    const int fd = ::accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
        const int error = errno;
        reserve_.fill();
        // Still out of fds (another thread took the spare ones): back off
        // as without a reserve rather than try again at once.
        return error != EMFILE && error != ENFILE;
    }
    UniqueFD accepted{fd};
    bool admitted = false;
    run_guarded("accepting a client on the fd reserve", [&] {
        SeqPacket::socket socket(io_);
        socket.assign(SeqPacket(AF_UNIX, 0), accepted.release());
        admitted = admit(std::move(socket), true);
    });
    // An admin's session keeps what it was lent until a session leaves;
    // a refused client gave it all back.
    if (!admitted)
        reserve_.fill();
    return true;
}

bool Server::admit(SeqPacket::socket socket, bool on_reserve)
{
    auto identity = peer_identity(socket.native_handle());
    if (!identity) {
        spdlog::warn("dropping a connection: SO_PEERCRED failed: {}", std::strerror(-identity.error()));
        return false;
    }
    boost::system::error_code ignored;
    socket.non_blocking(true, ignored);
    if (on_reserve && !service_.is_admin(*identity)) {
        refuse(socket, *identity, out_of_fds_refusal());
        return false;
    }
    if (const auto refusal = connection_refusal(*identity)) {
        refuse(socket, *identity, *refusal);
        return false;
    }

    const ClientId id = service_.connect(*identity);
    spdlog::info("client {} connected: pid {} uid {} gid {} comm '{}'", id, identity->pid,
                 identity->uid, identity->gid, identity->comm);
    std::shared_ptr<Session> session;
    try {
        session = std::make_shared<Session>(*this, std::move(socket), id, limits_.hello_timeout);
        sessions_.emplace(session.get(), SessionEntry{session, identity->uid});
        ++connections_of_uid_[identity->uid];
    } catch (...) {
        sessions_.erase(session.get());
        service_.disconnect(id); // no session will ever do it
        throw;
    }
    session->start();
    return true;
}

std::optional<std::string> Server::connection_refusal(const ClientIdentity &identity) const
{
    // An admin can always connect and look.
    if (service_.is_admin(identity))
        return std::nullopt;
    const auto of_uid = connections_of_uid_.find(identity.uid);
    if (of_uid != connections_of_uid_.end() && of_uid->second >= limits_.per_uid)
        return fmt::format("uid {} has {} connections open, the most one uid may have "
                           "(connections.per_uid in the config file): close some first",
                           identity.uid, of_uid->second);
    if (sessions_.size() >= limits_.total)
        return fmt::format("ionsvcd has {} connections open, the most it takes from users other than "
                           "root and the admin group (connections.total in the config file)",
                           sessions_.size());
    return std::nullopt;
}

void Server::refuse(SeqPacket::socket &socket, const ClientIdentity &identity, const std::string &why)
{
    // Said at most once a second: a flood of refusals must not flood the log.
    const auto now = std::chrono::steady_clock::now();
    if (now - last_refusal_logged_ >= std::chrono::seconds(1)) {
        last_refusal_logged_ = now;
        spdlog::warn("refusing a connection of pid {} uid {}: {}", identity.pid, identity.uid, why);
    }
    // The reply the client reads for its Hello; if it cannot take it now,
    // the hang-up alone says no.
    Response response;
    set_error(response, StatusCode::kResourceExhausted, why);
    std::string packet;
    const int fd = socket.native_handle();
    if (response.reply.SerializeToString(&packet))
        send_packet(fd, {reinterpret_cast<const std::byte *>(packet.data()), packet.size()}, {}, MSG_DONTWAIT);
    // No more from the client (its sends fail now), and nothing it sent left
    // unread: a close over unread data would reset the connection, and the
    // client would see ECONNRESET instead of the reason.
    ::shutdown(fd, SHUT_RDWR);
    std::byte discard[64];
    while (::recv(fd, discard, sizeof(discard), MSG_DONTWAIT) > 0) {
    }
    boost::system::error_code ignored;
    socket.close(ignored);
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
    if (const auto of_uid = connections_of_uid_.find(it->second.uid); of_uid != connections_of_uid_.end() &&
                                                                       --of_uid->second == 0)
        connections_of_uid_.erase(of_uid);
    auto keep_alive = std::move(it->second.session);
    sessions_.erase(it);
    // Its fd is free again: the reserve may have lent one.
    reserve_.fill();
    boost::asio::post(io_, [keep_alive = std::move(keep_alive)] {});
}

} // namespace ionsvc
