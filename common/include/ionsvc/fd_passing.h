// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <span>
#include <sys/types.h>
#include <vector>

#include <ionsvc/unique_fd.h>

namespace ionsvc {

// Sends one packet with fds (lent, not given: the caller keeps its copies)
// as SCM_RIGHTS. Never raises SIGPIPE. Returns the bytes sent or -errno.
ssize_t send_packet(int socket, std::span<const std::byte> data, std::span<const int> fds,
                    int flags = 0);

// Receives one packet into data, with up to max_fds descriptors, installed
// close-on-exec. Returns -EMSGSIZE if the packet did not fit in data,
// -EPROTO if the descriptors did not fit (MSG_CTRUNC: more than max_fds),
// and -EMFILE if the kernel could not install them all because this
// process has no fd left (MSG_CTRUNC too); in each case whatever
// descriptors did arrive are closed. A zero size means end of
// stream or an empty packet; the caller tells them apart with
// peer_has_hung_up(). Other failures return -errno.
struct ReceiveResult
{
    ssize_t status = 0; // bytes received, or -errno
    std::vector<UniqueFD> fds; // each owned; empty on failure
};
ReceiveResult receive_packet(int socket, std::span<std::byte> data, std::size_t max_fds,
                             int flags = 0);
// The same into result, whose fds (closed first) keep their vector's memory
// from one packet to the next.
void receive_packet(int socket, std::span<std::byte> data, std::size_t max_fds, ReceiveResult &result,
                    int flags = 0);

// Length of the next packet without consuming it or any fds it carries.
// Returns the length or -errno (-EAGAIN with MSG_DONTWAIT and nothing
// queued).
ssize_t peek_packet_size(int socket, int flags = 0);

// True if the peer closed its end (as opposed to having sent an empty packet).
bool peer_has_hung_up(int socket);

} // namespace ionsvc
