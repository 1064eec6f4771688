// SPDX-License-Identifier: MIT
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <ionsvc/expected.h>

#include "backends/heap_registry.h"
#include "books/pool_config.h"

namespace ionsvc {

inline constexpr std::string_view kDefaultConfigPath = "/etc/ionsvc/ionsvc.conf";

// ionsvcd's configuration file (TOML):
//
//   [aliases]
//   system = ["ion-type:system", "dma-heap:system", "udmabuf", "memfd"]
//   camera = ["ion:ion_carveout_heap", "dma-heap:linux,cma"]
//
// An alias given here replaces the built-in one of that name; the others
// stay. Unknown tables and keys are errors, so that a typo does not pass
// for a setting.
// A limit on what some set of clients may hold at once; either part may be
// absent (no limit).
struct Limit
{
    std::optional<std::uint64_t> bytes;
    std::optional<std::uint64_t> buffers;
    // Where the config file set it, for messages: "quota.uids.1000".
    std::string origin;

    bool limits_anything() const { return bytes || buffers; }
};

// The limits of one scope: every heap together, or one heap.
struct LimitSet
{
    Limit client;                    // each connection
    Limit uid;                       // each uid, all its connections together
    std::map<uid_t, Limit> uids;     // one uid, instead of uid
    std::map<gid_t, Limit> groups;   // the connections in that group (primary or supplementary), together
    // The connections in that cgroup v2 subtree (a systemd unit or slice, a
    // container), together, by path ("/system.slice/camera.service").
    std::map<std::string, Limit, std::less<>> cgroups;
};

//   [quota]
//   imports_count = true                  # imports count against the importer
//   client = { bytes = "256M", buffers = 1024 }
//   uid = { bytes = "1G" }
//   [quota.uids]
//   1000 = { bytes = "4G" }
//   [quota.groups]
//   video = { bytes = "2G" }              # a group name or number
//   [quota.cgroups]
//   "/system.slice/camera.service" = { bytes = "512M" }   # it and every cgroup below it
//   [quota.heaps."ion:ion_carveout_heap"] # the same keys, within one heap
//   uid = { bytes = "16M" }
//
// Sizes are integers or strings with a K, M, G or T suffix (powers of 1024).
struct QuotaConfig
{
    LimitSet all_heaps;
    std::map<std::string, LimitSet, std::less<>> heaps; // by heap name (not alias)
    bool imports_count = true;
    // Whether the file set quota.uid; if not, the built-in one applies.
    bool uid_set = false;
};

// What the built-in limits are made from: the daemon's fd limit and the
// machine's memory.
struct MachineLimits
{
    std::uint64_t fd_limit = 0;     // RLIMIT_NOFILE, soft
    std::uint64_t memory_bytes = 0; // physical memory
};

// quota.uid when the file does not set it: a quarter of the daemon's fds
// (one per live buffer; at most 16384 buffers) and a quarter of the
// machine's memory (a figure that is 0, unknown, limits nothing). One user
// then cannot take the fds or the memory that every other user needs, and
// a machine is protected out of the box.
Limit builtin_uid_quota(const MachineLimits &machine);
// Puts builtin_uid_quota in quota.uid unless the file set it.
void apply_builtin_quota(QuotaConfig &quota, const MachineLimits &machine);

// Who may use a heap: the uids listed and the members of the groups
// listed (primary or supplementary). Root always may.
struct HeapAccess
{
    std::vector<uid_t> uids;
    std::vector<gid_t> groups;
    std::string origin; // "access.heaps.ion:ion_carveout_heap"
};

//   [access]
//   admin_group = "ionsvc-admin"   # sees every client in stats (root always)
//   [access.heaps."ion:ion_carveout_heap"]
//   uids = [1000]
//   groups = ["camera"]            # names or numbers
//
// A heap without an entry is open to every client; stats show a client
// that is not an admin only the clients of its own uid.
struct AccessConfig
{
    std::optional<gid_t> admin_group;
    std::map<std::string, HeapAccess, std::less<>> heaps; // by heap name (not alias)
};

//   [connections]
//   per_uid = 64             # connections one uid may have open at once
//   total = 1024             # every client's connections together
//   hello_timeout_ms = 5000  # a connection that has not said Hello by then is closed
//   unread_buffers = 256     # buffers sent in replies a connection has not read yet
//
// Root and the admin_group are held to none of the first three: an admin
// can always connect and look, however many connections others hold.
// unread_buffers holds for everyone: past it, the daemon reads no more
// requests from that connection until the client has read its replies.
struct ConnectionLimits
{
    std::uint32_t per_uid = 64;
    std::uint32_t total = 1024;
    std::chrono::milliseconds hello_timeout{5000};
    std::uint32_t unread_buffers = 256;
};

struct Config
{
    std::vector<AliasRule> aliases = default_alias_rules();
    QuotaConfig quota;
    AccessConfig access;
    PoolConfig pool;
    ConnectionLimits connections;
};

// Parses the text of a config file; source names it in error messages,
// which read "<source>:<line>:<column>: <what is wrong>".
Expected<Config, std::string> parse_config(std::string_view text, std::string_view source);

// A group given by number, or by name as the group database knows it.
std::optional<gid_t> find_group(std::string_view name_or_number);

// Reads and parses path. A missing file is the built-in configuration when
// missing_is_default (the default path), an error otherwise.
Expected<Config, std::string> load_config(const std::string &path, bool missing_is_default);

} // namespace ionsvc
