// SPDX-License-Identifier: MIT
// ionsvcd: the buffer-sharing daemon.
#include <signal.h>
#include <sys/resource.h>
#include <sysexits.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <google/protobuf/stubs/logging.h>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <ionsvc/protocol.h>

#include "backends/allocator.h"
#include "books/warm_pool.h"
#include "policy/config.h"
#include "protocol/service.h"
#include "server/guard.h"
#include "server/listener.h"
#include "server/recovery_keeper.h"
#include "server/server.h"
#include "server/watchdog.h"

namespace {

struct Options
{
    std::string socket_path{ionsvc::kDefaultSocketPath};
    std::string socket_mode = "0660";
    std::string socket_group; // empty: the daemon's own
    std::string backend = "auto";
    std::string config_path{ionsvc::kDefaultConfigPath};
    bool config_given = false;
    std::string log_level = "info";
    std::uint64_t max_buffer_size = 1ull << 30;
    // FileDescriptorStoreMax= of the unit; 0: keep nothing across a restart.
    std::size_t fd_store_max = 0;
    std::uint64_t reclaim_wait_s = 600;
};

void set_up_logging(const std::string &level)
{
    auto logger = spdlog::stderr_color_mt("ionsvcd");
    // The journal stamps time and level itself.
    if (std::getenv("JOURNAL_STREAM"))
        logger->set_pattern("%v");
    else
        logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
    logger->set_level(spdlog::level::from_str(level));
    spdlog::set_default_logger(logger);
    // protobuf writes its own complaints to stderr, one line for each string
    // a client sends that is not UTF-8: a client could flood the journal.
    // The packet is refused all the same, and its reason logged at debug.
    google::protobuf::SetLogHandler(
        [](google::protobuf::LogLevel, const char *, int, const std::string &message) {
            spdlog::debug("protobuf: {}", message);
        });
}

// The daemon holds one fd per live buffer and per client: take every fd
// the hard limit allows.
void raise_fd_limit()
{
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) < 0)
        return;
    if (limit.rlim_cur < limit.rlim_max) {
        const rlim_t wanted = limit.rlim_max;
        limit.rlim_cur = wanted;
        if (::setrlimit(RLIMIT_NOFILE, &limit) < 0)
            spdlog::warn("could not raise the fd limit to {}: {}", wanted, std::strerror(errno));
    }
    spdlog::info("fd limit {}: room for about that many live buffers and clients",
                 static_cast<unsigned long long>(limit.rlim_cur));
}

// The config file with the built-in uid quota, made from the fd limit (as
// raised) and the machine's memory, where the file sets none.
ionsvc::Expected<ionsvc::Config, std::string> load_config(const Options &options)
{
    auto config = ionsvc::load_config(options.config_path, !options.config_given);
    if (!config)
        return config;
    rlimit limit{};
    ionsvc::MachineLimits machine;
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0)
        machine.fd_limit = limit.rlim_cur;
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long page_size = ::sysconf(_SC_PAGESIZE);
    if (pages > 0 && page_size > 0)
        machine.memory_bytes = static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page_size);
    ionsvc::apply_builtin_quota(config->quota, machine);
    if (!config->quota.uid_set) {
        const ionsvc::Limit &builtin = config->quota.all_heaps.uid;
        const auto shown = [](const std::optional<std::uint64_t> &value) {
            return value ? std::to_string(*value) : std::string{"any number of"};
        };
        spdlog::info("each uid may hold {} buffers and {} bytes (quota.uid, built in)", shown(builtin.buffers),
                     shown(builtin.bytes));
    }
    return config;
}

// Says which quota.heaps and access.heaps tables name no heap this daemon
// serves: a typo there would otherwise pass for a limit or a rule.
void check_config_heaps(const ionsvc::Config &config, const ionsvc::Allocator &allocator)
{
    const auto check = [&](std::string_view section, const std::string &name) {
        if (allocator.registry().find_by_name(name))
            return;
        spdlog::warn("{}.\"{}\": this daemon serves no heap of that name; it applies to nothing "
                     "(serving: {})",
                     section, name, allocator.heap_names());
    };
    for (const auto &[name, limits] : config.quota.heaps)
        check("quota.heaps", name);
    for (const auto &[name, rules] : config.access.heaps)
        check("access.heaps", name);
}

