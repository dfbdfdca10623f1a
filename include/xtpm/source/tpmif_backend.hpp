// tpmif_backend<Hv>: a request_source serving every vTPM frontend device of the domain it
// runs in over tpmif v2 (xen-vtpm-protocol.md 2-4 and 9; docs/tpmif.md, docs/guest-path.md).
// It watches /local/domain/<self>/backend/vtpm, runs one proto::xenbus::backend_handshake
// per <frontend-id>/<devid> directory and one proto::tpmif::backend_channel per connected
// device, in one epoll loop over the xenstore and event-channel fds. A caller's identity is
// where the toolstack put its directory (frontend id, devid) and the uuid in it, never the
// bytes of a request. A misbehaving frontend only ever gets error answers.
#pragma once

#include <xtpm/hv/concepts.hpp>
#include <xtpm/hv/xenstore_ops.hpp>
#include <xtpm/io/poller.hpp>
#include <xtpm/io/spin.hpp>
#include <xtpm/proto/tpmif/backend.hpp>
#include <xtpm/proto/tpmif/duration.hpp>
#include <xtpm/proto/xenbus/backend.hpp>
#include <xtpm/source/concepts.hpp>
#include <xtpm/source/detail/tpmif_cancel_watch.hpp>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace xtpm {

namespace detail {
inline auto uuid_string(proto::xenbus::uuid_bytes const& u) -> std::string {
    static constexpr char hex[] = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < u.size(); ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
        auto const b = std::to_integer<unsigned>(u[i]);
        s += hex[b >> 4];
        s += hex[b & 15];
    }
    return s;
}
}  // namespace detail

// Who is talking: taken from the xenstore layout, reported to the log hook.
struct tpmif_device_id {
    hv::domid_t frontend = 0;
    unsigned devid = 0;
    std::string uuid;  // canonical form, from the backend directory
};

template <hv::hypervisor Hv>
class tpmif_backend {
public:
    struct options {
        std::optional<hv::domid_t> frontend;  // serve only this frontend domain (default: all)
        std::optional<unsigned> devid;        // and only this device id
        // and only the device whose backend directory names this uuid (xl's vtpm=["uuid=U"]):
        // the one identity of a guest's vTPM that survives reboots (its domain id does not).
        std::optional<proto::xenbus::uuid_bytes> uuid;
        bool extra_pages = true;              // advertise feature-extra-pages (docs/tpmif.md)
        // After answering, look at the connected pages this long (yielding) for the next
        // request before blocking: a guest's next command is picked up without a wake-up
        // (io/spin.hpp). 0: always block.
        std::chrono::microseconds poll_window{50};
        // Connection events (connected, closed, refused, malformed requests), one line each.
        std::function<void(std::string const&)> log;
    };

    static auto create(Hv hv, options opts) -> result<tpmif_backend> {
        auto p = io::poller::create();
        if (!p) return std::unexpected{p.error()};
        auto w = detail::tpmif_cancel_watch::create();
        if (!w) return std::unexpected{w.error()};
        auto st = std::make_unique<state>(std::move(hv), std::move(*p), std::move(opts));
        st->watch = std::move(*w);
        st->base = "/local/domain/" + std::to_string(st->hv.self()) + "/backend/vtpm";
        return tpmif_backend{std::move(st)};
    }

