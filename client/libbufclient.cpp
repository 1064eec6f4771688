// SPDX-License-Identifier: MIT
#include <bufclient/bufclient.h>

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <google/protobuf/arena.h>

#include <ionsvc/fd_passing.h>
#include <ionsvc/free_check.h>
#include <ionsvc/node_recycler.h>
#include <ionsvc/protocol.h>

#include "buffer.pb.h"

namespace bufclient {

namespace {

using ionsvc::Unexpected;

Unexpected<Error> failure(StatusCode code, std::string message)
{
    return Unexpected{Error{code, std::move(message)}};
}

std::string errno_text(int error)
{
    return std::strerror(error);
}

} // namespace

// ---------------------------------------------------------------- Mapping

Mapping::Mapping(Mapping &&other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0))
{
}

Mapping &Mapping::operator=(Mapping &&other) noexcept
{
    if (this != &other) {
        if (data_)
            ::munmap(data_, size_);
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
    }
    return *this;
}

Mapping::~Mapping()
{
    if (data_)
        ::munmap(data_, size_);
}

Result<Mapping> Mapping::map(int fd, std::size_t size, int prot)
{
    void *data = ::mmap(nullptr, size, prot, MAP_SHARED, fd, 0);
    if (data == MAP_FAILED)
        return failure(ionsvc::status_from_errno(-errno),
                       "mmap of " + std::to_string(size) + " bytes failed: " + errno_text(errno));
    return Mapping{data, size};
}

Result<Mapping> Buffer::map(int prot) const
{
    if (!fd_)
        return failure(StatusCode::kInvalidArgument, "the buffer's fd was given away");
    return Mapping::map(fd_.get(), static_cast<std::size_t>(size_), prot);
}

// ------------------------------------------------------------- Connection

std::string default_socket_path()
{
    if (const char *path = std::getenv(ionsvc::kSocketEnvironmentVariable); path && *path)
        return path;
    return std::string(ionsvc::kDefaultSocketPath);
}

namespace {

// Each connection parses and builds its messages on an arena that starts in
// a block of this size. Messages stay on it until they fill half the block,
// then all go at once: no malloc per message, and no arena made and torn
// down per request.
constexpr std::size_t kArenaBlockBytes = 8 * 1024;

void reset_if_full(google::protobuf::Arena &arena)
{
    if (arena.SpaceUsed() > kArenaBlockBytes / 2)
        arena.Reset();
}

} // namespace

// A socket connected to the daemon at path.
Result<UniqueFD> connect_socket(const std::string &path)
{
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.size() >= sizeof(address.sun_path))
        return failure(StatusCode::kInvalidArgument, "socket path '" + path + "' is too long");
    std::memcpy(address.sun_path, path.data(), path.size());

    UniqueFD socket{::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)};
    if (!socket)
        return failure(StatusCode::kResourceExhausted, "socket() failed: " + errno_text(errno));
    if (::connect(socket.get(), reinterpret_cast<const sockaddr *>(&address), sizeof(address)) < 0) {
        const int error = errno;
        return failure(error == EACCES ? StatusCode::kPermissionDenied : StatusCode::kUnavailable,
                       "cannot connect to ionsvcd at " + path + ": " + errno_text(error) +
                           " (is ionsvcd running? set " + ionsvc::kSocketEnvironmentVariable + ")");
    }
    return socket;
}

// One request and its reply, made on the connection's arena, and the fds
// the reply carried, with the connection locked until it goes: the caller
// reads the reply and takes the fds in peace.
struct Exchange
{
    ~Exchange()
    {
        // Fds nobody took (a reply that should have carried none) close now.
        fds.clear();
        // A large reply (Stats) gives its memory back now, not at the next
        // request.
        reset_if_full(arena);
    }

    std::unique_lock<std::mutex> lock;
    google::protobuf::Arena &arena;
    ionsvc::wire::Request &request;
    ionsvc::wire::Reply &reply;
    std::vector<UniqueFD> &fds; // the connection's: the vector keeps its memory
};

