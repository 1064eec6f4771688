// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ionsvc {

inline constexpr std::uint32_t kProtocolVersion = 1;

// Where the daemon listens unless told otherwise, and the environment
// variable with which clients and ionsvc-ctl override it.
inline constexpr std::string_view kDefaultSocketPath = "/run/ionsvc/ionsvc.sock";
inline constexpr const char *kSocketEnvironmentVariable = "IONSVC_SOCKET";

// Largest request packet the daemon reads; anything longer is refused.
inline constexpr std::size_t kMaxRequestBytes = 64 * 1024;
// Buffers in one batch allocation. Below the kernel's SCM_MAX_FD (253), so
// that a whole batch travels in one packet.
inline constexpr std::uint32_t kMaxBatchCount = 64;
// Buffer ids in one Free request.
inline constexpr std::uint32_t kMaxFreeIds = 1024;
// Descriptors one reply may carry.
inline constexpr std::size_t kMaxFdsPerMessage = kMaxBatchCount;

} // namespace ionsvc
