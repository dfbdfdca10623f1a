// tpmif_frontend<Hv>: the guest end of a vTPM device, as Linux xen-tpmfront does it
// (xen-vtpm-protocol.md 3.1, 3.4-3.7, 4.3, 4.4, 6; docs/tpmif.md, docs/guest-path.md):
// proto::xenbus::frontend_handshake over xenstore, proto::tpmif::frontend_channel over one
// shared page (+1 with feature-extra-pages), event-driven waits with per-command deadlines,
// cancel on timeout. When the backend closes it waits for it to come back (InitWait) and
// reconnects. Wrapped by forward<> to be a tpm_device.
#pragma once

#include <xtpm/hv/concepts.hpp>
#include <xtpm/hv/xenstore_ops.hpp>
#include <xtpm/io/fd.hpp>
#include <xtpm/io/spin.hpp>
#include <xtpm/proto/tpmif/duration.hpp>
#include <xtpm/proto/tpmif/frontend.hpp>
#include <xtpm/proto/xenbus/frontend.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>

#include <poll.h>
#include <sys/eventfd.h>

namespace xtpm {

template <hv::hypervisor Hv>
class tpmif_frontend {
public:
    struct options {
        unsigned devid = 0;                        // /local/domain/<self>/device/vtpm/<devid>
        wire::family family = wire::family::tpm2;  // of the vTPM behind the backend
        std::size_t max_command_size = 4096;       // capped by the page: 4088 without extra pages
        bool extra_pages = true;                   // advertise feature-extra-pages
        proto::xenbus::frontend_variant variant = proto::xenbus::frontend_variant::linux_driver;
        std::chrono::milliseconds connect_timeout{10000};  // libxl's LIBXL_INIT_TIMEOUT
        std::chrono::milliseconds idle_timeout{2000};      // Linux timeout_c: page IDLE/FINISH
        // Look at the page this long (yielding) before blocking on the event channel: a fast
        // command's answer is seen without a wake-up (io/spin.hpp). 0: always block.
        std::chrono::microseconds poll_window{50};
        proto::tpmif::durations durations = proto::tpmif::default_durations(family);
    };

