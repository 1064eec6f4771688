// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "books/books.h"
#include "policy/config.h"

namespace ionsvc {

// What a client would add to its holdings: count buffers of size bytes in
// one heap.
struct Addition
{
    HeapIndex heap = 0;
    std::string_view heap_name;
    std::uint64_t size = 0;
    std::uint64_t count = 0;
};

// Why adding would take client over a limit of quota: the first limit it
// would pass, with the usage and the limit ("uid 1000 holds 3145728 bytes
// in 3 buffers; 2 more of 1048576 bytes would pass its limit of 4194304
// bytes (quota.uids.1000)"). nullopt if it stays within every limit:
// exactly at a limit is within it.
// client is a record of the books: it leads to its uid's and groups'
// usage.
std::optional<std::string> quota_refusal(const QuotaConfig &quota, const ClientRecord &client,
                                         const Addition &addition);

// One limit that holds for a client, and how much of it is used.
struct LimitInUse
{
    std::string setting; // where it is set: "quota.uid", "quota.uids.1000"
    std::string scope;   // what it counts: "this client", "uid 1000", "group 44"; with " in heap H"
    std::string unit;    // "bytes" or "buffers"
    std::uint64_t used = 0;
    std::uint64_t limit = 0;
};

// Every quota limit that holds for client (over all heaps, then per heap),
// as quota_refusal would check them.
// Every cgroup subtree that a limit of quota names: the books tally those.
std::vector<std::string> cgroups_named(const QuotaConfig &quota);

std::vector<LimitInUse> quota_limits_of(const QuotaConfig &quota, const ClientRecord &client,
                                        const std::vector<std::string> &heap_names);

} // namespace ionsvc
