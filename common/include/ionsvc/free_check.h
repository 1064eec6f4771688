// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include <ionsvc/status.h>

namespace ionsvc {

struct Refusal
{
    StatusCode code;
    std::string message;
};

// Why a Free of ids must be refused, if it must: no ids, more than max_ids,
// an id listed twice, or one the client does not hold. The daemon applies
// it to its books; libbufclient to the ids it knows it holds, so that a
// Free it has checked cannot fail and needs no reply.
std::optional<Refusal> check_free_ids(std::span<const std::uint64_t> ids, std::size_t max_ids,
                                      const std::function<bool(std::uint64_t)> &is_held);

} // namespace ionsvc
