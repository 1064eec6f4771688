// SPDX-License-Identifier: MIT
// ionsvc-share-demo: allocate a buffer from ionsvcd in one process, fill it,
// and read it in another process that receives only the fd.
//
//   IONSVC_SOCKET=$PWD/run/ionsvc.sock build-quickstart/examples/ionsvc-share-demo --size 4M --hold
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include <bufclient/bufclient.h>
#include <ionsvc/fd_passing.h>

namespace {

unsigned char pattern_at(std::size_t offset)
{
    return static_cast<unsigned char>(offset * 13 + 1);
}

// The consumer: maps the fd it was given and checks every byte.
int consume(ionsvc::UniqueFD channel, std::size_t size)
{
    std::byte nothing[1];
    auto received = ionsvc::receive_packet(channel.get(), nothing, 1);
    if (received.status < 0 || received.fds.size() != 1) {
        std::cerr << "consumer: no fd arrived\n";
        return 1;
    }
    auto mapping = bufclient::Mapping::map(received.fds[0].get(), size, PROT_READ);
    if (!mapping) {
        std::cerr << "consumer: " << mapping.error().message << "\n";
        return 1;
    }
    const auto *bytes = static_cast<const unsigned char *>(mapping->data());
    for (std::size_t i = 0; i < size; ++i) {
        if (bytes[i] != pattern_at(i)) {
            std::cerr << "consumer: byte " << i << " differs\n";
            return 1;
        }
    }
    std::cout << "consumer pid " << ::getpid() << ": read all " << size
              << " bytes the producer wrote, through the fd alone" << std::endl;
    return 0;
}

// Waits until Enter (or end of input) on a terminal, or SIGINT or SIGTERM:
// from a script or a pipe, stdin may be empty or closed, and the buffer
// must still be held until the caller says so.
void hold_until_told()
{
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &stop, nullptr);
    const ionsvc::UniqueFD signals{::signalfd(-1, &stop, SFD_CLOEXEC)};
    const bool terminal = ::isatty(STDIN_FILENO) == 1;
    std::cout << "holding the buffer; try `ionsvc-ctl stats` now. "
              << (terminal ? "Press Enter (or Ctrl-C) to free it." : "Send SIGINT or SIGTERM to free it.")
              << std::endl;
    pollfd waits[2] = {{signals.get(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    while (::poll(waits, terminal ? 2 : 1, -1) < 0 && errno == EINTR) {
    }
}

} // namespace

int main(int argc, char **argv)
{
    std::uint64_t size = 4 << 20;
    bool hold = false;
    std::string socket_path;
    std::string heap;
    CLI::App app{"Allocates a buffer from ionsvcd, fills it, and has a second process read it"};
    app.add_option("--size", size, "Buffer size (suffixes K, M, G)")
        ->check([](const std::string &text) {
            return text.find('-') == std::string::npos ? std::string{} : "a size cannot be negative";
        })
        ->transform(CLI::AsSizeValue(false));
    app.add_option("--socket", socket_path, "ionsvcd's socket (default: $IONSVC_SOCKET)");
    app.add_option("--heap", heap, "Heap name or alias (default: the daemon's default heap)");
    app.add_flag("--hold", hold,
                 "Keep the buffer, to look at it with ionsvc-ctl: until Enter on a terminal, else until SIGINT "
                 "or SIGTERM");
    CLI11_PARSE(app, argc, argv);

    auto client = bufclient::Client::connect({.socket_path = socket_path, .client_name = "share-demo"});
    if (!client) {
        std::cerr << "producer: " << client.error().message << "\n";
        return 1;
    }
    auto buffers = client->allocate({.heap = heap, .size = size, .name = "share-demo-frame"});
    if (!buffers) {
        std::cerr << "producer: " << ionsvc::status_name(buffers.error().code) << ": "
                  << buffers.error().message << "\n";
        return 1;
    }
    bufclient::Buffer &buffer = buffers->front();
    auto mapping = buffer.map();
    if (!mapping) {
        std::cerr << "producer: " << mapping.error().message << "\n";
        return 1;
    }
    auto *bytes = static_cast<unsigned char *>(mapping->data());
    for (std::size_t i = 0; i < buffer.size(); ++i)
        bytes[i] = pattern_at(i);
    std::cout << "producer pid " << ::getpid() << ": buffer " << buffer.id() << " of "
              << buffer.size() << " bytes from heap '" << buffer.heap() << "', filled\n";

    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
        std::perror("socketpair");
        return 1;
    }
    ionsvc::UniqueFD producer_end{pair[0]}, consumer_end{pair[1]};
    std::cout.flush();
    const pid_t consumer = ::fork();
    if (consumer == 0) {
        producer_end.reset();
        ::_exit(consume(std::move(consumer_end), static_cast<std::size_t>(buffer.size())));
    }
    consumer_end.reset();
    const int lent[] = {buffer.fd()};
    if (ionsvc::send_packet(producer_end.get(), {}, lent) < 0) {
        std::perror("sendmsg");
        return 1;
    }
    int status = 0;
    ::waitpid(consumer, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return 1;

    if (hold)
        hold_until_told();
    if (auto freed = client->free(buffer); !freed) {
        std::cerr << "producer: " << freed.error().message << "\n";
        return 1;
    }
    return 0;
}
