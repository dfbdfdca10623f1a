// The hostile frontend's guest domain: its sim_hv connection, its vtpm device directory, the
// xenbus handshake (proto/xenbus/frontend.hpp driven step by step, so that any step can be
// skipped or botched), and raw access to the tpmif page (xen/io/tpmif.h layout,
// xen-vtpm-protocol.md sections 2-4). Every wait is bounded.
#pragma once

#include "page.hpp"

#include <xtpm/hv/sim.hpp>
#include <xtpm/proto/tpmif/frontend.hpp>
#include <xtpm/proto/xenbus/frontend.hpp>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <expected>
#include <functional>
#include <optional>
#include <string>

#include <poll.h>

namespace xtpm::hostile {

namespace xb = proto::xenbus;
using clock = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;

// A scenario's verdict: failures are only printed, so they carry text.
template <class T = void>
using outcome = std::expected<T, std::string>;

inline auto failure(std::string why) -> std::unexpected<std::string> { return std::unexpected{std::move(why)}; }

inline auto text(std::error_code ec) -> std::string { return ec.message(); }

[[gnu::format(printf, 1, 2)]] inline void say(char const* f, ...) {
    va_list ap;
    va_start(ap, f);
    std::vprintf(f, ap);
    va_end(ap);
    std::printf("\n");
    std::fflush(stdout);
}

class deadline {
public:
    explicit deadline(ms limit) : at_{clock::now() + limit} {}
    [[nodiscard]] auto passed() const -> bool { return clock::now() >= at_; }
    [[nodiscard]] auto left_ms(int cap = 1 << 30) const -> int {
        auto const l = std::chrono::duration_cast<ms>(at_ - clock::now()).count();
        return static_cast<int>(std::clamp<long long>(l, 0, cap));
    }

private:
    clock::time_point at_;
};

// Readable within `timeout_ms`; false on timeout or error.
inline auto readable(int fd, int timeout_ms) -> bool {
    pollfd p{fd, POLLIN, 0};
    for (;;) {
        int const n = ::poll(&p, 1, timeout_ms);
        if (n >= 0) return n > 0;
        if (errno != EINTR) return false;
    }
}

inline auto state_name(std::optional<std::string> const& v) -> std::string {
    if (!v) return "(gone)";
    auto s = xb::parse_state(*v);
    if (!s) return "'" + *v + "' (not a state)";
    static constexpr char const* names[] = {"Unknown", "Initialising", "InitWait", "Initialised", "Connected",
                                            "Closing", "Closed", "Reconfiguring", "Reconfigured"};
    return std::string{names[static_cast<unsigned>(*s)]} + " (" + *v + ")";
}

inline auto is_state(std::optional<std::string> const& v, xb::device_state s) -> bool {
    return v && xb::parse_state(*v) == s;
}

struct guest_options {
    std::string simhv_dir;
    hv::domid_t self = 1;
    unsigned devid = 0;
    ms limit{5000};  // bound on every wait for the backend
};

struct exchange_end {
    tp::page_state state;  // idle or finish
    bool notified;         // an event arrived after the submit
};

class guest {
public:
    static auto open(guest_options const& o) -> outcome<guest> {
        auto h = hv::sim_hv::connect(o.simhv_dir, o.self);
        if (!h) return failure("cannot connect to sim_hv in " + o.simhv_dir + " as domain " +
                               std::to_string(o.self) + ": " + text(h.error()));
        guest g{std::move(*h), o};
        g.dir_ = "/local/domain/" + std::to_string(o.self) + "/device/vtpm/" + std::to_string(o.devid);
        auto be = g.read(xb::join(g.dir_, xb::keys::backend));
        auto id = g.read(xb::join(g.dir_, xb::keys::backend_id));
        if (!be || !id) return failure(!be ? be.error() : id.error());
        if (!*be || !*id) return failure("no backend/backend-id in " + g.dir_ + ": is the device attached?");
        auto const bid = xb::parse_decimal(**id, xb::max_domid);
        if (!bid) return failure("backend-id '" + **id + "' is not a domain id");
        g.backend_dir_ = **be;
        g.backend_id_ = static_cast<hv::domid_t>(*bid);
        if (auto w = g.hv_.watch(g.backend_key(xb::keys::state), "hostile-be"); !w)
            return failure("watch " + g.backend_key(xb::keys::state) + ": " + text(w.error()));
        return g;
    }

