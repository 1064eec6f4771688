// SPDX-License-Identifier: MIT
#include "policy/quota.h"

#include <fmt/format.h>

namespace ionsvc {

namespace {

// What a set of clients holds in one heap, or in all together, leaving
// out its imports unless they count. nullptr: nothing.
Usage held(const std::vector<Usage> *usage, std::optional<HeapIndex> heap, bool imports_count)
{
    Usage total;
    if (!usage)
        return total;
    for (HeapIndex i = 0; i < usage->size(); ++i) {
        if (heap && i != *heap)
            continue;
        const Usage &one = (*usage)[i];
        total.bytes += one.bytes - (imports_count ? 0 : one.imported_bytes);
        total.buffers += one.buffers - (imports_count ? 0 : one.imported_buffers);
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

// Calls each(limit, who, usage) for every limit of set that holds for
// client, in the order they are checked; stops at the first that returns
// a value, and returns it.
template<typename Each>
std::optional<std::string> for_each_limit(const LimitSet &set, const Books &books, const ClientRecord &client,
                                          std::optional<HeapIndex> heap, bool imports_count, Each &&each)
{
    if (set.client.limits_anything()) {
        if (auto result = each(set.client, std::string{"this client"}, held(&client.usage, heap, imports_count)))
            return result;
    }
    const uid_t uid = client.identity.uid;
    const auto uid_limit = set.uids.find(uid);
    const Limit &for_uid = uid_limit != set.uids.end() ? uid_limit->second : set.uid;
    if (for_uid.limits_anything()) {
        if (auto result = each(for_uid, fmt::format("uid {}", uid), held(books.uid_usage(uid), heap, imports_count)))
            return result;
    }
    // Every group of the client, as for the access rules.
    for (const gid_t gid : client.groups) {
        const auto group_limit = set.groups.find(gid);
        if (group_limit == set.groups.end())
            continue;
        if (auto result = each(group_limit->second, fmt::format("group {}", gid),
                               held(books.gid_usage(gid), heap, imports_count)))
            return result;
    }
    return std::nullopt;
}

std::optional<std::string> check_set(const LimitSet &set, const Books &books, const ClientRecord &client,
                                     std::optional<HeapIndex> heap, const Addition &addition,
                                     bool imports_count)
{
    const std::string where = heap ? fmt::format(" in heap {}", addition.heap_name) : std::string{};
    return for_each_limit(set, books, client, heap, imports_count,
                          [&](const Limit &limit, const std::string &who, const Usage &usage) {
                              return check(limit, who, usage, where, addition);
                          });
}

void list_set(const LimitSet &set, const Books &books, const ClientRecord &client, std::optional<HeapIndex> heap,
              std::string_view heap_name, bool imports_count, std::vector<LimitInUse> &limits)
{
    for_each_limit(set, books, client, heap, imports_count,
                   [&](const Limit &limit, const std::string &who, const Usage &usage) {
                       // The setting without the why of a built-in one.
                       const std::string setting = limit.origin.substr(0, limit.origin.find(','));
                       const std::string scope = heap ? fmt::format("{} in heap {}", who, heap_name) : who;
                       if (limit.bytes)
                           limits.push_back({setting, scope, "bytes", usage.bytes, *limit.bytes});
                       if (limit.buffers)
                           limits.push_back({setting, scope, "buffers", usage.buffers, *limit.buffers});
                       return std::optional<std::string>{};
                   });
}

} // namespace

std::optional<std::string> quota_refusal(const QuotaConfig &quota, const Books &books,
                                         const ClientRecord &client, const Addition &addition)
{
    if (auto refusal = check_set(quota.all_heaps, books, client, std::nullopt, addition, quota.imports_count))
        return refusal;
    if (const auto heap = quota.heaps.find(addition.heap_name); heap != quota.heaps.end())
        return check_set(heap->second, books, client, addition.heap, addition, quota.imports_count);
    return std::nullopt;
}

std::vector<LimitInUse> quota_limits_of(const QuotaConfig &quota, const Books &books, const ClientRecord &client,
                                        const std::vector<std::string> &heap_names)
{
    std::vector<LimitInUse> limits;
    list_set(quota.all_heaps, books, client, std::nullopt, {}, quota.imports_count, limits);
    for (HeapIndex heap = 0; heap < heap_names.size(); ++heap) {
        if (const auto set = quota.heaps.find(heap_names[heap]); set != quota.heaps.end())
            list_set(set->second, books, client, heap, heap_names[heap], quota.imports_count, limits);
    }
    return limits;
}

} // namespace ionsvc
