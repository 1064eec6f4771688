// SPDX-License-Identifier: MIT
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <ionsvc/expected.h>

#include "heap_registry.h"

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
struct Config
{
    std::vector<AliasRule> aliases = default_alias_rules();
};

// Parses the text of a config file; source names it in error messages,
// which read "<source>:<line>:<column>: <what is wrong>".
Expected<Config, std::string> parse_config(std::string_view text, std::string_view source);

// Reads and parses path. A missing file is the built-in configuration when
// missing_is_default (the default path), an error otherwise.
Expected<Config, std::string> load_config(const std::string &path, bool missing_is_default);

} // namespace ionsvc