// The socket and the one conversation on it. Once the conversation is out of
// step (a timeout, a broken reply), the connection is dead for good.
class Client::Connection
{
public:
    Connection(ionsvc::UniqueFD socket, std::string path, const ConnectOptions &options)
        : path_(std::move(path)), timeout_(options.timeout), deferred_free_bytes_(options.deferred_free_bytes),
          client_name_(options.client_name), reconnect_timeout_(options.reconnect_timeout)
    {
        use(std::move(socket));
    }

    // Says Hello on the new socket; the reply's facts go into server.
    Result<void> greet()
    {
        ionsvc::wire::Request request;
        ionsvc::wire::Reply reply;
        auto &hello = *request.mutable_hello();
        hello.set_protocol_version(ionsvc::kProtocolVersion);
        hello.set_client_name(client_name_);
        if (auto done = exchange_once(request, reply, ReplySize::kBounded); !done)
            return done;
        const auto &answer = reply.hello();
        server.protocol_version = answer.protocol_version();
        server.server_version = answer.server_version();
        server.client_id = answer.client_id();
        server.limits = {answer.limits().max_buffer_size(), answer.limits().max_batch_count(),
                         answer.limits().max_free_ids(), answer.limits().max_request_bytes()};
        fresh_secret_ = answer.reclaim_secret();
        return {};
    }

    // The first connection's Hello stands: its id and secret reclaim this
    // client's buffers after a restart.
    void keep_identity()
    {
        secret_ = fresh_secret_;
        client_id_ = server.client_id;
    }

    // Locks the connection for one request and its reply.
    Exchange begin()
    {
        std::unique_lock lock(mutex_);
        ionsvc::wire::Request &request = new_request();
        return {std::move(lock), arena_, request, new_reply(), received_.fds};
    }

    // The same for an Alloc: its request is the connection's own, kept from
    // one Alloc to the next with its body and strings, so that filling it in
    // allocates nothing. The caller sets every field of the body.
    Exchange begin_alloc()
    {
        // The arena was checked when the last exchange ended, and a Free
        // sent since checked it before it made its request.
        std::unique_lock lock(mutex_);
        alloc_request_.clear_free_first();
        return {std::move(lock), arena_, alloc_request_, new_reply(), received_.fds};
    }

    enum class ReplySize { kBounded, kUnbounded };

    // Sends the exchange's request. Its reply, and the fds that came with it,
    // are then in the exchange; returns the error if the reply's status is
    // not OK or there is no reply.
    Result<void> transact(Exchange &exchange, ReplySize reply_size = ReplySize::kBounded)
    {
        if (!socket_ && may_come_back()) {
            if (auto back = come_back(); !back)
                return back;
        }
        auto done = exchange_once(exchange.request, exchange.reply, reply_size);
        if (done || !hung_up_ || !may_come_back())
            return done;
        // The daemon went away: the request is sent again to the next one
        // (its frees are in the reclaim already).
        if (auto back = come_back(); !back)
            return back;
        exchange.request.clear_free_first();
        return exchange_once(exchange.request, exchange.reply, reply_size);
    }

    // One request and its reply on the socket as it is.
    Result<void> exchange_once(ionsvc::wire::Request &request, ionsvc::wire::Reply &reply, ReplySize reply_size)
    {
        if (!socket_)
            return lost_earlier();

        if (auto failed = send(request); !failed)
            return Unexpected{std::move(failed).error()};

        // Replies other than Stats and Buffers are small and bounded: they are read
        // straight into the buffer. Stats can be any size: peek at it first.
        // Both block for at most the timeout (SO_RCVTIMEO).
        std::size_t capacity = kBoundedReplyBytes;
        if (reply_size == ReplySize::kUnbounded) {
            ssize_t size;
            do {
                size = ionsvc::peek_packet_size(socket_.get());
            } while (size == -EINTR);
            if (size == -EAGAIN)
                return lose(no_reply_text());
            if (size < 0)
                return lose("receiving the reply failed: " + errno_text(static_cast<int>(-size)));
            capacity = std::max(capacity, static_cast<std::size_t>(size));
        }
        if (receive_buffer_.size() < capacity)
            receive_buffer_.resize(capacity);

        ionsvc::ReceiveResult &received = received_;
        do {
            ionsvc::receive_packet(socket_.get(), receive_buffer_, ionsvc::kMaxFdsPerMessage, received);
        } while (received.status == -EINTR);
        if (received.status == -EAGAIN)
            return lose(no_reply_text());
        if (received.status == 0)
            return hang_up("ionsvcd closed the connection");
        if (received.status == -ECONNRESET) {
            if (auto refusal = refusal_before_hang_up())
                return *refusal;
            return hang_up("ionsvcd reset the connection");
        }
        if (received.status == -EPROTO)
            return lose("the reply carried more fds than a reply may (MSG_CTRUNC); closed them");
        if (received.status == -EMFILE)
            return lose(out_of_fds_text(), StatusCode::kResourceExhausted);
        if (received.status == -EMSGSIZE)
            return lose("the reply was larger than " + std::to_string(capacity) + " bytes");
        if (received.status < 0)
            return lose("receiving the reply failed: " + errno_text(static_cast<int>(-received.status)));

        if (!reply.ParseFromArray(receive_buffer_.data(), static_cast<int>(received.status)))
            return lose("the reply is not a Reply message");
        if (reply.status() != ionsvc::wire::OK)
            return failure(static_cast<StatusCode>(reply.status()), reply.message());
        return {};
    }

