// The event loop behind every socket source: one io::poller, an optional
// listener, any number of clients served round robin, edge-triggered and
// non-blocking, so one slow or partial client never holds up another. A
// protocol "service" turns each connection's input into replies (see loop_service).
#pragma once

#include <xtpm/io/poller.hpp>
#include <xtpm/io/socket.hpp>
#include <xtpm/source/detail/connection.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <thread>

namespace xtpm::detail {

// A request that stops arriving half-way is answered with an error and closed
// after this long without a byte (swtpm waits 500 ms and closes silently).
inline constexpr std::chrono::milliseconds partial_request_timeout{2000};
// A client that does not read its replies for this long is dropped.
inline constexpr std::chrono::milliseconds write_timeout{10000};
// After a final reply, input is read and discarded for up to this long before
// close(): closing with unread input sends a TCP RST, which can destroy the
// reply (an oversized command's body is typically still arriving).
inline constexpr std::chrono::milliseconds linger_timeout{1000};

struct loop_limits {
    std::size_t max_connections = 64;
    std::chrono::milliseconds idle_timeout = partial_request_timeout;
    std::chrono::milliseconds write_timeout = detail::write_timeout;
    std::chrono::milliseconds linger_timeout = detail::linger_timeout;
};

// A service's verdict after looking at a connection's input once.
struct step {
    enum kind : std::uint8_t { need_more, progressed, stop } what;
    std::size_t need = 0;  // need_more: bytes the current request needs in all (0: not known yet)
    static auto more(std::size_t n) noexcept -> step { return {need_more, n}; }
    static auto done() noexcept -> step { return {progressed, 0}; }
    static auto stop_loop() noexcept -> step { return {stop, 0}; }
};

enum class stall : std::uint8_t { idle, eof };

// What a protocol supplies to the loop. Not checked by the compiler:
//  - on_input() handles at most one whole request: it consumes its bytes and
//    queues its reply, or answers need_more without consuming; it may queue an
//    error and call close_after_flush() when the stream cannot be resynchronised;
//  - step::stop flushes this connection's reply, then ends run();
//  - on_stall() queues the answer to a request that never completed (the loop
//    then closes); it runs on an idle timeout or when the peer half-closes.
template <class S>
concept loop_service = requires(S& s, connection& c, stall why) {
    { s.on_input(c) } -> std::same_as<step>;
    { s.on_stall(c, why) } -> std::same_as<void>;
};

class conn_loop {
public:
    struct config {
        loop_limits limits{};
        bool accepts_fds = false;               // recvmsg with SCM_RIGHTS (unix control sockets)
        bool stop_when_adopted_closes = false;  // swtpm: QEMU closing its SET_DATAFD socket ends the daemon
    };

    static auto create(std::optional<io::unique_fd> listener, config cfg) -> result<std::unique_ptr<conn_loop>> {
        auto p = io::poller::create();
        if (!p) return std::unexpected{p.error()};
        std::unique_ptr<conn_loop> loop{new conn_loop{std::move(*p), cfg}};
        loop->wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!loop->wake_) return io::sys_error();
        if (auto ok = loop->poller_.add(loop->wake_.get(), wake_token); !ok) return std::unexpected{ok.error()};
        if (listener && *listener) {
            if (auto ok = io::set_nonblocking(listener->get()); !ok) return std::unexpected{ok.error()};
            if (auto ok = loop->poller_.add(listener->get(), listen_token, EPOLLIN); !ok)
                return std::unexpected{ok.error()};
            loop->listener_ = std::move(*listener);
        }
        return loop;
    }

