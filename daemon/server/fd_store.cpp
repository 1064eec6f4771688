// SPDX-License-Identifier: MIT
#include "server/fd_store.h"

#include <systemd/sd-daemon.h>

#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace ionsvc {

FdStore::FdStore() : thread_([this] { run(); }) {}

FdStore::~FdStore()
{
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
}

void FdStore::store(UniqueFD fd, std::string name)
{
    {
        std::lock_guard lock(mutex_);
        queue_.push_back({std::move(fd), std::move(name)});
    }
    wake_.notify_one();
}

void FdStore::remove(std::string name)
{
    {
        std::lock_guard lock(mutex_);
        queue_.push_back({UniqueFD{}, std::move(name)});
    }
    wake_.notify_one();
}

void FdStore::drain()
{
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return queue_.empty() && sending_ == 0; });
}

std::size_t FdStore::queued() const
{
    std::lock_guard lock(mutex_);
    return queue_.size() + sending_;
}

std::size_t FdStore::failures() const
{
    std::lock_guard lock(mutex_);
    return failures_;
}

void FdStore::run()
{
    std::unique_lock lock(mutex_);
    for (;;) {
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty())
            return; // stopping, and everything is sent
        Operation operation = std::move(queue_.front());
        queue_.pop_front();
        ++sending_;
        lock.unlock();
        send(operation);
        operation.fd.reset();
        lock.lock();
        --sending_;
        if (queue_.empty() && sending_ == 0)
            idle_.notify_all();
    }
}

void FdStore::send(Operation &operation)
{
    int ret;
    if (operation.fd) {
        // FDPOLL=0: a memfd cannot be polled, and a dma-buf's poll speaks
        // of fences, not of its end. systemd before 246 ignores the field.
        const std::string message = fmt::format("FDSTORE=1\nFDPOLL=0\nFDNAME={}", operation.name);
        const int fd = operation.fd.get();
        ret = sd_pid_notify_with_fds(0, 0, message.c_str(), &fd, 1);
    } else {
        const std::string message = fmt::format("FDSTOREREMOVE=1\nFDNAME={}", operation.name);
        ret = sd_notify(0, message.c_str());
    }
    if (ret > 0)
        return;
    std::size_t failures;
    {
        std::lock_guard lock(mutex_);
        failures = ++failures_;
    }
    // The first says why; the rest would say it again.
    if (failures == 1)
        spdlog::warn("the fd store did not take {} '{}': {}", operation.fd ? "fd" : "the removal of",
                     operation.name, ret == 0 ? "no NOTIFY_SOCKET" : std::strerror(-ret));
}

} // namespace ionsvc