    // The exchange that brought the buffers is still going.
    void note_held(const Exchange &, std::span<const Buffer> buffers)
    {
        for (const Buffer &buffer : buffers)
            held_nodes_.insert(held_, buffer.id())->second = {.size = buffer.size()};
    }

    // The exchange that made a token for the buffer is still going.
    void note_shared(const Exchange &, std::uint64_t id)
    {
        if (const auto it = held_.find(id); it != held_.end())
            it->second.shared = true;
    }

    // Frees ids after checking them against the ids this connection holds,
    // by the daemon's own rules: a Free that passes cannot fail there, so it
    // goes without a reply, costing one send instead of a round trip, or,
    // for small buffers, nothing until the next request carries it.
    Result<void> free(std::span<const std::uint64_t> ids)
    {
        std::lock_guard lock(mutex_);
        if (!socket_ && !may_come_back())
            return lost_earlier();
        const auto refusal = ionsvc::check_free_ids(ids, server.limits.max_free_ids,
                                                    [&](std::uint64_t id) { return held_.contains(id); });
        if (refusal)
            return failure(refusal->code, refusal->message);

        // Room for all of them in one message, or the ones kept back go first.
        if (deferred_.size() + ids.size() > kMaxDeferredFrees) {
            if (auto failed = send_deferred(); !failed)
                return failed;
        }
        bool shared = false;
        for (const std::uint64_t id : ids) {
            const auto it = held_.find(id);
            deferred_bytes_ += it->second.size;
            shared = shared || it->second.shared;
            held_nodes_.erase(held_, it);
            deferred_.push_back(id);
        }
        const bool keep_back = deferred_free_bytes_ > 0 && !shared &&
                               deferred_bytes_ <= deferred_free_bytes_ && deferred_.size() < kMaxDeferredFrees;
        if (keep_back)
            return {};
        return send_deferred_or_come_back();
    }

    Result<void> flush_frees()
    {
        std::lock_guard lock(mutex_);
        return send_deferred_or_come_back();
    }

    ServerInfo server;

private:
    // A fresh request on the arena; mutex_ held.
    ionsvc::wire::Request &new_request()
    {
        reset_if_full(arena_);
        return *google::protobuf::Arena::CreateMessage<ionsvc::wire::Request>(&arena_);
    }

    // A reply on the arena, after new_request() or begin_alloc(); mutex_ held.
    ionsvc::wire::Reply &new_reply()
    {
        return *google::protobuf::Arena::CreateMessage<ionsvc::wire::Reply>(&arena_);
    }

    // The kept-back frees, sent; if the daemon went away, the reclaim on
    // the next connection frees them. mutex_ held.
    Result<void> send_deferred_or_come_back()
    {
        if (socket_) {
            auto sent = send_deferred();
            if (sent || !hung_up_ || !may_come_back())
                return sent;
        }
        if (!may_come_back())
            return lost_earlier();
        return come_back();
    }

    // The kept-back frees as a Free of their own, without reply; mutex_ held.
    Result<void> send_deferred()
    {
        if (deferred_.empty())
            return {};
        ionsvc::wire::Request &request = new_request();
        request.mutable_free()->set_no_reply(true);
        return send(request);
    }