    [[nodiscard]] auto hv() -> hv::sim_hv& { return hv_; }
    [[nodiscard]] auto limit() const -> ms { return opts_.limit; }
    [[nodiscard]] auto self() const -> hv::domid_t { return opts_.self; }
    [[nodiscard]] auto backend_id() const -> hv::domid_t { return backend_id_; }
    [[nodiscard]] auto dir() const -> std::string const& { return dir_; }
    [[nodiscard]] auto key(std::string_view k) const -> std::string { return xb::join(dir_, k); }
    [[nodiscard]] auto backend_key(std::string_view k) const -> std::string { return xb::join(backend_dir_, k); }

    // --- xenstore ------------------------------------------------------------------------
    auto read(std::string const& path) -> outcome<std::optional<std::string>> {
        auto v = hv_.read(path);
        if (!v) return failure("read " + path + ": " + text(v.error()));
        return *v;
    }
    auto write(std::string const& path, std::string_view value) -> outcome<> {
        if (auto w = hv_.write(path, value); !w) return failure("write " + path + ": " + text(w.error()));
        return {};
    }
    auto remove(std::string const& path) -> outcome<> {
        if (auto r = hv_.remove(path); !r && r.error() != std::error_code{ENOENT, std::system_category()})
            return failure("remove " + path + ": " + text(r.error()));
        return {};
    }
    auto set_state(xb::device_state s) -> outcome<> { return write(key(xb::keys::state), xb::to_string(s)); }
    // The backend's state node; nullopt once it is gone. A node whose directory was removed
    // reads as EACCES to us rather than ENOENT (xenstored checks read permission on the
    // nearest existing ancestor, the backend domain's own, which we may not read).
    auto backend_state() -> outcome<std::optional<std::string>> {
        auto const path = backend_key(xb::keys::state);
        auto v = hv_.read(path);
        if (!v && v.error() == std::error_code{EACCES, std::system_category()}) return std::nullopt;
        if (!v) return failure("read " + path + ": " + text(v.error()));
        return *v;
    }

    // Wait until `ok(backend state)` holds (watch-driven, bounded by `limit`); the value seen.
    auto await_backend(std::function<bool(std::optional<std::string> const&)> const& ok, std::string const& what,
                       std::optional<ms> limit = {}) -> outcome<std::optional<std::string>> {
        deadline const d{limit.value_or(opts_.limit)};
        std::optional<std::string> last;
        for (;;) {
            drain_watches();  // before the read, so a change after it makes the fd readable
            auto v = backend_state();
            if (!v) return failure(v.error());
            last = *v;
            if (ok(last)) return last;
            if (d.passed()) return failure("backend did not reach " + what + " within " + std::to_string(limit.value_or(opts_.limit).count()) + " ms; it is " + state_name(last));
            readable(hv_.xenstore_fd(), d.left_ms(100));
        }
    }
    auto await_backend_state(xb::device_state s, std::optional<ms> limit = {}) -> outcome<std::optional<std::string>> {
        return await_backend([s](auto const& v) { return is_state(v, s); }, state_name(xb::to_string(s)), limit);
    }

    // Back to a fresh device: our old ring keys removed, Closed so that the backend drops
    // whatever it had mapped and returns to InitWait (docs/tpmif.md, reopen), then Initialising.
    auto reset() -> outcome<> {
        release_ring();
        if (auto r = remove(key(xb::keys::ring_ref)); !r) return r;
        if (auto r = remove(key(xb::keys::event_channel)); !r) return r;
        if (auto r = remove(key(xb::keys::protocol_v2)); !r) return r;
        if (auto r = remove(key(xb::keys::extra_pages)); !r) return r;
        if (auto r = set_state(xb::device_state::closed); !r) return r;
        if (auto r = await_backend_state(xb::device_state::init_wait); !r) return failure("reset: " + r.error());
        return set_state(xb::device_state::initialising);
    }

