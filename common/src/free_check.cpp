// SPDX-License-Identifier: MIT
#include <ionsvc/free_check.h>

#include <algorithm>
#include <vector>

namespace ionsvc {

namespace {

// An id that ids lists more than once, if there is one.
std::optional<std::uint64_t> listed_twice(std::span<const std::uint64_t> ids)
{
    // Most Frees name one buffer or a few: compared pairwise, in place,
    // they cost no copy and no malloc.
    constexpr std::size_t kFewIds = 16;
    if (ids.size() <= kFewIds) {
        for (std::size_t i = 1; i < ids.size(); ++i) {
            if (std::find(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(i), ids[i]) !=
                ids.begin() + static_cast<std::ptrdiff_t>(i))
                return ids[i];
        }
        return std::nullopt;
    }
    std::vector<std::uint64_t> sorted(ids.begin(), ids.end());
    std::sort(sorted.begin(), sorted.end());
    if (const auto twice = std::adjacent_find(sorted.begin(), sorted.end()); twice != sorted.end())
        return *twice;
    return std::nullopt;
}

} // namespace

std::optional<Refusal> check_free_ids(std::span<const std::uint64_t> ids, std::size_t max_ids,
                                      const std::function<bool(std::uint64_t)> &is_held)
{
    if (ids.empty())
        return Refusal{StatusCode::kInvalidArgument, "no buffer ids to free"};
    if (ids.size() > max_ids)
        return Refusal{StatusCode::kInvalidArgument,
                       std::to_string(ids.size()) + " buffer ids exceed the limit of " +
                           std::to_string(max_ids) + " per request"};

    if (const auto twice = listed_twice(ids))
        return Refusal{StatusCode::kInvalidArgument,
                       "buffer " + std::to_string(*twice) + " is listed more than once"};

    for (const std::uint64_t id : ids) {
        if (!is_held(id))
            return Refusal{StatusCode::kNotFound,
                           "buffer " + std::to_string(id) + " is not held by this client"};
    }
    return std::nullopt;
}

} // namespace ionsvc
