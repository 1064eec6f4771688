// SPDX-License-Identifier: MIT
#include "policy/share_table.h"

#include <cerrno>
#include <cstring>

namespace ionsvc {

namespace {

constexpr std::size_t kIndexSize = 8;

std::uint64_t index_of(std::string_view token)
{
    std::uint64_t index = 0;
    std::memcpy(&index, token.data(), kIndexSize);
    return index;
}

} // namespace

bool equal_in_constant_time(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b)
{
    if (a.size() != b.size())
        return false;
    // Every byte is looked at, whatever differs first.
    volatile std::uint8_t difference = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        difference = difference | static_cast<std::uint8_t>(a[i] ^ b[i]);
    return difference == 0;
}

ShareTable::ShareTable(Syscalls &syscalls, std::size_t max_per_client)
    : syscalls_(syscalls), max_per_client_(max_per_client)
{
}

Expected<std::string, int> ShareTable::add(const Grant &grant)
{
    if (count_of(grant.sharer) >= max_per_client_)
        return Unexpected{-ENOSPC};

    std::string token(kShareTokenSize, '\0');
    // A fresh index never collides with a live one: 2^64 makes a retry rare.
    for (;;) {
        const int ret = syscalls_.get_random(std::as_writable_bytes(std::span(token)));
        if (ret < 0)
            return Unexpected{ret};
        if (!entries_.contains(index_of(token)))
            break;
    }
    insert(token, grant);
    return token;
}

void ShareTable::insert(std::string_view token, const Grant &grant)
{
    Entry entry{grant, {}};
    std::memcpy(entry.secret.data(), token.data() + kIndexSize, entry.secret.size());
    entries_.emplace(index_of(token), entry);
    ++per_client_[grant.sharer];
}

std::unordered_map<std::uint64_t, ShareTable::Entry>::iterator ShareTable::find(std::string_view token)
{
    if (token.size() != kShareTokenSize)
        return entries_.end();
    const auto it = entries_.find(index_of(token));
    if (it == entries_.end())
        return it;
    const auto *secret = reinterpret_cast<const std::uint8_t *>(token.data() + kIndexSize);
    if (!equal_in_constant_time({secret, it->second.secret.size()}, it->second.secret))
        return entries_.end();
    return it;
}

void ShareTable::erase(std::unordered_map<std::uint64_t, Entry>::iterator it)
{
    const auto count = per_client_.find(it->second.grant.sharer);
    if (count != per_client_.end() && --count->second == 0)
        per_client_.erase(count);
    entries_.erase(it);
}

namespace {

ShareTable::Verdict judge(const ShareTable::Grant &grant, uid_t importer, ShareTable::Clock::time_point now)
{
    if (grant.expires && now >= *grant.expires)
        return ShareTable::Verdict::kExpired;
    if (grant.uid && *grant.uid != importer)
        return ShareTable::Verdict::kOtherUid;
    return ShareTable::Verdict::kGranted;
}

} // namespace

ShareTable::Redemption ShareTable::inspect(std::string_view token, uid_t importer, Clock::time_point now)
{
    const auto it = find(token);
    if (it == entries_.end())
        return {};
    return {judge(it->second.grant, importer, now), it->second.grant};
}

ShareTable::Redemption ShareTable::redeem(std::string_view token, uid_t importer, Clock::time_point now)
{
    const auto it = find(token);
    if (it == entries_.end())
        return {};
    const Redemption redemption{judge(it->second.grant, importer, now), it->second.grant};
    // A token for another uid stays: the user it was made for may still
    // redeem it.
    if (redemption.verdict == Verdict::kExpired ||
        (redemption.verdict == Verdict::kGranted && !redemption.grant.reusable))
        erase(it);
    return redemption;
}

int ShareTable::give_back(std::string_view token, const Grant &grant)
{
    if (token.size() != kShareTokenSize || entries_.contains(index_of(token)))
        return -EEXIST;
    insert(token, grant);
    return 0;
}

int ShareTable::revoke(std::string_view token, ClientId client)
{
    const auto it = find(token);
    if (it == entries_.end() || it->second.grant.sharer != client)
        return -ENOENT;
    erase(it);
    return 0;
}

void ShareTable::forget_client(ClientId client)
{
    purge(client, [](const Grant &) { return true; });
}

std::size_t ShareTable::count_of(ClientId client) const
{
    const auto it = per_client_.find(client);
    return it == per_client_.end() ? 0 : it->second;
}

} // namespace ionsvc
