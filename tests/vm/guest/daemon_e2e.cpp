// SPDX-License-Identifier: MIT
#include "daemon_e2e.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <linux/dma-buf.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <sstream>

#include <ionsvc/fd_passing.h>

namespace ionsvc::vmtest {

// ---------------------------------------------------------------- kernel

std::string kernel_series()
{
    utsname name{};
    if (::uname(&name) != 0)
        return {};
    // "6.1.0-56-amd64" -> "6.1", "6.12.117+deb12-amd64" -> "6.12",
    // "7.2.13+deb14-amd64" -> "7.2".
    const std::string_view release = name.release;
    const auto dot = release.find('.');
    if (dot == std::string_view::npos)
        return std::string{release};
    auto end = dot + 1;
    while (end < release.size() && std::isdigit(static_cast<unsigned char>(release[end])))
        ++end;
    return std::string{release.substr(0, end)};
}

std::optional<KernelExpectations> expectations_for(std::string_view series)
{
    // The order is the daemon's: ion (by heap id), dma-heap, udmabuf, memfd.
    const std::vector<std::string> ion = {"ion:ion_system_heap", "ion:ion_system_contig_heap",
                                          "ion:ion_carveout_heap"};
    if (series == "6.1") {
        // Debian's 6.1 has neither CONFIG_DMABUF_HEAPS nor CONFIG_UDMABUF.
        KernelExpectations expected{.has_dma_heap = false, .has_udmabuf = false, .heaps = ion};
        expected.heaps.push_back("memfd");
        return expected;
    }
    if (series == "6.12" || series == "7.2") {
        // Both built in (=y): present without loading anything.  sid's 7.2
        // has CMA but not its dma-heap (CONFIG_DMABUF_HEAPS_CMA is off).
        KernelExpectations expected{.has_dma_heap = true, .has_udmabuf = true, .heaps = ion};
        expected.heaps.insert(expected.heaps.end(), {"dma-heap:system", "udmabuf", "memfd"});
        return expected;
    }
    return std::nullopt;
}

// ---------------------------------------------------------------- messages

namespace {

constexpr std::size_t kMaxMessageBytes = 4096;
constexpr std::size_t kMaxMessageFds = 16;

// Waits until fd is readable (or hung up); false after kHangTimeoutSeconds.
bool wait_readable(int fd)
{
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(kHangTimeoutSeconds);
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return false;
        pollfd pfd{fd, POLLIN, 0};
        const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
        if (ready > 0)
            return true;
        if (ready < 0 && errno != EINTR)
            return true; // let the read report it
    }
}

} // namespace

std::string Channel::send(std::string_view text, std::span<const int> fds) const
{
    if (!socket_)
        return "send on a closed channel";
    const ssize_t sent = send_packet(socket_.get(), std::as_bytes(std::span{text}), fds);
    if (sent < 0)
        return "sending '" + std::string{text} + "': " + std::strerror(static_cast<int>(-sent));
    return {};
}

Channel::Message Channel::receive() const
{
    Message message;
    if (!socket_) {
        message.error = "receive on a closed channel";
        return message;
    }
    if (!wait_readable(socket_.get())) {
        message.error = "no message within " + std::to_string(kHangTimeoutSeconds) + " s";
        return message;
    }
    std::byte data[kMaxMessageBytes];
    ReceiveResult received = receive_packet(socket_.get(), data, kMaxMessageFds);
    if (received.status < 0) {
        message.error =
            std::string{"receive: "} + std::strerror(static_cast<int>(-received.status));
        return message;
    }
    if (received.status == 0 && received.fds.empty() && peer_has_hung_up(socket_.get())) {
        message.error = "the other side hung up";
        return message;
    }
    message.text.assign(reinterpret_cast<const char *>(data),
                        static_cast<std::size_t>(received.status));
    message.fds = std::move(received.fds);
    return message;
}

std::string Channel::expect(std::string_view text) const
{
    const Message message = receive();
    if (!message.error.empty())
        return "waiting for '" + std::string{text} + "': " + message.error;
    if (message.text != text || !message.fds.empty())
        return "expected '" + std::string{text} + "', got '" + message.text + "' with " +
               std::to_string(message.fds.size()) + " fds";
    return {};
}