    // Sends request with the kept-back frees in its free_first; mutex_ held.
    Result<void> send(ionsvc::wire::Request &request)
    {
        request.mutable_free_first()->Add(deferred_.begin(), deferred_.end());
        if (!request.SerializeToString(&send_buffer_))
            return failure(StatusCode::kInternal, "could not serialize the request");
        const ssize_t sent = ionsvc::send_packet(
            socket_.get(), {reinterpret_cast<const std::byte *>(send_buffer_.data()), send_buffer_.size()}, {});
        if (sent == -EAGAIN)
            return lose("ionsvcd took no request within " + std::to_string(timeout_.count()) + " ms");
        if (sent == -EPIPE || sent == -ECONNRESET) {
            if (auto refusal = refusal_before_hang_up())
                return *refusal;
            return hang_up("ionsvcd closed the connection");
        }
        if (sent < 0)
            return lose("sending the request failed: " + errno_text(static_cast<int>(-sent)));
        deferred_.clear();
        deferred_bytes_ = 0;
        return {};
    }

    // A daemon that refuses a connection (e.g. one too many for the uid)
    // says why and hangs up, maybe before the Hello arrives: the reason
    // is then still waiting to be read.
    std::optional<Unexpected<Error>> refusal_before_hang_up()
    {
        if (receive_buffer_.size() < kBoundedReplyBytes)
            receive_buffer_.resize(kBoundedReplyBytes);
        const ionsvc::ReceiveResult received =
            ionsvc::receive_packet(socket_.get(), receive_buffer_, 0, MSG_DONTWAIT);
        ionsvc::wire::Reply reply;
        if (received.status <= 0 || !reply.ParseFromArray(receive_buffer_.data(), static_cast<int>(received.status)) ||
            reply.status() == ionsvc::wire::OK)
            return std::nullopt;
        socket_.reset();
        lost_reason_ = reply.message();
        return failure(static_cast<StatusCode>(reply.status()), reply.message());
    }

    Unexpected<Error> lost_earlier() const
    {
        return failure(StatusCode::kUnavailable,
                       "the connection to ionsvcd at " + path_ + " was lost earlier: " + lost_reason_);
    }

    // Every reply but Stats fits: an Alloc reply of a whole batch is ~2 KiB.
    static constexpr std::size_t kBoundedReplyBytes = 16 * 1024;

    std::string no_reply_text() const
    {
        return "no reply within " + std::to_string(timeout_.count()) + " ms";
    }

    Unexpected<Error> lose(std::string reason, StatusCode code = StatusCode::kUnavailable)
    {
        socket_.reset();
        lost_reason_ = reason;
        hung_up_ = false;
        return failure(code, "ionsvcd at " + path_ + ": " + reason);
    }

    // The daemon closed the connection: it exited, crashed or is
    // restarting, and the next one may give this client its buffers back.
    Unexpected<Error> hang_up(std::string reason)
    {
        auto lost = lose(std::move(reason));
        hung_up_ = true;
        return lost;
    }

    bool may_come_back() const { return hung_up_ && !secret_.empty() && reconnect_timeout_.count() > 0; }

