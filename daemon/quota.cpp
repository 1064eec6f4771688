// SPDX-License-Identifier: MIT
#include "quota.h"

#include <fmt/format.h>

namespace ionsvc {

namespace {

// What a set of clients holds in one heap, or in all together.
Usage held(const std::vector<Usage> &usage, std::optional<HeapIndex> heap)
{
    if (heap)
        return usage.at(*heap);
    Usage total;
    for (const Usage &one : usage) {
        total.bytes += one.bytes;
        total.buffers += one.buffers;
    }
    return total;
}

std::optional<std::string> check(const Limit &limit, std::string_view who, const Usage &usage,
                                 std::string_view where, const Addition &addition)
{
    const std::uint64_t more_bytes = addition.size * addition.count;
    const auto describe = [&](std::uint64_t value, std::string_view unit) {
        return fmt::format("{} holds {} bytes in {} buffers{}; {} more of {} bytes would pass its limit "
                           "of {} {} ({})",
                           who, usage.bytes, usage.buffers, where, addition.count, addition.size, value, unit,
                           limit.origin);
    };
    if (limit.bytes && usage.bytes + more_bytes > *limit.bytes)
        return describe(*limit.bytes, "bytes");
    if (limit.buffers && usage.buffers + addition.count > *limit.buffers)
        return describe(*limit.buffers, "buffers");
    return std::nullopt;
}

std::optional<std::string> check_set(const LimitSet &set, const Books &books, const ClientRecord &client,
                                     std::optional<HeapIndex> heap, const Addition &addition)
{
    const std::string where = heap ? fmt::format(" in heap {}", addition.heap_name) : std::string{};
    if (set.client.limits_anything()) {
        if (auto refusal = check(set.client, "this client", held(client.usage, heap), where, addition))
            return refusal;
    }
    const uid_t uid = client.identity.uid;
    const auto uid_limit = set.uids.find(uid);
    const Limit &for_uid = uid_limit != set.uids.end() ? uid_limit->second : set.uid;
    if (for_uid.limits_anything()) {
        const std::vector<Usage> *usage = books.uid_usage(uid);
        const Usage none;
        if (auto refusal = check(for_uid, fmt::format("uid {}", uid), usage ? held(*usage, heap) : none,
                                 where, addition))
            return refusal;
    }
    const gid_t gid = client.identity.gid;
    if (const auto group_limit = set.groups.find(gid); group_limit != set.groups.end()) {
        const std::vector<Usage> *usage = books.gid_usage(gid);
        const Usage none;
        if (auto refusal = check(group_limit->second, fmt::format("group {}", gid),
                                 usage ? held(*usage, heap) : none, where, addition))
            return refusal;
    }
    return std::nullopt;
}

} // namespace

std::optional<std::string> quota_refusal(const QuotaConfig &quota, const Books &books,
                                         const ClientRecord &client, const Addition &addition)
{
    if (auto refusal = check_set(quota.all_heaps, books, client, std::nullopt, addition))
        return refusal;
    if (const auto heap = quota.heaps.find(addition.heap_name); heap != quota.heaps.end())
        return check_set(heap->second, books, client, addition.heap, addition);
    return std::nullopt;
}

} // namespace ionsvc
