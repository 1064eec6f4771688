// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <ionsvc/expected.h>
#include <ionsvc/unique_fd.h>

namespace ionsvc {

// A listening socket and where it came from.
struct Listener
{
    UniqueFD socket;
    bool from_systemd = false; // then systemd owns the path: never unlink it
    // The other fds systemd passed: those of its fd store, by name
    // (LISTEN_FDNAMES), which the daemon before this one left.
    std::vector<std::pair<std::string, UniqueFD>> stored;
};

// The socket systemd passed (LISTEN_FDS), if it passed one, and the fds of
// the fd store; an error names what is wrong with what it passed.
Expected<Listener, std::string> listener_from_systemd();

// Who may connect to a socket the daemon makes itself: its mode and group
// are set explicitly, whatever the umask (under systemd, the socket unit
// says).
struct SocketAccess
{
    mode_t mode = 0660;
    std::optional<gid_t> group; // none: the daemon's own group
    mode_t directory_mode = 0755; // of the directories it creates
};

// Binds and listens on a SOCK_SEQPACKET socket at path, creating its
// directory if needed. A stale socket file (nobody listening) is replaced;
// a live one is an error, as is any other file at path. Nothing it creates
// is ever more open than access says, not even for a moment.
Expected<Listener, std::string> listen_on(std::string_view path, const SocketAccess &access = {});

} // namespace ionsvc
