// SPDX-License-Identifier: MIT
// A connection to ionsvcd that speaks the wire protocol by hand, to say what
// libbufclient never would (bad packets, requests without waiting for
// their replies). For the integration tests and the in-VM tests.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>

#include <ionsvc/protocol.h>
#include <ionsvc/unique_fd.h>

#include "buffer.pb.h"

namespace ionsvc::testing {

class RawConnection
{
public:
    // Connects (a failure fails the test).
    explicit RawConnection(const std::string &path);

    ssize_t send_bytes(const std::string &bytes, std::span<const int> fds = {});
    ssize_t send(const wire::Request &request) { return send_bytes(request.SerializeAsString()); }

    // The next reply; the fds it carried are closed. A missing or
    // unparsable reply fails the test.
    wire::Reply receive();
    // The same, with the fds it carried.
    wire::Reply receive(std::vector<UniqueFD> &fds);

    wire::Reply hello(std::uint32_t version = kProtocolVersion);

    // True once the daemon has hung up on us.
    bool hung_up();

    void close() { socket_.reset(); }
    int fd() const { return socket_.get(); }

private:
    UniqueFD socket_;
};

} // namespace ionsvc::testing
