// SPDX-License-Identifier: MIT
// The pieces of the in-VM tests of ionsvcd end to end: the daemon running
// as root on the real devices, its clients as forked processes that run as
// nobody, messages and fds between them, ionsvc-ctl's JSON and fdinfo.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <bufclient/bufclient.h>
#include <ionsvc/unique_fd.h>

#include "harness.h"
#include "vm_helpers.h"

namespace ionsvc::vmtest {

// The integration tests' harness (DaemonProcess, run_command, ...); its
// namespace ionsvc::testing would hide gtest's ::testing here.
namespace harness = ionsvc::testing;
using nlohmann::json;

// The unprivileged user every client runs as.
inline constexpr uid_t kNobodyUid = 65534;
inline constexpr gid_t kNobodyGid = 65534;

// ---------------------------------------------------------------- kernel

// What ionsvcd must find on a kernel series of the harness.
struct KernelExpectations
{
    bool has_dma_heap = false; // /dev/dma_heap/system
    bool has_udmabuf = false;  // /dev/udmabuf
    std::vector<std::string> heaps; // every heap the daemon must serve
};

// "6.1", "6.12": major.minor of the running kernel.
std::string kernel_series();
// nullopt for a series the tests know nothing about.
std::optional<KernelExpectations> expectations_for(std::string_view series);

// ---------------------------------------------------------------- messages

// How long anyone waits for one message or for a child to end before
// calling it hung; a guard against a stuck test, never a measurement.
inline constexpr int kHangTimeoutSeconds = 120;

// One end of a SOCK_SEQPACKET pair: short text messages, optionally with
// fds (SCM_RIGHTS).
class Channel
{
public:
    Channel() = default;
    explicit Channel(UniqueFD socket) : socket_(std::move(socket)) {}

    struct Message
    {
        std::string error; // empty when a message arrived
        std::string text;
        std::vector<UniqueFD> fds;
    };

    // "" or what failed. The fds are lent.
    std::string send(std::string_view text, std::span<const int> fds = {}) const;
    // The next message; error says why there is none (the peer hung up,
    // nothing came within kHangTimeoutSeconds, ...).
    Message receive() const;
    // "" if the next message is exactly text (and has no fds), else why not.
    std::string expect(std::string_view text) const;

    bool is_open() const { return socket_.is_valid(); }
    void close() { socket_.reset(); }

private:
    UniqueFD socket_;
};

struct ChannelPair
{
    Channel first;
    Channel second;
};
ChannelPair channel_pair();

// Whitespace-separated words of a message.
std::vector<std::string> words_of(std::string_view text);

// ---------------------------------------------------------------- users

// Who a client process runs as.
struct Persona
{
    std::string user; // for messages
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups; // supplementary
};

// uid and gid 65534, no supplementary groups.
Persona nobody();
// A user of the password database with the groups initgroups(3) would give
// it; nullopt if there is no such user.
std::optional<Persona> persona_of(const std::string &user);

// Drops this process to persona, named comm, and checks the result: "" or
// what is wrong. Whoever it is, it must not be able to open /dev/ion: every
// buffer it holds has to come from the daemon.
std::string become(const Persona &persona, const std::string &comm);

// A forked child that becomes persona (nobody unless told otherwise) and
// runs body with its end of a channel to the parent. body returns "" for
// success or what went wrong; finished() brings that back to the parent as
// a test result. The child is killed and reaped if the test ends first.
class ClientProcess
{
public:
    using Body = std::function<std::string(Channel &parent)>;
    ClientProcess(std::string comm, const Body &body, Persona persona = nobody());

    pid_t pid() const { return pid_; }
    const std::string &comm() const { return comm_; }
    // The parent's end.
    const Channel &channel() const { return channel_; }

