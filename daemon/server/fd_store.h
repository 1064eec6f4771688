// SPDX-License-Identifier: MIT
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <cstddef>
#include <deque>
#include <string>

#include <ionsvc/unique_fd.h>

namespace ionsvc {

// systemd's fd store for this service (sd_notify's FDSTORE=1), fed from the
// event loop without ever waiting: PID 1 takes each fd in time that grows
// with the fds it holds already, so what it has no room for yet waits
// here for the next call. Operations reach systemd in the order they were
// queued. No thread of its own: a second thread would make every
// shared_ptr count and malloc in the daemon atomic.
class FdStore
{
public:
    // Speaks to $NOTIFY_SOCKET; with none, every operation fails.
    FdStore();

    // Keeps fd (a duplicate of the caller's) under name.
    void store(UniqueFD fd, std::string name);
    // Closes systemd's copies of the fds under name.
    void remove(std::string name);
    // Sends up to budget queued operations, stopping at the first that
    // would have to wait.
    void send_some(std::size_t budget);
    // Sends everything queued, waiting for room up to limit in all: the
    // daemon is about to exit.
    void send_all(std::chrono::milliseconds limit);
    // Operations queued and not sent yet.
    std::size_t queued() const { return queue_.size(); }
    // Operations systemd did not take (no NOTIFY_SOCKET, a send failed).
    std::size_t failures() const { return failures_; }

private:
    struct Operation
    {
        UniqueFD fd; // none: a removal
        std::string name;
    };

    // 0 once sent (or given up on), -EAGAIN if it must wait.
    int send(const Operation &operation);

    UniqueFD socket_;
    sockaddr_un address_{};
    socklen_t address_length_ = 0;
    std::deque<Operation> queue_;
    std::size_t failures_ = 0;
};

} // namespace ionsvc
