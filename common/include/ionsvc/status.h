// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <string_view>

namespace ionsvc {

// Status of a reply, value for value the StatusCode of proto/buffer.proto.
enum class StatusCode : std::uint8_t {
    kOk = 0,
    kInvalidArgument = 1,
    kNoSuchHeap = 2,
    kOutOfMemory = 3,
    kQuotaExceeded = 4,
    kPermissionDenied = 5,
    kResourceExhausted = 6,
    kUnsupportedVersion = 7,
    kNotFound = 8,
    kInternal = 9,
    // Never sent by the daemon: the client lost it, or it did not answer.
    kUnavailable = 10,
};

// The protocol's name for a status, e.g. "QUOTA_EXCEEDED".
std::string_view status_name(StatusCode code) noexcept;

// The status a negative errno from the core maps to. The daemon converts
// errnos to statuses here and nowhere else.
StatusCode status_from_errno(int negative_errno) noexcept;

} // namespace ionsvc
