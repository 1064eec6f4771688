// SPDX-License-Identifier: MIT
// Config texts that must not parse, and the start of the error each gives.
#pragma once

#include <initializer_list>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "policy/config.h"

namespace ionsvc::testing {

struct ConfigMistake
{
    const char *text;
    const char *error; // "test.conf:<line>:<column>: <what>", or a part of it
};

inline void expect_config_errors(std::initializer_list<ConfigMistake> mistakes)
{
    for (const auto &[text, error] : mistakes) {
        const auto config = parse_config(text, "test.conf");
        ASSERT_FALSE(config) << text;
        EXPECT_THAT(config.error(), ::testing::HasSubstr(error)) << text;
    }
}

} // namespace ionsvc::testing