    // Serve until stop() or until xenstore or the event channels fail.
    template <class Handler>
    auto serve(Handler& h) -> result<void> {
        auto& s = *st_;
        s.fam = h.family();
        s.cmd_size = h.max_command_size();
        s.out.resize(std::max<std::size_t>(s.cmd_size, 4096));
        if (auto r = s.poll.add(s.hv.xenstore_fd(), xs_token, EPOLLIN); !r) return r;
        if (auto r = s.poll.add(s.hv.evtchn_fd(), evt_token, EPOLLIN); !r) return r;
        if (auto r = s.hv.watch(s.base, dirs_token); !r) return r;  // fires once: the scan at start-up
        s.watch->start(s.hv, [&s, &h](hv::evtchn_port_t port) {
            // Watcher thread, while the loop thread runs a command: only the busy port matters.
            if (port != s.busy_port || !s.busy) return;
            auto const a = s.busy->ch.on_event(s.busy->region(), {});  // busy: never reads the buffer
            if (std::holds_alternative<proto::tpmif::cancel_device>(a)) h.cancel();
        });
        result<void> out;
        for (bool run = true; run && out;) {
            auto ev = s.poll.wait(std::chrono::milliseconds{-1});
            if (!ev) {
                out = std::unexpected{ev.error()};
                break;
            }
            for (auto const& e : *ev) {
                if (e.data.u64 == io::poller::stop_token) run = false;
                else if (e.data.u64 == xs_token) {
                    out = on_xenstore();
                    serve_deferred(h);  // newly bound pages are looked at once (map())
                }
                else if (e.data.u64 == evt_token) out = on_ports(h);
            }
        }
        s.watch->shutdown();
        for (auto& [dir, d] : s.devices) run_actions(*d, d->hs.close());
        s.devices.clear();
        (void)s.hv.unwatch(s.base, dirs_token);
        return out;
    }

    // Async-signal-safe (one eventfd write).
    void stop() noexcept { st_->poll.stop(); }

    [[nodiscard]] auto hv() -> Hv& { return st_->hv; }
    [[nodiscard]] auto base_path() const -> std::string const& { return st_->base; }

private:
    static constexpr std::uint64_t xs_token = 1, evt_token = 2;
    static constexpr std::string_view dirs_token = "xtpm-backend-dirs";
    static constexpr unsigned malformed_log_limit = 8;
    static constexpr unsigned linger_limit = 64;  // events or requests per turn of the loop  // per connection: a hostile guest cannot flood the log

    struct device {
        device(std::string const& dir, tpmif_device_id who, proto::xenbus::backend_config cfg)
            : hs{dir, who.frontend, cfg}, id{std::move(who)}, token{"xtpm-fe:" + dir} {}
        proto::xenbus::backend_handshake hs;
        proto::tpmif::backend_channel ch;
        tpmif_device_id id;
        std::string token, watched;  // the frontend state watch
        std::optional<typename Hv::mapping> ring;  // the first page, or it and the extra pages
        std::vector<proto::tpmif::grant_ref> mapped_refs;
        proto::xenbus::grant_ref ring_ref = 0;
        std::optional<hv::evtchn_port_t> port;
        std::vector<std::byte> cmd;
        unsigned malformed = 0;
        auto region() -> wire::bytes_span { return ring->bytes(); }
    };

    struct state {
        state(Hv h, io::poller p, options o) : hv{std::move(h)}, poll{std::move(p)}, opts{std::move(o)} {}
        Hv hv;
        io::poller poll;
        options opts;
        std::string base;
        std::map<std::string, std::unique_ptr<device>> devices;  // by backend dir; stable addresses
        std::map<hv::evtchn_port_t, device*> ports;
        std::unique_ptr<detail::tpmif_cancel_watch> watch;
        device* busy = nullptr;  // set while a command runs (read by the watcher under its handshake)
        hv::evtchn_port_t busy_port = 0;
        wire::family fam = wire::family::tpm2;
        std::size_t cmd_size = 4096;
        std::vector<std::byte> out;
        std::vector<hv::evtchn_port_t> deferred;  // a stack; pushed in reverse so served in order
    };

    explicit tpmif_backend(std::unique_ptr<state> st) : st_{std::move(st)} {}

    void log(std::string const& line) const {
        if (st_->opts.log) st_->opts.log(line);
    }
    static auto name(device const& d) -> std::string {
        return std::to_string(d.id.frontend) + "/" + std::to_string(d.id.devid);
    }

    // --- xenstore -------------------------------------------------------------------------
    auto on_xenstore() -> result<void> {
        auto& s = *st_;
        for (;;) {
            auto ev = s.hv.read_watch();
            if (!ev) return std::unexpected{ev.error()};  // the store is gone: cannot go on
            if (!*ev) return {};
            auto const& [path, token] = **ev;
            if (token == dirs_token) {
                if (needs_scan(path)) scan();
                continue;
            }
            for (auto& [dir, d] : s.devices) {
                if (d->token != token || d->watched.empty() || !d->hs.alive()) continue;
                auto v = s.hv.read(d->watched);
                std::optional<std::string> value = v ? *v : std::nullopt;
                run_actions(*d, d->hs.on_frontend_state(value ? std::optional<std::string_view>{*value} : std::nullopt));
                break;
            }
            drop_dead();
        }
    }

