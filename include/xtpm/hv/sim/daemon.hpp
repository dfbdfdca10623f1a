// The xtpm-simhv daemon around sim::core: one listening socket per introduced domain,
// <dir>/dom<N>.sock (a connection's domain is the socket it came in on), one epoll loop,
// replies and watch events queued per connection and flushed without ever blocking.
// A client that lets too much pile up loses its watch events, then its connection.
// stop() is async-signal-safe; the destructor removes the sockets. docs/sim_hv.md.
#pragma once

#include <xtpm/hv/sim/core.hpp>
#include <xtpm/hv/sim/packet_socket.hpp>

#include <cstdio>
#include <deque>
#include <filesystem>
#include <memory>
#include <system_error>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>

namespace xtpm::hv::sim {

// Queued messages per connection: past the first, watch events are dropped (as xenstored
// drops events for a client that does not read); past the second the connection ends.
inline constexpr std::size_t watch_event_backlog = 1024;
inline constexpr std::size_t max_backlog = 4096;

class daemon {
public:
    struct options {
        std::filesystem::path dir;
        std::vector<domid_t> domains;  // introduced at start, besides dom0
    };

    static auto create(options const& o) -> result<daemon> {
        daemon d;
        std::error_code ec;
        bool const made = std::filesystem::create_directories(o.dir, ec);
        if (ec) return std::unexpected{ec};
        ::chmod(o.dir.c_str(), 0700);  // the sockets are the domains' identities
        io::unique_fd lock{::open((o.dir / lock_name).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)};
        if (!lock) return io::sys_error();
        if (::flock(lock.get(), LOCK_EX | LOCK_NB) < 0) return fail(errc::busy);  // another daemon serves o.dir
        d.s_->dir = o.dir;
        d.s_->made_dir = made;
        d.s_->lock = std::move(lock);
        d.s_->ep.reset(::epoll_create1(EPOLL_CLOEXEC));
        d.s_->stop.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!d.s_->ep || !d.s_->stop) return io::sys_error();
        if (auto r = d.s_->watch(d.s_->stop.get(), stop_token, EPOLLIN); !r) return std::unexpected{r.error()};
        for (auto const dom : o.domains)
            if (auto r = d.s_->core.introduce(dom); !r) return std::unexpected{r.error()};
        if (auto r = d.s_->apply_effects(); !r) return std::unexpected{r.error()};
        return d;
    }

    daemon(daemon&&) noexcept = default;
    auto operator=(daemon&&) noexcept -> daemon& = default;
    ~daemon() {
        if (!s_ || !s_->lock) return;
        for (auto const& [dom, l] : s_->listeners) ::unlink(socket_path(s_->dir, dom).c_str());
        ::unlink((s_->dir / lock_name).c_str());
        if (s_->made_dir) ::rmdir(s_->dir.c_str());  // only if empty
    }

    // Serve until stop(). Errors only for a failing epoll; clients cannot end the loop.
    auto run() -> result<void> {
        std::array<epoll_event, 64> evs{};
        for (;;) {
            int const n = ::epoll_wait(s_->ep.get(), evs.data(), static_cast<int>(evs.size()), -1);
            if (n < 0) {
                if (errno == EINTR) continue;
                return io::sys_error();
            }
            for (auto const& ev : std::span{evs.data(), static_cast<std::size_t>(n)}) {
                auto const token = ev.data.u64;
                if (token == stop_token) return {};
                if (token & listener_bit) s_->accept_all(static_cast<domid_t>(token & 0xFFFF));
                else s_->service(token, ev.events);
            }
        }
    }

    void stop() noexcept {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(s_->stop.get(), &one, sizeof one);
    }
    [[nodiscard]] auto stop_fd() const noexcept -> int { return s_->stop.get(); }
    auto state() -> core& { return s_->core; }

private:
    static constexpr std::uint64_t stop_token = ~std::uint64_t{0};
    static constexpr char const* lock_name = "simhv.lock";
    static constexpr std::uint64_t listener_bit = std::uint64_t{1} << 62;

    struct connection {
        io::unique_fd fd;
        std::deque<outgoing> out;
        bool want_out = false;
    };

    // Heap state: the epoll tokens and the signal handler's stop fd stay valid across moves.
    struct state_t {
        std::filesystem::path dir;
        bool made_dir = false;
        io::unique_fd lock, ep, stop;
        sim::core core;
        std::map<domid_t, io::unique_fd> listeners;
        std::map<conn_id, connection> conns;
        std::vector<std::byte> buf = std::vector<std::byte>(packet_max);

        auto watch(int fd, std::uint64_t token, std::uint32_t events) -> result<void> {
            epoll_event ev{};
            ev.events = events;
            ev.data.u64 = token;
            if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return io::sys_error();
            return {};
        }
        void rewatch(connection& c, conn_id id, bool want_out) {
            if (c.want_out == want_out) return;
            c.want_out = want_out;
            epoll_event ev{};
            ev.events = EPOLLIN | EPOLLRDHUP | (want_out ? EPOLLOUT : 0U);
            ev.data.u64 = id;
            ::epoll_ctl(ep.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);
        }

