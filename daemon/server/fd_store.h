// SPDX-License-Identifier: MIT
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include <ionsvc/unique_fd.h>

namespace ionsvc {

// systemd's fd store for this service (sd_notify FDSTORE=1), fed from a
// thread of its own: PID 1 takes each fd in time that grows with the fds
// it holds already, and the event loop must never wait for it. Operations
// reach systemd in the order they were queued.
class FdStore
{
public:
    FdStore();
    // Sends what is queued, then stops.
    ~FdStore();
    FdStore(const FdStore &) = delete;
    FdStore &operator=(const FdStore &) = delete;

    // Keeps fd (a duplicate of the caller's) under name.
    void store(UniqueFD fd, std::string name);
    // Closes systemd's copies of the fds under name.
    void remove(std::string name);
    // Waits until every operation queued so far is sent.
    void drain();
    // Operations queued and not sent yet.
    std::size_t queued() const;
    // Operations systemd did not take (no NOTIFY_SOCKET, a send failed).
    std::size_t failures() const;

private:
    struct Operation
    {
        UniqueFD fd; // none: a removal
        std::string name;
    };

    void run();
    void send(Operation &operation);

    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable idle_;
    std::deque<Operation> queue_;
    std::size_t sending_ = 0;
    std::size_t failures_ = 0;
    bool stopping_ = false;
    std::thread thread_;
};

} // namespace ionsvc