    void use(ionsvc::UniqueFD socket)
    {
        socket_ = std::move(socket);
        hung_up_ = false;
        // The kernel enforces the timeout, both ways: no poll() per round
        // trip, and no send that blocks forever on a daemon that stopped
        // reading.
        const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(timeout_).count();
        const timeval limit{static_cast<time_t>(micros / 1'000'000),
                            static_cast<suseconds_t>(micros % 1'000'000)};
        ::setsockopt(socket_.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
        ::setsockopt(socket_.get(), SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
    }

    // Reconnects to the daemon that replaced the lost one and reclaims
    // this client's buffers, retrying until reconnect_timeout_. mutex_ held.
    Result<void> come_back()
    {
        const auto deadline = std::chrono::steady_clock::now() + reconnect_timeout_;
        std::chrono::milliseconds pause{10};
        for (;;) {
            auto socket = connect_socket(path_);
            if (socket) {
                use(std::move(*socket));
                auto done = greet();
                if (done)
                    return reclaim();
                if (done.error().code != StatusCode::kUnavailable)
                    return done;
            } else if (socket.error().code != StatusCode::kUnavailable) {
                return Unexpected{std::move(socket).error()};
            } else {
                lost_reason_ = socket.error().message;
            }
            // Until its socket is back (outside systemd, the new daemon
            // makes it): a growing pause, as no event says when.
            const auto now = std::chrono::steady_clock::now();
            if (now >= deadline) {
                // Given up for good: later calls fail at once.
                socket_.reset();
                hung_up_ = false;
                lost_reason_ = "it did not come back within " + std::to_string(reconnect_timeout_.count()) +
                               " ms (" + lost_reason_ + ")";
                return failure(StatusCode::kUnavailable, "ionsvcd at " + path_ + ": " + lost_reason_);
            }
            std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(pause, deadline - now));
            pause = std::min(pause * 2, std::chrono::milliseconds{500});
        }
    }

    // Tells the new daemon which buffers this client still holds, a page at
    // a time; it frees the rest (kept-back frees, replies that never came).
    Result<void> reclaim()
    {
        deferred_.clear();
        deferred_bytes_ = 0;
        std::vector<std::uint64_t> ids;
        ids.reserve(held_.size());
        for (const auto &[id, held] : held_)
            ids.push_back(id);
        const std::size_t page = std::max<std::size_t>(1, server.limits.max_free_ids);
        std::size_t at = 0;
        do {
            const std::size_t end = std::min(ids.size(), at + page);
            ionsvc::wire::Request request;
            ionsvc::wire::Reply reply;
            auto &body = *request.mutable_reclaim();
            body.set_client_id(client_id_);
            body.set_secret(secret_);
            body.mutable_held_ids()->Add(ids.begin() + static_cast<std::ptrdiff_t>(at),
                                         ids.begin() + static_cast<std::ptrdiff_t>(end));
            body.set_last(end == ids.size());
            auto done = exchange_once(request, reply, ReplySize::kBounded);
            if (!done && done.error().code == StatusCode::kNotFound) {
                // This daemon kept nothing of this client: a new one from
                // here on, its old ids unknown.
                held_.clear();
                keep_identity();
                return {};
            }
            if (!done)
                return done;
            for (const std::uint64_t unknown : reply.reclaim().unknown_ids())
                held_.erase(unknown);
            at = end;
        } while (at < ids.size());
        server.client_id = client_id_;
        return {};
    }

    // A reply whose fds this process had no room for: the buffers went
    // with them, and the connection goes too, so that the daemon lets go
    // of them.
    static std::string out_of_fds_text()
    {
        rlimit limit{};
        const std::string which = ::getrlimit(RLIMIT_NOFILE, &limit) == 0
                                      ? "its limit of " + std::to_string(limit.rlim_cur) + " (RLIMIT_NOFILE)"
                                      : "its fd limit";
        return "this process has no fd free for the buffers the reply carried: it holds as many fds as " + which +
               " allows; free buffers or raise the limit. The connection is closed, and the buffers of that "
               "reply with it";
    }

    std::mutex mutex_;
    alignas(std::max_align_t) std::array<char, kArenaBlockBytes> arena_block_;
    google::protobuf::Arena arena_{[this] {
        google::protobuf::ArenaOptions options;
        options.initial_block = arena_block_.data();
        options.initial_block_size = arena_block_.size();
        return options;
    }()};
    ionsvc::wire::Request alloc_request_; // off the arena: Reset() leaves it be
    ionsvc::UniqueFD socket_;
    std::string path_;
    std::chrono::milliseconds timeout_;
    std::vector<std::byte> receive_buffer_;
    ionsvc::ReceiveResult received_; // its fds are the Exchange's
    std::string send_buffer_;
    struct Held
    {
        std::uint64_t size = 0;
        bool shared = false; // a token was made for it
    };
    // The buffers this connection allocated or imported and has not freed.
    std::unordered_map<std::uint64_t, Held> held_;
    ionsvc::NodeRecycler<decltype(held_), 64> held_nodes_;
    std::uint64_t deferred_free_bytes_;
    std::vector<std::uint64_t> deferred_; // freed here, not yet told to the daemon
    std::uint64_t deferred_bytes_ = 0;    // their sizes
    std::string lost_reason_;
    std::string client_name_;
    std::chrono::milliseconds reconnect_timeout_;
    // This client to the daemon, for a reclaim after a restart: its first
    // Hello's id and secret (none: the daemon keeps nothing).
    std::uint64_t client_id_ = 0;
    std::string secret_;
    std::string fresh_secret_; // the last Hello's
    bool hung_up_ = false;     // the daemon closed the connection
};

// ----------------------------------------------------------------- Client

Client::Client(std::unique_ptr<Connection> connection) : connection_(std::move(connection)) {}
Client::Client(Client &&) noexcept = default;
Client &Client::operator=(Client &&) noexcept = default;
Client::~Client() = default;

const ServerInfo &Client::server() const
{
    return connection_->server;
}

Result<Client> Client::connect(const ConnectOptions &options)
{
    const std::string path = options.socket_path.empty() ? default_socket_path() : options.socket_path;
    auto socket = connect_socket(path);
    if (!socket)
        return Unexpected{std::move(socket).error()};
    auto connection = std::make_unique<Connection>(std::move(*socket), path, options);
    if (auto done = connection->greet(); !done)
        return Unexpected{std::move(done).error()};
    connection->keep_identity();
    return Client{std::move(connection)};
}

Result<std::vector<Buffer>> Client::allocate(const AllocOptions &options)
{
    Exchange exchange = connection_->begin_alloc();
    auto &alloc = *exchange.request.mutable_alloc();
    // Every field, as the request is the last Alloc's. A string that was
    // set once keeps its memory: setting it again copies the text.
    alloc.set_heap(options.heap);
    alloc.set_size(options.size);
    alloc.set_flags(options.flags);
    alloc.set_name(options.name);
    alloc.set_count(options.count);
    alloc.set_ion_heap_id_mask(options.ion_heap_id_mask);

    if (auto done = connection_->transact(exchange); !done)
        return Unexpected{std::move(done).error()};

    const auto &infos = exchange.reply.alloc().buffers();
    if (static_cast<std::size_t>(infos.size()) != exchange.fds.size())
        return failure(StatusCode::kInternal, "the reply lists " + std::to_string(infos.size()) +
                                                  " buffers but carried " +
                                                  std::to_string(exchange.fds.size()) + " fds");

    std::vector<Buffer> buffers;
    buffers.reserve(exchange.fds.size());
    for (int i = 0; i < infos.size(); ++i) {
        const auto &info = infos[i];
        buffers.emplace_back(std::move(exchange.fds[static_cast<std::size_t>(i)]), info.id(),
                             info.size(), info.heap(), info.from_pool());
    }
    connection_->note_held(exchange, buffers);
    return buffers;
}

Result<void> Client::free(std::span<const std::uint64_t> buffer_ids)
{
    return connection_->free(buffer_ids);
}

Result<void> Client::free(const Buffer &buffer)
{
    const std::uint64_t id = buffer.id();
    return free(std::span<const std::uint64_t>(&id, 1));
}

Result<void> Client::flush_frees()
{
    return connection_->flush_frees();
}

namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

std::string to_hex(std::string_view bytes)
{
    std::string text;
    text.reserve(bytes.size() * 2);
    for (const char byte : bytes) {
        const auto value = static_cast<unsigned char>(byte);
        text += kHexDigits[value >> 4];
        text += kHexDigits[value & 0xf];
    }
    return text;
}

int hex_value(char digit)
{
    if (digit >= '0' && digit <= '9')
        return digit - '0';
    if (digit >= 'a' && digit <= 'f')
        return digit - 'a' + 10;
    if (digit >= 'A' && digit <= 'F')
        return digit - 'A' + 10;
    return -1;
}

// The bytes of a token's text, or why it is no token.
Result<std::string> token_bytes(std::string_view text)
{
    constexpr std::size_t kTokenDigits = 48;
    if (text.size() != kTokenDigits)
        return failure(StatusCode::kInvalidArgument, "a share token is " + std::to_string(kTokenDigits) +
                                                         " hex digits, not " + std::to_string(text.size()) +
                                                         " characters");
    std::string bytes;
    bytes.reserve(text.size() / 2);
    for (std::size_t i = 0; i < text.size(); i += 2) {
        const int high = hex_value(text[i]);
        const int low = hex_value(text[i + 1]);
        if (high < 0 || low < 0)
            return failure(StatusCode::kInvalidArgument, "a share token is hex digits only");
        bytes += static_cast<char>(high << 4 | low);
    }
    return bytes;
}

} // namespace

