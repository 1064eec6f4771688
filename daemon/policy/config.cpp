// SPDX-License-Identifier: MIT
#include "policy/config.h"

#include <grp.h>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <toml++/toml.h>

namespace ionsvc {
namespace {

std::string where(std::string_view source, const toml::source_region &region)
{
    return std::string{source} + ":" + std::to_string(region.begin.line) + ":" +
           std::to_string(region.begin.column) + ": ";
}

Expected<AliasRule, std::string> parse_alias(std::string_view source, std::string_view alias,
                                             const toml::node &value)
{
    const std::string prefix = where(source, value.source()) + "alias '" + std::string{alias} + "': ";
    // ':' separates a backend from a heap in heap names.
    if (alias.empty() || alias.find(':') != std::string_view::npos)
        return Unexpected{prefix + "an alias name must be non-empty and without ':'"};
    const toml::array *candidates = value.as_array();
    if (candidates == nullptr || candidates->empty())
        return Unexpected{prefix + "expected a non-empty array of heap names"};

    AliasRule rule{std::string{alias}, {}};
    for (const toml::node &candidate : *candidates) {
        const auto name = candidate.value<std::string>();
        if (!name || name->empty())
            return Unexpected{where(source, candidate.source()) + "alias '" + std::string{alias} +
                              "': every entry must be a heap name (a non-empty string)"};
        rule.candidates.push_back(*name);
    }
    return rule;
}

Expected<void, std::string> parse_aliases(std::string_view source, const toml::node &node,
                                          Config &config)
{
    const toml::table *aliases = node.as_table();
    if (aliases == nullptr)
        return Unexpected{where(source, node.source()) + "'aliases' must be a table"};
    for (const auto &[key, value] : *aliases) {
        auto rule = parse_alias(source, key.str(), value);
        if (!rule)
            return Unexpected{rule.error()};
        auto same = std::find_if(config.aliases.begin(), config.aliases.end(),
                                 [&](const AliasRule &r) { return r.alias == rule->alias; });
        if (same != config.aliases.end())
            *same = std::move(*rule);
        else
            config.aliases.push_back(std::move(*rule));
    }
    return {};
}

using Failure = Unexpected<std::string>;

// "512M" and friends, or a plain integer.
Expected<std::uint64_t, std::string> parse_size(std::string_view source, const toml::node &value)
{
    if (const auto number = value.value_exact<std::int64_t>()) {
        if (*number < 0)
            return Failure{where(source, value.source()) + "a size cannot be negative"};
        return static_cast<std::uint64_t>(*number);
    }
    const auto text = value.value_exact<std::string>();
    const std::string bad = where(source, value.source()) +
                            "a size is an integer or a string like \"512M\" (suffixes K, M, G, T)";
    if (!text || text->empty())
        return Failure{bad};
    std::uint64_t number = 0;
    const char *end = text->data() + text->size();
    const auto [last, error] = std::from_chars(text->data(), end, number);
    if (error != std::errc() || last == text->data())
        return Failure{bad};
    unsigned shift = 0;
    if (last != end) {
        if (last + 1 != end)
            return Failure{bad};
        switch (*last) {
        case 'K': shift = 10; break;
        case 'M': shift = 20; break;
        case 'G': shift = 30; break;
        case 'T': shift = 40; break;
        default: return Failure{bad};
        }
    }
    if (shift && number > (UINT64_MAX >> shift))
        return Failure{where(source, value.source()) + "size too large"};
    return number << shift;
}

Expected<Limit, std::string> parse_limit(std::string_view source, const toml::node &node, std::string origin)
{
    const toml::table *table = node.as_table();
    if (table == nullptr)
        return Failure{where(source, node.source()) + "'" + origin +
                       "' must be a table like { bytes = \"1G\", buffers = 1024 }"};
    Limit limit;
    limit.origin = std::move(origin);
    for (const auto &[key, value] : *table) {
        if (key.str() == "bytes") {
            auto bytes = parse_size(source, value);
            if (!bytes)
                return Failure{bytes.error()};
            limit.bytes = *bytes;
        } else if (key.str() == "buffers") {
            const auto buffers = value.value_exact<std::int64_t>();
            if (!buffers || *buffers < 0)
                return Failure{where(source, value.source()) + "buffers must be a non-negative integer"};
            limit.buffers = static_cast<std::uint64_t>(*buffers);
        } else {
            return Failure{where(source, key.source()) + "unknown setting '" + limit.origin + "." +
                           std::string{key.str()} + "' (a limit has bytes and buffers)"};
        }
    }
    return limit;
}

// A uid or gid: a number, or for groups a group's name.
Expected<std::uint32_t, std::string> parse_id(std::string_view source, std::string_view text,
                                              const toml::source_region &region, bool is_group)
{
    if (is_group) {
        if (const auto gid = find_group(text))
            return *gid;
        return Failure{where(source, region) + "unknown group '" + std::string{text} + "'"};
    }
    std::uint32_t id = 0;
    const auto [last, error] = std::from_chars(text.data(), text.data() + text.size(), id);
    if (error == std::errc() && last == text.data() + text.size() && !text.empty())
        return id;
    return Failure{where(source, region) + "'" + std::string{text} + "' is not a uid (a number)"};
}

// A cgroup v2 path as /proc/<pid>/cgroup shows it: absolute, without
// empty or dot components; a trailing '/' is dropped.
Expected<std::string, std::string> parse_cgroup_path(std::string_view source, std::string_view text,
                                                     const toml::source_region &region)
{
    std::string path{text};
    while (path.size() > 1 && path.back() == '/')
        path.pop_back();
    const bool absolute = path.starts_with('/');
    const bool clean = path.find("//") == std::string::npos && path.find("/./") == std::string::npos &&
                       path.find("/../") == std::string::npos && !path.ends_with("/.") && !path.ends_with("/..");
    if (!absolute || !clean)
        return Failure{where(source, region) + "'" + std::string{text} +
                       "' is not a cgroup path: it must start with '/', as in /proc/<pid>/cgroup "
                       "(e.g. \"/system.slice/camera.service\")"};
    return path;
}

Expected<void, std::string> parse_cgroup_limits(std::string_view source, const toml::node &node,
                                                const std::string &origin, LimitSet &set)
{
    const toml::table *entries = node.as_table();
    if (entries == nullptr)
        return Failure{where(source, node.source()) + "'" + origin + "' must be a table"};
    for (const auto &[path_key, limit_node] : *entries) {
        auto path = parse_cgroup_path(source, path_key.str(), path_key.source());
        if (!path)
            return Failure{path.error()};
        auto limit = parse_limit(source, limit_node, origin + ".\"" + *path + "\"");
        if (!limit)
            return Failure{limit.error()};
        set.cgroups[*path] = std::move(*limit);
    }
    return {};
}

Expected<void, std::string> parse_limit_set(std::string_view source, const toml::table &table,
                                            const std::string &prefix, LimitSet &set, bool top_level,
                                            QuotaConfig &quota)
{
    for (const auto &[key, value] : table) {
        const std::string name{key.str()};
        const std::string origin = prefix + "." + name;
        if (name == "client" || name == "uid") {
            auto limit = parse_limit(source, value, origin);
            if (!limit)
                return Failure{limit.error()};
            (name == "client" ? set.client : set.uid) = std::move(*limit);
            if (top_level && name == "uid")
                quota.uid_set = true;
        } else if (name == "uids" || name == "groups") {
            const toml::table *entries = value.as_table();
            if (entries == nullptr)
                return Failure{where(source, value.source()) + "'" + origin + "' must be a table"};
            for (const auto &[id_key, limit_node] : *entries) {
                auto id = parse_id(source, id_key.str(), id_key.source(), name == "groups");
                if (!id)
                    return Failure{id.error()};
                auto limit = parse_limit(source, limit_node, origin + "." + std::string{id_key.str()});
                if (!limit)
                    return Failure{limit.error()};
                (name == "uids" ? set.uids : set.groups)[*id] = std::move(*limit);
            }
        } else if (name == "cgroups") {
            if (auto parsed = parse_cgroup_limits(source, value, origin, set); !parsed)
                return parsed;
        } else if (top_level && name == "imports_count") {
            const auto flag = value.value_exact<bool>();
            if (!flag)
                return Failure{where(source, value.source()) + "'quota.imports_count' must be true or false"};
            quota.imports_count = *flag;
        } else if (top_level && name == "heaps") {
            const toml::table *heaps = value.as_table();
            if (heaps == nullptr)
                return Failure{where(source, value.source()) + "'quota.heaps' must be a table"};
            for (const auto &[heap, heap_table] : *heaps) {
                const toml::table *limits = heap_table.as_table();
                if (limits == nullptr)
                    return Failure{where(source, heap_table.source()) + "'quota.heaps." +
                                   std::string{heap.str()} + "' must be a table"};
                const std::string heap_prefix = "quota.heaps." + std::string{heap.str()};
                auto parsed = parse_limit_set(source, *limits, heap_prefix, quota.heaps[std::string{heap.str()}],
                                              false, quota);
                if (!parsed)
                    return parsed;
            }
        } else {
            return Failure{where(source, key.source()) + "unknown setting '" + origin + "'"};
        }
    }
    return {};
}

Expected<void, std::string> parse_quota(std::string_view source, const toml::node &node, Config &config)
{
    const toml::table *quota = node.as_table();
    if (quota == nullptr)
        return Failure{where(source, node.source()) + "'quota' must be a table"};
    return parse_limit_set(source, *quota, "quota", config.quota.all_heaps, true, config.quota);
}

// A list of uids or groups: numbers, or for groups names too.
Expected<std::vector<std::uint32_t>, std::string> parse_ids(std::string_view source, const toml::node &node,
                                                            const std::string &origin, bool is_group)
{
    const toml::array *entries = node.as_array();
    if (entries == nullptr)
        return Failure{where(source, node.source()) + "'" + origin + "' must be an array"};
    std::vector<std::uint32_t> ids;
    for (const toml::node &entry : *entries) {
        if (const auto number = entry.value_exact<std::int64_t>(); number && *number >= 0 && *number <= UINT32_MAX) {
            ids.push_back(static_cast<std::uint32_t>(*number));
            continue;
        }
        const auto text = entry.value_exact<std::string>();
        if (!text)
            return Failure{where(source, entry.source()) + "'" + origin + "' lists numbers" +
                           (is_group ? " or group names" : "")};
        auto id = parse_id(source, *text, entry.source(), is_group);
        if (!id)
            return Failure{id.error()};
        ids.push_back(*id);
    }
    return ids;
}

Expected<void, std::string> parse_access(std::string_view source, const toml::node &node, Config &config)
{
    const toml::table *access = node.as_table();
    if (access == nullptr)
        return Failure{where(source, node.source()) + "'access' must be a table"};
    for (const auto &[key, value] : *access) {
        if (key.str() == "admin_group") {
            const auto text = value.value_exact<std::string>();
            auto id = text ? parse_id(source, *text, value.source(), true)
                           : Expected<std::uint32_t, std::string>{
                                 Failure{where(source, value.source()) + "'access.admin_group' is a group name"}};
            if (!id)
                return Failure{id.error()};
            config.access.admin_group = *id;
        } else if (key.str() == "heaps") {
            const toml::table *heaps = value.as_table();
            if (heaps == nullptr)
                return Failure{where(source, value.source()) + "'access.heaps' must be a table"};
            for (const auto &[heap, rules_node] : *heaps) {
                const std::string origin = "access.heaps." + std::string{heap.str()};
                const toml::table *rules = rules_node.as_table();
                if (rules == nullptr)
                    return Failure{where(source, rules_node.source()) + "'" + origin + "' must be a table"};
                HeapAccess entry;
                entry.origin = origin;
                for (const auto &[rule, list] : *rules) {
                    if (rule.str() != "uids" && rule.str() != "groups")
                        return Failure{where(source, rule.source()) + "unknown setting '" + origin + "." +
                                       std::string{rule.str()} + "' (uids and groups are)"};
                    const bool groups = rule.str() == "groups";
                    auto ids = parse_ids(source, list, origin + "." + std::string{rule.str()}, groups);
                    if (!ids)
                        return Failure{ids.error()};
                    (groups ? entry.groups : entry.uids) = std::move(*ids);
                }
                config.access.heaps[std::string{heap.str()}] = std::move(entry);
            }
        } else {
            return Failure{where(source, key.source()) + "unknown setting 'access." + std::string{key.str()} + "'"};
        }
    }
    return {};
}

Expected<void, std::string> parse_pool_heap(std::string_view source, std::string_view heap,
                                            const toml::node &node, PoolConfig &pool)
{
    const std::string origin = "pool.heaps." + std::string{heap};
    const toml::table *classes = node.as_table();
    if (classes == nullptr)
        return Failure{where(source, node.source()) + "'" + origin +
                       "' must be a table of sizes and counts, like \"1M\" = 4"};
    for (const auto &[key, value] : *classes) {
        const std::string class_origin = origin + "." + std::string{key.str()};
        // The key is a size written as a string: parse it as one.
        const toml::value<std::string> size_text{std::string{key.str()}};
        auto size = parse_size(source, size_text);
        if (!size || *size == 0)
            return Failure{where(source, key.source()) + "'" + class_origin +
                           "': the key is a buffer size like \"1M\" or \"4096\", greater than zero"};
        const auto count = value.value_exact<std::int64_t>();
        if (!count || *count < 0 || *count > kMaxPoolClassCount)
            return Failure{where(source, value.source()) + "'" + class_origin +
                           "' is the number of buffers to keep ready, 0 to " +
                           std::to_string(kMaxPoolClassCount)};
        pool.classes.push_back({std::string{heap}, *size, static_cast<std::uint32_t>(*count), class_origin});
    }
    return {};
}

Expected<void, std::string> parse_pool(std::string_view source, const toml::node &node, Config &config)
{
    const toml::table *pool = node.as_table();
    if (pool == nullptr)
        return Failure{where(source, node.source()) + "'pool' must be a table"};
    for (const auto &[key, value] : *pool) {
        if (key.str() == "min_available") {
            auto bytes = parse_size(source, value);
            if (!bytes)
                return Failure{bytes.error()};
            config.pool.min_available = *bytes;
        } else if (key.str() == "heaps") {
            const toml::table *heaps = value.as_table();
            if (heaps == nullptr)
                return Failure{where(source, value.source()) + "'pool.heaps' must be a table"};
            for (const auto &[heap, classes] : *heaps) {
                auto parsed = parse_pool_heap(source, heap.str(), classes, config.pool);
                if (!parsed)
                    return parsed;
            }
        } else {
            return Failure{where(source, key.source()) + "unknown setting 'pool." + std::string{key.str()} +
                           "' (min_available and heaps are)"};
        }
    }
    return {};
}

// A whole number from 1 to max, for a count or a time.
Expected<std::uint32_t, std::string> parse_positive(std::string_view source, const toml::node &value,
                                                   const std::string &origin, std::int64_t max)
{
    const auto number = value.value<std::int64_t>();
    if (!value.is_integer() || !number || *number < 1 || *number > max)
        return Unexpected{where(source, value.source()) + "'" + origin + "' must be a whole number from 1 to " +
                          std::to_string(max)};
    return static_cast<std::uint32_t>(*number);
}

Expected<void, std::string> parse_connections(std::string_view source, const toml::node &node, Config &config)
{
    const toml::table *table = node.as_table();
    if (table == nullptr)
        return Failure{where(source, node.source()) + "'connections' must be a table"};
    ConnectionLimits &limits = config.connections;
    for (const auto &[key, value] : *table) {
        const std::string origin = "connections." + std::string{key.str()};
        constexpr std::int64_t kMaxCount = 1 << 20;
        constexpr std::int64_t kMaxTimeoutMs = 3600 * 1000;
        const bool is_timeout = key.str() == "hello_timeout_ms";
        if (!is_timeout && key.str() != "per_uid" && key.str() != "total" && key.str() != "unread_buffers")
            return Failure{where(source, key.source()) + "unknown setting '" + origin +
                           "' (per_uid, total, hello_timeout_ms and unread_buffers are)"};
        const auto number = parse_positive(source, value, origin, is_timeout ? kMaxTimeoutMs : kMaxCount);
        if (!number)
            return Failure{number.error()};
        if (key.str() == "per_uid")
            limits.per_uid = *number;
        else if (key.str() == "total")
            limits.total = *number;
        else if (key.str() == "unread_buffers")
            limits.unread_buffers = *number;
        else
            limits.hello_timeout = std::chrono::milliseconds(*number);
    }
    return {};
}

} // namespace

Expected<Config, std::string> parse_config(std::string_view text, std::string_view source)
{
    toml::table root;
    // toml++ reports syntax errors by exception; they end here.
    try {
        root = toml::parse(text, source);
    } catch (const toml::parse_error &error) {
        return Unexpected{where(source, error.source()) + std::string{error.description()}};
    }

    Config config;
    for (const auto &[key, value] : root) {
        if (key.str() == "aliases" || key.str() == "quota" || key.str() == "access" || key.str() == "pool" ||
            key.str() == "connections") {
            auto parsed = key.str() == "aliases"       ? parse_aliases(source, value, config)
                          : key.str() == "quota"       ? parse_quota(source, value, config)
                          : key.str() == "access"      ? parse_access(source, value, config)
                          : key.str() == "connections" ? parse_connections(source, value, config)
                                                       : parse_pool(source, value, config);
            if (!parsed)
                return Unexpected{parsed.error()};
            continue;
        }
        return Unexpected{where(source, key.source()) + "unknown setting '" +
                          std::string{key.str()} + "'"};
    }
    return config;
}

Limit builtin_uid_quota(const MachineLimits &machine)
{
    constexpr std::uint64_t kMaxBuiltinBuffers = 16384;
    Limit limit;
    // A figure the daemon could not read limits nothing, rather than all.
    if (machine.fd_limit > 0)
        limit.buffers = std::min(kMaxBuiltinBuffers, machine.fd_limit / 4);
    if (machine.memory_bytes > 0)
        limit.bytes = machine.memory_bytes / 4;
    limit.origin = "quota.uid, built in: a quarter of the daemon's fd limit and of the machine's memory; "
                   "set quota.uid or quota.uids in the config to change it";
    return limit;
}

void apply_builtin_quota(QuotaConfig &quota, const MachineLimits &machine)
{
    if (!quota.uid_set)
        quota.all_heaps.uid = builtin_uid_quota(machine);
}

std::optional<gid_t> find_group(std::string_view name_or_number)
{
    gid_t id = 0;
    const char *end = name_or_number.data() + name_or_number.size();
    const auto [last, error] = std::from_chars(name_or_number.data(), end, id);
    if (error == std::errc() && last == end && !name_or_number.empty())
        return id;
    group entry{};
    group *found = nullptr;
    std::vector<char> buffer(16384);
    const std::string name{name_or_number};
    if (::getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) == 0 && found)
        return found->gr_gid;
    return std::nullopt;
}

Expected<Config, std::string> load_config(const std::string &path, bool missing_is_default)
{
    std::ifstream file(path);
    if (!file) {
        const int error = errno;
        if (error == ENOENT && missing_is_default)
            return Config{};
        return Unexpected{path + ": " + std::strerror(error)};
    }
    std::ostringstream text;
    text << file.rdbuf();
    if (file.bad())
        return Unexpected{path + ": read error"};
    return parse_config(text.str(), path);
}

} // namespace ionsvc
