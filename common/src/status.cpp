// SPDX-License-Identifier: MIT
#include <ionsvc/status.h>

#include <cerrno>

namespace ionsvc {

std::string_view status_name(StatusCode code) noexcept
{
    switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "INVALID_ARGUMENT";
    case StatusCode::kNoSuchHeap: return "NO_SUCH_HEAP";
    case StatusCode::kOutOfMemory: return "OUT_OF_MEMORY";
    case StatusCode::kQuotaExceeded: return "QUOTA_EXCEEDED";
    case StatusCode::kPermissionDenied: return "PERMISSION_DENIED";
    case StatusCode::kResourceExhausted: return "RESOURCE_EXHAUSTED";
    case StatusCode::kUnsupportedVersion: return "UNSUPPORTED_VERSION";
    case StatusCode::kNotFound: return "NOT_FOUND";
    case StatusCode::kInternal: return "INTERNAL";
    case StatusCode::kUnavailable: return "UNAVAILABLE";
    }
    return "UNKNOWN";
}

StatusCode status_from_errno(int negative_errno) noexcept
{
    switch (-negative_errno) {
    case 0: return StatusCode::kOk;
    case EINVAL:
    case EMSGSIZE:
    case E2BIG:
    case EOVERFLOW: return StatusCode::kInvalidArgument;
    case ENOMEM:
    case ENOSPC: return StatusCode::kOutOfMemory;
    case EMFILE:
    case ENFILE:
    case ETOOMANYREFS:
    case EAGAIN: return StatusCode::kResourceExhausted;
    case EACCES:
    case EPERM: return StatusCode::kPermissionDenied;
    case ENOENT: return StatusCode::kNotFound;
    case ENODEV: return StatusCode::kNoSuchHeap;
    case EDQUOT: return StatusCode::kQuotaExceeded;
    case EPROTONOSUPPORT: return StatusCode::kUnsupportedVersion;
    default: return StatusCode::kInternal;
    }
}

} // namespace ionsvc
