// SPDX-License-Identifier: MIT
#include "server/peer.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <ionsvc/text.h>

namespace ionsvc {

namespace {

// Room for the 15 bytes of a comm (TASK_COMM_LEN) each written as an
// escape of 4.
constexpr std::size_t kMaxCommText = 64;

// A cgroup path is the administrator's or, in a delegated subtree (a
// user's systemd instance), the user's choice of names: escaped, and cut.
constexpr std::size_t kMaxCgroupText = 1024;

// Linux 6.5's SO_PEERPIDFD, which Debian 12's headers predate.
constexpr int kSoPeerPidfd = 77;

// The peer's comm, made printable: any process may set its own to any
// bytes (prctl(PR_SET_NAME)), and it goes into replies, logs and the
// names of its unnamed buffers.
std::string read_comm(pid_t pid)
{
    std::ifstream file(fmt::format("/proc/{}/comm", pid));
    std::string comm;
    if (!std::getline(file, comm))
        return "?";
    return printable_text(comm, kMaxCommText);
}

// The peer's cgroup v2 path (the "0::" line of /proc/<pid>/cgroup), made
// printable; empty on a machine without the unified hierarchy.
std::string read_cgroup(pid_t pid)
{
    std::ifstream file(fmt::format("/proc/{}/cgroup", pid));
    for (std::string line; std::getline(file, line);) {
        if (line.starts_with("0::"))
            return printable_text(std::string_view{line}.substr(3), kMaxCgroupText);
    }
    return {};
}

// A pidfd of the peer as it was at connect() (SO_PEERPIDFD), or none on a
// kernel before 6.5.
UniqueFD peer_pidfd(int socket)
{
    int pidfd = -1;
    socklen_t length = sizeof(pidfd);
    if (::getsockopt(socket, SOL_SOCKET, kSoPeerPidfd, &pidfd, &length) < 0)
        return {};
    return UniqueFD{pidfd};
}

// Whether the process behind pidfd still runs: if it does, its pid was not
// reused, and what /proc/<pid> said before this was its own. A pidfd turns
// readable when its process exits; unlike a signal 0, asking needs no
// permission over another user's process.
bool still_runs(const UniqueFD &pidfd)
{
    pollfd exited{pidfd.get(), POLLIN, 0};
    return ::poll(&exited, 1, 0) == 0;
}

// The comm and cgroup of the peer of socket, whose pid is pid. With a
// pidfd, read only while that very process runs: a peer that exited and
// whose pid went to another process gets "?" and no cgroup, rather than
// the other's. Without one (before 6.5) that race stays open.
void read_process_facts(int socket, pid_t pid, ClientIdentity &identity)
{
    const UniqueFD pidfd = peer_pidfd(socket);
    std::string comm = read_comm(pid);
    std::string cgroup = read_cgroup(pid);
    if (pidfd && !still_runs(pidfd))
        return; // identity keeps "?" and no cgroup
    identity.comm = std::move(comm);
    identity.cgroup = std::move(cgroup);
}

} // namespace

Expected<ClientIdentity, int> peer_identity(int socket)
{
    ucred credentials{};
    socklen_t length = sizeof(credentials);
    if (::getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &credentials, &length) < 0)
        return Unexpected{-errno};
    ClientIdentity identity{credentials.pid, credentials.uid, credentials.gid, "?", {}, {}};
    read_process_facts(socket, credentials.pid, identity);
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

} // namespace ionsvc