    // --- the ring ------------------------------------------------------------------------
    // `pages` zeroed pages granted to `grantee` (default: the backend); the first is the ring.
    auto grant_ring(bool writable = true, std::optional<hv::domid_t> grantee = {}, std::size_t pages = 1) -> outcome<> {
        auto s = hv_.share_pages(grantee.value_or(backend_id_), pages, writable);
        if (!s) return failure("share_pages: " + text(s.error()));
        ring_ = std::move(*s);
        return {};
    }
    auto alloc_port(std::optional<hv::domid_t> remote = {}) -> outcome<> {
        auto p = hv_.alloc_unbound(remote.value_or(backend_id_));
        if (!p) return failure("alloc_unbound: " + text(p.error()));
        port_ = *p;
        return {};
    }
    void release_ring() {
        if (port_) (void)hv_.unbind(*port_);
        port_.reset();
        ring_.reset();
    }
    [[nodiscard]] auto ring_ref() const -> hv::grant_ref_t { return ring_->refs()[0]; }
    [[nodiscard]] auto port() const -> hv::evtchn_port_t { return *port_; }
    [[nodiscard]] auto page() -> raw_page { return raw_page{ring_->bytes().first(tp::page_size)}; }
    // Another page (not the ring), granted to `grantee` for extra-page scenarios.
    auto grant_spare(bool writable, hv::domid_t grantee) -> outcome<hv::grant_ref_t> {
        auto s = hv_.share_pages(grantee, 1, writable);
        if (!s) return failure("share_pages: " + text(s.error()));
        spares_.push_back(std::move(*s));
        return spares_.back().refs()[0];
    }

    // The well-behaved handshake (Linux variant): frontend_handshake's actions performed in
    // order until it is connected. extra_pages: advertise feature-extra-pages.
    auto connect(bool extra_pages = false) -> outcome<> {
        xb::frontend_handshake hs{dir_, {xb::frontend_variant::linux_driver, extra_pages}};
        deadline const d{opts_.limit};
        if (auto r = perform(hs, hs.start()); !r) return r;
        while (!hs.connected()) {
            if (hs.closed())
                return failure("handshake failed: " + (hs.reason().empty() ? "the backend closed (" + state_name(backend_state().value_or(std::nullopt)) + ")" : hs.reason()));
            if (d.passed()) return failure("handshake not connected within the limit; backend " + state_name(backend_state().value_or(std::nullopt)));
            readable(hv_.xenstore_fd(), d.left_ms(100));
            for (;;) {
                auto ev = hv_.read_watch();
                if (!ev) return failure("read_watch: " + text(ev.error()));
                if (!*ev) break;
                if ((*ev)->token != handshake_token) continue;
                auto v = hv_.read((*ev)->path);
                if (!v) return failure("read " + (*ev)->path + ": " + text(v.error()));
                auto const value = *v ? std::optional<std::string_view>{**v} : std::nullopt;
                if (auto r = perform(hs, hs.on_backend_state(value)); !r) return r;
            }
        }
        extra_pages_ = hs.extra_pages();
        if (auto u = hv_.unwatch(backend_key(xb::keys::state), handshake_token); !u)
            return failure("unwatch: " + text(u.error()));
        drain_events();
        return {};
    }
    [[nodiscard]] auto extra_pages_negotiated() const -> bool { return extra_pages_; }

    // --- the event channel -------------------------------------------------------------------
    auto notify() -> outcome<> {
        if (auto n = hv_.notify(*port_); !n) return failure("notify: " + text(n.error()));
        return {};
    }
    // Consume every pending event; whether there was one.
    auto drain_events() -> bool {
        bool any = false;
        for (;;) {
            auto p = hv_.pending();
            if (!p || !*p) return any;
            any = true;
            (void)hv_.unmask(**p);
        }
    }
    // Wait until the backend stores IDLE or FINISH and has notified us, within `limit`.
    // nullopt for the state when it never came; notified false when the event never came.
    auto await_done(std::optional<ms> limit = {}) -> std::pair<std::optional<exchange_end>, std::uint8_t> {
        deadline const d{limit.value_or(opts_.limit)};
        bool notified = false;
        auto pg = page();
        for (;;) {
            notified = drain_events() || notified;
            auto const s = pg.state();
            bool const done = s == static_cast<std::uint8_t>(tp::page_state::idle) ||
                              s == static_cast<std::uint8_t>(tp::page_state::finish);
            if (done && notified) return {exchange_end{static_cast<tp::page_state>(s), true}, s};
            if (d.passed()) {
                if (done) return {exchange_end{static_cast<tp::page_state>(s), false}, s};
                return {std::nullopt, s};
            }
            // Capped at 1 ms: a FINISH without a notify is seen too, and reported as such.
            readable(hv_.evtchn_fd(), d.left_ms(1));
        }
    }