    // Serve an already connected stream (SET_DATAFD, an inherited fd). Thread-safe.
    void adopt(io::unique_fd fd) {
        {
            std::lock_guard lock{mu_};
            queue_.push_back(std::move(fd));
        }
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof one);
    }

    // Async-signal-safe; run() returns soon after, now or later.
    void stop() noexcept { poller_.stop(); }

    template <loop_service S>
    auto run(S& svc) -> result<void> {
        for (;;) {
            auto events = poller_.wait(next_timeout());
            if (!events) { conns_.clear(); return std::unexpected{events.error()}; }
            for (auto const& e : *events) {
                std::uint64_t const token = e.data.u64;  // a copy: epoll_event is packed on x86-64
                if (token == io::poller::stop_token) { conns_.clear(); return {}; }
                if (token == wake_token) take_adopted();
                else if (token == listen_token) accept_all();
                else if (auto it = conns_.find(token); it != conns_.end()) mark_ready(it->first, it->second);
            }
            auto ready = std::exchange(ready_, {});
            for (auto token : ready) {
                if (auto it = conns_.find(token); it != conns_.end()) {
                    it->second.ready = false;
                    service(svc, it);
                }
            }
            expire(svc);
            if (stop_requested_) { conns_.clear(); return {}; }
        }
    }

