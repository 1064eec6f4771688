// SPDX-License-Identifier: MIT
// The pieces of ionsvc_systemd_test: the installed files, systemctl and
// journalctl, and commands run as the guest's test users.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "daemon_e2e.h"

namespace ionsvc::vmtest {

// Where the package put ionsvc in the guest, and the package itself (the
// harness passes the paths through the test unit's environment).
struct Installed
{
    std::string ctl;     // ionsvc-ctl
    std::string config;  // ionsvc.conf
    std::string package; // ionsvc_<version>_<arch>.deb, installed before the tests
};
const Installed &installed();

inline constexpr const char *kSocketPath = "/run/ionsvc/ionsvc.sock";
inline constexpr const char *kService = "ionsvc.service";
inline constexpr const char *kSocket = "ionsvc.socket";

// The guest's test users (tests/vm/systemd/image/ionsvc-tests.sysusers):
// alice and bob are in ionsvc-clients (image/run-tests), carol is not.
Persona user(const std::string &name);

// The tools below run by absolute path (the harness does not search PATH);
// the image has merged /usr.
// `systemctl <arguments>`; a failure is in the result.
harness::CommandResult systemctl(std::vector<std::string> arguments);
// `systemctl show --value -p <property> <unit>`, without the newline.
std::string unit_property(const std::string &unit, const std::string &property);

// ionsvc.service's MainPID, 0 if none.
pid_t main_pid();
// Whether ionsvc.service's ActiveState is state.
bool service_is(const std::string &state);
// `ionsvc-ctl <arguments> --json` run as persona (root if none); a failure
// fails the test and gives null.
json ctl_json(std::vector<std::string> arguments, const Persona *persona = nullptr);

// The heaps the daemon serves, by name, as root sees them.
std::vector<std::string> served_heaps();

// argv run as persona (setpriv, with its groups), collected.
harness::CommandResult run_as(const Persona &persona, std::vector<std::string> argv);

// How many lines of ionsvc.service's journal contain text.
std::size_t journal_lines_with(const std::string &text);

// The id of a group, or -1 if there is none.
gid_t group_id(const char *name);

// The uids of every process that runs now.
std::vector<uid_t> process_uids();

} // namespace ionsvc::vmtest
