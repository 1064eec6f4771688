// SPDX-License-Identifier: MIT
#include "policy/access.h"

#include <algorithm>

#include <fmt/format.h>

namespace ionsvc {

std::optional<std::string> access_refusal(const AccessConfig &access, const ClientIdentity &client,
                                          std::string_view heap_name)
{
    const auto rules = access.heaps.find(heap_name);
    if (rules == access.heaps.end() || client.uid == 0)
        return std::nullopt;
    const HeapAccess &allowed = rules->second;
    if (std::find(allowed.uids.begin(), allowed.uids.end(), client.uid) != allowed.uids.end())
        return std::nullopt;
    for (const gid_t group : allowed.groups) {
        if (client.in_group(group))
            return std::nullopt;
    }
    return fmt::format("uid {} may not use heap {} ({})", client.uid, heap_name, allowed.origin);
}

bool sees_every_client(const AccessConfig &access, const ClientIdentity &client)
{
    return client.uid == 0 || (access.admin_group && client.in_group(*access.admin_group));
}

} // namespace ionsvc