    // Start the handshake and wait (bounded) until the backend connected.
    static auto open(Hv hv, options opts) -> result<tpmif_frontend> {
        io::unique_fd cancel{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
        if (!cancel) return io::sys_error();
        auto dir = "/local/domain/" + std::to_string(hv.self()) + "/device/vtpm/" + std::to_string(opts.devid);
        auto st = std::make_unique<state>(std::move(hv), opts, std::move(dir));
        st->cancel_fd = std::move(cancel);
        tpmif_frontend f{std::move(st)};
        f.run(f.st_->hs.start());
        if (auto r = f.await_connected(opts.connect_timeout); !r) return std::unexpected{r.error()};
        return f;
    }

    // One exchange: wait for the page, SUBMIT, wait for FINISH within the command's
    // duration, cancel on timeout. `out` receives the response.
    auto transact(wire::bytes_view cmd, std::uint8_t locality, wire::bytes_span out) -> result<wire::bytes_view> {
        auto& s = *st_;
        if (s.cancel_flag.exchange(false)) drain(s.cancel_fd.get());  // a syscall only after a cancel()
        // Xenstore news (the backend closed or came back) is read whenever we block, and here
        // at most once per pump_interval: a syscall per command would cost ~0.5 us, a sixth of
        // the round trip (docs/benchmarks.md, "tpmif"). Linux xen-tpmfront does not look at
        // xenstore per command either (its xenwatch thread does).
        if (clock::now() - s.pumped >= pump_interval)
            if (auto r = pump(); !r) return std::unexpected{r.error()};
        if (auto r = await_connected(s.opts.connect_timeout); !r) return std::unexpected{r.error()};
        auto const region = s.region();
        if (!s.ch.can_submit(region)) {  // Linux: wait timeout_c for the IDLE bit
            auto const r = wait_page(region, clock::now() + s.opts.idle_timeout, [&] { return s.ch.can_submit(region); });
            if (!r) return std::unexpected{r.error()};
            if (!*r) return fail(errc::busy);
        }
        if (auto r = s.ch.submit(region, cmd, locality); !r) return std::unexpected{r.error()};
        (void)s.hv.notify(*s.port);
        // FINISH or IDLE is "can submit" again. The notify that comes with it stays pending
        // and is consumed by the next blocking wait, if any.
        (void)io::spin_until([&] { return s.ch.can_submit(region); }, s.opts.poll_window);
        auto deadline = clock::now() + duration(cmd);
        bool canceled = false, timed_out = false;
        for (;;) {
            auto pr = s.ch.poll(s.region(), out);
            if (!pr) return std::unexpected{pr.error()};
            if (pr->status == proto::tpmif::poll_status::finished)
                return timed_out ? fail(errc::canceled) : result<wire::bytes_view>{pr->response};
            if (pr->status == proto::tpmif::poll_status::canceled) return fail(errc::canceled);
            auto const w = wait(deadline, true);
            if (!w) return std::unexpected{w.error()};
            if (!s.connected()) return fail(errc::closed);  // the backend went away meanwhile
            bool const now_cancel = *w == wake::cancel || (*w == wake::timeout && !canceled);
            if (*w == wake::timeout && canceled) return fail(errc::canceled);  // no answer to CANCEL either
            if (now_cancel && !canceled) {
                timed_out = *w == wake::timeout;
                canceled = true;
                s.ch.cancel(s.region());
                (void)s.hv.notify(*s.port);
                deadline = clock::now() + s.opts.idle_timeout;
            }
        }
    }

    // Any thread, while transact() runs: ask the backend to cancel (Linux vtpm_cancel).
    void cancel() noexcept {
        st_->cancel_flag.store(true);
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(st_->cancel_fd.get(), &one, sizeof one);
    }

    [[nodiscard]] auto family() const -> wire::family { return st_->opts.family; }
    // What one page carries (4088) unless extra pages were negotiated (4096).
    [[nodiscard]] auto max_command_size() const -> std::size_t {
        auto const cap = st_->extra ? std::size_t{4096} : proto::tpmif::single_page_capacity;
        return std::min(st_->opts.max_command_size, cap);
    }
    [[nodiscard]] auto connected() const -> bool { return st_->connected(); }
    [[nodiscard]] auto extra_pages() const -> bool { return st_->extra; }
    [[nodiscard]] auto hv() -> Hv& { return st_->hv; }

    // While no command runs, the host polls event_fd() and calls service() (on the thread
    // discipline of transact): the backend's Closing (xl vtpm-detach) is answered with Closed
    // and a restarted backend is reconnected at once, as Linux's xenwatch thread does.
    [[nodiscard]] auto event_fd() const -> int { return st_->hv.xenstore_fd(); }
    auto service() -> result<void> { return pump(); }

    // Orderly shutdown (Mini-OS shutdown_tpmfront): Closing, ring keys removed, Closed.
    void close() { run(st_->hs.close()); }

private:
    using clock = std::chrono::steady_clock;
    static constexpr std::string_view hs_token = "xtpm-front";
    static constexpr std::string_view reopen_token = "xtpm-front-reopen";
    enum class wake : std::uint8_t { event, timeout, cancel };
    static constexpr std::chrono::milliseconds pump_interval{1};

    struct state {
        state(Hv h, options o, std::string d)
            : hv{std::move(h)}, opts{o}, dir{std::move(d)}, hs{dir, {o.variant, o.extra_pages}} {}
        Hv hv;
        options opts;
        std::string dir;
        proto::xenbus::frontend_handshake hs;
        proto::tpmif::frontend_channel ch;
        std::optional<typename Hv::share> ring;
        std::optional<hv::evtchn_port_t> port;
        bool ready = false, extra = false;
        std::string reopen_watch;  // the backend state path, watched while we are closed
        io::unique_fd cancel_fd;
        std::atomic<bool> cancel_flag{false};
        clock::time_point pumped{};  // the last look at xenstore
        [[nodiscard]] auto connected() const -> bool { return ready && ring && port; }
        auto region() -> wire::bytes_span {
            auto b = ring->bytes();
            return extra ? b : b.first(proto::tpmif::page_size);
        }
    };

    explicit tpmif_frontend(std::unique_ptr<state> st) : st_{std::move(st)} {}

    // How long the vTPM may take for this command (Linux's per-ordinal classes, doc 3.7).
    auto duration(wire::bytes_view cmd) const -> std::chrono::milliseconds {
        auto const& t = st_->opts.durations;
        if (cmd.size() < wire::header_size) return t.unknown;
        return proto::tpmif::command_duration(st_->opts.family, wire::load_be<std::uint32_t>(cmd.subspan(6, 4)), t);
    }

    static void drain(int fd) {
        std::uint64_t v;
        [[maybe_unused]] auto n = ::read(fd, &v, sizeof v);
    }

    auto await_connected(std::chrono::milliseconds limit) -> result<void> {
        auto& s = *st_;
        auto const deadline = clock::now() + limit;
        while (!s.connected()) {
            auto w = wait(deadline, false);
            if (!w) return std::unexpected{w.error()};
            if (*w == wake::timeout) return fail(errc::not_running);
        }
        return {};
    }

    // Wait for `done()` on the page (event-driven), up to `deadline`.
    template <class Done>
    auto wait_page(wire::bytes_span, clock::time_point deadline, Done done) -> result<bool> {
        while (!done()) {
            auto w = wait(deadline, true);
            if (!w) return std::unexpected{w.error()};
            if (!st_->connected()) return fail(errc::closed);
            if (*w == wake::timeout) return false;
        }
        return true;
    }

    // Block until an event, xenstore activity, a cancel() or the deadline. Xenstore events are
    // handled here, so a backend that closes or comes back is noticed while we wait.
    auto wait(clock::time_point deadline, bool with_cancel) -> result<wake> {
        auto& s = *st_;
        for (;;) {
            auto const left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now()).count();
            if (left <= 0) return wake::timeout;
            pollfd fds[3] = {{s.hv.xenstore_fd(), POLLIN, 0},
                             {s.hv.evtchn_fd(), POLLIN, 0},
                             {s.cancel_fd.get(), static_cast<short>(with_cancel ? POLLIN : 0), 0}};
            int const n = ::poll(fds, 3, static_cast<int>(std::min<long long>(left, INT32_MAX)));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return io::sys_error();
            if (n == 0) continue;  // the deadline check above ends the loop
            if (fds[0].revents) {
                if (auto r = pump(); !r) return std::unexpected{r.error()};
            }
            if (fds[1].revents) {  // one port per wake-up: the fd stays readable while more are pending
                auto p = s.hv.pending();
                if (!p) return std::unexpected{p.error()};
                if (*p) (void)s.hv.unmask(**p);
            }
            if (fds[2].revents) {
                drain(s.cancel_fd.get());
                if (s.cancel_flag.exchange(false)) return wake::cancel;
            }
            if (fds[0].revents || fds[1].revents) return wake::event;
        }
    }