    // A new or removed <fe>/<devid> directory, or a key under one we do not know yet.
    auto needs_scan(std::string_view path) const -> bool {
        if (!path.starts_with(st_->base)) return false;
        auto rest = path.substr(st_->base.size());
        if (rest.empty()) return true;
        rest.remove_prefix(1);
        auto const a = rest.find('/');
        if (a == std::string_view::npos) return true;
        auto const b = rest.find('/', a + 1);
        if (b == std::string_view::npos) return true;
        return !st_->devices.contains(st_->base + "/" + std::string{rest.substr(0, b)});
    }

    void scan() {
        auto& s = *st_;
        std::map<std::string, tpmif_device_id> present;
        if (auto fes = s.hv.directory(s.base, hv::no_tx)) {
            for (auto const& fe : *fes) {
                auto const fid = proto::xenbus::parse_decimal(fe, proto::xenbus::max_domid);
                if (!fid || (s.opts.frontend && *fid != *s.opts.frontend)) continue;
                auto devs = s.hv.directory(s.base + "/" + fe, hv::no_tx);
                if (!devs) continue;
                for (auto const& dv : *devs) {
                    auto const did = proto::xenbus::parse_decimal(dv, UINT32_MAX);
                    if (!did || (s.opts.devid && *did != *s.opts.devid)) continue;
                    present.emplace(s.base + "/" + fe + "/" + dv,
                                    tpmif_device_id{static_cast<hv::domid_t>(*fid), static_cast<unsigned>(*did), {}});
                }
            }
        }
        // A directory the toolstack removed: stop serving it (its handshake leaves it alone).
        for (auto it = s.devices.begin(); it != s.devices.end();) {
            if (present.contains(it->first)) {
                ++it;
                continue;
            }
            run_actions(*it->second, it->second->hs.close());
            it = s.devices.erase(it);
        }
        for (auto& [dir, id] : present) {
            if (s.devices.contains(dir)) continue;  // refused or torn down ones stay until the dir goes
            if (!ours(dir)) continue;                // another backend's: not touched, looked at again on change
            auto d = std::make_unique<device>(dir, id, proto::xenbus::backend_config{s.opts.extra_pages});
            auto& ref = *d;
            s.devices.emplace(dir, std::move(d));
            run_actions(ref, ref.hs.start());
        }
    }

    // With a uuid filter, only a directory whose uuid parses and matches is ours.
    auto ours(std::string const& dir) -> bool {
        auto& s = *st_;
        if (!s.opts.uuid) return true;
        auto v = s.hv.read(dir + "/uuid", hv::no_tx);
        if (!v || !*v) return false;
        auto const u = proto::xenbus::parse_uuid(**v);
        return u && *u == *s.opts.uuid;
    }

    void drop_dead() {
        for (auto& [dir, d] : st_->devices)
            if (!d->hs.alive() && d->port) release(*d);
    }