ChannelPair channel_pair()
{
    ChannelPair pair;
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
        ADD_FAILURE() << "socketpair: " << std::strerror(errno);
        return pair;
    }
    pair.first = Channel{UniqueFD{fds[0]}};
    pair.second = Channel{UniqueFD{fds[1]}};
    return pair;
}

std::vector<std::string> words_of(std::string_view text)
{
    std::vector<std::string> words;
    std::istringstream stream{std::string{text}};
    for (std::string word; stream >> word;)
        words.push_back(std::move(word));
    return words;
}

// ---------------------------------------------------------------- users

std::string errno_text(std::string_view what)
{
    return std::string{what} + ": " + to_string(last_errno());
}

std::string error_text(std::string_view what, const bufclient::Error &error)
{
    return std::string{what} + ": " + std::string{status_name(error.code)} + ": " + error.message;
}

Persona nobody()
{
    return {.user = "nobody", .uid = kNobodyUid, .gid = kNobodyGid, .groups = {}};
}

std::optional<Persona> persona_of(const std::string &user)
{
    const passwd *entry = ::getpwnam(user.c_str());
    if (entry == nullptr)
        return std::nullopt;
    Persona persona{.user = user, .uid = entry->pw_uid, .gid = entry->pw_gid, .groups = {}};
    int count = 64;
    std::vector<gid_t> groups(static_cast<std::size_t>(count));
    while (::getgrouplist(user.c_str(), entry->pw_gid, groups.data(), &count) < 0)
        groups.resize(static_cast<std::size_t>(count));
    groups.resize(static_cast<std::size_t>(count));
    persona.groups = std::move(groups);
    return persona;
}

std::string become(const Persona &persona, const std::string &comm)
{
    const std::string who = persona.user + " (" + std::to_string(persona.uid) + ")";
    if (::prctl(PR_SET_NAME, comm.c_str()) != 0)
        return errno_text("prctl(PR_SET_NAME)");
    if (::setgroups(persona.groups.size(), persona.groups.data()) != 0)
        return errno_text("setgroups");
    if (::setresgid(persona.gid, persona.gid, persona.gid) != 0)
        return errno_text("setresgid(" + std::to_string(persona.gid) + ")");
    if (::setresuid(persona.uid, persona.uid, persona.uid) != 0)
        return errno_text("setresuid(" + std::to_string(persona.uid) + ")");
    // Dropping root left the process undumpable, its /proc files root's;
    // a process started as that user is dumpable.
    if (::prctl(PR_SET_DUMPABLE, 1) != 0)
        return errno_text("prctl(PR_SET_DUMPABLE)");
    // A test that dies takes its clients with it (set after the uid change,
    // which clears it).
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        return errno_text("prctl(PR_SET_PDEATHSIG)");

    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    if (::getresuid(&ruid, &euid, &suid) != 0 || ::getresgid(&rgid, &egid, &sgid) != 0)
        return errno_text("getresuid/getresgid");
    if (ruid != persona.uid || euid != persona.uid || suid != persona.uid ||
        rgid != persona.gid || egid != persona.gid || sgid != persona.gid)
        return "still not " + who + " after setresuid/setresgid";
    if (::getgroups(0, nullptr) != static_cast<int>(persona.groups.size()))
        return "other supplementary groups than " + who + "'s after setgroups";

    // The point of the exercise: the devices are out of this process's reach,
    // so any buffer it holds came from the daemon.
    const Opened ion = open_file("/dev/ion", O_RDWR);
    if (ion.fd)
        return who + " opened /dev/ion; the tests need a device its users cannot open";
    if (ion.error != Errno{EACCES} && ion.error != Errno{EPERM})
        return "open(/dev/ion) as " + who + ": " + to_string(ion.error) +
               ", expected EACCES or EPERM";
    return {};
}

