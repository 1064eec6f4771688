// SPDX-License-Identifier: MIT
#pragma once

#include <ionsvc/expected.h>

#include "books/books.h"

namespace ionsvc {

// Who is at the other end of a connected socket, as the kernel saw it at
// connect(): SO_PEERCRED, SO_PEERGROUPS, and /proc/<pid>/comm and cgroup
// (checked against SO_PEERPIDFD where the kernel has it). -errno if the
// kernel cannot say.
Expected<ClientIdentity, int> peer_identity(int socket);

} // namespace ionsvc
