// SPDX-License-Identifier: MIT
// The protocol border, driven packet by packet without sockets.
#include <sys/stat.h>

#include <cstring>
#include <filesystem>

#include <gtest/gtest.h>

#include <ionsvc/protocol.h>

#include "fd_count.h"
#include "harness.h"
#include "backends/memfd.h"
#include "fakes/mock_syscalls.h"
#include "protocol/service.h"
#include "books/warm_pool.h"

namespace ionsvc {
namespace {

using ::testing::_;
using ::testing::HasSubstr;
using ::testing::NiceMock;
using ::testing::Return;

constexpr std::uint64_t kMaxBufferSize = 16 << 20;

std::vector<std::unique_ptr<Backend>> memfd_only(Syscalls &syscalls)
{
    std::vector<std::unique_ptr<Backend>> backends;
    backends.push_back(make_memfd_backend(syscalls));
    return backends;
}

class ServiceTest : public ::testing::Test
{
protected:
    ServiceTest() : allocator_(memfd_only(syscalls_)), service_(allocator_, ServiceLimits{.max_buffer_size = kMaxBufferSize}, syscalls_)
    {
        client_.id = service_.connect({1234, 1000, 1000, "camera"});
    }

    Response send(const std::string &packet, Disposition expected = Disposition::kKeepOpen)
    {
        Response response;
        const Disposition disposition = service_.handle_packet(
            client_, {reinterpret_cast<const std::byte *>(packet.data()), packet.size()}, response);
        EXPECT_EQ(disposition, expected);
        return response;
    }

    Response send(const wire::Request &request) { return send(request.SerializeAsString()); }

    Response hello(std::uint32_t version = kProtocolVersion, const std::string &name = "preview")
    {
        wire::Request request;
        request.mutable_hello()->set_protocol_version(version);
        request.mutable_hello()->set_client_name(name);
        return send(request);
    }

    Response alloc(std::uint64_t size, std::uint32_t count = 1, const std::string &heap = "",
                   std::uint32_t flags = 0)
    {
        wire::Request request;
        auto &alloc = *request.mutable_alloc();
        alloc.set_size(size);
        alloc.set_count(count);
        alloc.set_heap(heap);
        alloc.set_flags(flags);
        alloc.set_name("frame");
        return send(request);
    }

    Response free(std::initializer_list<std::uint64_t> ids)
    {
        wire::Request request;
        for (const auto id : ids)
            request.mutable_free()->add_buffer_ids(id);
        return send(request);
    }

    // A second client, pid 77 "display" of the same uid, allocates one
    // buffer of size: the reply's status.
    wire::StatusCode display_allocates(std::uint64_t size)
    {
        ClientContext display{service_.connect({77, 1000, 1000, "display"}), true};
        wire::Request request;
        request.mutable_alloc()->set_size(size);
        request.mutable_alloc()->set_count(1);
        Response response;
        const std::string packet = request.SerializeAsString();
        service_.handle_packet(display, {reinterpret_cast<const std::byte *>(packet.data()), packet.size()},
                               response);
        return response.reply.status();
    }

    const Usage &memfd_usage() { return service_.books().heap_usage(0); }

