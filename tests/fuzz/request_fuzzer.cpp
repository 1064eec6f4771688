// SPDX-License-Identifier: MIT
// libFuzzer target for the request border: packet bytes from hostile
// clients through parsing, validation, the Service, the policy and the
// books, on the real memfd backend. An input is a conversation (see
// fuzz_input.h); after it every client disconnects, and then the books
// must be empty and the process must hold exactly the fds it held before:
// anything else is a leak, and the fuzzer stops on it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <google/protobuf/stubs/logging.h>

#include <ionsvc/protocol.h>

#include "backends/allocator.h"
#include "backends/memfd.h"
#include "fuzz_input.h"
#include "policy/config.h"
#include "protocol/service.h"

namespace {

using namespace ionsvc;

// Limits low enough that a short input reaches them.
constexpr const char *kConfig = R"(
[quota]
client = { bytes = "1M", buffers = 8 }
uid = { buffers = 12 }
)";

// What every input shares: the heaps, and the policy of kConfig. Each
// input gets a Service of its own, so that buffer ids start afresh and an
// input means the same whenever it runs.
struct Border
{
    Border() : allocator(memfd_backends())
    {
        // As the daemon does: protobuf's complaints about what it parses
        // are not worth a line each.
        google::protobuf::SetLogHandler([](google::protobuf::LogLevel, const char *, int, const std::string &) {});
        auto parsed = parse_config(kConfig, "fuzz.conf");
        if (!parsed)
            std::abort();
        config = std::move(*parsed);
    }

    static std::vector<std::unique_ptr<Backend>> memfd_backends()
    {
        std::vector<std::unique_ptr<Backend>> backends;
        backends.push_back(make_memfd_backend(real_syscalls()));
        return backends;
    }

    Allocator allocator;
    Config config;
};

// Client number n: uid and pid 1000 + n.
ClientId connect(Service &service, std::size_t n)
{
    const auto id = static_cast<std::uint32_t>(1000 + n);
    return service.connect({static_cast<pid_t>(id), id, id, "fuzz", {}});
}

void fail(const char *what, std::size_t found, std::size_t expected)
{
    std::fprintf(stderr, "request_fuzzer: %s: %zu, expected %zu\n", what, found, expected);
    std::abort();
}


// Open fds but pipes: the sanitizers' runtime opens a pipe pair of its own
// the first time some checks run, and keeps it; the daemon's code never
// makes a pipe, so every fd it could leave behind is counted.
std::size_t open_fds_but_pipes()
{
    std::size_t count = 0;
    for (const auto &entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code error;
        if (!std::filesystem::read_symlink(entry.path(), error).string().starts_with("pipe:"))
            ++count;
    }
    return count;
}

// One conversation on a Service of its own; the books must be empty after.
int run(Border &border, std::span<const std::uint8_t> input)
{
    Service service(border.allocator, ServiceLimits{.max_share_tokens = 4, .max_buffer_size = 1 << 20},
                    real_syscalls());
    service.set_quota(border.config.quota);
    service.set_access(border.config.access);

    // Two clients of different uids, so that sharing crosses users.
    std::vector<ClientContext> clients(fuzz::kClients);
    for (std::size_t i = 0; i < clients.size(); ++i)
        clients[i].id = connect(service, i);

    Response response;
    fuzz::for_each_packet(input, [&](std::size_t client, std::span<const std::byte> packet) {
        response.clear();
        ClientContext &context = clients[client];
        const Disposition disposition = service.handle_packet(context, packet, response);
        // As the server does: the reply goes out (its buffers are the
        // client's then), or, for a packet of odd length that brought
        // buffers, it cannot be sent and they are taken back.
        if (!response.fds.empty() && packet.size() % 2 == 1)
            service.undo_allocation(context, response);
        else
            service.delivered(context, response);
        // A token shared is imported by the other client at once: the
        // fuzzer cannot guess one.
        std::string token = response.reply.has_share() ? response.reply.share().token() : std::string();
        response.clear();
        if (!token.empty()) {
            ClientContext &other = clients[1 - client];
            wire::Request import;
            import.mutable_import_buffer()->set_token(std::move(token));
            const std::string bytes = import.SerializeAsString();
            service.handle_packet(other, {reinterpret_cast<const std::byte *>(bytes.data()), bytes.size()},
                                  response);
            service.delivered(other, response);
            response.clear();
        }
        // A protocol violation ends the connection; the client comes back.
        if (disposition == Disposition::kClose) {
            service.disconnect(context.id);
            context = ClientContext{};
            context.id = connect(service, client);
        }
    });

    for (const ClientContext &client : clients)
        service.disconnect(client.id);
    // memfd buffers leave the books with their clients: nothing may stay.
    if (!service.books().clients().empty())
        fail("clients left in the books", service.books().clients().size(), 0);
    for (HeapIndex heap = 0; heap < border.allocator.heap_count(); ++heap) {
        if (service.books().heap_usage(heap).buffers != 0)
            fail("buffers left in a heap's books", service.books().heap_usage(heap).buffers, 0);
    }
    return 0;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    static Border border;
    static const std::size_t fds_before = open_fds_but_pipes();
    run(border, {data, size});
    if (const std::size_t fds = open_fds_but_pipes(); fds != fds_before) {
        for (const auto &entry : std::filesystem::directory_iterator("/proc/self/fd")) {
            std::error_code error;
            std::fprintf(stderr, "  fd %s -> %s\n", entry.path().filename().c_str(),
                         std::filesystem::read_symlink(entry.path(), error).c_str());
        }
        fail("open fds after the clients left", fds, fds_before);
    }
    return 0;
}
