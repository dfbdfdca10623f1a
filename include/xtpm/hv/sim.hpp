// sim_hv: the hypervisor policy (hv/concepts.hpp) over the simulated hypervisor, for
// machines without Xen. A process is a domain by connecting to the xtpm-simhv daemon's
// <dir>/dom<N>.sock; grants are shared memfd pages, event channels eventfd pairs (the
// notify path never touches the daemon), xenstore is the daemon's tree with Xen's semantics.
// Daemon: sim/daemon.hpp, roles/xtpm-simhv. Semantics and differences: docs/sim_hv.md.
#pragma once

#include <xtpm/hv/concepts.hpp>
#include <xtpm/hv/sim/pages.hpp>
#include <xtpm/hv/sim/pending_words.hpp>

#include <filesystem>
#include <map>
#include <memory>

namespace xtpm::hv {

class sim_hv {
public:
    using mapping = sim::mapped_pages;
    using share = sim::shared_pages;

    // Connect to the daemon serving `dir` as domain `self`. ENOENT (std::system_category)
    // when the domain has no socket: the daemon is not running or the domain not introduced.
    static auto connect(std::filesystem::path const& dir, domid_t self) -> result<sim_hv> {
        auto ch = sim::channel::open(sim::socket_path(dir, self));
        if (!ch) return std::unexpected{ch.error()};
        io::unique_fd ep{::epoll_create1(EPOLL_CLOEXEC)};
        if (!ep) return io::sys_error();
        return sim_hv{std::make_shared<sim::channel>(std::move(*ch)), self, std::move(ep)};
    }

    // --- grant table -----------------------------------------------------------------
    auto map_grants(domid_t granter, std::span<grant_ref_t const> refs, bool writable) -> result<mapping> {
        sim::message_builder b;
        b.num(granter).str(writable ? "1" : "0");
        for (auto const r : refs) b.num(r);
        auto rep = call(sim::msg_type::gnt_map, no_tx, b);
        if (!rep) return std::unexpected{rep.error()};
        auto args = sim::split_strings(std::as_bytes(std::span{rep->payload}));
        if (!args || args->size() != 2 * refs.size()) return fail(errc::io_error);
        std::vector<std::pair<std::size_t, std::uint32_t>> pages;
        for (std::size_t i = 0; i < refs.size(); ++i) {
            auto const fd = sim::parse_decimal<std::size_t>((*args)[2 * i]);
            auto const page = sim::parse_decimal<std::uint32_t>((*args)[2 * i + 1]);
            if (!fd || !page || *fd >= rep->fds.size()) return fail(errc::io_error);
            pages.emplace_back(*fd, *page);
        }
        return mapping::map(rep->fds, pages, writable);
    }

    auto share_pages(domid_t grantee, std::size_t count, bool writable) -> result<share> {
        if (count == 0 || count > sim::max_pages_per_call) return fail(errc::bad_value);
        auto made = share::create(count, writable);
        if (!made) return std::unexpected{made.error()};
        sim::message_builder b;
        b.num(grantee).num(count).str(writable ? "1" : "0");
        int const fd = made->first.get();
        auto rep = call(sim::msg_type::gnt_share, no_tx, b, std::span{&fd, 1});
        if (!rep) return std::unexpected{rep.error()};
        auto args = sim::split_strings(std::as_bytes(std::span{rep->payload}));
        if (!args || args->size() != count) return fail(errc::io_error);
        std::vector<grant_ref_t> refs;
        for (auto const s : *args) {
            auto r = sim::parse_decimal<grant_ref_t>(s);
            if (!r) return fail(errc::io_error);
            refs.push_back(*r);
        }
        return share{std::move(made->second), std::move(refs), ch_};
    }

