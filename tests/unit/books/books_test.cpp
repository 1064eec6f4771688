// SPDX-License-Identifier: MIT
#include <fcntl.h>
#include <sys/eventfd.h>

#include <gtest/gtest.h>

#include "books/books.h"

namespace ionsvc {
namespace {

constexpr HeapIndex kHeapA = 0;
constexpr HeapIndex kHeapB = 1;

ClientIdentity someone(pid_t pid)
{
    return {pid, 1000, 1000, "camera"};
}

// What the kernel says of a buffer only the daemon still references.
long nobody_else_holds(int)
{
    return 1;
}

TEST(Books, ABufferCountsInItsClientAndItsHeap)
{
    Books books(2);
    const ClientId client = books.add_client(someone(10));
    books.add_buffer(client, kHeapB, 4096, UniqueFD{});

    const ClientRecord *record = books.client(client);
    ASSERT_NE(record, nullptr);
    EXPECT_EQ(record->usage[kHeapB].bytes, 4096u);
    EXPECT_EQ(record->usage[kHeapB].buffers, 1u);
    EXPECT_EQ(record->usage[kHeapA].bytes, 0u);
    EXPECT_EQ(books.heap_usage(kHeapB).bytes, 4096u);
    EXPECT_EQ(books.heap_usage(kHeapB).buffers, 1u);
    EXPECT_EQ(books.heap_usage(kHeapA).bytes, 0u);
}

TEST(Books, FreeingABufferTakesItOutButKeepsThePeak)
{
    Books books(1);
    const ClientId client = books.add_client(someone(10));
    const BufferId first = books.add_buffer(client, kHeapA, 8192, UniqueFD{});
    books.add_buffer(client, kHeapA, 4096, UniqueFD{});
    ASSERT_EQ(books.remove_buffer(client, first, nobody_else_holds), 0);

    const Usage &usage = books.client(client)->usage[kHeapA];
    EXPECT_EQ(usage.bytes, 4096u);
    EXPECT_EQ(usage.buffers, 1u);
    EXPECT_EQ(usage.peak_bytes, 12288u);
    EXPECT_EQ(books.heap_usage(kHeapA).bytes, 4096u);
    EXPECT_EQ(books.heap_usage(kHeapA).peak_bytes, 12288u);
}

TEST(Books, AClientCannotFreeAnotherClientsBuffer)
{
    Books books(1);
    const ClientId owner = books.add_client(someone(10));
    const ClientId other = books.add_client(someone(11));
    const BufferId buffer = books.add_buffer(owner, kHeapA, 4096, UniqueFD{});

    EXPECT_EQ(books.remove_buffer(other, buffer, nobody_else_holds), -ENOENT);
    EXPECT_TRUE(books.holds(owner, buffer));
    EXPECT_EQ(books.heap_usage(kHeapA).bytes, 4096u);
}

TEST(Books, FreeingAnUnknownIdOrTwiceIsNotFound)
{
    Books books(1);
    const ClientId client = books.add_client(someone(10));
    const BufferId buffer = books.add_buffer(client, kHeapA, 4096, UniqueFD{});
    EXPECT_EQ(books.remove_buffer(client, buffer + 100, nobody_else_holds), -ENOENT);
    EXPECT_EQ(books.remove_buffer(client, buffer, nobody_else_holds), 0);
    EXPECT_EQ(books.remove_buffer(client, buffer, nobody_else_holds), -ENOENT);
    EXPECT_EQ(books.remove_buffer(client + 100, buffer, nobody_else_holds), -ENOENT);
}

TEST(Books, RemovingAClientEmptiesItsShareOfEveryHeap)
{
    Books books(2);
    const ClientId leaving = books.add_client(someone(10));
    const ClientId staying = books.add_client(someone(11));
    books.add_buffer(leaving, kHeapA, 4096, UniqueFD{});
    books.add_buffer(leaving, kHeapB, 8192, UniqueFD{});
    books.add_buffer(staying, kHeapA, 16384, UniqueFD{});

    books.remove_client(leaving, nobody_else_holds);
    EXPECT_EQ(books.client(leaving), nullptr);
    EXPECT_EQ(books.clients().size(), 1u);
    EXPECT_EQ(books.heap_usage(kHeapA).bytes, 16384u);
    EXPECT_EQ(books.heap_usage(kHeapA).buffers, 1u);
    EXPECT_EQ(books.heap_usage(kHeapB).bytes, 0u);
    EXPECT_EQ(books.heap_usage(kHeapB).buffers, 0u);
}

TEST(Books, TheBooksCloseTheDaemonsReferenceWhenABufferLeaves)
{
    Books books(1);
    const ClientId client = books.add_client(someone(10));
    const int freed = ::eventfd(0, EFD_CLOEXEC);
    const int dropped = ::eventfd(0, EFD_CLOEXEC);
    const BufferId buffer = books.add_buffer(client, kHeapA, 4096, UniqueFD{freed});
    books.add_buffer(client, kHeapA, 4096, UniqueFD{dropped});

    ASSERT_EQ(books.remove_buffer(client, buffer, nobody_else_holds), 0);
    EXPECT_LT(::fcntl(freed, F_GETFD), 0);
    EXPECT_GE(::fcntl(dropped, F_GETFD), 0);
    books.remove_client(client, nobody_else_holds);
    EXPECT_LT(::fcntl(dropped, F_GETFD), 0);
}

TEST(Books, ClientIdsAndBufferIdsAreNeverReused)
{
    Books books(1);
    const ClientId first = books.add_client(someone(10));
    const BufferId buffer = books.add_buffer(first, kHeapA, 4096, UniqueFD{});
    books.remove_client(first, nobody_else_holds);
    const ClientId second = books.add_client(someone(10));
    EXPECT_NE(first, second);
    EXPECT_NE(books.add_buffer(second, kHeapA, 4096, UniqueFD{}), buffer);
}

TEST(Books, ClientsKeepTheirIdentityAndName)
{
    Books books(1);
    const ClientId client = books.add_client({42, 1001, 1002, "viewfinder"});
    books.set_client_name(client, "preview");
    const ClientRecord *record = books.client(client);
    ASSERT_NE(record, nullptr);
    EXPECT_EQ(record->identity.pid, 42);
    EXPECT_EQ(record->identity.uid, 1001u);
    EXPECT_EQ(record->identity.gid, 1002u);
    EXPECT_EQ(record->identity.comm, "viewfinder");
    EXPECT_EQ(record->name, "preview");
}

} // namespace
} // namespace ionsvc
