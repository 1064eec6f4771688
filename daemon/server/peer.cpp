// SPDX-License-Identifier: MIT
#include "server/peer.h"

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

} // namespace

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

} // namespace ionsvc