    // Waits for the child to end (killing it if it hangs) and reaps it:
    // success, or its message and exit status.
    ::testing::AssertionResult finished();

private:
    std::string comm_;
    Persona persona_;
    Channel channel_;
    UniqueFD verdict_; // the read end of the child's verdict pipe
    std::optional<harness::ChildProcess> child_;
    pid_t pid_ = -1;
};

// The pieces of a child body, each "" or what failed.
std::string errno_text(std::string_view what);
std::string error_text(std::string_view what, const bufclient::Error &error);

// ---------------------------------------------------------------- buffers

// Writes (checks) the pattern of seed over all of bytes, a shared mapping
// of fd; a dma-buf's CPU access is bracketed by DMA_BUF_IOCTL_SYNC.
std::string fill_mapping(int fd, std::span<std::byte> bytes, std::uint64_t seed, bool dma_buf);
std::string check_mapping(int fd, std::span<const std::byte> bytes, std::uint64_t seed,
                          bool dma_buf);
// The same through a mapping of size bytes of its own, unmapped after.
std::string fill_through_mmap(int fd, std::size_t size, std::uint64_t seed, bool dma_buf);
std::string check_through_mmap(int fd, std::size_t size, std::uint64_t seed, bool dma_buf);

// ---------------------------------------------------------------- fdinfo

// The "key:\tvalue" lines of /proc/<pid>/fdinfo/<fd>; empty if unreadable.
std::vector<std::pair<std::string, std::string>> read_fdinfo(pid_t pid, int fd);
std::optional<std::string> fdinfo_field(pid_t pid, int fd, std::string_view key);

// The dma-bufs among the fds of pid: those whose fdinfo has exp_name.
struct DmaBufFds
{
    std::uint64_t bytes = 0; // the sum of their size:
    std::size_t count = 0;
    std::string listing; // "fd N: size S, exp_name E, name M" lines, for messages
};
DmaBufFds dma_bufs_of(pid_t pid);

// ---------------------------------------------------------------- JSON

// A heap as `ionsvc-ctl heaps --json` lists it.
struct ServedHeap
{
    std::string name;
    std::string backend;
    bool is_dma_buf() const { return backend != "memfd"; }
};

const json *find_by(const json &array, std::string_view key, const json &value);
// The bytes `stats --json` counts for pid in heap, 0 if it shows none.
std::uint64_t pid_bytes_in(const json &stats, pid_t pid, std::string_view heap);
std::uint64_t pid_buffers_in(const json &stats, pid_t pid, std::string_view heap);
// A heap's live_bytes in `heaps --json`.
std::uint64_t live_bytes_of(const json &heaps, std::string_view heap);
// For failure messages: pid's entry of `stats --json`, or that it has none.
std::string pid_entry_text(const json &stats, pid_t pid);

// ---------------------------------------------------------------- fixture

// Every test: the modules are loaded (IonVmTest), and ionsvcd runs as root
// with every source it finds (--backend auto), its socket open to nobody.
// After the test the daemon must stop on SIGTERM with status 0 (unless the
// test killed it), and this process's fds and ion_simple's heaps must be
// back where they started.
class DaemonTest : public IonVmTest
{
protected:
    void SetUp() override;
    void TearDown() override;

    harness::DaemonProcess &daemon() { return *daemon_; }
    const std::string &socket_path() const { return socket_path_; }

    // `ionsvc-ctl --socket S <arguments> --json`, parsed; a failure of
    // the command or its JSON fails the test and returns null.
    json ctl_json(std::vector<std::string> arguments);
    json stats_json() { return ctl_json({"stats"}); }
    json heaps_json() { return ctl_json({"heaps"}); }
    // From `ionsvc-ctl heaps --json`, in the daemon's order.
    std::vector<ServedHeap> served_heaps();
    std::vector<ServedHeap> served_dma_buf_heaps();

    // Connects as this process's client (for bodies of ClientProcess).
    bufclient::Result<bufclient::Client> connect(const std::string &client_name) const;

    // Polls stats until pid has no client left in the daemon's books, so
    // that a test can look at what its disconnect did.
    ::testing::AssertionResult disconnect_seen(pid_t pid);

private:
    std::optional<harness::DaemonProcess> daemon_;
    std::string socket_path_;
    std::size_t fds_at_start_ = 0;
};

} // namespace ionsvc::vmtest
