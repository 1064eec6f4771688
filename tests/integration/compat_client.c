/* SPDX-License-Identifier: MIT */
/*
 * A program written against the kernel's uapi alone (<linux/dma-heap.h> and
 * ION's <ion.h>), as camera and video code is, with nothing of ionsvc: run
 * under ionsvc-run by compat_test.cpp, it gets its buffers from ionsvcd.
 *
 *   compat_client dma-heap CTL  allocates from /dev/dma_heap/system, writes
 *                               the buffer, has a second process read it
 *                               through the fd alone, runs `CTL stats --pid`
 *                               on itself, and checks the kernel's errnos
 *                               and fd semantics on the way
 *   compat_client ion CTL       queries ION's heaps, allocates by mask, the
 *                               same checks
 *   compat_client quota         an allocation past the daemon's quota
 *   compat_client missing       a heap the daemon cannot serve
 *   compat_client threads       four threads allocate at once through one
 *                               heap fd (the process's one connection)
 *   compat_client hold dma-heap|ion
 *                               allocates 64 KiB, writes the pattern, sends
 *                               the fd ("holding") over the socket at fd 3,
 *                               and exits once a byte comes back (the VM
 *                               tests read it through an importer)
 *
 * Prints one line per step; exits 0 if every step went as expected.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <linux/dma-heap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ion.h>

#define EXPECT(condition)                                                                                    \
    do {                                                                                                     \
        if (!(condition)) {                                                                                  \
            fprintf(stderr, "compat_client: line %d: expected %s (errno %d: %s)\n", __LINE__, #condition,   \
                    errno, strerror(errno));                                                                 \
            exit(1);                                                                                         \
        }                                                                                                    \
    } while (0)

enum { kSize = 65536 };

static unsigned char pattern_at(size_t offset)
{
    return (unsigned char)((offset * 13 + 5) & 0xff);
}

/* Sends text with fd (SCM_RIGHTS) on socket. */
static void send_fd(int socket, const char *text, int fd)
{
    char control[CMSG_SPACE(sizeof(int))];
    memset(control, 0, sizeof(control));
    struct iovec data = {(void *)text, strlen(text)};
    struct msghdr message = {.msg_iov = &data, .msg_iovlen = 1, .msg_control = control,
                             .msg_controllen = sizeof(control)};
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &fd, sizeof(fd));
    EXPECT(sendmsg(socket, &message, 0) == (ssize_t)strlen(text));
}

/* Fills the buffer, sends its fd to a child that maps it and checks every
 * byte, and waits for the child's verdict. */
static void share_with_another_process(int buffer)
{
    unsigned char *bytes = mmap(NULL, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, buffer, 0);
    EXPECT(bytes != MAP_FAILED);
    for (size_t i = 0; i < kSize; ++i)
        bytes[i] = pattern_at(i);
    munmap(bytes, kSize);

    int pair[2];
    EXPECT(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0);
    const pid_t child = fork();
    EXPECT(child >= 0);
    if (child == 0) {
        char byte;
        char control[CMSG_SPACE(sizeof(int))];
        struct iovec data = {&byte, 1};
        struct msghdr message = {.msg_iov = &data, .msg_iovlen = 1, .msg_control = control,
                                 .msg_controllen = sizeof(control)};
        if (recvmsg(pair[1], &message, MSG_CMSG_CLOEXEC) != 1 || !CMSG_FIRSTHDR(&message))
            _exit(2);
        int fd;
        memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&message)), sizeof(fd));
        const unsigned char *seen = mmap(NULL, kSize, PROT_READ, MAP_SHARED, fd, 0);
        if (seen == MAP_FAILED)
            _exit(3);
        for (size_t i = 0; i < kSize; ++i) {
            if (seen[i] != pattern_at(i))
                _exit(4);
        }
        _exit(0);
    }
    send_fd(pair[0], "b", buffer);
    int status;
    EXPECT(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(pair[0]);
    close(pair[1]);
    printf("another process read all %d bytes through the fd alone\n", kSize);
}