    // Handle every queued watch event.
    auto pump() -> result<void> {
        auto& s = *st_;
        s.pumped = clock::now();
        for (;;) {
            auto ev = s.hv.read_watch();
            if (!ev) return std::unexpected{ev.error()};
            if (!*ev) return {};
            auto const& [path, token] = **ev;
            if (token == hs_token && !s.hs.backend_dir().empty()) {
                auto const p = proto::xenbus::join(s.hs.backend_dir(), proto::xenbus::keys::state);
                auto v = s.hv.read(p, hv::no_tx);
                std::optional<std::string> value = v ? *v : std::nullopt;
                run(s.hs.on_backend_state(value ? std::optional<std::string_view>{*value} : std::nullopt));
            } else if (token == reopen_token && !s.reopen_watch.empty()) {
                auto v = s.hv.read(s.reopen_watch, hv::no_tx);
                auto const st = v && *v ? proto::xenbus::parse_state(**v) : result<proto::xenbus::device_state>{};
                // The backend is back (a restarted vTPM publishes InitWait): reconnect.
                if (v && *v && st && *st == proto::xenbus::device_state::init_wait) {
                    (void)s.hv.unwatch(s.reopen_watch, reopen_token);
                    s.reopen_watch.clear();
                    run(s.hs.reopen());
                }
            }
        }
    }

