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

// Whose holdings a limit counts: this client, a uid or a group. Named in
// text only when a refusal or a listing needs it.
struct Holder
{
    enum class Kind { kClient, kUid, kGroup, kCgroup } kind = Kind::kClient;
    std::uint32_t id = 0;
    std::string_view cgroup; // of a kCgroup

    std::string name() const
    {
        switch (kind) {
        case Kind::kClient: return "this client";
        case Kind::kUid: return fmt::format("uid {}", id);
        case Kind::kGroup: return fmt::format("group {}", id);
        case Kind::kCgroup: return fmt::format("cgroup {}", cgroup);
        }
        return {};
    }
};

std::optional<std::string> check(const Limit &limit, const Holder &holder, const Usage &usage, bool in_heap,
                                 const Addition &addition)
{
    const std::uint64_t more_bytes = addition.size * addition.count;
    const auto describe = [&](std::uint64_t value, std::string_view unit) {
        const std::string where = in_heap ? fmt::format(" in heap {}", addition.heap_name) : std::string{};
        return fmt::format("{} holds {} bytes in {} buffers{}; {} more of {} bytes would pass its limit "
                           "of {} {} ({})",
                           holder.name(), usage.bytes, usage.buffers, where, addition.count, addition.size, value,
                           unit, limit.origin);
    };
    if (limit.bytes && usage.bytes + more_bytes > *limit.bytes)
        return describe(*limit.bytes, "bytes");
    if (limit.buffers && usage.buffers + addition.count > *limit.buffers)
        return describe(*limit.buffers, "buffers");
    return std::nullopt;
}

// Calls each(limit, holder, usage) for every limit of set that holds for
// client, in the order they are checked; stops at the first that returns
// a value, and returns it.
template<typename Each>
std::optional<std::string> for_each_limit(const LimitSet &set, const ClientRecord &client,
                                          std::optional<HeapIndex> heap, bool imports_count, Each &&each)
{
    if (set.client.limits_anything()) {
        if (auto result = each(set.client, Holder{}, held(&client.usage, heap, imports_count)))
            return result;
    }
    const uid_t uid = client.identity.uid;
    const auto uid_limit = set.uids.find(uid);
    const Limit &for_uid = uid_limit != set.uids.end() ? uid_limit->second : set.uid;
    // The client's record points at its uid's and groups' usage: no lookup.
    if (for_uid.limits_anything()) {
        if (auto result = each(for_uid, Holder{Holder::Kind::kUid, uid, {}}, held(client.uid_usage, heap, imports_count)))
            return result;
    }
    // Every group of the client, as for the access rules.
    for (std::size_t i = 0; i < client.groups.size() && !set.groups.empty(); ++i) {
        const auto group_limit = set.groups.find(client.groups[i]);
        if (group_limit == set.groups.end())
            continue;
        if (auto result = each(group_limit->second, Holder{Holder::Kind::kGroup, client.groups[i], {}},
                               held(client.group_usage[i], heap, imports_count)))
            return result;
    }
    // Every cgroup subtree a quota names and the client is in (the books
    // tally those alone).
    for (const CgroupTally *tally : client.cgroups) {
        const auto cgroup_limit = set.cgroups.find(tally->path);
        if (cgroup_limit == set.cgroups.end())
            continue;
        if (auto result = each(cgroup_limit->second, Holder{Holder::Kind::kCgroup, 0, tally->path},
                               held(&tally->usage, heap, imports_count)))
            return result;
    }
    return std::nullopt;
}

std::optional<std::string> check_set(const LimitSet &set, const ClientRecord &client,
                                     std::optional<HeapIndex> heap, const Addition &addition,
                                     bool imports_count)
{
    return for_each_limit(set, client, heap, imports_count,
                          [&](const Limit &limit, const Holder &holder, const Usage &usage) {
                              return check(limit, holder, usage, heap.has_value(), addition);
                          });
}

void list_set(const LimitSet &set, const ClientRecord &client, std::optional<HeapIndex> heap,
              std::string_view heap_name, bool imports_count, std::vector<LimitInUse> &limits)
{
    for_each_limit(set, client, heap, imports_count,
                   [&](const Limit &limit, const Holder &holder, const Usage &usage) {
                       // The setting without the why of a built-in one.
                       const std::string setting = limit.origin.substr(0, limit.origin.find(','));
                       const std::string scope =
                           heap ? fmt::format("{} in heap {}", holder.name(), heap_name) : holder.name();
                       if (limit.bytes)
                           limits.push_back({setting, scope, "bytes", usage.bytes, *limit.bytes});
                       if (limit.buffers)
                           limits.push_back({setting, scope, "buffers", usage.buffers, *limit.buffers});
                       return std::optional<std::string>{};
                   });
}

} // namespace

std::optional<std::string> quota_refusal(const QuotaConfig &quota, const ClientRecord &client,
                                         const Addition &addition)
{
    if (auto refusal = check_set(quota.all_heaps, client, std::nullopt, addition, quota.imports_count))
        return refusal;
    if (const auto heap = quota.heaps.find(addition.heap_name); heap != quota.heaps.end())
        return check_set(heap->second, client, addition.heap, addition, quota.imports_count);
    return std::nullopt;
}

std::vector<std::string> cgroups_named(const QuotaConfig &quota)
{
    std::vector<std::string> paths;
    const auto add = [&](const LimitSet &set) {
        for (const auto &[path, limit] : set.cgroups)
            paths.push_back(path);
    };
    add(quota.all_heaps);
    for (const auto &[heap, set] : quota.heaps)
        add(set);
    return paths;
}

std::vector<LimitInUse> quota_limits_of(const QuotaConfig &quota, const ClientRecord &client,
                                        const std::vector<std::string> &heap_names)
{
    std::vector<LimitInUse> limits;
    list_set(quota.all_heaps, client, std::nullopt, {}, quota.imports_count, limits);
    for (HeapIndex heap = 0; heap < heap_names.size(); ++heap) {
        if (const auto set = quota.heaps.find(heap_names[heap]); set != quota.heaps.end())
            list_set(set->second, client, heap, heap_names[heap], quota.imports_count, limits);
    }
    return limits;
}

} // namespace ionsvc
