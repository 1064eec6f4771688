// SPDX-License-Identifier: MIT
// ionsvc as users get it: its Debian package installed with dpkg on a
// Debian guest that booted systemd, ion_simple loaded, the 6.12 kernel's dma-heap
// and udmabuf present. systemd starts the daemon as the user ionsvc in its
// sandbox; clients are the guest's users alice and bob (in ionsvc-clients)
// and carol (not), and none of them can open a device.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "systemd_guest.h"

namespace ionsvc::vmtest {
namespace {

using ::testing::HasSubstr;

// 259 pages: not a power of two.
constexpr std::size_t kSize = 1 * MiB + 12 * KiB;
constexpr std::uint64_t kSeed = 0x5157e3d;

std::string read_file(const std::string &path)
{
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

bool write_file(const std::string &path, const std::string &text)
{
    std::ofstream out(path, std::ios::trunc);
    out << text;
    return static_cast<bool>(out.flush());
}

uid_t user_id(const char *name)
{
    const passwd *entry = ::getpwnam(name);
    return entry != nullptr ? entry->pw_uid : static_cast<uid_t>(-1);
}

// The dma-buf fds a client maps need their CPU access bracketed.
bool is_dma_buf_heap(const std::string &heap)
{
    return heap != "memfd";
}

// ---------------------------------------------------------------- install

TEST(Installed, ThePackageMadeTheDaemonsUserAndTheClientsGroup)
{
    const passwd *daemon = ::getpwnam("ionsvc");
    ASSERT_NE(daemon, nullptr) << "no user ionsvc: the package's postinst did not run systemd-sysusers";
    EXPECT_LT(daemon->pw_uid, 1000u) << "ionsvc is not a system user";
    const group *own = ::getgrgid(daemon->pw_gid);
    ASSERT_NE(own, nullptr);
    EXPECT_STREQ(own->gr_name, "ionsvc");
    // Its members could open the devices: the daemon alone may have it.
    EXPECT_EQ(own->gr_mem[0], nullptr) << "group ionsvc has a member: " << own->gr_mem[0];

    const gid_t clients = group_id("ionsvc-clients");
    ASSERT_NE(clients, static_cast<gid_t>(-1)) << "no group ionsvc-clients";
    const auto in_clients = [&](const Persona &persona) {
        return std::find(persona.groups.begin(), persona.groups.end(), clients) != persona.groups.end();
    };
    EXPECT_TRUE(in_clients(user("alice")));
    EXPECT_TRUE(in_clients(user("bob")));
    EXPECT_FALSE(in_clients(user("carol")));
}

TEST(Installed, UdevGaveEveryBufferDeviceToTheDaemonsGroupAlone)
{
    const gid_t daemon_group = group_id("ionsvc");
    ASSERT_NE(daemon_group, static_cast<gid_t>(-1));
    const std::vector<std::string> devices = {"/dev/ion", "/dev/dma_heap/system", "/dev/udmabuf"};
    for (const std::string &device : devices) {
        struct stat status{};
        ASSERT_EQ(::stat(device.c_str(), &status), 0) << device << ": " << std::strerror(errno);
        EXPECT_TRUE(S_ISCHR(status.st_mode)) << device;
        EXPECT_EQ(status.st_uid, 0u) << device;
        EXPECT_EQ(status.st_gid, daemon_group) << device << " is not in group ionsvc";
        EXPECT_EQ(status.st_mode & 07777, 0660u) << device;
    }
    // A client in ionsvc-clients gets none of them.
    ClientProcess alice(
        "systemd-devices",
        [&](Channel &) -> std::string {
            for (const std::string &device : devices) {
                const Opened opened = open_file(device, O_RDWR);
                if (opened.fd)
                    return "alice opened " + device;
                if (opened.error != Errno{EACCES})
                    return "open(" + device + ") as alice: " + to_string(opened.error);
            }
            return {};
        },
        user("alice"));
    EXPECT_TRUE(alice.finished());
}

TEST(Installed, SystemdAnalyzeVerifyFindsNothingWrongWithTheUnits)
{
    std::vector<std::string> argv = {"/usr/bin/systemd-analyze", "verify"};
    for (const char *unit : {kService, kSocket}) {
        const std::string path = unit_property(unit, "FragmentPath");
        ASSERT_FALSE(path.empty()) << "systemd does not know " << unit;
        argv.push_back(path);
    }
    const harness::CommandResult verified = harness::run_command(argv);
    EXPECT_EQ(verified.exit_code, 0) << verified.err;
    // It also speaks of the units ours depend on; ours must not be named.
    EXPECT_THAT(verified.out + verified.err, ::testing::Not(HasSubstr("ionsvc"))) << verified.err;
}

// ---------------------------------------------------------------- service

// Every test starts from the socket started and the daemon not running,
// on the shipped config. After it, both units stop, and ion_simple's heaps
// must be empty: neither the daemon nor a client kept a buffer.
class Service : public ::testing::Test
{
protected:
    void SetUp() override
    {
        ASSERT_TRUE(environment_error().empty()) << environment_error();
        ASSERT_FALSE(installed().ctl.empty() || installed().config.empty())
            << "IONSVC_INSTALLED_CTL and IONSVC_INSTALLED_CONFIG must name the installed files";
        static const std::string shipped = read_file(installed().config);
        ASSERT_FALSE(shipped.empty()) << installed().config << " is missing or empty";
        stop_units();
        ASSERT_TRUE(write_file(installed().config, shipped));
        const harness::CommandResult started = systemctl({"start", kSocket});
        ASSERT_EQ(started.exit_code, 0) << started.err;
    }

    void TearDown() override
    {
        stop_units();
        const auto totals = heap_totals();
        for (std::size_t heap = 0; heap < totals.size(); ++heap) {
            ASSERT_TRUE(totals[heap]) << "debugfs does not show ion heap " << heap;
            EXPECT_EQ(*totals[heap], 0u) << "ion heap " << heap << " still holds memory";
        }
    }

    static void stop_units()
    {
        const harness::CommandResult stopped = systemctl({"stop", kSocket, kService});
        EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
        // A daemon killed on purpose left a failed state behind.
        systemctl({"reset-failed", kSocket, kService});
    }

    // systemctl reload, then the daemon's word that it read the file: the
    // signal is all systemctl waits for.
    static ::testing::AssertionResult reload()
    {
        const std::size_t before = journal_lines_with("reloaded ");
        const harness::CommandResult reloaded = systemctl({"reload", kService});
        if (reloaded.exit_code != 0)
            return ::testing::AssertionFailure() << "systemctl reload: " << reloaded.err;
        if (!harness::eventually([&] { return journal_lines_with("reloaded ") > before; }))
            return ::testing::AssertionFailure() << "the daemon's journal never said it reloaded";
        return ::testing::AssertionSuccess();
    }
};

TEST_F(Service, StartingTheSocketLeavesTheDaemonStoppedUntilTheFirstClientConnects)
{
    EXPECT_EQ(unit_property(kSocket, "ActiveState"), "active");
    EXPECT_TRUE(service_is("inactive"));
    struct stat socket{};
    ASSERT_EQ(::stat(kSocketPath, &socket), 0) << std::strerror(errno);
    EXPECT_TRUE(S_ISSOCK(socket.st_mode));
    EXPECT_EQ(socket.st_uid, 0u);
    EXPECT_EQ(socket.st_gid, group_id("ionsvc-clients"));
    EXPECT_EQ(socket.st_mode & 07777, 0660u);

    ClientProcess alice(
        "systemd-first",
        [&](Channel &) -> std::string {
            auto client = bufclient::Client::connect({.client_name = "first"});
            if (!client)
                return error_text("connect", client.error());
            auto heaps = client->list_heaps();
            return heaps ? "" : error_text("list_heaps", heaps.error());
        },
        user("alice"));
    EXPECT_TRUE(alice.finished());

    ASSERT_TRUE(harness::eventually([] { return service_is("active"); }))
        << "ionsvc.service is " << unit_property(kService, "ActiveState");
    const pid_t daemon = main_pid();
    ASSERT_GT(daemon, 0);
    EXPECT_EQ(read_file("/proc/" + std::to_string(daemon) + "/comm"), "ionsvcd\n");
    struct stat process{};
    ASSERT_EQ(::stat(("/proc/" + std::to_string(daemon)).c_str(), &process), 0);
    EXPECT_EQ(process.st_uid, user_id("ionsvc")) << "the daemon does not run as ionsvc";
}

TEST_F(Service, TheDaemonServesEveryDeviceFromInsideItsSandbox)
{
    const std::optional<KernelExpectations> expected = expectations_for(kernel_series());
    ASSERT_TRUE(expected) << "no expectations for kernel " << kernel_series();
    EXPECT_EQ(served_heaps(), expected->heaps);
    const json heaps = ctl_json({"heaps"});
    const json *system = find_by(heaps["heaps"], "name", "ion:ion_system_heap");
    ASSERT_NE(system, nullptr);
    EXPECT_THAT((*system)["aliases"].dump(), HasSubstr("\"system\""));
}

TEST_F(Service, AClientInTheGroupSharesABufferOfEveryHeapWithAnotherUserWhoImportsIt)
{
    const std::vector<std::string> heaps = served_heaps();
    ASSERT_FALSE(heaps.empty());
    const Persona bob_persona = user("bob");

    ClientProcess alice(
        "systemd-alice",
        [&](Channel &parent) -> std::string {
            auto client = bufclient::Client::connect({.client_name = "alice"});
            if (!client)
                return error_text("connect", client.error());
            std::vector<bufclient::Buffer> held;
            for (const std::string &heap : heaps) {
                auto buffers = client->allocate({.heap = heap, .size = kSize, .name = "frame"});
                if (!buffers)
                    return error_text("allocate from " + heap, buffers.error());
                bufclient::Buffer &buffer = buffers->front();
                if (std::string problem =
                        fill_through_mmap(buffer.fd(), kSize, kSeed, is_dma_buf_heap(heap));
                    !problem.empty())
                    return heap + ": " + problem;
                auto token = client->share(buffer, {.uid = bob_persona.uid});
                if (!token)
                    return error_text("share from " + heap, token.error());
                if (std::string problem = parent.send("token " + heap + " " + *token);
                    !problem.empty())
                    return problem;
                held.push_back(std::move(buffer));
            }
            return parent.expect("done");
        },
        user("alice"));
    ClientProcess bob(
        "systemd-bob",
        [&](Channel &parent) -> std::string {
            auto client = bufclient::Client::connect({.client_name = "bob"});
            if (!client)
                return error_text("connect", client.error());
            std::vector<bufclient::Buffer> held;
            for (;;) {
                const Channel::Message order = parent.receive();
                if (!order.error.empty())
                    return "waiting for a token: " + order.error;
                const std::vector<std::string> words = words_of(order.text);
                if (words.size() == 1 && words[0] == "done")
                    return {};
                if (words.size() != 3 || words[0] != "token")
                    return "unexpected order '" + order.text + "'";
                auto buffer = client->import(words[2]);
                if (!buffer)
                    return error_text("import from " + words[1], buffer.error());
                if (buffer->heap() != words[1] || buffer->size() != kSize)
                    return "imported " + std::to_string(buffer->size()) + " bytes of " + buffer->heap();
                if (std::string problem =
                        check_through_mmap(buffer->fd(), kSize, kSeed, is_dma_buf_heap(words[1]));
                    !problem.empty())
                    return "alice's pattern from " + words[1] + ": " + problem;
                held.push_back(std::move(*buffer));
                if (std::string problem = parent.send("imported " + words[1]); !problem.empty())
                    return problem;
            }
        },
        bob_persona);

    for (const std::string &heap : heaps) {
        const Channel::Message token = alice.channel().receive();
        ASSERT_TRUE(token.error.empty()) << "alice's token for " << heap << ": " << token.error;
        ASSERT_TRUE(bob.channel().send(token.text).empty());
        ASSERT_EQ(bob.channel().expect("imported " + heap), "") << heap;
    }

    // Both hold every buffer now: root sees both, each heap once in its totals.
    const json stats = ctl_json({"stats"});
    for (const std::string &heap : heaps) {
        SCOPED_TRACE(heap);
        EXPECT_EQ(pid_bytes_in(stats, alice.pid(), heap), kSize) << pid_entry_text(stats, alice.pid());
        EXPECT_EQ(pid_bytes_in(stats, bob.pid(), heap), kSize) << pid_entry_text(stats, bob.pid());
        const json *totals = find_by(stats["heaps"], "name", heap);
        ASSERT_NE(totals, nullptr);
        EXPECT_EQ(totals->value("live_bytes", std::uint64_t{0}), kSize);
    }
    const json *bob_entry = find_by(stats["pids"], "pid", bob.pid());
    ASSERT_NE(bob_entry, nullptr);
    EXPECT_EQ(bob_entry->value("shared_bytes", std::uint64_t{0}), kSize * heaps.size());

    // The human table names alice's pid too.
    const harness::CommandResult table = harness::run_command({installed().ctl, "stats"});
    EXPECT_EQ(table.exit_code, 0) << table.err;
    EXPECT_THAT(table.out, HasSubstr(std::to_string(alice.pid())));

    // alice, no admin, sees her own clients but not bob's.
    const Persona alice_persona = user("alice");
    const json own = ctl_json({"stats"}, &alice_persona);
    EXPECT_NE(find_by(own["pids"], "pid", alice.pid()), nullptr);
    EXPECT_EQ(find_by(own["pids"], "pid", bob.pid()), nullptr);

    EXPECT_TRUE(alice.channel().send("done").empty());
    EXPECT_TRUE(bob.channel().send("done").empty());
    EXPECT_TRUE(alice.finished());
    EXPECT_TRUE(bob.finished());
}

TEST_F(Service, AUserOutsideTheClientsGroupIsRefusedAtTheSocket)
{
    ClientProcess carol(
        "systemd-carol",
        [&](Channel &) -> std::string {
            auto client = bufclient::Client::connect({.client_name = "carol"});
            if (client)
                return "carol connected";
            if (client.error().code != StatusCode::kPermissionDenied)
                return error_text("connect", client.error()) + " (expected PERMISSION_DENIED)";
            return {};
        },
        user("carol"));
    EXPECT_TRUE(carol.finished());

    const harness::CommandResult ctl = run_as(user("carol"), {installed().ctl, "heaps"});
    EXPECT_EQ(ctl.exit_code, 1);
    EXPECT_THAT(ctl.err, HasSubstr("PERMISSION_DENIED"));
    EXPECT_THAT(ctl.err, HasSubstr(kSocketPath));
    // Refused by the socket's permissions: nothing started the daemon.
    EXPECT_TRUE(service_is("inactive"));
}

TEST_F(Service, AQuotaStopsAnAllocationAndReloadAppliesANewLimitWithoutDroppingTheClient)
{
    ASSERT_TRUE(write_file(installed().config, "[quota]\nclient = { bytes = \"1M\" }\n"));
    ClientProcess alice(
        "systemd-quota",
        [&](Channel &parent) -> std::string {
            auto client = bufclient::Client::connect({.client_name = "quota"});
            if (!client)
                return error_text("connect", client.error());
            auto first = client->allocate({.heap = "memfd", .size = 1 * MiB});
            if (!first)
                return error_text("allocating up to the limit", first.error());
            auto over = client->allocate({.heap = "memfd", .size = 4 * KiB});
            if (over)
                return "a page over the limit was allocated";
            if (over.error().code != StatusCode::kQuotaExceeded)
                return error_text("a page over the limit", over.error()) + " (expected QUOTA_EXCEEDED)";
            if (std::string problem = parent.send("refused " + over.error().message); !problem.empty())
                return problem;
            if (std::string problem = parent.expect("raised"); !problem.empty())
                return problem;
            // The same connection, under the new limit.
            auto after = client->allocate({.heap = "memfd", .size = 4 * KiB});
            if (!after)
                return error_text("a page after the reload", after.error());
            if (std::string problem = parent.send("allocated"); !problem.empty())
                return problem;
            return parent.expect("done");
        },
        user("alice"));

    const Channel::Message refused = alice.channel().receive();
    ASSERT_TRUE(refused.error.empty()) << refused.error;
    EXPECT_THAT(refused.text, HasSubstr("1048576"));
    const pid_t daemon = main_pid();
    ASSERT_GT(daemon, 0);

    ASSERT_TRUE(write_file(installed().config, "[quota]\nclient = { bytes = \"2M\" }\n"));
    ASSERT_TRUE(reload());
    EXPECT_TRUE(alice.channel().send("raised").empty());
    EXPECT_EQ(alice.channel().expect("allocated"), "");
    EXPECT_EQ(main_pid(), daemon) << "the reload restarted the daemon";
    EXPECT_TRUE(alice.channel().send("done").empty());
    EXPECT_TRUE(alice.finished());
}

TEST_F(Service, TheWarmPoolFillsEveryKindOfHeapInsideTheSandboxAndGivesItAllBackAtStop)
{
    // One heap of each dma-buf backend and memfd; TearDown checks that ION
    // holds nothing once the units stop, pool buffers included.
    ASSERT_TRUE(write_file(installed().config, "[pool]\nmin_available = \"1M\"\n"
                                               "[pool.heaps.memfd]\n\"1M\" = 2\n"
                                               "[pool.heaps.\"dma-heap:system\"]\n\"1M\" = 2\n"
                                               "[pool.heaps.udmabuf]\n\"1M\" = 2\n"
                                               "[pool.heaps.\"ion:ion_system_heap\"]\n\"1M\" = 2\n"));
    const auto pooled_heaps = [&] {
        std::size_t full = 0;
        const json listing = ctl_json({"heaps"});
        if (listing.is_object() && listing.contains("heaps")) {
            for (const json &heap : listing["heaps"])
                full += heap.value("pool_buffers", 0) == 2 && heap.value("pool_bytes", 0) == 2 * MiB;
        }
        return full;
    };
    // The first ionsvc-ctl starts the daemon through the socket.
    EXPECT_TRUE(harness::eventually([&] { return pooled_heaps() == 4; }));
    // It reads MemAvailable from inside its sandbox, so it knows when to
    // give the memory back.
    EXPECT_EQ(journal_lines_with("cannot read MemAvailable"), 0u);
    EXPECT_EQ(journal_lines_with("warm pool: making"), 0u) << "a pool failed to make a buffer";
    EXPECT_GE(journal_lines_with("warm pool: 2 buffers of 1048576 bytes ready in heap 'ion:ion_system_heap'"), 1u);
}

TEST_F(Service, ABrokenConfigStopsTheDaemonForGoodAndTheJournalSaysWhere)
{
    ASSERT_TRUE(write_file(installed().config, "[quota]\nclient = { bytes = \"lots\" }\n"));
    const harness::CommandResult started = systemctl({"start", kService});
    EXPECT_NE(started.exit_code, 0) << "ionsvc.service started on a broken config";
    EXPECT_TRUE(service_is("failed"));
    EXPECT_EQ(unit_property(kService, "ExecMainStatus"), "78");
    // Starting again would not mend the file: RestartPreventExitStatus=78.
    EXPECT_EQ(unit_property(kService, "NRestarts"), "0");
    EXPECT_GE(journal_lines_with(installed().config + ":2:"), 1u)
        << "the journal does not name the broken line";
}

// restart_test.cpp: clients that reconnect (the default) go on through the
// same connection objects.
TEST_F(Service, ADaemonKilledBySignalIsRestartedAndAClientThatWillNotReconnectKeepsItsBuffers)
{
    ClientProcess alice(
        "systemd-restart",
        [&](Channel &parent) -> std::string {
            auto client = bufclient::Client::connect(
                {.client_name = "restart", .reconnect_timeout = std::chrono::milliseconds{0}});
            if (!client)
                return error_text("connect", client.error());
            auto buffers = client->allocate({.size = kSize});
            if (!buffers)
                return error_text("allocate", buffers.error());
            const bufclient::Buffer &buffer = buffers->front();
            const bool dma_buf = is_dma_buf_heap(buffer.heap());
            if (std::string problem = fill_through_mmap(buffer.fd(), kSize, kSeed, dma_buf);
                !problem.empty())
                return problem;
            if (std::string problem = parent.send("allocated"); !problem.empty())
                return problem;
            if (std::string problem = parent.expect("restarted"); !problem.empty())
                return problem;
            if (std::string problem = check_through_mmap(buffer.fd(), kSize, kSeed, dma_buf);
                !problem.empty())
                return "after the restart: " + problem;
            auto lost = client->list_heaps();
            if (lost || lost.error().code != StatusCode::kUnavailable)
                return "the old connection still answers after the restart";
            auto again = bufclient::Client::connect({.client_name = "restart"});
            if (!again)
                return error_text("connecting again", again.error());
            auto more = again->allocate({.size = kSize});
            return more ? "" : error_text("allocating again", more.error());
        },
        user("alice"));

    ASSERT_EQ(alice.channel().expect("allocated"), "");
    const pid_t killed = main_pid();
    ASSERT_GT(killed, 0);
    const harness::CommandResult kill =
        systemctl({"kill", "--signal=SIGKILL", "--kill-who=main", kService});
    ASSERT_EQ(kill.exit_code, 0) << kill.err;
    ASSERT_TRUE(harness::eventually([&] {
        const pid_t now = main_pid();
        return now > 0 && now != killed && service_is("active");
    })) << "ionsvc.service was not restarted: " << unit_property(kService, "ActiveState");
    EXPECT_EQ(unit_property(kService, "NRestarts"), "1");
    EXPECT_TRUE(alice.channel().send("restarted").empty());
    EXPECT_TRUE(alice.finished());
}

TEST_F(Service, TheMetricsTimersServiceWritesTheTextfileNodeExporterReads)
{
    // As Debian's prometheus-node-exporter makes it: another user's directory.
    const std::filesystem::path directory = "/var/lib/prometheus/node-exporter";
    std::filesystem::create_directories(directory);
    ASSERT_EQ(::chown(directory.c_str(), 65534, 65534), 0) << std::strerror(errno);
    ASSERT_EQ(::chmod(directory.c_str(), 0755), 0);
    ClientProcess alice(
        "metrics-holder",
        [&](Channel &parent) -> std::string {
            auto client = bufclient::Client::connect({.client_name = "metrics-holder"});
            if (!client)
                return error_text("connect", client.error());
            auto buffers = client->allocate({.size = kSize});
            if (!buffers)
                return error_text("allocate", buffers.error());
            if (std::string problem = parent.send("holding"); !problem.empty())
                return problem;
            return parent.expect("done");
        },
        user("alice"));
    ASSERT_EQ(alice.channel().expect("holding"), "");

    const harness::CommandResult started = systemctl({"start", "ionsvc-metrics.service"});
    EXPECT_EQ(started.exit_code, 0) << started.err;
    const std::string metrics = read_file(directory / "ionsvc.prom");
    EXPECT_THAT(metrics, HasSubstr("ionsvc_uid_held_bytes{uid=\"" + std::to_string(user("alice").uid) + "\"} " +
                                   std::to_string(kSize)));
    EXPECT_THAT(metrics, HasSubstr("# TYPE ionsvc_allocations_total counter")) << "root sees the counters";
    for (const auto &entry : std::filesystem::directory_iterator(directory))
        EXPECT_EQ(entry.path().filename(), "ionsvc.prom") << "a temporary file was left behind";
    EXPECT_TRUE(alice.channel().send("done").empty());
    EXPECT_TRUE(alice.finished());
    std::filesystem::remove_all("/var/lib/prometheus");
}

TEST_F(Service, StoppingTheUnitsLeavesNoDaemonNoSocketAndNoBufferBehind)
{
    const std::vector<std::string> heaps = served_heaps();
    ClientProcess alice(
        "systemd-stop",
        [&](Channel &parent) -> std::string {
            auto client = bufclient::Client::connect({.client_name = "stop"});
            if (!client)
                return error_text("connect", client.error());
            std::vector<bufclient::Buffer> held;
            for (const std::string &heap : heaps) {
                auto buffers = client->allocate({.heap = heap, .size = kSize});
                if (!buffers)
                    return error_text("allocate from " + heap, buffers.error());
                held.push_back(std::move(buffers->front()));
            }
            if (std::string problem = parent.send("holding"); !problem.empty())
                return problem;
            if (std::string problem = parent.expect("stopped"); !problem.empty())
                return problem;
            // What a client holds outlives the daemon.
            for (const bufclient::Buffer &buffer : held) {
                const bool dma_buf = is_dma_buf_heap(buffer.heap());
                if (std::string problem = fill_through_mmap(buffer.fd(), kSize, kSeed, dma_buf);
                    !problem.empty())
                    return buffer.heap() + ": " + problem;
                if (std::string problem = check_through_mmap(buffer.fd(), kSize, kSeed, dma_buf);
                    !problem.empty())
                    return buffer.heap() + ": " + problem;
            }
            return {};
        },
        user("alice"));
    ASSERT_EQ(alice.channel().expect("holding"), "");
    ASSERT_GT(main_pid(), 0);

    const harness::CommandResult stopped = systemctl({"stop", kSocket, kService});
    ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
    EXPECT_TRUE(service_is("inactive"));
    EXPECT_EQ(unit_property(kSocket, "ActiveState"), "inactive");
    const std::vector<uid_t> uids = process_uids();
    EXPECT_EQ(std::count(uids.begin(), uids.end(), user_id("ionsvc")), 0)
        << "a process of user ionsvc outlived systemctl stop";
    EXPECT_FALSE(std::filesystem::exists(kSocketPath));
    EXPECT_FALSE(std::filesystem::exists("/run/ionsvc")) << "/run/ionsvc is left behind";

    EXPECT_TRUE(alice.channel().send("stopped").empty());
    EXPECT_TRUE(alice.finished());
    // The fixture's TearDown checks that ion_simple holds nothing now.
}

} // namespace
} // namespace ionsvc::vmtest
