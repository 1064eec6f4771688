// SPDX-License-Identifier: MIT
// A mocked ION driver's answers, in the terms of the ION uapi.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernel/uapi/ion.h"

namespace ionsvc::testing {

inline ion_heap_data ion_heap(const char *name, std::uint32_t type, std::uint32_t id)
{
    ion_heap_data data{};
    std::strncpy(data.name, name, sizeof data.name - 1);
    data.type = type;
    data.heap_id = id;
    return data;
}

// ION_IOC_HEAP_QUERY as a 4.12+ driver with heaps answers it.
inline auto answer_heap_query(std::vector<ion_heap_data> heaps)
{
    return [heaps](int, unsigned long, void *arg) {
        auto *query = static_cast<ion_heap_query *>(arg);
        if (query->reserved0 || query->reserved1 || query->reserved2)
            return -EINVAL;
        if (query->heaps == 0) {
            query->cnt = static_cast<std::uint32_t>(heaps.size());
            return 0;
        }
        const auto count = std::min<std::size_t>(query->cnt, heaps.size());
        std::copy_n(heaps.begin(), count, reinterpret_cast<ion_heap_data *>(query->heaps));
        query->cnt = static_cast<std::uint32_t>(count);
        return 0;
    };
}

} // namespace ionsvc::testing