namespace {

void write_all(int fd, std::string_view text)
{
    while (!text.empty()) {
        const ssize_t n = ::write(fd, text.data(), text.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        text.remove_prefix(static_cast<std::size_t>(n));
    }
}

} // namespace

ClientProcess::ClientProcess(std::string comm, const Body &body, Persona persona)
    : comm_(std::move(comm)), persona_(std::move(persona))
{
    ChannelPair channels = channel_pair();
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        ADD_FAILURE() << "pipe2: " << std::strerror(errno);
        return;
    }
    UniqueFD verdict_read{pipe_fds[0]};
    UniqueFD verdict_write{pipe_fds[1]};
    child_.emplace([&]() -> int {
        // The parent's ends stay with the parent.
        channels.first.close();
        verdict_read.reset();
        std::string problem = become(persona_, comm_);
        if (problem.empty())
            problem = body(channels.second);
        write_all(verdict_write.get(), problem);
        return problem.empty() ? 0 : 1;
    });
    pid_ = child_->pid();
    channel_ = std::move(channels.first);
    verdict_ = std::move(verdict_read);
    // The child's ends close here: only the child holds them now, so its
    // exit shows as end of file on both.
}

::testing::AssertionResult ClientProcess::finished()
{
    if (!child_ || pid_ <= 0)
        return ::testing::AssertionFailure() << comm_ << " was never started";
    // No more orders: a child still waiting for one sees the hang-up.
    channel_.close();
    std::string message;
    bool ended = false;
    while (verdict_ && wait_readable(verdict_.get())) {
        char chunk[1024];
        const ssize_t n = ::read(verdict_.get(), chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ended = true;
            break;
        }
        message.append(chunk, static_cast<std::size_t>(n));
    }
    verdict_.reset();
    if (!ended)
        ::kill(pid_, SIGKILL);
    const int code = child_->wait();
    const pid_t pid = std::exchange(pid_, -1);
    if (!ended)
        return ::testing::AssertionFailure()
               << comm_ << " (pid " << pid << ") did not end within " << kHangTimeoutSeconds
               << " s and was killed";
    if (code == 0 && message.empty())
        return ::testing::AssertionSuccess();
    ::testing::AssertionResult failure = ::testing::AssertionFailure();
    failure << comm_ << " (pid " << pid << ", as " << persona_.user << ") ";
    if (!message.empty())
        failure << "failed: " << message;
    else
        failure << "exited with status " << code << " without saying why";
    return failure;
}

// ---------------------------------------------------------------- buffers

std::string fill_mapping(int fd, std::span<std::byte> bytes, std::uint64_t seed, bool dma_buf)
{
    if (!dma_buf) {
        fill_pattern(bytes, 0, seed);
        return {};
    }
    CpuAccess access(fd, DMA_BUF_SYNC_WRITE);
    if (access.started() != kSuccess)
        return "DMA_BUF_IOCTL_SYNC(START|WRITE): " + to_string(access.started());
    fill_pattern(bytes, 0, seed);
    const Errno finished = access.finish();
    if (finished != kSuccess)
        return "DMA_BUF_IOCTL_SYNC(END|WRITE): " + to_string(finished);
    return {};
}

std::string check_mapping(int fd, std::span<const std::byte> bytes, std::uint64_t seed,
                          bool dma_buf)
{
    if (!dma_buf)
        return check_pattern(bytes, 0, seed);
    CpuAccess access(fd, DMA_BUF_SYNC_READ);
    if (access.started() != kSuccess)
        return "DMA_BUF_IOCTL_SYNC(START|READ): " + to_string(access.started());
    std::string problem = check_pattern(bytes, 0, seed);
    const Errno finished = access.finish();
    if (problem.empty() && finished != kSuccess)
        problem = "DMA_BUF_IOCTL_SYNC(END|READ): " + to_string(finished);
    return problem;
}

std::string fill_through_mmap(int fd, std::size_t size, std::uint64_t seed, bool dma_buf)
{
    const Mapping mapping = Mapping::map(fd, size);
    if (!mapping.is_valid())
        return "mmap(PROT_READ | PROT_WRITE): " + to_string(mapping.error());
    return fill_mapping(fd, mapping.bytes(), seed, dma_buf);
}

std::string check_through_mmap(int fd, std::size_t size, std::uint64_t seed, bool dma_buf)
{
    const Mapping mapping = Mapping::map(fd, size, 0, PROT_READ);
    if (!mapping.is_valid())
        return "mmap(PROT_READ): " + to_string(mapping.error());
    return check_mapping(fd, mapping.bytes(), seed, dma_buf);
}

