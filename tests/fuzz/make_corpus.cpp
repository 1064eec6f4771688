// SPDX-License-Identifier: MIT
// Writes request_fuzzer's seed corpus into the folder given: one valid
// conversation per kind of request, framed as fuzz_input.h reads them.
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <ionsvc/protocol.h>

#include "buffer.pb.h"
#include "fuzz_input.h"

namespace {

using namespace ionsvc;

std::string packet(const std::function<void(wire::Request &)> &fill)
{
    wire::Request request;
    fill(request);
    return request.SerializeAsString();
}

std::string hello(std::size_t client)
{
    return fuzz::frame(client, packet([](wire::Request &request) {
                           request.mutable_hello()->set_protocol_version(kProtocolVersion);
                           request.mutable_hello()->set_client_name("seed");
                       }));
}

std::string alloc(std::size_t client, std::uint64_t size, std::uint32_t count, std::uint32_t flags = 0)
{
    return fuzz::frame(client, packet([&](wire::Request &request) {
                           auto &alloc = *request.mutable_alloc();
                           alloc.set_size(size);
                           alloc.set_count(count);
                           alloc.set_flags(flags);
                           alloc.set_name("frame");
                       }));
}

std::string free_ids(std::size_t client, std::vector<std::uint64_t> ids, bool no_reply)
{
    return fuzz::frame(client, packet([&](wire::Request &request) {
                           for (const auto id : ids)
                               request.mutable_free()->add_buffer_ids(id);
                           request.mutable_free()->set_no_reply(no_reply);
                       }));
}

std::string share(std::size_t client, std::uint64_t id, std::uint32_t uid, bool reusable)
{
    return fuzz::frame(client, packet([&](wire::Request &request) {
                           auto &share = *request.mutable_share();
                           share.set_buffer_id(id);
                           share.set_uid(uid);
                           share.set_reusable(reusable);
                           share.set_ttl_ms(60000);
                       }));
}

} // namespace

int main(int argc, char **argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s FOLDER\n", argv[0]);
        return 2;
    }
    const std::string both = hello(0) + hello(1);
    const std::vector<std::pair<std::string, std::string>> seeds = {
        {"hello", hello(0)},
        {"list-heaps", both + fuzz::frame(0, packet([](wire::Request &r) { r.mutable_list_heaps(); }))},
        {"alloc-free", both + alloc(0, 4096, 2) + free_ids(0, {1, 2}, false)},
        {"alloc-batch-populated", both + alloc(1, 65536, 16, wire::ALLOC_FLAG_POPULATED) +
                                      free_ids(1, {3, 4, 5}, true)},
        {"free-first", both + alloc(0, 8192, 1) + fuzz::frame(0, packet([](wire::Request &r) {
                                                                 r.add_free_first(1);
                                                                 r.mutable_alloc()->set_size(4096);
                                                                 r.mutable_alloc()->set_count(1);
                                                             }))},
        {"ion-mask", both + fuzz::frame(0, packet([](wire::Request &r) {
                                            r.mutable_alloc()->set_size(4096);
                                            r.mutable_alloc()->set_count(1);
                                            r.mutable_alloc()->set_ion_heap_id_mask(0x5);
                                        }))},
        {"stats", both + alloc(0, 4096, 1) + fuzz::frame(1, packet([](wire::Request &r) {
                                                          r.mutable_stats()->set_pid(1000);
                                                          r.mutable_stats()->set_view(wire::STATS_VIEW_HEAPS);
                                                      }))},
        {"share-import", both + alloc(0, 4096, 1) + share(0, 1, 1001, false) + free_ids(0, {1}, true)},
        {"share-reusable-revoke", both + alloc(0, 4096, 1) + share(0, 1, 1001, true) +
                                      fuzz::frame(0, packet([](wire::Request &r) {
                                                      r.mutable_revoke()->set_token(std::string(24, 'a'));
                                                  })) +
                                      fuzz::frame(1, packet([](wire::Request &r) {
                                                      r.mutable_import_buffer()->set_token(std::string(24, 'b'));
                                                  }))},
    };
    for (const auto &[name, bytes] : seeds) {
        std::ofstream file(std::string(argv[1]) + "/" + name, std::ios::binary);
        file << bytes;
        if (!file) {
            std::fprintf(stderr, "%s: cannot write %s\n", argv[0], name.c_str());
            return 1;
        }
    }
    return 0;
}