    void run_actions(device& d, proto::xenbus::actions const& acts) {
        auto& s = *st_;
        namespace xb = proto::xenbus;
        for (auto const& act : acts) {
            if (auto const* r = std::get_if<xb::read_keys>(&act)) {
                std::vector<std::optional<std::string>> vals;
                for (auto const& p : r->paths) {
                    auto v = s.hv.read(p, hv::no_tx);
                    vals.push_back(v ? *v : std::nullopt);  // unreadable counts as missing
                }
                run_actions(d, d.hs.on_values(vals));
            } else if (auto const* w = std::get_if<xb::write_keys>(&act)) {
                for (auto const& [k, v] : w->entries) (void)s.hv.write(k, v, hv::no_tx);
            } else if (auto const* rm = std::get_if<xb::remove_keys>(&act)) {
                for (auto const& p : rm->paths) (void)s.hv.remove(p, hv::no_tx);
            } else if (auto const* sw = std::get_if<xb::switch_state>(&act)) {
                (void)hv::switch_state(s.hv, sw->path, xb::to_string(sw->state));
                if (sw->state == xb::device_state::closed && !d.hs.reason().empty())
                    log("device " + name(d) + ": closed: " + d.hs.reason());
            } else if (auto const* wp = std::get_if<xb::watch_path>(&act)) {
                d.watched = wp->path;
                if (!s.hv.watch(wp->path, d.token)) log("device " + name(d) + ": cannot watch " + wp->path);
            } else if (auto const* uw = std::get_if<xb::unwatch_path>(&act)) {
                (void)s.hv.unwatch(uw->path, d.token);
                d.watched.clear();
            } else if (auto const* m = std::get_if<xb::map_ring>(&act)) {
                run_actions(d, d.hs.on_mapped(map(d, *m)));
            } else if (std::holds_alternative<xb::unmap_ring>(act)) {
                release(d);
                log("device " + name(d) + ": disconnected");
            }
        }
    }

    // Map the ring read-write and bind the port (xen-vtpm-protocol.md 4.3 step 4).
    auto map(device& d, proto::xenbus::map_ring const& m) -> result<void> {
        auto& s = *st_;
        release(d);
        auto const ref = static_cast<hv::grant_ref_t>(m.ring_ref);
        auto ring = s.hv.map_grants(m.frontend, std::span{&ref, 1}, true);
        if (!ring) return std::unexpected{ring.error()};
        auto port = s.hv.bind_interdomain(m.frontend, static_cast<hv::evtchn_port_t>(m.port));
        if (!port) return std::unexpected{port.error()};
        d.ring.emplace(std::move(*ring));
        d.ring_ref = m.ring_ref;
        d.mapped_refs.clear();
        d.port = *port;
        d.cmd.resize(s.cmd_size);
        d.malformed = 0;
        d.ch.reset({s.fam, m.extra_pages});
        s.ports[*port] = &d;
        // Look at the page right after binding, not only on an event: Linux submits its first
        // command before we connect, and its notify may not survive to our new port
        // (xen-in-qemu.md, "What the real frontend did", 2). serve() does it after xenstore.
        s.deferred.push_back(*port);
        if (auto u = d.hs.uuid()) d.id.uuid = detail::uuid_string(*u);
        log("device " + name(d) + " uuid=" + d.id.uuid + ": connected, port " + std::to_string(*port) +
            (m.extra_pages ? ", extra pages" : ""));
        return {};
    }

    void release(device& d) {
        auto& s = *st_;
        if (d.port) {
            s.ports.erase(*d.port);
            (void)s.hv.unbind(*d.port);
        }
        d.port.reset();
        d.ring.reset();
        d.mapped_refs.clear();
        d.ch.reset({s.fam, false});
    }

    // --- event channels -------------------------------------------------------------------
    // Bounded: a peer that keeps its port pending (sim_hv: by writing its pending word)
    // cannot keep the loop from xenstore and stop(); a real pending event wakes epoll again.
    template <class Handler>
    auto on_ports(Handler& h) -> result<void> {
        auto& s = *st_;
        for (unsigned n = 0; n < linger_limit; ++n) {
            serve_deferred(h);
            auto p = s.hv.pending();
            if (!p) return std::unexpected{p.error()};
            if (*p) {
                serve_port(h, **p);
            } else {
                linger(h);
                if (s.deferred.empty()) return {};
            }
        }
        serve_deferred(h);
        return {};
    }

    // Ports whose events the watcher consumed while a command ran: their requests are real.
    template <class Handler>
    void serve_deferred(Handler& h) {
        auto& s = *st_;
        while (!s.deferred.empty()) {
            auto const port = s.deferred.back();
            s.deferred.pop_back();
            serve_port(h, port);
        }
    }

