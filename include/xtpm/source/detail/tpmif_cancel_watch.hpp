// The cancel watcher of tpmif_backend<Hv> (docs/guest-path.md, "Cancel"): the device runs
// on the loop thread, so a CANCEL written while it runs must be seen by another thread.
// While one command runs, this thread owns the Hv's event channels: it waits on the pending
// fd, consumes pending ports, hands a CANCEL on the busy port to the channel (which answers
// cancel_device once) and records every port for the loop to handle after the command.
// Between commands it sleeps on a condition variable: no polling, no busy loop.
#pragma once

#include <xtpm/io/fd.hpp>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <poll.h>
#include <sys/eventfd.h>

namespace xtpm::detail {

class tpmif_cancel_watch {
public:
    static auto create() -> result<std::unique_ptr<tpmif_cancel_watch>> {
        io::unique_fd wake{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
        if (!wake) return io::sys_error();
        auto w = std::unique_ptr<tpmif_cancel_watch>{new tpmif_cancel_watch};
        w->wake_ = std::move(wake);
        return w;
    }

    // Start the thread. `on_port(port)` runs on it for each pending port while armed; it must
    // only touch the busy device's channel state and call the handler's lock-free cancel().
    template <class Hv, class OnPort>
    void start(Hv& hv, OnPort on_port) {
        thread_ = std::jthread{[this, &hv, on_port]() mutable { body(hv, on_port); }};
    }

    // The loop thread: a command starts; from now on only this watcher touches the Hv's ports.
    void arm() {
        std::lock_guard lock{mu_};
        armed_ = true;
        cv_.notify_all();
    }

    // The command ended: wake the watcher, wait until it let go of the Hv, and return the
    // ports it consumed (the loop handles and unmasks them).
    auto disarm() -> std::vector<std::uint32_t> {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof one);
        std::unique_lock lock{mu_};
        armed_ = false;
        cv_.wait(lock, [&] { return !active_; });
        std::uint64_t drained;
        [[maybe_unused]] auto m = ::read(wake_.get(), &drained, sizeof drained);  // a wake nobody consumed
        return std::exchange(seen_, {});
    }

    void shutdown() {
        {
            std::lock_guard lock{mu_};
            quit_ = true;
            cv_.notify_all();
        }
        if (thread_.joinable()) thread_.join();
    }
    ~tpmif_cancel_watch() { shutdown(); }

private:
    tpmif_cancel_watch() = default;

    template <class Hv, class OnPort>
    void body(Hv& hv, OnPort& on_port) {
        std::unique_lock lock{mu_};
        for (;;) {
            cv_.wait(lock, [&] { return armed_ || quit_; });
            if (quit_) return;
            active_ = true;
            lock.unlock();
            watch(hv, on_port);
            lock.lock();
            active_ = false;
            cv_.notify_all();
            // Sleep until the next arm(): armed_ may still be true until disarm() takes the lock.
            cv_.wait(lock, [&] { return !armed_ || quit_; });
        }
    }

    template <class Hv, class OnPort>
    void watch(Hv& hv, OnPort& on_port) {
        for (;;) {
            pollfd fds[2] = {{hv.evtchn_fd(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
            int const n = ::poll(fds, 2, -1);  // disarm() always writes wake_: bounded by the command
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 || (fds[1].revents & POLLIN)) return;
            for (;;) {
                auto p = hv.pending();
                if (!p || !*p) break;
                on_port(**p);
                std::lock_guard lock{mu_};
                seen_.push_back(**p);
            }
        }
    }

    io::unique_fd wake_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool armed_ = false, active_ = false, quit_ = false;
    std::vector<std::uint32_t> seen_;
    std::jthread thread_;
};

}  // namespace xtpm::detail
