// SPDX-License-Identifier: MIT
#include "server/watchdog.h"

#include <systemd/sd-daemon.h>

#include <cstdint>
#include <cstring>

#include <spdlog/spdlog.h>

namespace ionsvc {

WatchdogPinger::WatchdogPinger(boost::asio::io_context &io) : timer_(io)
{
    std::uint64_t timeout_usec = 0;
    // > 0 only if WATCHDOG_USEC is set and WATCHDOG_PID, if set, is us.
    const int enabled = sd_watchdog_enabled(0, &timeout_usec);
    if (enabled < 0)
        spdlog::warn("ignoring the watchdog settings in the environment: {}", std::strerror(-enabled));
    if (enabled <= 0)
        return;
    // Half the timeout: one late or lost ping does not get us killed.
    interval_ = std::chrono::microseconds(timeout_usec / 2);
    spdlog::info("watchdog: timeout {} ms, pinging every {} ms", timeout_usec / 1000,
                 std::chrono::duration_cast<std::chrono::milliseconds>(interval_).count());
}

void WatchdogPinger::start()
{
    if (interval_.count() > 0)
        ping();
}

void WatchdogPinger::stop()
{
    stopped_ = true;
    timer_.cancel();
}

void WatchdogPinger::ping()
{
    sd_notify(0, "WATCHDOG=1");
    timer_.expires_after(interval_);
    timer_.async_wait([this](const boost::system::error_code &error) {
        if (!error && !stopped_)
            ping();
    });
}

} // namespace ionsvc
