// SPDX-License-Identifier: MIT
#pragma once

#include <exception>
#include <string_view>
#include <utility>

#include <spdlog/spdlog.h>

namespace ionsvc {

// Runs work for an event loop handler. An exception it throws is logged,
// saying what was being done, and goes no further: one that reached
// io.run() would stop the daemon for every client. Returns false if it
// threw, so that the caller can drop whatever it was working for.
template<typename Work>
bool run_guarded(std::string_view what, Work &&work) noexcept
{
    // spdlog swallows its own exceptions: logging here cannot throw.
    try {
        std::forward<Work>(work)();
        return true;
    } catch (const std::exception &error) {
        spdlog::error("{} failed: {}", what, error.what());
    } catch (...) {
        spdlog::error("{} failed: an exception of unknown type", what);
    }
    return false;
}

} // namespace ionsvc
