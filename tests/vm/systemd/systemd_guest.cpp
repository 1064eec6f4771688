// SPDX-License-Identifier: MIT
#include "systemd_guest.h"

#include <grp.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ionsvc::vmtest {

const Installed &installed()
{
    static const Installed paths = [] {
        const char *ctl = std::getenv("IONSVC_INSTALLED_CTL");
        const char *config = std::getenv("IONSVC_INSTALLED_CONFIG");
        const char *package = std::getenv("IONSVC_PACKAGE");
        return Installed{.ctl = ctl != nullptr ? ctl : "",
                         .config = config != nullptr ? config : "",
                         .package = package != nullptr ? package : ""};
    }();
    return paths;
}

Persona user(const std::string &name)
{
    std::optional<Persona> persona = persona_of(name);
    if (!persona) {
        ADD_FAILURE() << "the guest has no user " << name
                      << " (tests/vm/systemd/image/ionsvc-tests.sysusers makes it at boot)";
        return nobody();
    }
    return *persona;
}

harness::CommandResult systemctl(std::vector<std::string> arguments)
{
    arguments.insert(arguments.begin(), {"/usr/bin/systemctl", "--no-pager"});
    return harness::run_command(arguments);
}

std::string unit_property(const std::string &unit, const std::string &property)
{
    std::string value = systemctl({"show", "--value", "-p", property, unit}).out;
    while (!value.empty() && value.back() == '\n')
        value.pop_back();
    return value;
}

pid_t main_pid()
{
    return static_cast<pid_t>(std::stol("0" + unit_property(kService, "MainPID")));
}

bool service_is(const std::string &state)
{
    return unit_property(kService, "ActiveState") == state;
}

json ctl_json(std::vector<std::string> arguments, const Persona *persona)
{
    arguments.insert(arguments.begin(), installed().ctl);
    arguments.push_back("--json");
    const harness::CommandResult result =
        persona != nullptr ? run_as(*persona, arguments) : harness::run_command(arguments);
    if (result.exit_code != 0) {
        ADD_FAILURE() << "ionsvc-ctl exited with " << result.exit_code << ": " << result.err;
        return nullptr;
    }
    json parsed = json::parse(result.out, nullptr, false);
    if (parsed.is_discarded())
        ADD_FAILURE() << "ionsvc-ctl printed no JSON: " << result.out;
    return parsed;
}

std::vector<std::string> served_heaps()
{
    std::vector<std::string> names;
    const json listing = ctl_json({"heaps"});
    if (listing.is_object() && listing.contains("heaps")) {
        for (const json &heap : listing["heaps"])
            names.push_back(heap.value("name", ""));
    }
    return names;
}

harness::CommandResult run_as(const Persona &persona, std::vector<std::string> argv)
{
    argv.insert(argv.begin(), {"/usr/bin/setpriv", "--reuid=" + std::to_string(persona.uid),
                               "--regid=" + std::to_string(persona.gid), "--init-groups", "--"});
    return harness::run_command(argv);
}

std::size_t journal_lines_with(const std::string &text)
{
    const harness::CommandResult journal = harness::run_command(
        {"/usr/bin/journalctl", "--no-pager", "-q", "-o", "cat", "_SYSTEMD_UNIT=" + std::string{kService}});
    std::istringstream lines(journal.out);
    std::size_t count = 0;
    for (std::string line; std::getline(lines, line);)
        count += line.find(text) != std::string::npos;
    return count;
}

gid_t group_id(const char *name)
{
    const group *entry = ::getgrnam(name);
    return entry != nullptr ? entry->gr_gid : static_cast<gid_t>(-1);
}

std::vector<uid_t> process_uids()
{
    std::vector<uid_t> uids;
    std::error_code error;
    for (const auto &entry : std::filesystem::directory_iterator("/proc", error)) {
        const std::string name = entry.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos)
            continue;
        std::ifstream status(entry.path() / "status");
        for (std::string line; std::getline(status, line);) {
            if (line.rfind("Uid:", 0) == 0) {
                uids.push_back(static_cast<uid_t>(std::strtoul(line.c_str() + 4, nullptr, 10)));
                break;
            }
        }
    }
    return uids;
}

} // namespace ionsvc::vmtest
