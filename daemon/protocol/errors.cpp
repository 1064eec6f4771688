// SPDX-License-Identifier: MIT
#include "protocol/errors.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "protocol/response.h"
#include "buffer.pb.h"

namespace ionsvc {

// The wire enum and ours must agree value for value.
static_assert(static_cast<int>(StatusCode::kOk) == wire::OK);
static_assert(static_cast<int>(StatusCode::kInvalidArgument) == wire::INVALID_ARGUMENT);
static_assert(static_cast<int>(StatusCode::kNoSuchHeap) == wire::NO_SUCH_HEAP);
static_assert(static_cast<int>(StatusCode::kOutOfMemory) == wire::OUT_OF_MEMORY);
static_assert(static_cast<int>(StatusCode::kQuotaExceeded) == wire::QUOTA_EXCEEDED);
static_assert(static_cast<int>(StatusCode::kPermissionDenied) == wire::PERMISSION_DENIED);
static_assert(static_cast<int>(StatusCode::kResourceExhausted) == wire::RESOURCE_EXHAUSTED);
static_assert(static_cast<int>(StatusCode::kUnsupportedVersion) == wire::UNSUPPORTED_VERSION);
static_assert(static_cast<int>(StatusCode::kNotFound) == wire::NOT_FOUND);
static_assert(static_cast<int>(StatusCode::kInternal) == wire::INTERNAL);
static_assert(static_cast<int>(StatusCode::kUnavailable) == wire::UNAVAILABLE);

std::string errno_text(int negative_errno)
{
    return std::strerror(-negative_errno);
}

StatusCode allocation_status(int negative_errno)
{
    switch (-negative_errno) {
    case ENOMEM:
    case ENOSPC: return StatusCode::kOutOfMemory;
    case EMFILE:
    case ENFILE: return StatusCode::kResourceExhausted;
    default: return StatusCode::kInternal;
    }
}

std::string out_of_fds_hint(int negative_errno)
{
    if (negative_errno == -ENFILE)
        return " (the system is out of open files, fs.file-max: no more live buffers until some are "
               "freed)";
    if (negative_errno != -EMFILE)
        return {};
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) < 0)
        return " (ionsvcd is at its fd limit: it holds one fd per live buffer and per client)";
    return fmt::format(" (ionsvcd holds one fd per live buffer and per client and is at its limit of {} "
                       "(RLIMIT_NOFILE): no more live buffers until some are freed)",
                       static_cast<unsigned long long>(limit.rlim_cur));
}

void set_error(Response &response, StatusCode code, std::string message)
{
    response.reply.set_status(static_cast<wire::StatusCode>(code));
    response.reply.set_message(std::move(message));
}

} // namespace ionsvc