Result<std::string> Client::share(const Buffer &buffer, const ShareOptions &options)
{
    Exchange exchange = connection_->begin();
    ionsvc::wire::Request &request = exchange.request;
    auto &share = *request.mutable_share();
    share.set_buffer_id(buffer.id());
    if (options.uid)
        share.set_uid(*options.uid);
    share.set_ttl_ms(static_cast<std::uint64_t>(std::max<std::int64_t>(options.ttl.count(), 0)));
    share.set_reusable(options.reusable);
    if (auto done = connection_->transact(exchange); !done)
        return Unexpected{std::move(done).error()};
    connection_->note_shared(exchange, buffer.id());
    return to_hex(exchange.reply.share().token());
}

Result<Buffer> Client::import(std::string_view token)
{
    auto bytes = token_bytes(token);
    if (!bytes)
        return Unexpected{std::move(bytes).error()};
    Exchange exchange = connection_->begin();
    ionsvc::wire::Request &request = exchange.request;
    request.mutable_import_buffer()->set_token(std::move(*bytes));
    if (auto done = connection_->transact(exchange); !done)
        return Unexpected{std::move(done).error()};
    if (exchange.fds.size() != 1)
        return failure(StatusCode::kInternal,
                       "the import reply carried " + std::to_string(exchange.fds.size()) + " fds, not 1");
    const auto &info = exchange.reply.import_buffer().buffer();
    Buffer buffer(std::move(exchange.fds.front()), info.id(), info.size(), info.heap());
    connection_->note_held(exchange, std::span<const Buffer>(&buffer, 1));
    return buffer;
}