void configure_pool(ionsvc::WarmPool &pool, const ionsvc::PoolConfig &config)
{
    for (const std::string &warning : pool.configure(config))
        spdlog::warn("{}", warning);
    for (const ionsvc::PoolClass &pool_class : config.classes) {
        if (pool_class.count > 0)
            spdlog::info("warm pool: {} buffers of {} bytes ready in heap '{}' ({})", pool_class.count,
                         pool_class.size, pool_class.heap, pool_class.origin);
    }
}

// SIGHUP: reads the config file again. Quotas, access rules, connection
// limits (for the connections that come next) and the warm pool apply at
// once; aliases need a restart (the heaps are resolved at start). A broken
// file keeps the old config.
void reload_config(const Options &options, ionsvc::Service &service, const ionsvc::Allocator &allocator,
                   ionsvc::WarmPool &pool, ionsvc::Server &server)
{
    sd_notify(0, "RELOADING=1");
    auto config = load_config(options);
    if (!config) {
        spdlog::error("reload failed, keeping the config in use: {}", config.error());
    } else {
        check_config_heaps(*config, allocator);
        service.set_quota(std::move(config->quota));
        service.set_access(std::move(config->access));
        configure_pool(pool, config->pool);
        server.set_connection_limits(config->connections);
        spdlog::info("reloaded {}: quotas, access rules, connection limits and the warm pool applied "
                     "(aliases change only at a restart)",
                     options.config_path);
    }
    sd_notify(0, "READY=1");
}

// The backends --backend names, opened, with the heaps they serve and where
// each alias leads logged; none if they serve no heap.
std::unique_ptr<ionsvc::Allocator> open_heaps(const Options &options, const ionsvc::Config &config)
{
    using namespace ionsvc;

    auto opened = open_backends(options.backend, real_syscalls());
    // With auto a missing source is normal; a backend asked for by name is not.
    const auto missing_level = options.backend == "auto" ? spdlog::level::info : spdlog::level::err;
    for (const std::string &why : opened.missing())
        spdlog::log(missing_level, "{}", why);
    auto allocator =
        std::make_unique<Allocator>(std::move(opened.backends), config.aliases, std::move(opened.unserved));
    if (allocator->heap_count() == 0) {
        spdlog::critical("no heap to serve with --backend {}", options.backend);
        return nullptr;
    }
    const auto default_heap = allocator->find_heap("");
    for (HeapIndex i = 0; i < allocator->heap_count(); ++i) {
        const HeapEntry &entry = allocator->heap(i);
        spdlog::info("serving heap '{}' (backend {}, type {}){}", entry.heap->name(), entry.backend,
                     entry.heap->type(), default_heap && *default_heap == i ? ", the default" : "");
    }
    for (const std::string &line : allocator->registry().describe_aliases())
        spdlog::info("{}", line);
    return allocator;
}

// --socket-mode: octal permission bits, at most 0777; none if not.
std::optional<mode_t> parse_mode(const std::string &text)
{
    if (text.empty() || text.size() > 4 || text.find_first_not_of("01234567") != std::string::npos)
        return std::nullopt;
    const unsigned long mode = std::stoul(text, nullptr, 8);
    if (mode > 0777)
        return std::nullopt;
    return static_cast<mode_t>(mode);
}

// --socket-mode and --socket-group as a SocketAccess, or why not.
ionsvc::Expected<ionsvc::SocketAccess, std::string> socket_access(const Options &options)
{
    ionsvc::SocketAccess access;
    access.mode = *parse_mode(options.socket_mode); // checked by the option
    if (options.socket_group.empty())
        return access;
    access.group = ionsvc::find_group(options.socket_group);
    if (!access.group)
        return ionsvc::Unexpected{fmt::format("--socket-group {}: no such group", options.socket_group)};
    return access;
}

