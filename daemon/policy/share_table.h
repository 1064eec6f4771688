// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include <ionsvc/expected.h>

#include "books/books.h"
#include "syscalls/syscalls.h"

namespace ionsvc {

// The tokens of shared buffers: ION's SHARE/IMPORT, done safely. A token is
// kShareTokenSize random bytes: an 8-byte index that finds its grant and a
// 16-byte (128-bit) secret compared in constant time, so that how long a
// check takes says nothing of how much of a guess was right.
inline constexpr std::size_t kShareTokenSize = 24;

class ShareTable
{
public:
    using Clock = std::chrono::steady_clock;

    // What a token grants: buffer, as held by sharer, to uid (anyone if
    // none) until expires (forever if none), once unless reusable.
    struct Grant
    {
        ClientId sharer = 0;
        BufferId buffer = 0;
        std::optional<uid_t> uid;
        std::optional<Clock::time_point> expires;
        bool reusable = false;
    };

    enum class Verdict {
        kGranted,
        kUnknown,  // no such token: never made, used up, revoked or mistyped
        kExpired,
        kOtherUid, // made for another user
    };

    struct Redemption
    {
        Verdict verdict = Verdict::kUnknown;
        Grant grant;
    };

    // max_per_client: live tokens one client may have.
    ShareTable(Syscalls &syscalls, std::size_t max_per_client);

    // A new token for grant: its bytes; -EAGAIN/-ENOSYS/... if the kernel
    // gives no randomness, -ENOSPC if the sharer has max_per_client tokens.
    Expected<std::string, int> add(const Grant &grant);
    // Checks token for importer uid at now. A granted single-use token is
    // used up; an expired one is dropped.
    Redemption redeem(std::string_view token, uid_t importer, Clock::time_point now);
    // Makes a token that redeem() used up work again, for the same grant:
    // the import it served was undone. 0, or -EEXIST if the token lives.
    int give_back(std::string_view token, const Grant &grant);
    // The verdict redeem() would give, changing nothing: for checks that
    // must pass before a token is used up.
    Redemption inspect(std::string_view token, uid_t importer, Clock::time_point now);
    // Drops a token the client made: 0, or -ENOENT (no such token, or made
    // by someone else: one does not learn of another's tokens).
    int revoke(std::string_view token, ClientId client);
    // Drops every token client made: it disconnected.
    void forget_client(ClientId client);
    // Drops client's tokens that is_dead says lead nowhere any more (their
    // buffer freed, or expired at now). Returns how many.
    template<typename IsDead>
    std::size_t purge(ClientId client, IsDead is_dead);

    // Calls f(token, grant) for every live token, to keep them across a
    // restart; give_back() enters them again.
    template<typename F>
    void for_each(F f) const;

    std::size_t size() const { return entries_.size(); }
    std::size_t count_of(ClientId client) const;

private:
    struct Entry
    {
        Grant grant;
        std::array<std::uint8_t, 16> secret;
    };

    // Enters token (an index not in use and its secret) for grant.
    void insert(std::string_view token, const Grant &grant);
    // The entry token leads to if its secret matches, else end().
    std::unordered_map<std::uint64_t, Entry>::iterator find(std::string_view token);
    void erase(std::unordered_map<std::uint64_t, Entry>::iterator it);

    Syscalls &syscalls_;
    std::size_t max_per_client_;
    std::unordered_map<std::uint64_t, Entry> entries_; // by index
    std::unordered_map<ClientId, std::size_t> per_client_;
};

template<typename IsDead>
std::size_t ShareTable::purge(ClientId client, IsDead is_dead)
{
    std::size_t purged = 0;
    for (auto it = entries_.begin(); it != entries_.end();) {
        const auto next = std::next(it);
        if (it->second.grant.sharer == client && is_dead(it->second.grant)) {
            erase(it);
            ++purged;
        }
        it = next;
    }
    return purged;
}

template<typename F>
void ShareTable::for_each(F f) const
{
    std::string token(kShareTokenSize, '\0');
    for (const auto &[index, entry] : entries_) {
        std::memcpy(token.data(), &index, sizeof index);
        std::memcpy(token.data() + sizeof index, entry.secret.data(), entry.secret.size());
        f(std::string_view(token), entry.grant);
    }
}

// Whether a and b hold the same bytes, in a time that depends only on
// their length.
bool equal_in_constant_time(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b);

} // namespace ionsvc
