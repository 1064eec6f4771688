// SPDX-License-Identifier: MIT
#include "cgroups.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace ionsvc::testing {

std::string cgroup2_mount()
{
    // mountinfo: id parent major:minor root mount-point options ... - type source
    std::ifstream mounts("/proc/self/mountinfo");
    for (std::string line; std::getline(mounts, line);) {
        const std::size_t separator = line.find(" - ");
        if (separator == std::string::npos || line.compare(separator + 3, 8, "cgroup2 ") != 0)
            continue;
        std::istringstream fields(line);
        std::string id, parent, device, root, mount_point;
        fields >> id >> parent >> device >> root >> mount_point;
        if (root == "/")
            return mount_point;
    }
    return {};
}

TestCgroup::TestCgroup(const std::string &name)
{
    const std::string mount = cgroup2_mount();
    if (mount.empty()) {
        error_ = "this machine mounts no cgroup v2 hierarchy";
        return;
    }
    path_ = "/" + name;
    make(mount + path_);
}

TestCgroup::TestCgroup(const TestCgroup &parent, const std::string &name)
{
    if (!parent.made()) {
        error_ = parent.error();
        return;
    }
    path_ = parent.path_ + "/" + name;
    make(parent.directory_ + "/" + name);
}

void TestCgroup::make(const std::string &directory)
{
    if (::mkdir(directory.c_str(), 0755) < 0 && errno != EEXIST) {
        error_ = "mkdir " + directory + ": " + std::strerror(errno);
        return;
    }
    directory_ = directory;
}

TestCgroup::~TestCgroup()
{
    if (made())
        ::rmdir(directory_.c_str());
}

int TestCgroup::add(pid_t pid) const
{
    const std::string procs = directory_ + "/cgroup.procs";
    const int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    const std::string text = std::to_string(pid == 0 ? ::getpid() : pid);
    const int result = ::write(fd, text.data(), text.size()) < 0 ? -errno : 0;
    ::close(fd);
    return result;
}

} // namespace ionsvc::testing
