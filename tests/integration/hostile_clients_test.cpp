// SPDX-License-Identifier: MIT
// An unprivileged attacker (setresuid in a forked child) against a real
// daemon with a low RLIMIT_NOFILE: it floods the daemon with idle
// connections or with buffers under the config as shipped, or asks for
// buffers and never reads its replies.
// Either way it is stopped at a bound, root still looks, another user
// still allocates, and once it leaves the daemon's fds and books are back
// where they were.
#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.h"
#include "raw_connection.h"

namespace ionsvc::testing {
namespace {

using ::testing::HasSubstr;

constexpr uid_t kAttacker = 65534;
constexpr uid_t kBystander = 65533;
constexpr rlim_t kDaemonFds = 512;

// Child exit codes: which step failed.
constexpr int kUserChange = 10;
constexpr int kConnect = 11;
constexpr int kNeverStopped = 12;
constexpr int kWrongRefusal = 13;
constexpr int kUnanswered = 14;
constexpr int kLimitsNotShown = 15;

// Whether limits has setting over scope, at used of limit in unit.
bool shows(const std::vector<bufclient::LimitUsage> &limits, const std::string &setting, const std::string &unit,
           std::uint64_t used, std::uint64_t limit)
{
    return std::any_of(limits.begin(), limits.end(), [&](const bufclient::LimitUsage &entry) {
        return entry.setting == setting && entry.scope == "uid 65534" && entry.unit == unit && entry.used == used &&
               entry.limit == limit;
    });
}

std::string shipped_config()
{
    std::ifstream file(IONSVC_SHIPPED_CONFIG);
    EXPECT_TRUE(file) << IONSVC_SHIPPED_CONFIG;
    return {std::istreambuf_iterator<char>(file), {}};
}

class HostileClients : public ::testing::Test
{
protected:
    void start(const std::string &config)
    {
        IONSVC_NEED_ROOT("to run the attacker as another user");
        open_.emplace(config, fd_limit(kDaemonFds));
    }

    void TearDown() override
    {
        if (open_)
            open_->expect_back_to_baseline();
    }

    const std::string &socket_path() { return open_->daemon().socket_path(); }

    // Buffers the attacker's clients hold, as root sees them.
    std::uint64_t attacker_buffers()
    {
        auto stats = open_->observer().stats();
        EXPECT_TRUE(stats) << stats.error().message;
        std::uint64_t buffers = 0;
        for (const bufclient::ClientStats &client : stats ? stats->clients : std::vector<bufclient::ClientStats>{}) {
            if (client.uid != kAttacker)
                continue;
            for (const auto &heap : client.heaps)
                buffers += heap.buffers;
        }
        return buffers;
    }