// The socket systemd passed, else one of our own at --socket; with the
// fds of systemd's fd store.
ionsvc::Expected<ionsvc::Listener, std::string> open_listener(const Options &options)
{
    auto listener = ionsvc::listener_from_systemd();
    if (listener && !listener->socket) {
        const auto access = socket_access(options);
        if (!access)
            return ionsvc::Unexpected{access.error()};
        auto own = ionsvc::listen_on(options.socket_path, *access);
        if (own)
            own->stored = std::move(listener->stored);
        listener = std::move(own);
    }
    if (!listener)
        return listener;
    if (listener->from_systemd)
        spdlog::info("listening on the socket systemd passed");
    else
        spdlog::info("listening on {} (clients and ionsvc-ctl: {}={})", options.socket_path,
                     ionsvc::kSocketEnvironmentVariable, options.socket_path);
    return listener;
}

// The fd store's size: --fd-store-max, at most what systemd says it keeps
// ($FDSTORE, from systemd 254); 0 if there is no service manager to keep
// anything.
std::size_t fd_store_limit(const Options &options)
{
    if (!std::getenv("NOTIFY_SOCKET"))
        return 0;
    std::size_t limit = options.fd_store_max;
    if (const char *text = std::getenv("FDSTORE")) {
        char *end = nullptr;
        const unsigned long long systemds = std::strtoull(text, &end, 10);
        if (end != text && *end == '\0')
            limit = limit == 0 ? systemds : std::min<std::size_t>(limit, systemds);
    }
    return limit;
}

// With a store to keep them in, the books of the daemon before this one
// come back, and this one's are kept for the next.
std::unique_ptr<ionsvc::RecoveryKeeper> keep_books(const Options &options, boost::asio::io_context &io,
                                                   ionsvc::Service &service,
                                                   std::vector<std::pair<std::string, ionsvc::UniqueFD>> stored)
{
    const std::size_t limit = fd_store_limit(options);
    if (limit == 0) {
        if (!stored.empty())
            spdlog::warn("systemd passed {} fds from its store, but the fd store is off (--fd-store-max 0, or no "
                         "NOTIFY_SOCKET): the buffers they hold are not books again",
                         stored.size());
        else
            spdlog::info("no fd store: the books do not outlive this daemon (docs/RECOVERY.md)");
        return nullptr;
    }
    auto keeper = std::make_unique<ionsvc::RecoveryKeeper>(
        io, service, ionsvc::real_syscalls(),
        ionsvc::RecoverySettings{limit, std::chrono::seconds(options.reclaim_wait_s)});
    keeper->restore(std::move(stored));
    spdlog::info("keeping the books across a restart in systemd's fd store (up to {} fds)", limit);
    return keeper;
}

// Serves clients on listening_socket until SIGTERM or SIGINT; SIGHUP
// reloads the config.
void serve(const Options &options, const ionsvc::Config &config, ionsvc::Allocator &allocator,
           ionsvc::Listener listener)
{
    using namespace ionsvc;

    WarmPool pool(allocator, real_syscalls());
    Service service(allocator, ServiceLimits{.max_buffer_size = options.max_buffer_size}, real_syscalls());
    check_config_heaps(config, allocator);
    service.set_quota(config.quota);
    service.set_access(config.access);
    service.set_pool(&pool);
    configure_pool(pool, config.pool);
    // One thread runs the loop and touches every socket, timer and signal
    // set (the pool's refill thread has its own lock and never the loop's),
    // so the loop takes no locks: four fewer mutex round trips per request.
    boost::asio::io_context io(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE);
    const auto keeper = keep_books(options, io, service, std::move(listener.stored));
    Server server(io, service, std::move(listener.socket));
    server.set_connection_limits(config.connections);
    WatchdogPinger watchdog(io);

    boost::asio::signal_set hangup(io, SIGHUP);
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code &error, int signal_number) {
        if (error)
            return;
        spdlog::info("{}: shutting down", strsignal(signal_number));
        sd_notify(0, "STOPPING=1");
        watchdog.stop();
        hangup.cancel();
        // The books as they stand go to the store before the clients are
        // let go: the next daemon gives them back.
        if (keeper)
            run_guarded("writing the books for the next daemon", [&] { keeper->finish(); });
        // Stopping must not fail halfway: the loop ends once no work is left.
        if (!run_guarded("shutting down", [&] { server.stop(); }))
            io.stop();
    });

    std::function<void(const boost::system::error_code &, int)> on_hangup =
        [&](const boost::system::error_code &error, int) {
            if (error)
                return;
            run_guarded("reloading the config", [&] { reload_config(options, service, allocator, pool, server); });
            hangup.async_wait(on_hangup);
        };
    hangup.async_wait(on_hangup);

    server.start();
    if (keeper)
        keeper->start();
    sd_notify(0, "READY=1");
    watchdog.start();
    io.run();
}

