// epoll wrapper with a built-in stop signal: the event loop of every socket
// source. stop() is async-signal-safe (one eventfd write), so a SIGTERM handler
// can end serve() cleanly.
#pragma once

#include <xtpm/io/fd.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <span>

#include <sys/epoll.h>
#include <sys/eventfd.h>

namespace xtpm::io {

class poller {
public:
    static constexpr std::uint64_t stop_token = ~std::uint64_t{0};

    static auto create() -> result<poller> {
        poller p;
        p.ep_.reset(::epoll_create1(EPOLL_CLOEXEC));
        p.stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!p.ep_ || !p.stop_) return sys_error();
        if (auto ok = p.add(p.stop_.get(), stop_token); !ok) return std::unexpected{ok.error()};
        return p;
    }

    // Watch fd for input (and hang-up); `token` comes back in wait()'s events.
    auto add(int fd, std::uint64_t token, std::uint32_t events = EPOLLIN | EPOLLRDHUP) -> result<void> {
        epoll_event ev{};
        ev.events = events;
        ev.data.u64 = token;
        if (::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return sys_error();
        return {};
    }
    void remove(int fd) noexcept { ::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, fd, nullptr); }

    // Wait for events; timeout < 0 waits forever. An empty span means timeout or EINTR.
    auto wait(std::chrono::milliseconds timeout) -> result<std::span<epoll_event const>> {
        int const n = ::epoll_wait(ep_.get(), events_.data(), static_cast<int>(events_.size()),
                                   static_cast<int>(timeout.count()));
        if (n < 0) {
            if (errno == EINTR) return std::span<epoll_event const>{};
            return sys_error();
        }
        return std::span<epoll_event const>{events_.data(), static_cast<std::size_t>(n)};
    }

    // The eventfd is never read, so once stopped every later wait() reports
    // stop_token at once (level-triggered): the loop sees it and returns.
    void stop() noexcept {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(stop_.get(), &one, sizeof one);
    }

private:
    poller() = default;
    unique_fd ep_;
    unique_fd stop_;
    std::array<epoll_event, 32> events_{};
};

}  // namespace xtpm::io
