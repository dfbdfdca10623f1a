// device_events: a request_source that carries no commands. It waits on an evented_device's
// event_fd() and lets the device handle what arrived under the pipeline's device lock, so a
// guest-side tpmif frontend that no client is using still answers the backend's Closing
// (xl vtpm-detach) and reconnects to a restarted backend. Combined with the command sources
// through multi_source (roles/xtpm-front).
#pragma once

#include <xtpm/io/poller.hpp>
#include <xtpm/source/concepts.hpp>

#include <chrono>

namespace xtpm {

class device_events {
public:
    // `fd`: the device's event_fd(), taken before the device moves into the pipeline.
    static auto create(int fd) -> result<device_events> {
        auto p = io::poller::create();
        if (!p) return std::unexpected{p.error()};
        if (auto r = p->add(fd, 0); !r) return std::unexpected{r.error()};
        return device_events{std::move(*p)};
    }

    // Until stop(). A service() error (the hypervisor's xenstore connection is gone) ends
    // serving: no event can reach the device any more.
    template <class Handler>
    auto serve(Handler& h) -> result<void> {
        for (;;) {
            auto events = poller_.wait(std::chrono::milliseconds{-1});
            if (!events) return std::unexpected{events.error()};
            for (auto const& ev : *events)
                if (ev.data.u64 == io::poller::stop_token) return {};
            if (events->empty()) continue;  // EINTR
            result<void> r;
            h.with_device([&r](auto& device) { r = device.service(); });
            if (!r) return r;
        }
    }

    void stop() noexcept { poller_.stop(); }  // async-signal-safe

private:
    explicit device_events(io::poller p) : poller_{std::move(p)} {}
    io::poller poller_;
};

}  // namespace xtpm