        void accept_all(domid_t dom) {
            auto const l = listeners.find(dom);
            if (l == listeners.end()) return;
            for (;;) {
                io::unique_fd fd{::accept4(l->second.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)};
                if (!fd) return;  // EAGAIN, or a transient error: wait for the next readiness
                auto const id = core.attach(dom);
                if (!id) continue;  // over the connection limit: closed at once
                if (!watch(fd.get(), *id, EPOLLIN | EPOLLRDHUP)) {
                    core.detach(*id);
                    continue;
                }
                conns.emplace(*id, connection{std::move(fd), {}, false});
            }
        }

        void service(conn_id id, std::uint32_t events) {
            if (auto it = conns.find(id); it != conns.end() && (events & EPOLLOUT)) flush(id, it->second);
            // Bounded work per wakeup keeps one chatty client from starving the rest.
            for (int i = 0; i < 32 && (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP | EPOLLERR)); ++i) {
                auto const it = conns.find(id);
                if (it == conns.end()) return;
                std::vector<io::unique_fd> fds;
                auto n = recv_packet(it->second.fd.get(), buf, fds, MSG_DONTWAIT);
                if (!n && to_errc(n.error()) == errc::busy) break;
                if (!n) close(id, true);
                else core.handle(id, std::span{buf}.first(*n), std::move(fds));
                // A domain whose socket cannot be made exists without one; the loop goes on.
                if (auto r = apply_effects(); !r)
                    std::fprintf(stderr, "xtpm-simhv: cannot open a domain socket: %s\n", r.error().message().c_str());
            }
        }

        // Move the core's outbox into the connections' queues and send what the sockets take.
        // Closing a connection can queue more (@releaseDomain), hence the loop.
        void deliver() {
            while (!core.outbox().empty()) {
                auto box = std::exchange(core.outbox(), {});
                std::vector<conn_id> touched;
                for (auto& o : box) {
                    auto const it = conns.find(o.to);
                    if (it == conns.end()) continue;
                    auto& q = it->second.out;
                    auto const to = o.to;
                    if (o.fds.empty() && is_event(o.bytes) && q.size() >= watch_event_backlog) continue;
                    if (q.size() >= max_backlog) {
                        close(to, true);
                        continue;
                    }
                    q.push_back(std::move(o));
                    touched.push_back(to);
                }
                for (auto const id : touched)
                    if (auto it = conns.find(id); it != conns.end()) flush(id, it->second);
            }
        }

        static auto is_event(std::vector<std::byte> const& b) -> bool {
            auto m = parse_message(b);
            return m && m->type() == static_cast<std::uint32_t>(msg_type::watch_event);
        }

        void flush(conn_id id, connection& c) {
            while (!c.out.empty()) {
                auto& o = c.out.front();
                std::vector<int> raw;
                for (auto const& f : o.fds) raw.push_back(f.get());
                auto r = send_packet(c.fd.get(), o.bytes, raw, MSG_DONTWAIT);
                if (!r && to_errc(r.error()) == errc::busy) return rewatch(c, id, true);
                if (!r) return close(id, true);
                c.out.pop_front();
            }
            rewatch(c, id, false);
        }

        void close(conn_id id, bool detach) {
            auto const it = conns.find(id);
            if (it == conns.end()) return;
            ::epoll_ctl(ep.get(), EPOLL_CTL_DEL, it->second.fd.get(), nullptr);
            conns.erase(it);
            if (detach) core.detach(id);
        }

        // Sockets appear and go before the reply to INTRODUCE/RELEASE is sent, so that a
        // toolstack that got its answer can rely on them.
        auto apply_effects() -> result<void> {
            for (auto const id : core.take_dropped()) close(id, false);
            for (auto const d : core.take_released()) {
                if (auto l = listeners.find(d); l != listeners.end()) {
                    ::unlink(socket_path(dir, d).c_str());
                    listeners.erase(l);
                }
            }
            result<void> r;
            for (auto const d : core.take_introduced()) {
                auto fd = listen_packets(socket_path(dir, d));
                if (!fd) {
                    r = std::unexpected{fd.error()};
                    continue;
                }
                ::chmod(socket_path(dir, d).c_str(), 0600);
                if (auto w = watch(fd->get(), listener_bit | d, EPOLLIN); w) {
                    listeners.insert_or_assign(d, std::move(*fd));
                } else {
                    ::unlink(socket_path(dir, d).c_str());
                    r = w;
                }
            }
            deliver();
            return r;
        }
    };

    daemon() : s_{std::make_unique<state_t>()} {}
    std::unique_ptr<state_t> s_;
};

}  // namespace xtpm::hv::sim
