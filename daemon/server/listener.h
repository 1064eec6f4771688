// SPDX-License-Identifier: MIT
#pragma once

#include <string>
#include <string_view>

#include <ionsvc/expected.h>
#include <ionsvc/unique_fd.h>

namespace ionsvc {

// A listening socket and where it came from.
struct Listener
{
    UniqueFD socket;
    bool from_systemd = false; // then systemd owns the path: never unlink it
};

// The socket systemd passed (LISTEN_FDS), if it passed one; an error names
// what is wrong with what it passed.
Expected<Listener, std::string> listener_from_systemd();

// Binds and listens on a SOCK_SEQPACKET socket at path, creating its
// directory if needed. A stale socket file (nobody listening) is replaced;
// a live one is an error, as is any other file at path.
Expected<Listener, std::string> listen_on(std::string_view path);

} // namespace ionsvc