    // Serve requests seen on the pages, without their events, until none came for a whole
    // poll window. Their notifies stay pending; the loop consumes them as spurious events.
    // At most linger_limit requests, so xenstore and stop() are heard during a storm.
    template <class Handler>
    void linger(Handler& h) {
        auto& s = *st_;
        device* next = nullptr;
        auto const seen = [&] {
            auto const it = std::ranges::find_if(s.ports, [](auto const& p) { return p.second->ch.wants_service(p.second->region()); });
            next = it == s.ports.end() ? nullptr : it->second;
            return next != nullptr;
        };
        for (unsigned n = 0; n < linger_limit && io::spin_until(seen, s.opts.poll_window); ++n) serve_device(h, *next);
    }

    template <class Handler>
    void serve_port(Handler& h, hv::evtchn_port_t port) {
        auto& s = *st_;
        auto const it = s.ports.find(port);
        if (it != s.ports.end()) serve_device(h, *it->second);
        (void)s.hv.unmask(port);
    }

    template <class Handler>
    void serve_device(Handler& h, device& d) {
        namespace tp = proto::tpmif;
        auto& s = *st_;
        auto act = d.ch.on_event(d.region(), d.cmd);
        for (;;) {
            if (auto const* m = std::get_if<tp::map_pages>(&act)) {
                act = map_extra(d, *m) ? d.ch.on_pages_mapped(d.region(), d.cmd) : d.ch.on_pages_unavailable(d.region());
                continue;
            }
            if (auto const* r = std::get_if<tp::request>(&act)) {
                auto const resp = run(h, d, r->command, r->locality);
                d.ch.complete(d.region(), resp);
                (void)s.hv.notify(*d.port);
            } else if (auto const* bad = std::get_if<tp::malformed>(&act)) {
                if (d.malformed++ < malformed_log_limit)
                    log("device " + name(d) + ": malformed request answered: " + bad->error.message());
                (void)s.hv.notify(*d.port);
            } else if (std::holds_alternative<tp::cancel_acked>(act)) {
                (void)s.hv.notify(*d.port);
            } else if (std::holds_alternative<tp::cancel_device>(act)) {
                h.cancel();  // not reached while idle; kept for completeness of the table
            }
            return;
        }
    }

    // The extra pages: remap the ring with them, contiguous after it (once per set of refs).
    auto map_extra(device& d, proto::tpmif::map_pages const& m) -> bool {
        auto const refs = m.view();
        if (std::ranges::equal(refs, d.mapped_refs)) return true;
        std::vector<hv::grant_ref_t> all{static_cast<hv::grant_ref_t>(d.ring_ref)};
        all.insert(all.end(), refs.begin(), refs.end());
        auto both = st_->hv.map_grants(d.id.frontend, all, true);
        if (!both) return false;
        d.ring.emplace(std::move(*both));
        d.mapped_refs.assign(refs.begin(), refs.end());
        return true;
    }

    // One command on the loop thread, the watcher looking out for CANCEL meanwhile. Only
    // commands that can run long get the watcher: arming it costs two thread hand-offs
    // (~5 us, docs/benchmarks.md "tpmif"), while a fast or medium command ends long before
    // any frontend cancels it, and libtpms honours a cancel only in key generation
    // (TPMLIB_CancelCommand(3)), whose commands are all `slow` (proto/tpmif/duration.hpp).
    template <class Handler>
    auto run(Handler& h, device& d, wire::bytes_view cmd, std::uint8_t locality) -> wire::bytes_view {
        auto& s = *st_;
        auto const cls = cmd.size() < wire::header_size
                             ? proto::tpmif::duration_class::unknown
                             : proto::tpmif::classify(s.fam, wire::load_be<std::uint32_t>(cmd.subspan(6, 4)));
        if (cls == proto::tpmif::duration_class::fast || cls == proto::tpmif::duration_class::medium)
            return h.process(cmd, locality, s.out);
        s.busy = &d;
        s.busy_port = *d.port;
        s.watch->arm();
        auto const resp = h.process(cmd, locality, s.out);
        auto seen = s.watch->disarm();
        s.busy = nullptr;
        s.deferred.insert(s.deferred.end(), seen.rbegin(), seen.rend());  // served next by on_ports()
        return resp;
    }

    std::unique_ptr<state> st_;
};

}  // namespace xtpm
