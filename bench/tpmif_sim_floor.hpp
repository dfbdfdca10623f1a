// The sim_hv floor: the page floor (tpmif_page_floor.hpp) through sim_hv's own grant table and
// event channels (hv/sim.hpp) between two domains, with no xenbus handshake, no tpmif state
// machine, no pipeline and no TPM. tpmif minus this is what xtpm's frontend, backend and
// pipeline cost; this minus the page floor is what the hypervisor policy costs.
#pragma once

#include "tpmif_chain.hpp"
#include "tpmif_floor.hpp"

#include <xtpm/hv/sim.hpp>

#include <poll.h>

namespace xtpm::bench {

// Two domains of their own, so that the chain's guests and backends are untouched.
inline constexpr std::uint16_t floor_guest = 5, floor_backend = 6;

class sim_floor {
public:
    static auto start(std::string const& hv_dir) -> outcome<sim_floor> {
        int to_child[2], to_parent[2];
        if (::pipe2(to_child, O_CLOEXEC) < 0 || ::pipe2(to_parent, O_CLOEXEC) < 0) return std::unexpected{"pipe"};
        io::unique_fd c_rd{to_child[0]}, c_wr{to_child[1]}, p_rd{to_parent[0]}, p_wr{to_parent[1]};
        auto canned = build_canned_responses();
        if (!canned) return std::unexpected{canned.error().message()};
        auto pid = tpmif_floor::fork_responder();
        if (!pid) return std::unexpected{"fork: " + pid.error().message()};
        if (*pid == 0) ::_exit(serve(hv_dir, c_rd.get(), p_wr.get(), *canned));
        sim_floor f;
        f.pid_ = *pid;
        auto h = hv::sim_hv::connect(hv_dir, floor_guest);
        if (!h) return std::unexpected{"sim_hv connect: " + h.error().message()};
        f.hv_.emplace(std::move(*h));
        auto ring = f.hv_->share_pages(floor_backend, 1, true);
        auto port = ring ? f.hv_->alloc_unbound(floor_backend) : result<hv::evtchn_port_t>{fail(errc::io_error)};
        if (!ring || !port) return std::unexpected{"grant or port: " + (ring ? port.error() : ring.error()).message()};
        f.ring_.emplace(std::move(*ring));
        f.port_ = *port;
        std::array<std::uint32_t, 2> const msg{f.ring_->refs()[0], *port};
        if (::write(c_wr.get(), msg.data(), sizeof msg) != sizeof msg) return std::unexpected{"pipe write"};
        pollfd p{p_rd.get(), POLLIN, 0};
        char ok = 0;
        if (::poll(&p, 1, 10'000) != 1 || ::read(p_rd.get(), &ok, 1) != 1 || ok != '!')
            return std::unexpected{"the floor's backend domain did not map the page and bind the port"};
        return f;
    }

    sim_floor() = default;
    sim_floor(sim_floor&& o) noexcept
        : hv_{std::move(o.hv_)}, ring_{std::move(o.ring_)}, port_{o.port_}, pid_{std::exchange(o.pid_, -1)} {}
    auto operator=(sim_floor&& o) noexcept -> sim_floor& {
        if (this != &o) {
            stop();
            hv_ = std::move(o.hv_);
            ring_ = std::move(o.ring_);
            port_ = o.port_;
            pid_ = std::exchange(o.pid_, -1);
        }
        return *this;
    }
    sim_floor(sim_floor const&) = delete;
    auto operator=(sim_floor const&) -> sim_floor& = delete;
    ~sim_floor() { stop(); }

    // Copy in, length, SUBMIT, notify; wait on evtchn_fd() until FINISH; copy out.
    auto roundtrip(wire::bytes_view cmd) -> result<wire::bytes_view> {
        auto page = ring_->bytes();
        if (auto r = tpmif_floor::submit(page, cmd); !r) return std::unexpected{r.error()};
        if (auto r = hv_->notify(port_); !r) return std::unexpected{r.error()};
        while (!tpmif_floor::holds(page, proto::tpmif::page_state::finish)) {
            pollfd p{hv_->evtchn_fd(), POLLIN, 0};
            int const n = ::poll(&p, 1, 10'000);
            if (n < 0 && errno == EINTR && !stop_requested) continue;
            if (n <= 0) return n == 0 ? std::unexpected{std::make_error_code(std::errc::timed_out)} : io::sys_error();
            (void)hv_->pending();
        }
        return tpmif_floor::take_response(page, out_);
    }

private:
    void stop() noexcept { tpmif_floor::kill_responder(pid_); }

    // The backend domain: map the ref, bind the port, then answer every SUBMIT.
    static auto serve(std::string const& hv_dir, int rd, int wr, canned_responses const& canned) -> int {
        auto h = hv::sim_hv::connect(hv_dir, floor_backend);
        std::array<std::uint32_t, 2> msg{};
        if (!h || ::read(rd, msg.data(), sizeof msg) != sizeof msg) return 1;
        std::array<hv::grant_ref_t, 1> const refs{msg[0]};
        auto ring = h->map_grants(floor_guest, refs, true);
        auto port = ring ? h->bind_interdomain(floor_guest, msg[1]) : result<hv::evtchn_port_t>{fail(errc::io_error)};
        if (!ring || !port || ::write(wr, "!", 1) != 1) return 1;
        auto page = ring->bytes();
        std::array<std::byte, proto::tpmif::single_page_capacity> req{};
        for (;;) {
            pollfd p{h->evtchn_fd(), POLLIN, 0};
            if (::poll(&p, 1, -1) < 0 && errno != EINTR) return 1;
            (void)h->pending();
            if (!tpmif_floor::answer(page, req, canned)) continue;
            if (!h->notify(*port)) return 1;
        }
    }

    std::optional<hv::sim_hv> hv_;
    std::optional<hv::sim_hv::share> ring_;
    hv::evtchn_port_t port_ = 0;
    pid_t pid_ = -1;
    std::array<std::byte, proto::tpmif::page_size> out_{};
};

}  // namespace xtpm::bench