Result<void> Client::revoke(std::string_view token)
{
    auto bytes = token_bytes(token);
    if (!bytes)
        return Unexpected{std::move(bytes).error()};
    Exchange exchange = connection_->begin();
    ionsvc::wire::Request &request = exchange.request;
    request.mutable_revoke()->set_token(std::move(*bytes));
    if (auto done = connection_->transact(exchange); !done)
        return Unexpected{std::move(done).error()};
    return {};
}

Result<std::vector<HeapInfo>> Client::list_heaps()
{
    Exchange exchange = connection_->begin();
    ionsvc::wire::Request &request = exchange.request;
    request.mutable_list_heaps();
    if (auto done = connection_->transact(exchange); !done)
        return Unexpected{std::move(done).error()};

    std::vector<HeapInfo> heaps;
    for (const auto &heap : exchange.reply.list_heaps().heaps()) {
        heaps.push_back({heap.name(), heap.backend(), heap.type(), heap.live_bytes(),
                         heap.live_buffers(), heap.peak_bytes(),
                         {heap.aliases().begin(), heap.aliases().end()},
                         heap.has_ion_heap_id() ? std::optional{heap.ion_heap_id()} : std::nullopt,
                         heap.pool_bytes(), heap.pool_buffers()});
    }
    return heaps;
}