private:
    static constexpr std::uint64_t wake_token = 1;
    static constexpr std::uint64_t listen_token = 2;
    static constexpr std::uint64_t first_conn_token = 16;
    static constexpr int turns_per_wakeup = 8;         // requests per client before the next one's turn
    static constexpr std::size_t min_read_size = 4096;
    static constexpr std::chrono::milliseconds accept_backoff{100};  // after EMFILE and the like

    using conn_map = std::map<std::uint64_t, connection>;

    conn_loop(io::poller p, config cfg) : poller_{std::move(p)}, cfg_{cfg} {}

    void mark_ready(std::uint64_t token, connection& c) {
        if (c.ready) return;
        c.ready = true;
        ready_.push_back(token);
    }

    void add(io::unique_fd fd, bool adopted) {
        if (conns_.size() >= cfg_.limits.max_connections) return;  // closed here: the client sees EOF, not a hang
        if (!io::set_nonblocking(fd.get())) return;
        auto const token = next_token_++;
        if (!poller_.add(fd.get(), token, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)) return;
        auto [it, _] = conns_.try_emplace(token, std::move(fd), cfg_.accepts_fds, adopted);
        mark_ready(token, it->second);  // bytes may have arrived before registration
    }

    void accept_all() {
        for (;;) {
            auto fd = io::accept_from(listener_.get());
            if (fd) { add(std::move(*fd), false); continue; }
            if (to_errc(fd.error()) != errc::busy) {  // out of descriptors or memory: pause, never spin
                poller_.remove(listener_.get());
                listen_paused_until_ = clock::now() + accept_backoff;
            }
            return;
        }
    }

    void take_adopted() {
        std::uint64_t n = 0;
        [[maybe_unused]] auto r = ::read(wake_.get(), &n, sizeof n);
        std::vector<io::unique_fd> fds;
        {
            std::lock_guard lock{mu_};
            fds.swap(queue_);
        }
        for (auto& fd : fds) add(std::move(fd), true);
    }

    void drop(conn_map::iterator it) {
        auto& c = it->second;
        if (c.stops_loop || (c.adopted() && cfg_.stop_when_adopted_closes)) stop_requested_ = true;
        poller_.remove(c.fd());
        conns_.erase(it);
    }

    template <class S>
    void service(S& svc, conn_map::iterator it) {
        auto& c = it->second;
        for (int turn = 0; turn < turns_per_wakeup; ++turn) {
            auto const flushed = c.flush();
            if (flushed == io_status::failed) return drop(it);
            if (flushed == io_status::would_block) return;  // the EPOLLOUT edge resumes
            if (c.closing()) return linger(it);
            auto const s = svc.on_input(c);
            if (s.what == step::progressed) { c.partial = false; continue; }
            if (s.what == step::stop) { c.stops_loop = true; c.close_after_flush(); continue; }
            c.partial = !c.input().empty();
            if (c.closing()) continue;
            if (c.eof) {
                if (c.partial) svc.on_stall(c, stall::eof);
                c.close_after_flush();
                continue;
            }
            // Half a request is in: ACK it now. The mssim TCTI sends its frame header and
            // the command in two writes, and a delayed ACK here costs ~40 ms per command
            // (peers-and-protocols.md 4.5); a complete request needs no such help.
            if (c.partial) c.ack_now();
            switch (c.read_some(std::max(s.need, min_read_size))) {
            case io_status::progress: continue;
            case io_status::would_block: return;  // the EPOLLIN edge resumes
            case io_status::eof: c.eof = true; continue;
            case io_status::failed: return drop(it);  // reset mid-request: the client just goes away
            }
        }
        mark_ready(it->first, c);  // more to do: after the others had their turn
    }

    // The reply is out: half-close, then discard input until the peer closes too.
    void linger(conn_map::iterator it) {
        auto& c = it->second;
        if (c.eof || c.stops_loop) return drop(it);
        if (!c.lingering) {
            c.lingering = true;
            c.linger_since = clock::now();
            ::shutdown(c.fd(), SHUT_WR);
        }
        for (;;) {
            c.discard_input();
            switch (c.read_some(min_read_size)) {
            case io_status::progress: continue;
            case io_status::would_block: return;
            case io_status::eof:
            case io_status::failed: return drop(it);
            }
        }
    }

    template <class S>
    void expire(S& svc) {
        auto const now = clock::now();
        if (listen_paused_until_ && now >= *listen_paused_until_) {
            listen_paused_until_.reset();
            (void)poller_.add(listener_.get(), listen_token, EPOLLIN);
            accept_all();
        }
        for (auto it = conns_.begin(); it != conns_.end();) {
            auto const cur = it++;  // drop() erases cur
            auto& c = cur->second;
            auto const blocked = c.blocked_since();
            if ((blocked && now - *blocked >= cfg_.limits.write_timeout) ||
                (c.lingering && now - c.linger_since >= cfg_.limits.linger_timeout)) {
                drop(cur);
                continue;
            }
            if (c.partial && !c.closing() && now - c.last_input() >= cfg_.limits.idle_timeout) {
                svc.on_stall(c, stall::idle);
                c.close_after_flush();
                c.partial = false;
                mark_ready(cur->first, c);
            }
        }
    }

    [[nodiscard]] auto next_timeout() const -> std::chrono::milliseconds {
        using std::chrono::milliseconds;
        if (!ready_.empty() || stop_requested_) return milliseconds{0};
        std::optional<clock::time_point> next = listen_paused_until_;
        auto const earliest = [&](clock::time_point t) { if (!next || t < *next) next = t; };
        for (auto const& [token, c] : conns_) {
            if (auto b = c.blocked_since()) earliest(*b + cfg_.limits.write_timeout);
            if (c.lingering) earliest(c.linger_since + cfg_.limits.linger_timeout);
            if (c.partial && !c.closing()) earliest(c.last_input() + cfg_.limits.idle_timeout);
        }
        if (!next) return milliseconds{-1};
        auto const left = std::chrono::ceil<milliseconds>(*next - clock::now());
        return std::max(left, milliseconds{0});
    }

    io::poller poller_;
    config cfg_;
    io::unique_fd listener_;
    io::unique_fd wake_;
    std::mutex mu_;
    std::vector<io::unique_fd> queue_;
    conn_map conns_;
    std::vector<std::uint64_t> ready_;
    std::uint64_t next_token_ = first_conn_token;
    std::optional<clock::time_point> listen_paused_until_;
    bool stop_requested_ = false;
};

// Serve `ctrl` on its own thread and `data` on the caller's, so a control
// request (cancel) gets through while a command runs. Whichever loop ends
// first stops the other; the first error wins.
template <loop_service D, loop_service C>
auto run_pair(conn_loop& data, D& data_svc, conn_loop& ctrl, C& ctrl_svc) -> result<void> {
    result<void> ctrl_result;
    result<void> data_result;
    {
        std::jthread ctrl_thread{[&] {
            ctrl_result = ctrl.run(ctrl_svc);
            data.stop();
        }};
        data_result = data.run(data_svc);
        ctrl.stop();
    }  // joins
    return data_result ? ctrl_result : data_result;
}

}  // namespace xtpm::detail
