// SPDX-License-Identifier: MIT
// Real cgroup v2 groups for tests: made under the unified hierarchy's
// mount (wherever this machine has it), processes moved in by pid, removed
// again when the test is done.
#pragma once

#include <sys/types.h>

#include <string>

namespace ionsvc::testing {

// Where the cgroup v2 hierarchy is mounted ("/sys/fs/cgroup" under
// systemd, "/sys/fs/cgroup/unified" on a hybrid host); empty if nowhere.
std::string cgroup2_mount();

// A cgroup made for one test: name under the hierarchy's root, or under
// another TestCgroup. Removed (rmdir) on destruction, once the processes
// moved into it have exited.
class TestCgroup
{
public:
    explicit TestCgroup(const std::string &name);
    TestCgroup(const TestCgroup &parent, const std::string &name);
    ~TestCgroup();
    TestCgroup(const TestCgroup &) = delete;
    TestCgroup &operator=(const TestCgroup &) = delete;

    // Whether it was made; why not, if it was not.
    bool made() const { return error_.empty(); }
    const std::string &error() const { return error_; }
    // As /proc/<pid>/cgroup shows it: "/<name>/<child>".
    const std::string &path() const { return path_; }
    // Moves pid (0: the calling process) in: 0, or -errno.
    int add(pid_t pid = 0) const;

private:
    void make(const std::string &directory);

    std::string directory_; // under the mount
    std::string path_;
    std::string error_;
};

} // namespace ionsvc::testing
