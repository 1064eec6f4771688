// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

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
std::optional<std::string> quota_refusal(const QuotaConfig &quota, const Books &books,
                                         const ClientRecord &client, const Addition &addition);

} // namespace ionsvc