    // --- event channels ----------------------------------------------------------------
    auto alloc_unbound(domid_t remote) -> result<evtchn_port_t> {
        sim::message_builder b;
        b.num(remote);
        return add_port(call(sim::msg_type::evt_alloc_unbound, no_tx, b), 0);
    }
    auto bind_interdomain(domid_t remote, evtchn_port_t remote_port) -> result<evtchn_port_t> {
        sim::message_builder b;
        b.num(remote).num(remote_port);
        return add_port(call(sim::msg_type::evt_bind, no_tx, b), 1);
    }
    // Set the peer's pending word; write its eventfd only if the word was clear (as Xen
    // sends an upcall only then). A peer that is gone (or not bound yet) makes it a no-op.
    auto notify(evtchn_port_t port) -> result<void> {
        auto const it = ports_.find(port);
        if (it == ports_.end()) return sim::sys_error(EINVAL);
        auto& p = it->second;
        if (!p.words.raise(1 - p.wait_word)) return {};  // already pending: the peer will look
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(p.notify.get(), &one, sizeof one);  // EAGAIN: already pending
        return {};
    }
    auto unbind(evtchn_port_t port) -> result<void> {
        auto const it = ports_.find(port);
        if (it == ports_.end()) return sim::sys_error(EINVAL);
        ::epoll_ctl(evt_ep_.get(), EPOLL_CTL_DEL, it->second.wait.get(), nullptr);
        ports_.erase(it);
        sim::message_builder b;
        b.num(port);
        auto r = call(sim::msg_type::evt_unbind, no_tx, b);
        if (!r) return std::unexpected{r.error()};
        return {};
    }
    [[nodiscard]] auto evtchn_fd() const noexcept -> int { return evt_ep_.get(); }
    // One pending port, its word cleared and its eventfd drained. Without Xen's mask bit,
    // unmask is a no-op: a notify that arrives while the port is handled makes it pending again.
    auto pending() -> result<std::optional<evtchn_port_t>> {
        // A split driver has one or two ports: looking at them directly saves the epoll.
        if (ports_.size() <= direct_read_ports) {
            // First the words (no syscall), then the eventfds: a count without its word is a
            // notify that raced with our last take(); reading it keeps the fd from staying
            // readable, and the port is reported (a spurious wake-up, allowed).
            for (bool const by_word : {true, false}) {
                auto it = ports_.upper_bound(last_pending_);  // round robin, so no port starves
                for (std::size_t i = 0; i < ports_.size(); ++i, ++it) {
                    if (it == ports_.end()) it = ports_.begin();
                    auto& p = it->second;
                    if (by_word && !p.words.is_set(p.wait_word)) continue;
                    if (!drain(p) && !by_word) continue;
                    last_pending_ = it->first;
                    return it->first;
                }
            }
            return std::nullopt;
        }
        for (;;) {
            epoll_event ev{};
            int const n = ::epoll_wait(evt_ep_.get(), &ev, 1, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return io::sys_error();
            if (n == 0) return std::nullopt;
            auto const it = ports_.find(ev.data.u32);
            if (it == ports_.end()) continue;
            if (drain(it->second)) return it->first;
        }
    }
    auto unmask(evtchn_port_t port) -> result<void> {
        if (!ports_.contains(port)) return sim::sys_error(EINVAL);
        return {};
    }

    // --- xenstore ----------------------------------------------------------------------
    [[nodiscard]] auto self() const noexcept -> domid_t { return self_; }

    auto read(std::string_view path, xs_tx_t tx = no_tx) -> result<std::optional<std::string>> {
        sim::message_builder b;
        auto r = call(sim::msg_type::read, tx, path_arg(b, path));
        if (!r && r.error() == std::error_code{ENOENT, std::system_category()}) return std::nullopt;
        if (!r) return std::unexpected{r.error()};
        return std::move(r->payload);
    }
    auto write(std::string_view path, std::string_view value, xs_tx_t tx = no_tx) -> result<void> {
        sim::message_builder b;
        return ok(call(sim::msg_type::write, tx, path_arg(b, path).raw(value)));
    }
    auto mkdir(std::string_view path, xs_tx_t tx = no_tx) -> result<void> {
        sim::message_builder b;
        return ok(call(sim::msg_type::mkdir, tx, path_arg(b, path)));
    }
    auto remove(std::string_view path, xs_tx_t tx = no_tx) -> result<void> {
        sim::message_builder b;
        return ok(call(sim::msg_type::rm, tx, path_arg(b, path)));
    }
    auto directory(std::string_view path, xs_tx_t tx = no_tx) -> result<std::vector<std::string>> {
        sim::message_builder b;
        auto r = call(sim::msg_type::directory, tx, path_arg(b, path));
        if (!r) return std::unexpected{r.error()};
        auto names = sim::split_strings(std::as_bytes(std::span{r->payload}));
        if (!names) return fail(errc::io_error);
        return std::vector<std::string>(names->begin(), names->end());
    }
    auto set_permissions(std::string_view path, std::span<xs_permission const> perms, xs_tx_t tx = no_tx)
        -> result<void> {
        sim::message_builder b;
        path_arg(b, path);
        for (auto const& p : perms) b.str(sim::perm_string(p));
        return ok(call(sim::msg_type::set_perms, tx, b));
    }
    // Beyond the concept: xs_get_permissions().
    auto get_permissions(std::string_view path, xs_tx_t tx = no_tx) -> result<std::vector<xs_permission>> {
        sim::message_builder b;
        auto r = call(sim::msg_type::get_perms, tx, path_arg(b, path));
        if (!r) return std::unexpected{r.error()};
        auto items = sim::split_strings(std::as_bytes(std::span{r->payload}));
        if (!items) return fail(errc::io_error);
        std::vector<xs_permission> out;
        for (auto const s : *items) {
            auto p = sim::parse_perm(s);
            if (!p) return fail(errc::io_error);
            out.push_back(*p);
        }
        return out;
    }
    auto transaction_start() -> result<xs_tx_t> {
        sim::message_builder b;
        b.str("");
        auto r = call(sim::msg_type::transaction_start, no_tx, b);
        if (!r) return std::unexpected{r.error()};
        auto const id = sim::parse_decimal<xs_tx_t>(std::string_view{r->payload}.substr(0, r->payload.find('\0')));
        if (!id || *id == no_tx) return fail(errc::io_error);
        return *id;
    }
    // false: the transaction conflicted (EAGAIN) and must be retried from the start.
    auto transaction_end(xs_tx_t tx, bool commit) -> result<bool> {
        sim::message_builder b;
        b.str(commit ? "T" : "F");
        auto r = call(sim::msg_type::transaction_end, tx, b);
        if (!r && r.error() == std::error_code{EAGAIN, std::system_category()}) return false;
        if (!r) return std::unexpected{r.error()};
        return true;
    }
    auto watch(std::string_view path, std::string_view token) -> result<void> {
        sim::message_builder b;
        return ok(call(sim::msg_type::watch, no_tx, path_arg(b, path).str(token)));
    }
    auto unwatch(std::string_view path, std::string_view token) -> result<void> {
        sim::message_builder b;
        return ok(call(sim::msg_type::unwatch, no_tx, path_arg(b, path).str(token)));
    }
    [[nodiscard]] auto xenstore_fd() const noexcept -> int { return ch_->event_fd(); }
    auto read_watch() -> result<std::optional<watch_event>> { return ch_->next_event(); }

    // --- toolstack, beyond the concept (dom0 only, as in xenstored) ----------------------
    // Create domain d: its socket appears and /local/domain/<d> is made, owned by d.
    auto introduce_domain(domid_t d) -> result<void> {
        sim::message_builder b;
        b.num(d).str("0").str("0");  // <domid>|<mfn>|<evtchn>|; the ring fields mean nothing here
        return ok(call(sim::msg_type::introduce, no_tx, b));
    }
    // Destroy domain d: its connections close (grants end, ports close), its socket goes.
    auto release_domain(domid_t d) -> result<void> {
        sim::message_builder b;
        b.num(d);
        return ok(call(sim::msg_type::release, no_tx, b));
    }
    auto is_domain_introduced(domid_t d) -> result<bool> {
        sim::message_builder b;
        b.num(d);
        auto r = call(sim::msg_type::is_domain_introduced, no_tx, b);
        if (!r) return std::unexpected{r.error()};
        return r->payload.starts_with('T');
    }

private:
    struct port_fds {
        io::unique_fd wait, notify;
        sim::pending_words words;
        unsigned wait_word;  // ours in `words`; the peer's is the other one
    };

    // Read the eventfd, then clear our word (sim/pending_words.hpp says why in this order).
    // True if either said pending.
    static auto drain(port_fds& p) -> bool {
        std::uint64_t count;
        bool const counted = ::read(p.wait.get(), &count, sizeof count) == sizeof count;
        return p.words.take(p.wait_word) || counted;
    }

    sim_hv(std::shared_ptr<sim::channel> ch, domid_t self, io::unique_fd ep)
        : ch_{std::move(ch)}, self_{self}, evt_ep_{std::move(ep)} {}

    auto call(sim::msg_type t, xs_tx_t tx, sim::message_builder& b, std::span<int const> fds = {})
        -> result<sim::channel::reply> {
        return ch_->call(t, tx, b, fds);
    }
    static auto ok(result<sim::channel::reply> const& r) -> result<void> {
        if (!r) return std::unexpected{r.error()};
        return {};
    }
    // A path with a NUL would split into two arguments: refused here, and by the daemon.
    static auto path_arg(sim::message_builder& b, std::string_view path) -> sim::message_builder& {
        return b.str(path.find('\0') == std::string_view::npos ? path : std::string_view{});
    }

    auto add_port(result<sim::channel::reply> r, unsigned wait_word) -> result<evtchn_port_t> {
        if (!r) return std::unexpected{r.error()};
        auto const port = sim::parse_decimal<evtchn_port_t>(std::string_view{r->payload}.substr(0, r->payload.find('\0')));
        if (!port || r->fds.size() != 3) return fail(errc::io_error);
        auto words = sim::pending_words::map(r->fds[2].get());
        if (!words) return std::unexpected{words.error()};
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = *port;
        if (::epoll_ctl(evt_ep_.get(), EPOLL_CTL_ADD, r->fds[0].get(), &ev) < 0) return io::sys_error();
        ports_.insert_or_assign(*port, port_fds{std::move(r->fds[0]), std::move(r->fds[1]), std::move(*words), wait_word});
        return *port;
    }

    static constexpr std::size_t direct_read_ports = 4;

    std::shared_ptr<sim::channel> ch_;
    domid_t self_;
    io::unique_fd evt_ep_;
    std::map<evtchn_port_t, port_fds> ports_;
    evtchn_port_t last_pending_ = 0;
};

static_assert(hypervisor<sim_hv>);

}  // namespace xtpm::hv