// ---------------------------------------------------------------- fdinfo

std::vector<std::pair<std::string, std::string>> read_fdinfo(pid_t pid, int fd)
{
    std::vector<std::pair<std::string, std::string>> fields;
    const FileText file =
        read_text_file("/proc/" + std::to_string(pid) + "/fdinfo/" + std::to_string(fd));
    if (file.error != kSuccess)
        return fields;
    std::istringstream lines{file.text};
    for (std::string line; std::getline(lines, line);) {
        const auto colon = line.find(':');
        if (colon != std::string::npos)
            fields.emplace_back(line.substr(0, colon), trim(line.substr(colon + 1)));
    }
    return fields;
}

std::optional<std::string> fdinfo_field(pid_t pid, int fd, std::string_view key)
{
    for (auto &[name, value] : read_fdinfo(pid, fd)) {
        if (name == key)
            return value;
    }
    return std::nullopt;
}

DmaBufFds dma_bufs_of(pid_t pid)
{
    DmaBufFds found;
    for (const std::string &entry : list_directory("/proc/" + std::to_string(pid) + "/fd")) {
        int fd = -1;
        if (std::from_chars(entry.data(), entry.data() + entry.size(), fd).ec != std::errc{})
            continue;
        std::optional<std::string> size, exp_name, name;
        for (auto &[key, value] : read_fdinfo(pid, fd)) {
            if (key == "size")
                size = value;
            else if (key == "exp_name")
                exp_name = value;
            else if (key == "name")
                name = value;
        }
        // Only a dma-buf's fdinfo names its exporter.
        if (!exp_name)
            continue;
        std::uint64_t bytes = 0;
        if (size)
            std::from_chars(size->data(), size->data() + size->size(), bytes);
        found.bytes += bytes;
        ++found.count;
        found.listing += "fd " + entry + ": size " + size.value_or("?") + ", exp_name " +
                         *exp_name + ", name " + name.value_or("(none)") + "\n";
    }
    return found;
}

// ---------------------------------------------------------------- JSON

const json *find_by(const json &array, std::string_view key, const json &value)
{
    if (!array.is_array())
        return nullptr;
    const std::string field{key};
    for (const json &entry : array) {
        if (entry.is_object() && entry.contains(field) && entry[field] == value)
            return &entry;
    }
    return nullptr;
}

namespace {

const json *pid_usage(const json &stats, pid_t pid, std::string_view heap)
{
    if (!stats.is_object() || !stats.contains("pids"))
        return nullptr;
    const json *entry = find_by(stats["pids"], "pid", pid);
    if (entry == nullptr || !entry->contains("heaps"))
        return nullptr;
    return find_by((*entry)["heaps"], "heap", std::string{heap});
}

} // namespace

std::uint64_t pid_bytes_in(const json &stats, pid_t pid, std::string_view heap)
{
    const json *usage = pid_usage(stats, pid, heap);
    return usage != nullptr ? usage->value("bytes", std::uint64_t{0}) : 0;
}

std::uint64_t pid_buffers_in(const json &stats, pid_t pid, std::string_view heap)
{
    const json *usage = pid_usage(stats, pid, heap);
    return usage != nullptr ? usage->value("buffers", std::uint64_t{0}) : 0;
}

std::uint64_t live_bytes_of(const json &heaps, std::string_view heap)
{
    if (!heaps.is_object() || !heaps.contains("heaps"))
        return 0;
    const json *entry = find_by(heaps["heaps"], "name", std::string{heap});
    return entry != nullptr ? entry->value("live_bytes", std::uint64_t{0}) : 0;
}

std::string pid_entry_text(const json &stats, pid_t pid)
{
    const json *entry = stats.is_object() && stats.contains("pids")
                            ? find_by(stats["pids"], "pid", pid)
                            : nullptr;
    if (entry == nullptr)
        return "stats --json lists no pid " + std::to_string(pid);
    return "pid " + std::to_string(pid) + " in stats --json: " + entry->dump(2);
}

