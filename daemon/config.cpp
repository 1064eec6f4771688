// SPDX-License-Identifier: MIT
#include "config.h"

#include <algorithm>
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
        if (key.str() == "aliases") {
            auto parsed = parse_aliases(source, value, config);
            if (!parsed)
                return Unexpected{parsed.error()};
            continue;
        }
        return Unexpected{where(source, key.source()) + "unknown setting '" +
                          std::string{key.str()} + "'"};
    }
    return config;
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