    void run(proto::xenbus::actions const& acts) {
        auto& s = *st_;
        namespace xb = proto::xenbus;
        for (auto const& act : acts) {
            if (auto const* r = std::get_if<xb::read_keys>(&act)) {
                std::vector<std::optional<std::string>> vals;
                for (auto const& p : r->paths) {
                    auto v = s.hv.read(p, hv::no_tx);
                    vals.push_back(v ? *v : std::nullopt);
                }
                run(s.hs.on_values(vals));
            } else if (auto const* w = std::get_if<xb::write_keys>(&act)) {
                if (w->transaction) run(s.hs.on_transaction(hv::write_all(s.hv, w->entries)));
                else
                    for (auto const& [k, v] : w->entries) (void)s.hv.write(k, v, hv::no_tx);
            } else if (auto const* rm = std::get_if<xb::remove_keys>(&act)) {
                for (auto const& p : rm->paths) (void)s.hv.remove(p, hv::no_tx);
            } else if (auto const* sw = std::get_if<xb::switch_state>(&act)) {
                (void)hv::switch_state(s.hv, sw->path, xb::to_string(sw->state));
            } else if (auto const* wp = std::get_if<xb::watch_path>(&act)) {
                (void)s.hv.watch(wp->path, hs_token);
            } else if (auto const* uw = std::get_if<xb::unwatch_path>(&act)) {
                (void)s.hv.unwatch(uw->path, hs_token);
            } else if (auto const* su = std::get_if<xb::setup_ring>(&act)) {
                auto made = setup(su->backend);
                run(made ? s.hs.on_ring_ready(s.ring->refs()[0], *s.port) : s.hs.on_ring_failed(made.error()));
            } else if (std::holds_alternative<xb::release_ring>(act)) {
                release();
            } else if (auto const* cr = std::get_if<xb::channel_ready>(&act)) {
                s.extra = cr->extra_pages && s.ring->refs().size() > 1;
                s.ch = proto::tpmif::frontend_channel{};
                if (s.extra) (void)s.ch.set_extra_pages(s.ring->refs().subspan(1, 1));
                s.ready = true;
            }
        }
        // Closed by the backend: wait for it to come back rather than spin on a dead one.
        if (s.hs.closed() && s.reopen_watch.empty() && !s.hs.backend_dir().empty()) {
            s.reopen_watch = proto::xenbus::join(s.hs.backend_dir(), proto::xenbus::keys::state);
            (void)s.hv.watch(s.reopen_watch, reopen_token);  // fires once now: a backend already back
        }
    }

    // A zeroed page (+1 for the extension) granted to the backend, and an unbound port.
    auto setup(hv::domid_t backend) -> result<void> {
        auto& s = *st_;
        release();
        auto ring = s.hv.share_pages(backend, s.opts.extra_pages ? 2 : 1, true);
        if (!ring) return std::unexpected{ring.error()};
        auto port = s.hv.alloc_unbound(backend);
        if (!port) return std::unexpected{port.error()};
        s.ring.emplace(std::move(*ring));
        s.port = *port;
        return {};
    }

    void release() {
        auto& s = *st_;
        if (s.port) (void)s.hv.unbind(*s.port);
        s.port.reset();
        s.ring.reset();
        s.ready = false;
        s.extra = false;
        s.ch = proto::tpmif::frontend_channel{};
    }

    std::unique_ptr<state> st_;
};

}  // namespace xtpm
