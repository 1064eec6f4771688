// SPDX-License-Identifier: MIT
#include "server/recovery_keeper.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "server/guard.h"

namespace ionsvc {

namespace {

constexpr std::chrono::milliseconds kTick{100};
// Messages to systemd per tick at most: PID 1 takes each in time that grows
// with the store, and the loop has clients to serve. The rest wait.
constexpr std::size_t kSendsPerTick = 512;
// At exit, how long systemd may take to have everything.
constexpr std::chrono::seconds kFinalSendLimit{10};
// Two for the state: the one written last stays while the next goes in.
constexpr std::size_t kStateSlots = 2;
constexpr std::string_view kBufferPrefix = "buf-";
constexpr std::string_view kStatePrefix = "state-";

std::string buffer_name(BufferId id)
{
    return fmt::format("{}{}", kBufferPrefix, id);
}

// text in a sealed memfd: nobody, the daemon included, can change it
// once it is in the store.
Expected<UniqueFD, int> sealed_memfd(Syscalls &syscalls, const std::string &text)
{
    auto fd = syscalls.memfd_create("ionsvc-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (!fd)
        return fd;
    std::size_t written = 0;
    while (written < text.size()) {
        const ssize_t n = ::write(fd->get(), text.data() + written, text.size() - written);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return Unexpected{-errno};
        written += static_cast<std::size_t>(n);
    }
    if (const int ret = syscalls.add_seals(fd->get(), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
        ret < 0)
        return Unexpected{ret};
    return fd;
}

// The whole of a memfd's text.
Expected<std::string, int> read_all(int fd)
{
    std::string text;
    char chunk[65536];
    for (off_t offset = 0;;) {
        const ssize_t n = ::pread(fd, chunk, sizeof chunk, offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return Unexpected{-errno};
        if (n == 0)
            return text;
        text.append(chunk, static_cast<std::size_t>(n));
        offset += n;
    }
}

} // namespace

RecoveryKeeper::RecoveryKeeper(boost::asio::io_context &io, Service &service, Syscalls &syscalls,
                               RecoverySettings settings)
    : timer_(io), service_(service), syscalls_(syscalls), settings_(settings)
{
    service_.books().track_store();
    service_.enable_reclaim();
    RecoveryFigures &figures = service_.recovery_figures();
    figures.enabled = true;
    figures.store_limit = settings_.store_limit;
    figures.pending_changes = [this] {
        return store_.queued() + (service_.books().version() != written_version_ ? 1 : 0);
    };
}

RecoveryKeeper::~RecoveryKeeper()
{
    service_.recovery_figures().pending_changes = nullptr;
}

void RecoveryKeeper::restore(std::vector<std::pair<std::string, UniqueFD>> stored)
{
    // The newest state that reads: the other slot is a write behind.
    std::string state;
    std::uint64_t newest = 0;
    std::vector<StoredFd> buffers;
    std::vector<std::string> unusable;
    for (auto &[name, fd] : stored) {
        if (name.starts_with(kBufferPrefix)) {
            buffers.push_back({name, std::move(fd)});
            continue;
        }
        Expected<std::string, int> text = Unexpected{-EINVAL};
        if (name.starts_with(kStatePrefix))
            text = read_all(fd.get());
        const auto generation = text ? Service::state_generation(*text) : std::nullopt;
        if (!generation) {
            unusable.push_back(name);
            continue;
        }
        if (state.empty() || *generation > newest) {
            state = std::move(*text);
            newest = *generation;
        }
    }
    generation_ = newest;
    if (!state.empty()) {
        auto outcome = service_.restore_state(state, std::move(buffers));
        if (outcome) {
            spdlog::info("restored from the fd store (state {}): {} clients, {} buffers, {} share tokens", newest,
                         outcome->clients, outcome->buffers, outcome->shares);
            for (const std::string &why : outcome->dropped)
                spdlog::warn("not restored: {}", why);
            unusable.insert(unusable.end(), outcome->unknown_fds.begin(), outcome->unknown_fds.end());
            stored_ = outcome->buffers;
        }
    } else {
        for (const StoredFd &buffer : buffers)
            unusable.push_back(buffer.name);
    }
    // What no state names was stored after the last state was written, or
    // by another version: nothing can make it books again.
    if (!unusable.empty())
        spdlog::warn("dropping {} fds from the store that no state names (stored after the last state was "
                     "written before the daemon died)", unusable.size());
    for (std::string &name : unusable)
        store_.remove(std::move(name));
    store_.send_some(kSendsPerTick);
    written_version_ = service_.books().version();
    reclaim_deadline_ = std::chrono::steady_clock::now() + settings_.reclaim_wait;
    awaiting_reclaim_ = service_.awaiting_reclaim() > 0;
    update_figures();
}

void RecoveryKeeper::start()
{
    schedule();
}

void RecoveryKeeper::schedule()
{
    timer_.expires_after(kTick);
    timer_.async_wait([this](const boost::system::error_code &error) {
        if (error || finished_)
            return;
        run_guarded("keeping the books for a restart", [&] { tick(); });
        schedule();
    });
}

void RecoveryKeeper::tick()
{
    const auto now = std::chrono::steady_clock::now();
    // Once a second while restored clients wait, and never again once the
    // last has come back or gone: no walk over every client each tick.
    if (awaiting_reclaim_ && now >= next_reclaim_check_) {
        next_reclaim_check_ = now + std::chrono::seconds(1);
        service_.drop_unreclaimed(now >= reclaim_deadline_);
        awaiting_reclaim_ = service_.awaiting_reclaim() > 0;
    }
    // A large state takes a while to write: then it is written less often,
    // so that writing it never takes more than a tenth of the loop's time.
    if (now >= next_write_)
        flush();
    update_figures();
}

void RecoveryKeeper::flush()
{
    Books &books = service_.books();
    for (const BufferId id : books.take_left_store()) {
        store_.remove(buffer_name(id));
        --stored_;
    }
    store_new_buffers();
    if (books.version() != written_version_)
        write_state();
    store_.send_some(kSendsPerTick);
}

void RecoveryKeeper::store_new_buffers()
{
    Books &books = service_.books();
    std::vector<BufferId> candidates = std::move(waiting_);
    waiting_.clear();
    const std::vector<BufferId> fresh = books.take_unstored();
    candidates.insert(candidates.end(), fresh.begin(), fresh.end());
    const std::size_t room = settings_.store_limit > kStateSlots ? settings_.store_limit - kStateSlots : 0;
    for (const BufferId id : candidates) {
        const BufferRecord *buffer = books.buffer(id);
        if (!buffer || buffer->own_references > 1)
            continue; // left again before its turn
        if (stored_ >= room) {
            waiting_.push_back(id);
            continue;
        }
        const auto inode = syscalls_.inode(buffer->fd.get());
        UniqueFD copy{::fcntl(buffer->fd.get(), F_DUPFD_CLOEXEC, 3)};
        if (!inode || !copy) {
            waiting_.push_back(id); // out of fds for a moment: next tick
            continue;
        }
        books.mark_stored(id, *inode);
        store_.store(std::move(copy), buffer_name(id));
        ++stored_;
    }
}

void RecoveryKeeper::write_state()
{
    const auto began = std::chrono::steady_clock::now();
    const std::uint64_t generation = generation_ + 1;
    auto memfd = sealed_memfd(syscalls_, service_.save_state(generation));
    if (!memfd) {
        spdlog::warn("cannot write the state for a restart: {}", std::strerror(-memfd.error()));
        next_write_ = began + std::chrono::seconds(1);
        return;
    }
    const std::string name = fmt::format("{}{}", kStatePrefix, generation % kStateSlots);
    store_.remove(name);
    store_.store(std::move(*memfd), name);
    generation_ = generation;
    written_version_ = service_.books().version();
    last_write_ = std::chrono::steady_clock::now() - began;
    next_write_ = began + std::max<std::chrono::steady_clock::duration>(kTick, 10 * last_write_);
}

void RecoveryKeeper::update_figures()
{
    RecoveryFigures &figures = service_.recovery_figures();
    figures.stored_buffers = stored_;
    figures.unstored_buffers = waiting_.size();
}

void RecoveryKeeper::finish()
{
    if (finished_)
        return;
    // Stopped first: whatever happens below, the loop has no tick left to
    // run and can end.
    finished_ = true;
    timer_.cancel();
    flush();
    store_.send_all(kFinalSendLimit);
    spdlog::info("the fd store holds {} buffers and the state that makes them books again", stored_);
}

} // namespace ionsvc