// ---------------------------------------------------------------- fixture

void DaemonTest::SetUp()
{
    IonVmTest::SetUp();
    if (HasFatalFailure())
        return;
    fds_at_start_ = open_fd_count();
    daemon_.emplace(std::vector<std::string>{"--backend", "auto"});
    ASSERT_GT(daemon_->pid(), 0) << "ionsvcd did not start";
    socket_path_ = daemon_->socket_path();
    // DaemonProcess keeps its directory to root (0700); the clients, as
    // nobody, need to pass through it and write to the socket.
    const std::filesystem::path socket{socket_path_};
    for (const auto &[path, mode] : {std::pair{socket.parent_path().parent_path(), 0711},
                                     std::pair{socket.parent_path(), 0711},
                                     std::pair{socket, 0666}}) {
        ASSERT_EQ(::chmod(path.c_str(), static_cast<mode_t>(mode)), 0)
            << "chmod " << path << ": " << std::strerror(errno);
    }
}

void DaemonTest::TearDown()
{
    if (daemon_) {
        if (HasFailure())
            std::cout << "--- ionsvcd's log:\n" << daemon_->log() << "--- end of ionsvcd's log\n";
        if (daemon_->pid() > 0) {
            const int status = daemon_->terminate();
            EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
                << "ionsvcd did not exit with 0 on SIGTERM (wait status " << status << "):\n"
                << daemon_->log();
        }
        daemon_.reset();
    }
    if (fds_at_start_ != 0) {
        EXPECT_EQ(open_fd_count(), fds_at_start_) << "the test left fds open in ion_vm_test";
    }
    // With the daemon and every client gone, so is every buffer they held.
    for (const Heap &heap : kAllHeaps) {
        const HeapView view = read_heap_view(heap);
        EXPECT_TRUE(is_parsed(view));
        EXPECT_EQ(view.total, 0u) << "left behind in " << heap.name << ":\n" << view.text;
    }
}

json DaemonTest::ctl_json(std::vector<std::string> arguments)
{
    std::vector<std::string> argv = {harness::ionsvc_ctl_path(), "--socket", socket_path_};
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    argv.push_back("--json");
    std::string command;
    for (const std::string &word : argv)
        command += (command.empty() ? "" : " ") + word;
    const harness::CommandResult result = harness::run_command(argv);
    if (result.exit_code != 0) {
        ADD_FAILURE() << command << " exited with " << result.exit_code << ":\n" << result.err;
        return nullptr;
    }
    json parsed = json::parse(result.out, nullptr, false);
    if (parsed.is_discarded()) {
        ADD_FAILURE() << command << " printed no JSON:\n" << result.out;
        return nullptr;
    }
    return parsed;
}

std::vector<ServedHeap> DaemonTest::served_heaps()
{
    std::vector<ServedHeap> served;
    const json listing = heaps_json();
    if (!listing.is_object() || !listing.contains("heaps") || !listing["heaps"].is_array()) {
        ADD_FAILURE() << "ionsvc-ctl heaps --json has no heaps array: " << listing.dump();
        return served;
    }
    for (const json &heap : listing["heaps"])
        served.push_back({heap.value("name", ""), heap.value("backend", "")});
    return served;
}

std::vector<ServedHeap> DaemonTest::served_dma_buf_heaps()
{
    std::vector<ServedHeap> dma_bufs;
    for (ServedHeap &heap : served_heaps()) {
        if (heap.is_dma_buf())
            dma_bufs.push_back(std::move(heap));
    }
    return dma_bufs;
}

bufclient::Result<bufclient::Client> DaemonTest::connect(const std::string &client_name) const
{
    return bufclient::Client::connect({.socket_path = socket_path_, .client_name = client_name});
}

::testing::AssertionResult DaemonTest::disconnect_seen(pid_t pid)
{
    json last;
    const bool gone = harness::eventually([&] {
        last = stats_json();
        return last.is_object() && last.contains("clients") &&
               find_by(last["clients"], "pid", pid) == nullptr;
    });
    if (gone)
        return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "the daemon still lists a client of pid " << pid << ":\n" << last.dump(2);
}

} // namespace ionsvc::vmtest
