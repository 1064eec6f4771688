// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

namespace ionsvc {

// Pings systemd's watchdog (WatchdogSec= in the unit) from a timer in the
// event loop, so that a loop that hangs stops the pings and systemd restarts
// the daemon. Does nothing unless systemd asked this process for pings.
class WatchdogPinger
{
public:
    explicit WatchdogPinger(boost::asio::io_context &io);

    void start();
    // Lets the event loop run out.
    void stop();

private:
    void ping();

    boost::asio::steady_timer timer_;
    std::chrono::microseconds interval_{0};
    bool stopped_ = false;
};

} // namespace ionsvc