static void show_own_stats(const char *ctl)
{
    fflush(stdout);
    const pid_t child = fork();
    EXPECT(child >= 0);
    if (child == 0) {
        char pid[16];
        snprintf(pid, sizeof(pid), "%d", (int)getppid());
        execl(ctl, ctl, "stats", "--pid", pid, (char *)NULL);
        _exit(127);
    }
    int status;
    EXPECT(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static int dma_heap(const char *ctl)
{
    const int heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
    EXPECT(heap >= 0);
    EXPECT(fcntl(heap, F_GETFD) == FD_CLOEXEC);

    struct dma_heap_allocation_data data = {.len = kSize, .fd_flags = O_RDWR | O_CLOEXEC};
    EXPECT(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &data) == 0);
    EXPECT(fcntl((int)data.fd, F_GETFD) == FD_CLOEXEC);
    printf("allocated %d bytes from /dev/dma_heap/system: fd %u, close-on-exec\n", kSize, data.fd);
    share_with_another_process((int)data.fd);
    show_own_stats(ctl);

    /* A forked child allocates through the inherited heap fd, on a connection
     * of its own: its buffer shows under its own pid. */
    const pid_t child = fork();
    EXPECT(child >= 0);
    if (child == 0) {
        struct dma_heap_allocation_data mine = {.len = 8192, .fd_flags = O_RDWR | O_CLOEXEC};
        EXPECT(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &mine) == 0);
        show_own_stats(ctl);
        _exit(0);
    }
    int status;
    EXPECT(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printf("a forked child allocated through the inherited heap fd\n");

    /* Without O_CLOEXEC, through a dup of the heap's fd. */
    const int copy = dup(heap);
    EXPECT(copy >= 0);
    EXPECT(close(heap) == 0);
    struct dma_heap_allocation_data plain = {.len = 4096, .fd_flags = O_RDWR};
    EXPECT(ioctl(copy, DMA_HEAP_IOCTL_ALLOC, &plain) == 0);
    EXPECT(fcntl((int)plain.fd, F_GETFD) == 0);
    printf("a dup of the heap's fd allocates too, and without O_CLOEXEC the fd is inherited by exec\n");

    /* The kernel's answers to what it refuses. */
    struct dma_heap_allocation_data bad = {.len = 4096, .fd_flags = O_RDWR, .heap_flags = 1};
    EXPECT(ioctl(copy, DMA_HEAP_IOCTL_ALLOC, &bad) == -1 && errno == EINVAL);
    bad = (struct dma_heap_allocation_data){.len = 0, .fd_flags = O_RDWR};
    EXPECT(ioctl(copy, DMA_HEAP_IOCTL_ALLOC, &bad) == -1 && errno == EINVAL);
    bad = (struct dma_heap_allocation_data){.len = 4096, .fd_flags = O_RDWR | O_APPEND};
    EXPECT(ioctl(copy, DMA_HEAP_IOCTL_ALLOC, &bad) == -1 && errno == EINVAL);
    int unused = 0;
    EXPECT(ioctl(copy, FIONREAD, &unused) == -1 && errno == ENOTTY);
    EXPECT(close(copy) == 0);
    EXPECT(ioctl(copy, DMA_HEAP_IOCTL_ALLOC, &plain) == -1 && errno == EBADF);
    const int ranged = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
    EXPECT(ranged >= 0 && close_range((unsigned)ranged, (unsigned)ranged, 0) == 0);
    EXPECT(ioctl(ranged, DMA_HEAP_IOCTL_ALLOC, &plain) == -1 && errno == EBADF);
    printf("refusals are the kernel's: EINVAL, ENOTTY, EBADF once closed (close or close_range)\n");

    /* Every other open goes to libc as it came, its mode too. */
    char path[] = "/tmp/compat-client-XXXXXX";
    EXPECT(mkdtemp(path) != NULL);
    char file[64];
    snprintf(file, sizeof(file), "%s/file", path);
    umask(0);
    const int created = open(file, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0640);
    struct stat made;
    EXPECT(created >= 0 && fstat(created, &made) == 0 && (made.st_mode & 0777) == 0640);
    close(created);
    unlink(file);
    rmdir(path);
    printf("other opens are libc's, with their mode\n");
    close((int)data.fd);
    close((int)plain.fd);
    return 0;
}

static int ion(const char *ctl)
{
    const int ion = open("/dev/ion", O_RDWR);
    EXPECT(ion >= 0);
    struct ion_heap_query query = {0};
    EXPECT(ioctl(ion, ION_IOC_HEAP_QUERY, &query) == 0 && query.cnt >= 1);
    struct ion_heap_data heaps[32];
    memset(heaps, 0, sizeof(heaps));
    query.heaps = (unsigned long)heaps;
    query.cnt = query.cnt > 32 ? 32 : query.cnt;
    EXPECT(ioctl(ion, ION_IOC_HEAP_QUERY, &query) == 0);
    printf("ION heaps: %u, the first '%s' (type %u, id %u)\n", query.cnt, heaps[0].name, heaps[0].type,
           heaps[0].heap_id);

    struct ion_allocation_data data = {.len = kSize, .heap_id_mask = 1u << heaps[0].heap_id};
    EXPECT(ioctl(ion, ION_IOC_ALLOC, &data) == 0);
    EXPECT(fcntl((int)data.fd, F_GETFD) == FD_CLOEXEC);
    printf("allocated %d bytes from ION heap id %u: fd %u\n", kSize, heaps[0].heap_id, data.fd);
    share_with_another_process((int)data.fd);
    show_own_stats(ctl);

    struct ion_allocation_data bad = {.len = 4096, .heap_id_mask = 0};
    EXPECT(ioctl(ion, ION_IOC_ALLOC, &bad) == -1 && errno == ENODEV);
    bad = (struct ion_allocation_data){.len = 4096, .heap_id_mask = ~0u, .flags = 8};
    EXPECT(ioctl(ion, ION_IOC_ALLOC, &bad) == -1 && errno == EINVAL);
    query.reserved0 = 1;
    EXPECT(ioctl(ion, ION_IOC_HEAP_QUERY, &query) == -1 && errno == EINVAL);
    printf("refusals are ION's: ENODEV for no heap in the mask, EINVAL for unknown flags\n");
    close((int)data.fd);
    close(ion);
    return 0;
}

static int quota(void)
{
    const int heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
    EXPECT(heap >= 0);
    struct dma_heap_allocation_data data = {.len = 2 << 20, .fd_flags = O_RDWR | O_CLOEXEC};
    EXPECT(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &data) == -1 && errno == ENOMEM);
    printf("past the quota: ENOMEM\n");
    close(heap);
    return 0;
}