    std::optional<OpenDaemon> open_;
};

TEST_F(HostileClients, AnIdleConnectionFloodUnderTheDefaultsIsStoppedAt64ConnectionsOfItsUid)
{
    start("");
    constexpr int kConnections = 200;
    Signal ready, release;
    ChildProcess attacker([&] {
        release.close_write_end();
        if (!become_user(kAttacker))
            return kUserChange;
        std::vector<RawConnection> connections;
        for (int i = 0; i < kConnections; ++i)
            connections.emplace_back(socket_path());
        // Each says Hello only now: the daemon has admitted or refused it.
        int admitted = 0;
        wire::Request hello;
        hello.mutable_hello()->set_protocol_version(kProtocolVersion);
        for (RawConnection &connection : connections) {
            connection.send(hello); // a refused one may be closed already
            const wire::Reply reply = connection.receive();
            if (reply.status() == wire::OK)
                ++admitted;
            else if (reply.status() != wire::RESOURCE_EXHAUSTED ||
                     reply.message().find("connections.per_uid") == std::string::npos)
                return kWrongRefusal;
        }
        if (admitted != 64)
            return kNeverStopped;
        ready.raise();
        release.wait();
        return 0;
    });
    ready.close_write_end();
    ASSERT_TRUE(ready.wait()) << "attacker step " << attacker.wait();

    open_->expect_others_served(kBystander);

    release.close_write_end();
    EXPECT_EQ(attacker.wait(), 0);
}

TEST_F(HostileClients, ABufferFloodUnderTheShippedConfigStopsAtTheBuiltInQuotaOfAQuarterOfTheFds)
{
    start(shipped_config());
    Signal ready, release;
    // Over two connections: the quota is the uid's, whatever it connects.
    ChildProcess attacker([&] {
        release.close_write_end();
        if (!become_user(kAttacker))
            return kUserChange;
        std::vector<bufclient::Client> clients;
        for (int i = 0; i < 2; ++i) {
            auto client = bufclient::Client::connect({.socket_path = socket_path(), .client_name = "flooder"});
            if (!client)
                return kConnect;
            clients.push_back(std::move(*client));
        }
        std::vector<bufclient::Buffer> hoard;
        for (rlim_t i = 0; i < kDaemonFds; ++i) {
            auto buffers = clients[i % 2].allocate({.size = 4096});
            if (!buffers) {
                const bufclient::Error &error = buffers.error();
                if (error.code != StatusCode::kQuotaExceeded || hoard.size() != kDaemonFds / 4 ||
                    error.message.find("limit of 128 buffers (quota.uid, built in") == std::string::npos)
                    return kWrongRefusal;
                // Its stats say where it stands.
                auto stats = clients[0].stats();
                if (!stats || !shows(stats->limits, "quota.uid", "buffers", kDaemonFds / 4, kDaemonFds / 4) ||
                    !shows(stats->limits, "connections.per_uid", "connections", 2, 64))
                    return kLimitsNotShown;
                ready.raise();
                release.wait();
                return 0;
            }
            hoard.push_back(std::move((*buffers)[0]));
        }
        return kNeverStopped;
    });
    ready.close_write_end();
    ASSERT_TRUE(ready.wait()) << "attacker step " << attacker.wait();

    EXPECT_EQ(attacker_buffers(), kDaemonFds / 4);
    open_->expect_others_served(kBystander);

    release.close_write_end();
    EXPECT_EQ(attacker.wait(), 0);
}

TEST_F(HostileClients, AClientThatNeverReadsIsNotServedPastItsUnreadBuffersUntilItReadsThem)
{
    start("[connections]\nunread_buffers = 32\n");
    constexpr int kRequests = 100;
    Signal ready, release;
    ChildProcess attacker([&] {
        release.close_write_end();
        if (!become_user(kAttacker))
            return kUserChange;
        RawConnection connection(socket_path());
        wire::Request request;
        request.mutable_hello()->set_protocol_version(kProtocolVersion);
        connection.send(request);
        request.mutable_alloc()->set_size(4096);
        request.mutable_alloc()->set_count(1);
        for (int i = 0; i < kRequests; ++i)
            connection.send(request);
        ready.raise();
        release.wait();
        // Once it reads, every request is served in turn.
        if (connection.receive().status() != wire::OK)
            return kConnect;
        for (int i = 0; i < kRequests; ++i) {
            std::vector<UniqueFD> fds;
            const wire::Reply reply = connection.receive(fds);
            if (reply.status() != wire::OK || fds.size() != 1)
                return kUnanswered;
        }
        return 0;
    });
    ready.close_write_end();
    ASSERT_TRUE(ready.wait()) << "attacker step " << attacker.wait();

    ASSERT_TRUE(eventually([&] { return attacker_buffers() == 32; })) << attacker_buffers();
    open_->expect_others_served(kBystander);
    EXPECT_EQ(attacker_buffers(), 32u) << "served past connections.unread_buffers";
    EXPECT_THAT(open_->daemon().log(),
                HasSubstr("32 buffers sent that it has not read; its requests wait until it reads them "
                          "(connections.unread_buffers = 32)"));

    release.close_write_end();
    EXPECT_EQ(attacker.wait(), 0);
}

} // namespace
} // namespace ionsvc::testing
