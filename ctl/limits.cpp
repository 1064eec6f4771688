// SPDX-License-Identifier: MIT
// The limits that hold for the client that asked for stats.
#include "render.h"
#include "table.h"

namespace ionsvc::ctl {
namespace {

std::string amount(std::uint64_t value, const std::string &unit)
{
    return unit == "bytes" ? human_size(value) : std::to_string(value);
}

} // namespace

std::string render_limits(const std::vector<bufclient::LimitUsage> &limits)
{
    if (limits.empty())
        return {};
    std::vector<std::vector<std::string>> rows;
    for (const bufclient::LimitUsage &limit : limits) {
        rows.push_back({limit.setting, limit.scope, amount(limit.used, limit.unit), amount(limit.limit, limit.unit),
                        limit.unit});
    }
    return "\nlimits that hold for this client:\n" + render_table(
                                                         {
                                                             {"LIMIT", Align::kLeft},
                                                             {"SCOPE", Align::kLeft},
                                                             {"USED", Align::kRight},
                                                             {"OF", Align::kRight},
                                                             {"UNIT", Align::kLeft},
                                                         },
                                                         rows);
}

nlohmann::json limits_to_json(const std::vector<bufclient::LimitUsage> &limits)
{
    nlohmann::json array = nlohmann::json::array();
    for (const bufclient::LimitUsage &limit : limits) {
        array.push_back({
            {"setting", limit.setting},
            {"scope", limit.scope},
            {"unit", limit.unit},
            {"used", limit.used},
            {"limit", limit.limit},
        });
    }
    return array;
}

} // namespace ionsvc::ctl