Result<Stats> Client::stats(std::optional<pid_t> pid, StatsView view)
{
    Exchange exchange = connection_->begin();
    ionsvc::wire::Request &request = exchange.request;
    auto &stats_request = *request.mutable_stats();
    if (pid)
        stats_request.set_pid(static_cast<std::uint32_t>(*pid));
    switch (view) {
    case StatsView::kPids: stats_request.set_view(ionsvc::wire::STATS_VIEW_PIDS); break;
    case StatsView::kHeaps: stats_request.set_view(ionsvc::wire::STATS_VIEW_HEAPS); break;
    case StatsView::kClients: stats_request.set_view(ionsvc::wire::STATS_VIEW_CLIENTS); break;
    case StatsView::kCgroups: stats_request.set_view(ionsvc::wire::STATS_VIEW_CGROUPS); break;
    }

    if (auto done = connection_->transact(exchange, Connection::ReplySize::kUnbounded); !done)
        return Unexpected{std::move(done).error()};

    Stats stats;
    for (const auto &client : exchange.reply.stats().clients()) {
        ClientStats &entry = stats.clients.emplace_back();
        entry.client_id = client.client_id();
        entry.pid = client.pid();
        entry.uid = client.uid();
        entry.gid = client.gid();
        entry.comm = client.comm();
        entry.name = client.name();
        entry.cgroup = client.cgroup();
        entry.awaiting_reclaim = client.awaiting_reclaim();
        for (const auto &usage : client.heaps())
            entry.heaps.push_back({usage.heap(), usage.bytes(), usage.buffers(), usage.peak_bytes(),
                                   usage.shared_bytes(), usage.shared_buffers()});
    }
    for (const auto &heap : exchange.reply.stats().heaps()) {
        HeapStats &entry = stats.heaps.emplace_back();
        entry.name = heap.name();
        entry.backend = heap.backend();
        entry.type = heap.type();
        entry.total_bytes = heap.total_bytes();
        entry.total_buffers = heap.total_buffers();
        entry.pool_bytes = heap.pool_bytes();
        entry.pool_buffers = heap.pool_buffers();
        for (const auto &orphan : heap.orphaned())
            entry.orphaned.push_back(
                {orphan.comm(), orphan.pid(), orphan.size(), orphan.map_count(), orphan.refcount()});
    }
    for (const auto &limit : exchange.reply.stats().limits())
        stats.limits.push_back({limit.setting(), limit.scope(), limit.unit(), limit.used(), limit.limit()});
    if (exchange.reply.stats().has_counters()) {
        const auto &counters = exchange.reply.stats().counters();
        Counters &entry = stats.counters.emplace();
        entry.allocations = counters.allocations();
        entry.allocated_bytes = counters.allocated_bytes();
        entry.imports = counters.imports();
        for (const auto &refusal : counters.refusals())
            entry.refusals.emplace_back(static_cast<StatusCode>(refusal.status()), refusal.count());
    }
    if (exchange.reply.stats().has_recovery()) {
        const auto &recovery = exchange.reply.stats().recovery();
        stats.recovery = Recovery{recovery.enabled(),          recovery.stored_buffers(),
                                  recovery.store_limit(),      recovery.pending_changes(),
                                  recovery.unstored_buffers(), recovery.restored_buffers(),
                                  recovery.awaiting_reclaim()};
    }
    return stats;
}

namespace {

ClientLabel label_of(const ionsvc::wire::ClientLabel &label)
{
    return {label.client_id(), label.pid(), label.uid(), label.comm(), label.name()};
}

BufferEntry entry_of(const ionsvc::wire::BufferEntry &buffer)
{
    BufferEntry entry;
    entry.id = buffer.id();
    entry.heap = buffer.heap();
    entry.size = buffer.size();
    entry.name = buffer.name();
    entry.inode = buffer.inode();
    entry.allocated_by = label_of(buffer.allocated_by());
    entry.allocator_connected = buffer.allocator_connected();
    for (const auto &holder : buffer.holders())
        entry.holders.push_back(label_of(holder));
    if (buffer.has_orphan_of())
        entry.orphan_of = label_of(buffer.orphan_of());
    entry.from_pool = buffer.from_pool();
    entry.age_ms = buffer.age_ms();
    return entry;
}

} // namespace

Result<std::vector<BufferEntry>> Client::list_buffers(const BufferFilter &filter)
{
    std::vector<BufferEntry> buffers;
    std::uint64_t after = 0;
    for (;;) {
        Exchange exchange = connection_->begin();
        auto &request = *exchange.request.mutable_buffers();
        if (filter.pid)
            request.set_pid(static_cast<std::uint32_t>(*filter.pid));
        request.set_heap(filter.heap);
        request.set_after_id(after);
        if (auto done = connection_->transact(exchange, Connection::ReplySize::kUnbounded); !done)
            return Unexpected{std::move(done).error()};
        const auto &reply = exchange.reply.buffers();
        for (const auto &buffer : reply.buffers())
            buffers.push_back(entry_of(buffer));
        // A daemon that says "more" must have sent some, and moved on: else
        // this would ask for the same page for ever.
        if (!reply.more() || reply.buffers().empty())
            return buffers;
        const std::uint64_t last = reply.buffers(reply.buffers_size() - 1).id();
        if (last <= after)
            return Unexpected{Error{StatusCode::kInternal, "ionsvcd sent a page of buffers that does not move on"}};
        after = last;
    }
}

} // namespace bufclient
