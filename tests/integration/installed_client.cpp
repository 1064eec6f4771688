// SPDX-License-Identifier: MIT
// A client that install_test.sh builds against what `cmake --install` put in
// a staging directory (<bufclient/bufclient.h> and libbufclient) and nothing
// from the source tree: allocates one buffer from the daemon at argv[1],
// writes it through a mapping, sees itself in the stats, and frees it.
#include <bufclient/bufclient.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace {

int fail(const char *what, const bufclient::Error &error)
{
    std::fprintf(stderr, "installed_client: %s: %s: %s\n", what,
                 std::string(ionsvc::status_name(error.code)).c_str(), error.message.c_str());
    return 1;
}

} // namespace

int main(int argc, char **argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: installed_client SOCKET\n");
        return 2;
    }
    auto client = bufclient::Client::connect({.socket_path = argv[1], .client_name = "installed"});
    if (!client)
        return fail("connect", client.error());
    auto buffers = client->allocate({.size = 4096, .name = "installed"});
    if (!buffers)
        return fail("allocate", buffers.error());
    const bufclient::Buffer &buffer = buffers->front();
    auto mapping = buffer.map();
    if (!mapping)
        return fail("map", mapping.error());
    std::memset(mapping->data(), 0x5a, mapping->size());

    auto stats = client->stats(::getpid());
    if (!stats)
        return fail("stats", stats.error());
    if (stats->clients.size() != 1) {
        std::fprintf(stderr, "installed_client: stats show %zu clients of this pid, not 1\n",
                     stats->clients.size());
        return 1;
    }
    if (auto freed = client->free(buffer); !freed)
        return fail("free", freed.error());
    std::printf("allocated, wrote and freed buffer %llu of %llu bytes from heap '%s'\n",
                static_cast<unsigned long long>(buffer.id()),
                static_cast<unsigned long long>(buffer.size()), buffer.heap().c_str());
    return 0;
}