    // The real kernel unless a test injects a fault.
    NiceMock<testing::MockSyscalls> syscalls_;
    Allocator allocator_;
    Service service_;
    ClientContext client_;
};

TEST_F(ServiceTest, HelloAnswersWithTheVersionAndTheLimits)
{
    const Response response = hello();
    ASSERT_EQ(response.reply.status(), wire::OK) << response.reply.message();
    EXPECT_EQ(response.reply.hello().protocol_version(), kProtocolVersion);
    EXPECT_EQ(response.reply.hello().client_id(), client_.id);
    EXPECT_EQ(response.reply.hello().limits().max_buffer_size(), kMaxBufferSize);
    EXPECT_EQ(response.reply.hello().limits().max_batch_count(), kMaxBatchCount);
    EXPECT_EQ(service_.books().client(client_.id)->name, "preview");
}

TEST_F(ServiceTest, AnotherProtocolVersionIsUnsupported)
{
    const Response response = hello(kProtocolVersion + 1);
    EXPECT_EQ(response.reply.status(), wire::UNSUPPORTED_VERSION);
    EXPECT_THAT(response.reply.message(), HasSubstr("protocol version 2"));
    EXPECT_EQ(alloc(4096).reply.status(), wire::INVALID_ARGUMENT);
}

TEST_F(ServiceTest, ASecondHelloIsRefusedAndChangesNothing)
{
    ASSERT_EQ(hello().reply.status(), wire::OK);
    for (const std::uint32_t version : {kProtocolVersion, kProtocolVersion + 1}) {
        const Response again = hello(version, "renamed");
        EXPECT_EQ(again.reply.status(), wire::INVALID_ARGUMENT);
        EXPECT_THAT(again.reply.message(), HasSubstr("Hello was said already"));
        EXPECT_EQ(service_.books().client(client_.id)->name, "preview");
        EXPECT_EQ(alloc(4096).reply.status(), wire::OK) << "still greeted after a Hello of version " << version;
    }
}

TEST_F(ServiceTest, AHelloWithTheRightVersionAfterAWrongOneGreets)
{
    ASSERT_EQ(hello(kProtocolVersion + 1).reply.status(), wire::UNSUPPORTED_VERSION);
    ASSERT_EQ(hello().reply.status(), wire::OK);
    EXPECT_EQ(alloc(4096).reply.status(), wire::OK);
}

TEST_F(ServiceTest, RequestsBeforeHelloAreRefused)
{
    const Response response = alloc(4096);
    EXPECT_EQ(response.reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_THAT(response.reply.message(), HasSubstr("Hello"));
    EXPECT_EQ(memfd_usage().buffers, 0u);
}

TEST_F(ServiceTest, AnEmptyPacketIsAnInvalidArgumentAndTheConnectionStays)
{
    const Response response = send(std::string{});
    EXPECT_EQ(response.reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_THAT(response.reply.message(), HasSubstr("empty packet"));
}

TEST_F(ServiceTest, AMalformedPacketClosesTheConnection)
{
    const Response response = send(std::string("\xff\xff\xff", 3), Disposition::kClose);
    EXPECT_EQ(response.reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_THAT(response.reply.message(), HasSubstr("malformed"));
}

TEST_F(ServiceTest, ARequestOfAnUnknownKindIsNamedAsSuch)
{
    hello();
    // Field 15, varint 1: a request type from some future protocol.
    const Response response = send(std::string("\x78\x01", 2));
    EXPECT_EQ(response.reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_THAT(response.reply.message(), HasSubstr("unknown request"));
}

TEST_F(ServiceTest, AllocationPageAlignsAndLendsTheFdOfEachBuffer)
{
    hello();
    const Response response = alloc(5000, 3);
    ASSERT_EQ(response.reply.status(), wire::OK) << response.reply.message();
    ASSERT_EQ(response.reply.alloc().buffers_size(), 3);
    ASSERT_EQ(response.fds.size(), 3u);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(response.reply.alloc().buffers(i).size(), 8192u);
        EXPECT_EQ(response.reply.alloc().buffers(i).heap(), "memfd");
        struct stat status{};
        ASSERT_EQ(::fstat(response.fds[static_cast<std::size_t>(i)], &status), 0);
        EXPECT_EQ(status.st_size, 8192);
    }
    EXPECT_EQ(memfd_usage().bytes, 3u * 8192u);
    EXPECT_EQ(memfd_usage().buffers, 3u);
}

TEST_F(ServiceTest, AnUnnamedBufferIsNamedAfterItsOwner)
{
    hello();
    wire::Request request;
    request.mutable_alloc()->set_size(4096);
    request.mutable_alloc()->set_count(1);
    const Response response = send(request);
    ASSERT_EQ(response.fds.size(), 1u);
    const auto target = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(response.fds[0]));
    EXPECT_EQ(target.string().rfind("/memfd:camera:1234", 0), 0u) << target;
}

TEST_F(ServiceTest, InvalidAllocationsNameTheirProblemAndChangeNothing)
{
    hello();
    struct Case
    {
        std::uint64_t size;
        std::uint32_t count;
        std::string heap;
        std::uint32_t flags;
        wire::StatusCode status;
        std::string message;
    };
    const Case cases[] = {
        {0, 1, "", 0, wire::INVALID_ARGUMENT, "size must be greater than zero"},
        {kMaxBufferSize + 1, 1, "", 0, wire::INVALID_ARGUMENT, "exceeds the maximum buffer size"},
        {1ull << 63, 1, "", 0, wire::INVALID_ARGUMENT, "exceeds the maximum buffer size"},
        {UINT64_MAX, 1, "", 0, wire::INVALID_ARGUMENT, "exceeds the maximum buffer size"},
        {4096, 0, "", 0, wire::INVALID_ARGUMENT, "count must be at least 1"},
        {4096, kMaxBatchCount + 1, "", 0, wire::INVALID_ARGUMENT, "batch limit"},
        {4096, 1, "carveout", 0, wire::NO_SUCH_HEAP, "no heap named 'carveout'; this daemon serves: memfd"},
        {4096, 1, "", 0x10, wire::INVALID_ARGUMENT, "unknown flags 0x10"},
    };
    for (const Case &c : cases) {
        const Response response = alloc(c.size, c.count, c.heap, c.flags);
        EXPECT_EQ(response.reply.status(), c.status) << c.message;
        EXPECT_THAT(response.reply.message(), HasSubstr(c.message));
        EXPECT_TRUE(response.fds.empty());
    }
    EXPECT_EQ(memfd_usage().buffers, 0u);
}

TEST_F(ServiceTest, IonFlagsAreAccepted)
{
    hello();
    EXPECT_EQ(alloc(4096, 1, "memfd", wire::ALLOC_FLAG_CACHED | wire::ALLOC_FLAG_CACHED_NEEDS_SYNC)
                  .reply.status(),
              wire::OK);
}

TEST_F(ServiceTest, APopulatedAllocationIsBackedBeforeTheReply)
{
    hello();
    constexpr std::uint64_t kSize = 1 << 20;
    const Response plain = alloc(kSize);
    const Response populated = alloc(kSize, 1, "", wire::ALLOC_FLAG_POPULATED);
    ASSERT_EQ(populated.reply.status(), wire::OK) << populated.reply.message();
    ASSERT_EQ(plain.reply.status(), wire::OK) << plain.reply.message();
    struct stat status{};
    // st_blocks: 512-byte units of the pages a file has.
    ASSERT_EQ(::fstat(populated.fds.at(0), &status), 0);
    EXPECT_GE(static_cast<std::uint64_t>(status.st_blocks) * 512, kSize);
    ASSERT_EQ(::fstat(plain.fds.at(0), &status), 0);
    EXPECT_EQ(status.st_blocks, 0);
    EXPECT_FALSE(populated.reply.alloc().buffers(0).from_pool());
}

TEST_F(ServiceTest, APopulateThatFailsIsOutOfMemoryAndLeavesNothingBehind)
{
    hello();
    const std::size_t fds_before = test_support::open_fd_count();
    EXPECT_CALL(syscalls_, fallocate(_, _)).WillOnce(Return(0)).WillOnce(Return(-ENOSPC));
    const Response response = alloc(1 << 20, 2, "", wire::ALLOC_FLAG_POPULATED);
    EXPECT_EQ(response.reply.status(), wire::OUT_OF_MEMORY);
    EXPECT_THAT(response.reply.message(), HasSubstr("allocating buffer 2 of 2"));
    EXPECT_THAT(response.reply.message(), HasSubstr(std::strerror(ENOSPC)));
    EXPECT_TRUE(response.fds.empty());
    EXPECT_EQ(memfd_usage().buffers, 0u);
    EXPECT_EQ(test_support::open_fd_count(), fds_before);
}

TEST_F(ServiceTest, AnAllocationOfAPooledSizeIsHandedOutOfTheWarmPoolAndSaysSo)
{
    constexpr std::uint64_t kSize = 1 << 20;
    WarmPool pool(allocator_, syscalls_);
    service_.set_pool(&pool);
    PoolConfig config;
    config.min_available = 0;
    config.classes.push_back({"memfd", kSize, 2, "pool.heaps.memfd.1M"});
    pool.configure(config);
    ASSERT_TRUE(testing::eventually([&] { return pool.level(0).buffers == 2; }));

    hello();
    wire::Request heaps;
    heaps.mutable_list_heaps();
    const Response listed = send(heaps);
    EXPECT_EQ(listed.reply.list_heaps().heaps(0).pool_buffers(), 2u);
    EXPECT_EQ(listed.reply.list_heaps().heaps(0).pool_bytes(), 2 * kSize);
    EXPECT_EQ(listed.reply.list_heaps().heaps(0).live_bytes(), 0u) << "pool memory is charged to nobody";

    const Response pooled = alloc(kSize, 2);
    ASSERT_EQ(pooled.reply.status(), wire::OK) << pooled.reply.message();
    EXPECT_TRUE(pooled.reply.alloc().buffers(0).from_pool());
    EXPECT_TRUE(pooled.reply.alloc().buffers(1).from_pool());
    EXPECT_EQ(memfd_usage().bytes, 2 * kSize) << "handed out, they are the client's";

    // Pool buffers carry no cache flags: such a request is served directly.
    const Response cached = alloc(kSize, 1, "", wire::ALLOC_FLAG_CACHED);
    ASSERT_EQ(cached.reply.status(), wire::OK);
    EXPECT_FALSE(cached.reply.alloc().buffers(0).from_pool());
    const Response other_size = alloc(2 * kSize);
    EXPECT_FALSE(other_size.reply.alloc().buffers(0).from_pool());
    service_.set_pool(nullptr);
}

TEST_F(ServiceTest, FreeTakesTheBuffersOutOfTheBooks)
{
    hello();
    const Response allocated = alloc(4096, 2);
    const auto first = allocated.reply.alloc().buffers(0).id();
    const auto second = allocated.reply.alloc().buffers(1).id();
    const Response response = free({first, second});
    ASSERT_EQ(response.reply.status(), wire::OK) << response.reply.message();
    EXPECT_EQ(response.reply.free().freed(), 2u);
    EXPECT_EQ(memfd_usage().buffers, 0u);
}

TEST_F(ServiceTest, FreeOfAnIdTheClientDoesNotHoldFreesNothing)
{
    hello();
    const auto held = alloc(4096).reply.alloc().buffers(0).id();
    const Response response = free({held, held + 1000});
    EXPECT_EQ(response.reply.status(), wire::NOT_FOUND);
    EXPECT_THAT(response.reply.message(), HasSubstr("not held by this client"));
    EXPECT_EQ(memfd_usage().buffers, 1u);
}

TEST_F(ServiceTest, FreeOfAnotherClientsBufferIsNotFound)
{
    hello();
    ClientContext other{service_.connect({99, 1001, 1001, "intruder"}), true};
    const auto victim = alloc(4096).reply.alloc().buffers(0).id();

    wire::Request request;
    request.mutable_free()->add_buffer_ids(victim);
    Response response;
    const std::string packet = request.SerializeAsString();
    service_.handle_packet(other, {reinterpret_cast<const std::byte *>(packet.data()), packet.size()},
                           response);
    EXPECT_EQ(response.reply.status(), wire::NOT_FOUND);
    EXPECT_EQ(memfd_usage().buffers, 1u);
}

TEST_F(ServiceTest, AFreeWithoutReplyFreesWhatTheClientHoldsAndAnswersNothing)
{
    hello();
    const Response allocated = alloc(4096, 2);
    const auto held = allocated.reply.alloc().buffers(0).id();
    wire::Request request;
    request.mutable_free()->add_buffer_ids(held);
    request.mutable_free()->add_buffer_ids(held + 1000); // not held: ignored
    request.mutable_free()->set_no_reply(true);
    const Response response = send(request);
    EXPECT_TRUE(response.silent);
    EXPECT_EQ(memfd_usage().buffers, 1u);
    EXPECT_FALSE(service_.books().holds(client_.id, held));
}

TEST_F(ServiceTest, FreeFirstFreesWhatTheClientHoldsBeforeTheRequestItRidesOn)
{
    hello();
    service_.set_quota([] {
        QuotaConfig quota;
        quota.all_heaps.client.buffers = 2;
        return quota;
    }());
    const Response allocated = alloc(4096, 2);
    ASSERT_EQ(allocated.reply.status(), wire::OK);
    const auto first = allocated.reply.alloc().buffers(0).id();
    EXPECT_EQ(alloc(4096).reply.status(), wire::QUOTA_EXCEEDED);

    // Freed first, the buffer makes room for the allocation it rides on.
    wire::Request request;
    request.mutable_alloc()->set_size(4096);
    request.mutable_alloc()->set_count(1);
    request.add_free_first(first);
    request.add_free_first(first + 1000); // not held: skipped
    const Response response = send(request);
    ASSERT_EQ(response.reply.status(), wire::OK) << response.reply.message();
    EXPECT_FALSE(service_.books().holds(client_.id, first));
    EXPECT_EQ(memfd_usage().buffers, 2u);
}

TEST_F(ServiceTest, FreeFirstOverTheFreeLimitIsInvalidAndFreesNothing)
{
    hello();
    const Response allocated = alloc(4096);
    wire::Request request;
    request.mutable_list_heaps();
    for (std::uint32_t i = 0; i <= kMaxFreeIds; ++i)
        request.add_free_first(allocated.reply.alloc().buffers(0).id());
    const Response response = send(request);
    EXPECT_EQ(response.reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_THAT(response.reply.message(), HasSubstr("free_first lists 1025 ids, more than the limit of 1024"));
    EXPECT_EQ(memfd_usage().buffers, 1u);
}

TEST_F(ServiceTest, FreeWithNoIdsOrTheSameIdTwiceIsInvalid)
{
    hello();
    const auto id = alloc(4096).reply.alloc().buffers(0).id();
    EXPECT_EQ(free({}).reply.status(), wire::INVALID_ARGUMENT);
    const Response twice = free({id, id});
    EXPECT_EQ(twice.reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_THAT(twice.reply.message(), HasSubstr("more than once"));
    EXPECT_EQ(memfd_usage().buffers, 1u);
}

TEST_F(ServiceTest, ADuplicateAmongManyIdsIsFoundToo)
{
    hello();
    wire::Request request;
    for (std::uint64_t id = 1; id <= 40; ++id)
        request.mutable_free()->add_buffer_ids(id);
    request.mutable_free()->add_buffer_ids(33);
    const Response response = send(request);
    EXPECT_EQ(response.reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_THAT(response.reply.message(), HasSubstr("buffer 33 is listed more than once"));
}

TEST_F(ServiceTest, AResponseUsedAgainCarriesNothingOfTheReplyBefore)
{
    // As the server does: one Response per client, cleared per packet.
    Response response;
    const auto handle = [&](const wire::Request &request) {
        response.clear();
        const std::string packet = request.SerializeAsString();
        service_.handle_packet(client_, {reinterpret_cast<const std::byte *>(packet.data()), packet.size()},
                               response);
    };
    hello();
    wire::Request two;
    two.mutable_alloc()->set_size(8192);
    two.mutable_alloc()->set_count(2);
    handle(two);
    ASSERT_EQ(response.reply.alloc().buffers_size(), 2);
    service_.delivered(client_, response);

    wire::Request too_large;
    too_large.mutable_alloc()->set_size(kMaxBufferSize + 1);
    too_large.mutable_alloc()->set_count(1);
    handle(too_large);
    EXPECT_EQ(response.reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_FALSE(response.reply.has_alloc());

    wire::Request one;
    one.mutable_alloc()->set_size(4096);
    one.mutable_alloc()->set_count(1);
    handle(one);
    ASSERT_EQ(response.reply.status(), wire::OK) << response.reply.message();
    ASSERT_EQ(response.reply.alloc().buffers_size(), 1);
    EXPECT_EQ(response.reply.alloc().buffers(0).size(), 4096u);
    EXPECT_EQ(response.reply.alloc().buffers(0).heap(), "memfd");
    EXPECT_EQ(response.fds.size(), 1u);
    service_.delivered(client_, response);
    EXPECT_EQ(memfd_usage().buffers, 3u);
}

TEST_F(ServiceTest, RequestAfterRequestAndTheLargestOneAreEachReadWhole)
{
    // Far more requests, and a larger one, than the request arena's block
    // holds: it starts over many times, and once grows past it.
    hello();
    std::uint64_t previous = 0;
    for (int i = 0; i < 2000; ++i) {
        wire::Request request;
        request.mutable_alloc()->set_size(4096);
        request.mutable_alloc()->set_count(1);
        request.mutable_alloc()->set_name(std::string(200, 'n'));
        if (previous)
            request.add_free_first(previous);
        const Response response = send(request);
        ASSERT_EQ(response.reply.status(), wire::OK) << i << ": " << response.reply.message();
        service_.delivered(client_, response);
        previous = response.reply.alloc().buffers(0).id();
    }
    EXPECT_EQ(memfd_usage().buffers, 1u);

    wire::Request largest;
    largest.mutable_list_heaps();
    for (std::uint64_t id = 1; id <= kMaxFreeIds; ++id)
        largest.add_free_first(previous + id); // none held: freed silently
    largest.set_free_first(0, previous);
    ASSERT_EQ(send(largest).reply.status(), wire::OK);
    EXPECT_EQ(memfd_usage().buffers, 0u);
    EXPECT_EQ(alloc(4096).reply.status(), wire::OK);
    EXPECT_EQ(memfd_usage().buffers, 1u);
}

TEST_F(ServiceTest, StatsNarrowedToAPidCountOnlyThatPid)
{
    hello();
    alloc(4096, 2);
    // The same uid as the asking client: others' clients it would not see.
    ASSERT_EQ(display_allocates(65536), wire::OK);

    wire::Request request;
    request.mutable_stats()->set_pid(77);
    const Response response = send(request);
    ASSERT_EQ(response.reply.status(), wire::OK);
    const auto &stats = response.reply.stats();
    ASSERT_EQ(stats.clients_size(), 1);
    EXPECT_EQ(stats.clients(0).pid(), 77u);
    EXPECT_EQ(stats.clients(0).comm(), "display");
    ASSERT_EQ(stats.clients(0).heaps_size(), 1);
    EXPECT_EQ(stats.clients(0).heaps(0).bytes(), 65536u);
    ASSERT_EQ(stats.heaps_size(), 1);
    EXPECT_EQ(stats.heaps(0).total_bytes(), 65536u);
    EXPECT_EQ(stats.heaps(0).total_buffers(), 1u);

    request.mutable_stats()->clear_pid();
    const Response everyone = send(request);
    EXPECT_EQ(everyone.reply.stats().clients_size(), 2);
    EXPECT_EQ(everyone.reply.stats().heaps(0).total_bytes(), 65536u + 2 * 4096u);
}

TEST_F(ServiceTest, ListHeapsShowsBackendTypeAndLiveUsage)
{
    hello();
    alloc(4096, 3);
    wire::Request request;
    request.mutable_list_heaps();
    const Response response = send(request);
    ASSERT_EQ(response.reply.list_heaps().heaps_size(), 1);
    const auto &heap = response.reply.list_heaps().heaps(0);
    EXPECT_EQ(heap.name(), "memfd");
    EXPECT_EQ(heap.backend(), "memfd");
    EXPECT_EQ(heap.type(), "system");
    EXPECT_EQ(heap.live_buffers(), 3u);
    EXPECT_EQ(heap.live_bytes(), 3u * 4096u);
}

TEST_F(ServiceTest, DisconnectDropsEveryBufferOfTheClient)
{
    hello();
    alloc(4096, 4);
    service_.disconnect(client_.id);
    EXPECT_EQ(memfd_usage().buffers, 0u);
    EXPECT_EQ(memfd_usage().bytes, 0u);
    EXPECT_EQ(service_.books().clients().size(), 0u);
}

wire::Request buffers_request(std::uint64_t after_id = 0, const std::string &heap = "")
{
    wire::Request request;
    request.mutable_buffers()->set_after_id(after_id);
    request.mutable_buffers()->set_heap(heap);
    return request;
}

TEST_F(ServiceTest, BuffersComeAPageAtATimeInIdOrderUntilNoneIsLeft)
{
    hello();
    for (int batch = 0; batch < 5; ++batch)
        ASSERT_EQ(alloc(4096, 64).reply.status(), wire::OK);

    std::vector<std::uint64_t> ids;
    std::uint64_t after = 0;
    int pages = 0;
    for (bool more = true; more; ++pages) {
        const Response response = send(buffers_request(after));
        ASSERT_EQ(response.reply.status(), wire::OK) << response.reply.message();
        const auto &page = response.reply.buffers();
        ASSERT_GT(page.buffers_size(), 0);
        for (const auto &buffer : page.buffers())
            ids.push_back(buffer.id());
        after = ids.back();
        more = page.more();
    }
    EXPECT_EQ(pages, 2) << "320 buffers, 256 to a page";
    ASSERT_EQ(ids.size(), 320u);
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
    EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end()) << "a buffer listed twice";
}

TEST_F(ServiceTest, ABufferIsListedWithTheKernelsNameAndInodeAndItsAllocator)
{
    hello(kProtocolVersion, "preview");
    const Response allocated = alloc(8192);
    ASSERT_EQ(allocated.reply.status(), wire::OK);
    struct stat status{};
    ASSERT_EQ(::fstat(allocated.fds[0], &status), 0);

    const Response response = send(buffers_request());
    ASSERT_EQ(response.reply.buffers().buffers_size(), 1);
    const wire::BufferEntry &buffer = response.reply.buffers().buffers(0);
    EXPECT_EQ(buffer.name(), "frame") << "memfd_create's name, read back from /proc/self/fd";
    EXPECT_EQ(buffer.inode(), status.st_ino);
    EXPECT_EQ(buffer.heap(), "memfd");
    EXPECT_EQ(buffer.size(), 8192u);
    EXPECT_EQ(buffer.allocated_by().pid(), 1234u);
    EXPECT_EQ(buffer.allocated_by().uid(), 1000u);
    EXPECT_EQ(buffer.allocated_by().comm(), "camera");
    EXPECT_EQ(buffer.allocated_by().name(), "preview");
    EXPECT_TRUE(buffer.allocator_connected());
    ASSERT_EQ(buffer.holders_size(), 1);
    EXPECT_EQ(buffer.holders(0).client_id(), client_.id);
    EXPECT_FALSE(buffer.from_pool());
    EXPECT_FALSE(buffer.has_orphan_of());
}

TEST_F(ServiceTest, BuffersOfAHeapOrAliasListThatHeapAndAnUnknownOneIsNamed)
{
    hello();
    alloc(4096, 2);
    EXPECT_EQ(send(buffers_request(0, "system")).reply.buffers().buffers_size(), 2) << "the alias of memfd";
    const Response unknown = send(buffers_request(0, "carveout"));
    EXPECT_EQ(unknown.reply.status(), wire::INVALID_ARGUMENT);
    EXPECT_THAT(unknown.reply.message(), HasSubstr("no heap or alias is named \"carveout\""));
    EXPECT_THAT(unknown.reply.message(), HasSubstr("memfd"));
}

TEST_F(ServiceTest, BuffersOfAPidListOnlyThoseItsClientsHold)
{
    hello();
    alloc(4096, 2);
    ASSERT_EQ(display_allocates(65536), wire::OK);

    wire::Request request = buffers_request();
    request.mutable_buffers()->set_pid(77);
    const Response response = send(request);
    ASSERT_EQ(response.reply.buffers().buffers_size(), 1);
    EXPECT_EQ(response.reply.buffers().buffers(0).size(), 65536u);
    EXPECT_EQ(send(buffers_request()).reply.buffers().buffers_size(), 3);
}

// Faults the kernel will not produce on demand, through the syscall seam.
class ServiceFaultTest : public ServiceTest
{
protected:
    ServiceFaultTest() { hello(); }
};

TEST_F(ServiceFaultTest, EnomemIsOutOfMemory)
{
    EXPECT_CALL(syscalls_, memfd_create(_, _)).WillOnce(Return(Unexpected{-ENOMEM}));
    const Response response = alloc(4096);
    EXPECT_EQ(response.reply.status(), wire::OUT_OF_MEMORY);
    EXPECT_THAT(response.reply.message(), HasSubstr("Cannot allocate memory"));
    EXPECT_THAT(response.reply.message(), HasSubstr("heap 'memfd'"));
}

TEST_F(ServiceFaultTest, EmfileIsResourceExhausted)
{
    EXPECT_CALL(syscalls_, memfd_create(_, _)).WillOnce(Return(Unexpected{-EMFILE}));
    const Response response = alloc(4096);
    EXPECT_EQ(response.reply.status(), wire::RESOURCE_EXHAUSTED);
    EXPECT_THAT(response.reply.message(), HasSubstr("Too many open files"));
    EXPECT_THAT(response.reply.message(), HasSubstr("ionsvcd holds one fd per live buffer and per client"));
}

TEST_F(ServiceFaultTest, AnyOtherErrnoIsInternalWithItsText)
{
    EXPECT_CALL(syscalls_, add_seals(_, _)).WillOnce(Return(-EIO));
    const Response response = alloc(4096);
    EXPECT_EQ(response.reply.status(), wire::INTERNAL);
    EXPECT_THAT(response.reply.message(), HasSubstr("Input/output error"));
}

TEST_F(ServiceFaultTest, ABatchThatFailsHalfwayAllocatesNothingAndLeaksNothing)
{
    using ::testing::Invoke;
    EXPECT_CALL(syscalls_, memfd_create(_, _))
        .WillOnce(Invoke(&real_syscalls(), &Syscalls::memfd_create))
        .WillOnce(Invoke(&real_syscalls(), &Syscalls::memfd_create))
        .WillOnce(Return(Unexpected{-EMFILE}));
    const std::size_t before = test_support::open_fd_count();
    const Response response = alloc(4096, 5);
    EXPECT_EQ(response.reply.status(), wire::RESOURCE_EXHAUSTED);
    EXPECT_THAT(response.reply.message(), HasSubstr("buffer 3 of 5"));
    EXPECT_TRUE(response.fds.empty());
    EXPECT_EQ(test_support::open_fd_count(), before);
    EXPECT_EQ(memfd_usage().buffers, 0u);
}

TEST_F(ServiceFaultTest, TheServiceKeepsServingAfterAFault)
{
    EXPECT_CALL(syscalls_, memfd_create(_, _))
        .WillOnce(Return(Unexpected{-ENOMEM}))
        .WillOnce(::testing::Invoke(&real_syscalls(), &Syscalls::memfd_create));
    EXPECT_EQ(alloc(4096).reply.status(), wire::OUT_OF_MEMORY);
    EXPECT_EQ(alloc(4096).reply.status(), wire::OK);
}

} // namespace
} // namespace ionsvc