    // One exchange exactly as Linux does it (proto/tpmif frontend_channel): the response, or
    // why there is none.
    auto transact(wire::bytes_view cmd, std::optional<ms> limit = {}) -> outcome<std::vector<std::byte>> {
        tp::frontend_channel ch;
        auto region = ring_->bytes();
        drain_events();
        if (auto s = ch.submit(region, cmd); !s) return failure("submit refused: " + text(s.error()));
        if (auto n = notify(); !n) return failure(n.error());
        auto [end, raw] = await_done(limit);
        if (!end) return failure("no FINISH within the limit (state " + std::to_string(raw) + ")");
        if (!end->notified) return failure("FINISH/IDLE stored but no event-channel notify");
        std::vector<std::byte> out(tp::page_size);
        auto p = ch.poll(region, out);
        if (!p) return failure("malformed response: " + text(p.error()));
        if (p->status != tp::poll_status::finished) return failure("backend answered IDLE (canceled)");
        return std::vector<std::byte>{p->response.begin(), p->response.end()};
    }

    // Forget queued xenstore watch events.
    void drain_watches() {
        for (;;) {
            auto ev = hv_.read_watch();
            if (!ev || !*ev) return;
        }
    }

private:
    static constexpr char const* handshake_token = "hostile-hs";

    guest(hv::sim_hv h, guest_options o) : hv_{std::move(h)}, opts_{std::move(o)} {}

    auto perform(xb::frontend_handshake& hs, xb::actions acts) -> outcome<> {
        for (auto& a : acts) {
            auto r = std::visit([&](auto& x) { return perform_one(hs, x); }, a);
            if (!r) return r;
        }
        return {};
    }

    auto perform_one(xb::frontend_handshake& hs, xb::read_keys const& a) -> outcome<> {
        std::vector<std::optional<std::string>> values;
        for (auto const& p : a.paths) {
            auto v = read(p);
            if (!v) return failure(v.error());
            values.push_back(*v);
        }
        return perform(hs, hs.on_values(values));
    }
    auto perform_one(xb::frontend_handshake& hs, xb::write_keys const& a) -> outcome<> {
        if (!a.transaction) {
            for (auto const& [p, v] : a.entries)
                if (auto w = write(p, v); !w) return w;
            return {};
        }
        auto tx = hv_.transaction_start();
        if (!tx) return perform(hs, hs.on_transaction(std::unexpected{tx.error()}));
        for (auto const& [p, v] : a.entries)
            if (auto w = hv_.write(p, v, *tx); !w) {
                (void)hv_.transaction_end(*tx, false);
                return perform(hs, hs.on_transaction(std::unexpected{w.error()}));
            }
        return perform(hs, hs.on_transaction(hv_.transaction_end(*tx, true)));
    }
    auto perform_one(xb::frontend_handshake&, xb::remove_keys const& a) -> outcome<> {
        for (auto const& p : a.paths)
            if (auto r = remove(p); !r) return r;
        return {};
    }
    auto perform_one(xb::frontend_handshake&, xb::switch_state const& a) -> outcome<> {
        return write(a.path, xb::to_string(a.state));
    }
    auto perform_one(xb::frontend_handshake&, xb::watch_path const& a) -> outcome<> {
        if (auto w = hv_.watch(a.path, handshake_token); !w) return failure("watch " + a.path + ": " + text(w.error()));
        return {};
    }
    auto perform_one(xb::frontend_handshake&, xb::unwatch_path const& a) -> outcome<> {
        (void)hv_.unwatch(a.path, handshake_token);
        return {};
    }
    auto perform_one(xb::frontend_handshake& hs, xb::setup_ring const&) -> outcome<> {
        auto g = grant_ring();
        auto p = g ? alloc_port() : outcome<>{};
        if (!g || !p) return perform(hs, hs.on_ring_failed(make_error_code(errc::io_error)));
        return perform(hs, hs.on_ring_ready(ring_ref(), port()));
    }
    auto perform_one(xb::frontend_handshake&, xb::release_ring const&) -> outcome<> {
        release_ring();
        return {};
    }
    auto perform_one(xb::frontend_handshake&, xb::channel_ready const&) -> outcome<> { return {}; }
    auto perform_one(xb::frontend_handshake&, xb::map_ring const&) -> outcome<> { return {}; }
    auto perform_one(xb::frontend_handshake&, xb::unmap_ring const&) -> outcome<> { return {}; }

    hv::sim_hv hv_;
    guest_options opts_;
    std::string dir_, backend_dir_;
    hv::domid_t backend_id_ = 0;
    std::optional<hv::sim_hv::share> ring_;
    std::optional<hv::evtchn_port_t> port_;
    std::vector<hv::sim_hv::share> spares_;
    bool extra_pages_ = false;
};

}  // namespace xtpm::hostile