static int missing(void)
{
    EXPECT(open("/dev/dma_heap/no_such_heap", O_RDONLY | O_CLOEXEC) == -1 && errno == ENOENT);
    printf("a heap nothing serves: ENOENT\n");
    return 0;
}

enum { kThreads = 4, kPerThread = 16 };

static void *allocate_some(void *heap)
{
    for (int i = 0; i < kPerThread; ++i) {
        struct dma_heap_allocation_data data = {.len = 4096, .fd_flags = O_RDWR | O_CLOEXEC};
        if (ioctl(*(const int *)heap, DMA_HEAP_IOCTL_ALLOC, &data) != 0)
            return (void *)1;
        close((int)data.fd);
    }
    return NULL;
}

static int threads(void)
{
    int heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
    EXPECT(heap >= 0);
    pthread_t workers[kThreads];
    for (int i = 0; i < kThreads; ++i)
        EXPECT(pthread_create(&workers[i], NULL, allocate_some, &heap) == 0);
    int failed = 0;
    for (int i = 0; i < kThreads; ++i) {
        void *result;
        EXPECT(pthread_join(workers[i], &result) == 0);
        failed += result != NULL;
    }
    EXPECT(failed == 0);
    printf("%d threads allocated %d buffers each\n", kThreads, kPerThread);
    close(heap);
    return 0;
}

static int hold(const char *device)
{
    int buffer = -1;
    if (strcmp(device, "ion") == 0) {
        const int ion = open("/dev/ion", O_RDWR | O_CLOEXEC);
        EXPECT(ion >= 0);
        struct ion_heap_data heaps[32];
        struct ion_heap_query query = {.cnt = 32, .heaps = (unsigned long)heaps};
        EXPECT(ioctl(ion, ION_IOC_HEAP_QUERY, &query) == 0 && query.cnt >= 1);
        struct ion_allocation_data data = {.len = kSize, .heap_id_mask = 1u << heaps[0].heap_id};
        EXPECT(ioctl(ion, ION_IOC_ALLOC, &data) == 0);
        buffer = (int)data.fd;
        close(ion);
    } else {
        const int heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
        EXPECT(heap >= 0);
        struct dma_heap_allocation_data data = {.len = kSize, .fd_flags = O_RDWR | O_CLOEXEC};
        EXPECT(ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &data) == 0);
        buffer = (int)data.fd;
        close(heap);
    }
    unsigned char *bytes = mmap(NULL, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, buffer, 0);
    EXPECT(bytes != MAP_FAILED);
    for (size_t i = 0; i < kSize; ++i)
        bytes[i] = pattern_at(i);
    munmap(bytes, kSize);

    send_fd(3, "holding", buffer);
    char done;
    EXPECT(read(3, &done, 1) == 1);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "dma-heap") == 0)
        return dma_heap(argv[2]);
    if (argc == 3 && strcmp(argv[1], "ion") == 0)
        return ion(argv[2]);
    if (argc == 2 && strcmp(argv[1], "quota") == 0)
        return quota();
    if (argc == 2 && strcmp(argv[1], "missing") == 0)
        return missing();
    if (argc == 2 && strcmp(argv[1], "threads") == 0)
        return threads();
    if (argc == 3 && strcmp(argv[1], "hold") == 0)
        return hold(argv[2]);
    fprintf(stderr, "usage: compat_client dma-heap|ion CTL, quota, missing, threads, or hold dma-heap|ion\n");
    return 2;
}