int run(const Options &options)
{
    raise_fd_limit();

    // Only the default path may be absent: a path given must be there.
    const auto config = load_config(options);
    if (!config) {
        spdlog::critical("{}", config.error());
        // EX_CONFIG: a restart cannot help until someone fixes the file, so
        // the unit may name it in RestartPreventExitStatus=.
        return EX_CONFIG;
    }

    const auto allocator = open_heaps(options, *config);
    if (!allocator)
        return EXIT_FAILURE;
    auto listener = open_listener(options);
    if (!listener) {
        spdlog::critical("{}", listener.error());
        return EXIT_FAILURE;
    }
    const bool unlink_at_exit = !listener->from_systemd;

    serve(options, *config, *allocator, std::move(*listener));

    if (unlink_at_exit)
        ::unlink(options.socket_path.c_str());
    spdlog::info("stopped");
    return EXIT_SUCCESS;
}

} // namespace

int main(int argc, char **argv)
{
    Options options;
    CLI::App app{"ionsvcd: hands out dma-buf and memfd buffers to clients over a Unix socket, "
                 "with per-client accounting"};
    app.set_version_flag("--version", "ionsvcd " + std::string(IONSVC_VERSION));
    app.add_option("--socket", options.socket_path, "Path of the listening socket")
        ->capture_default_str();
    app.add_option("--socket-mode", options.socket_mode,
                   "Permissions of the socket ionsvcd makes itself (octal), whatever the umask")
        ->check([](const std::string &text) {
            return parse_mode(text) ? std::string() : "an octal mode from 0 to 0777, e.g. 0660";
        })
        ->capture_default_str();
    app.add_option("--socket-group", options.socket_group,
                   "Group of the socket ionsvcd makes itself, a name or number (default: its own)");
    app.add_option("--config", options.config_path,
                   "Configuration file (TOML); the default path may be absent")
        ->each([&](const std::string &) { options.config_given = true; })
        ->capture_default_str();
    app.add_option("--backend", options.backend,
                   "Buffer sources to serve: auto opens every one present, in the order ion, "
                   "dma-heap, udmabuf, memfd")
        ->check(CLI::IsMember(std::vector<std::string>(std::begin(ionsvc::kBackendChoices),
                                                       std::end(ionsvc::kBackendChoices))))
        ->capture_default_str();
    app.add_option("--log-level", options.log_level, "trace, debug, info, warn, error or critical")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical"}))
        ->capture_default_str();
    app.add_option("--max-buffer-size", options.max_buffer_size,
                   "Largest buffer one allocation may ask for, in bytes (suffixes K, M, G)")
        ->transform(CLI::AsSizeValue(false))
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 48))
        ->capture_default_str();
    app.add_option("--fd-store-max", options.fd_store_max,
                   "The unit's FileDescriptorStoreMax=: under systemd, every live buffer and the books "
                   "are kept in its fd store and come back after a restart (0: off; from systemd 254, "
                   "$FDSTORE says it)")
        ->capture_default_str();
    app.add_option("--reclaim-wait", options.reclaim_wait_s,
                   "After a restart, how long a client of before it whose process lives may take to "
                   "reconnect and reclaim its buffers, in seconds")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{86400}))
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    set_up_logging(options.log_level);
    // Peers that vanish are seen as EPIPE from sendmsg, never as a signal.
    ::signal(SIGPIPE, SIG_IGN);

    try {
        return run(options);
    } catch (const std::exception &error) {
        spdlog::critical("fatal: {}", error.what());
        return EXIT_FAILURE;
    }
}
