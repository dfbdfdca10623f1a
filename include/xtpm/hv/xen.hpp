// xen_hv: the hypervisor policy (hv/concepts.hpp) over the real Xen libraries, for dom0 or a
// driver domain: libxengnttab (xengnttab_map_domain_grant_refs, xengntshr_share_pages),
// libxenevtchn and libxenstore (xengnttab.h, xenevtchn.h, xenstore.h of Xen 4.17). Link
// xtpm::xen. Without /dev/xen, open() fails with the libraries' errno (ENOENT).
#pragma once

#include <xtpm/hv/concepts.hpp>
#include <xtpm/io/fd.hpp>

// The Xen library headers declare C functions without extern "C" guards of their own, and
// some rely on the fixed-width types being declared first.
#include <cstdint>
#include <cstdlib>
extern "C" {
#include <xenevtchn.h>
#include <xengnttab.h>
#include <xenstore.h>
}

#include <charconv>
#include <memory>
#include <utility>

#include <poll.h>
#include <sys/mman.h>

namespace xtpm::hv {

class xen_hv {
    struct close_gnttab { void operator()(xengnttab_handle* h) const noexcept { xengnttab_close(h); } };
    struct close_gntshr { void operator()(xengntshr_handle* h) const noexcept { xengntshr_close(h); } };
    struct close_evtchn { void operator()(xenevtchn_handle* h) const noexcept { xenevtchn_close(h); } };
    struct close_xs { void operator()(xs_handle* h) const noexcept { xs_close(h); } };
    struct free_c { void operator()(void* p) const noexcept { std::free(p); } };  // libxenstore's malloc'd results

public:
    // Foreign pages mapped by xengnttab_map_domain_grant_refs; unmapped on destruction. Holds
    // the handle, which must outlive its mappings.
    class mapping {
    public:
        mapping() noexcept = default;
        mapping(std::shared_ptr<xengnttab_handle> h, void* addr, std::uint32_t count) noexcept
            : h_{std::move(h)}, addr_{addr}, count_{count} {}
        mapping(mapping&& o) noexcept
            : h_{std::move(o.h_)}, addr_{std::exchange(o.addr_, nullptr)}, count_{std::exchange(o.count_, 0)} {}
        auto operator=(mapping&& o) noexcept -> mapping& {
            if (this != &o) {
                reset();
                h_ = std::move(o.h_);
                addr_ = std::exchange(o.addr_, nullptr);
                count_ = std::exchange(o.count_, 0);
            }
            return *this;
        }
        ~mapping() { reset(); }
        [[nodiscard]] auto bytes() noexcept -> std::span<std::byte> {
            return {static_cast<std::byte*>(addr_), std::size_t{count_} * page_size};
        }

    private:
        void reset() noexcept {
            if (addr_) xengnttab_unmap(h_.get(), addr_, count_);
            addr_ = nullptr;
        }
        std::shared_ptr<xengnttab_handle> h_;
        void* addr_ = nullptr;
        std::uint32_t count_ = 0;
    };

    // Our pages granted by xengntshr_share_pages; unshared (grants ended) on destruction.
    class share {
    public:
        share() noexcept = default;
        share(std::shared_ptr<xengntshr_handle> h, void* addr, std::vector<grant_ref_t> refs) noexcept
            : h_{std::move(h)}, addr_{addr}, refs_{std::move(refs)} {}
        share(share&& o) noexcept
            : h_{std::move(o.h_)}, addr_{std::exchange(o.addr_, nullptr)}, refs_{std::exchange(o.refs_, {})} {}
        auto operator=(share&& o) noexcept -> share& {
            if (this != &o) {
                reset();
                h_ = std::move(o.h_);
                addr_ = std::exchange(o.addr_, nullptr);
                refs_ = std::exchange(o.refs_, {});
            }
            return *this;
        }
        ~share() { reset(); }
        [[nodiscard]] auto bytes() noexcept -> std::span<std::byte> {
            return {static_cast<std::byte*>(addr_), refs_.size() * page_size};
        }
        [[nodiscard]] auto refs() const noexcept -> std::span<grant_ref_t const> { return refs_; }

    private:
        void reset() noexcept {
            if (addr_) xengntshr_unshare(h_.get(), addr_, static_cast<std::uint32_t>(refs_.size()));
            addr_ = nullptr;
        }
        std::shared_ptr<xengntshr_handle> h_;
        void* addr_ = nullptr;
        std::vector<grant_ref_t> refs_;
    };

    // Open the four handles. `self` is our domain id; by default it is read from the
    // relative key "domid" (written by the toolstack), and 0 if that is absent (dom0).
    static auto open(std::optional<domid_t> self = std::nullopt) -> result<xen_hv> {
        xen_hv h;
        h.gnt_.reset(xengnttab_open(nullptr, 0), close_gnttab{});
        if (!h.gnt_) return io::sys_error();
        h.shr_.reset(xengntshr_open(nullptr, 0), close_gntshr{});
        if (!h.shr_) return io::sys_error();
        h.evt_.reset(xenevtchn_open(nullptr, 0));
        if (!h.evt_) return io::sys_error();
        h.xs_.reset(xs_open(0));
        if (!h.xs_) return io::sys_error();
        if (self) {
            h.self_ = *self;
        } else {
            auto id = h.read("domid", no_tx);
            if (!id) return std::unexpected{id.error()};
            if (*id) {
                auto const& s = **id;
                auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), h.self_);
                if (ec != std::errc{} || p != s.data() + s.size()) return fail(errc::bad_value);
            }
        }
        return h;
    }

    // --- grant table -----------------------------------------------------------------
    auto map_grants(domid_t granter, std::span<grant_ref_t const> refs, bool writable) -> result<mapping> {
        if (refs.empty()) return fail(errc::bad_value);
        std::vector<std::uint32_t> r(refs.begin(), refs.end());  // the C API takes a non-const array
        auto const n = static_cast<std::uint32_t>(r.size());
        void* const addr = xengnttab_map_domain_grant_refs(gnt_.get(), n, granter, r.data(),
                                                           PROT_READ | (writable ? PROT_WRITE : 0));
        if (!addr) return io::sys_error();
        return mapping{gnt_, addr, n};
    }
    auto share_pages(domid_t grantee, std::size_t count, bool writable) -> result<share> {
        if (count == 0 || count > 256) return fail(errc::bad_value);
        std::vector<grant_ref_t> refs(count);
        void* const addr = xengntshr_share_pages(shr_.get(), grantee, static_cast<int>(count), refs.data(), writable);
        if (!addr) return io::sys_error();
        return share{shr_, addr, std::move(refs)};
    }

    // --- event channels ----------------------------------------------------------------
    auto alloc_unbound(domid_t remote) -> result<evtchn_port_t> {
        return port(xenevtchn_bind_unbound_port(evt_.get(), remote));
    }
    auto bind_interdomain(domid_t remote, evtchn_port_t remote_port) -> result<evtchn_port_t> {
        return port(xenevtchn_bind_interdomain(evt_.get(), remote, remote_port));
    }
    auto notify(evtchn_port_t p) -> result<void> { return check(xenevtchn_notify(evt_.get(), p)); }
    auto unbind(evtchn_port_t p) -> result<void> { return check(xenevtchn_unbind(evt_.get(), p)); }
    [[nodiscard]] auto evtchn_fd() const noexcept -> int { return xenevtchn_fd(evt_.get()); }
    // xenevtchn_pending may block even on a non-blocking fd (xenevtchn.h), so poll first.
    auto pending() -> result<std::optional<evtchn_port_t>> {
        pollfd pfd{evtchn_fd(), POLLIN, 0};
        int const n = ::poll(&pfd, 1, 0);
        if (n < 0 && errno != EINTR) return io::sys_error();
        if (n <= 0) return std::nullopt;
        auto const p = xenevtchn_pending(evt_.get());
        if (p < 0) return io::sys_error();
        return static_cast<evtchn_port_t>(p);
    }
    auto unmask(evtchn_port_t p) -> result<void> { return check(xenevtchn_unmask(evt_.get(), p)); }

    // --- xenstore ----------------------------------------------------------------------
    [[nodiscard]] auto self() const noexcept -> domid_t { return self_; }

    auto read(std::string_view path, xs_tx_t tx = no_tx) -> result<std::optional<std::string>> {
        std::string const p{path};
        unsigned len = 0;
        std::unique_ptr<char, free_c> v{static_cast<char*>(xs_read(xs_.get(), tx, p.c_str(), &len))};
        if (!v) {
            if (errno == ENOENT) return std::nullopt;
            return io::sys_error();
        }
        return std::string{v.get(), len};
    }
    auto write(std::string_view path, std::string_view value, xs_tx_t tx = no_tx) -> result<void> {
        std::string const p{path};
        return check(xs_write(xs_.get(), tx, p.c_str(), value.data(), static_cast<unsigned>(value.size())));
    }
    auto mkdir(std::string_view path, xs_tx_t tx = no_tx) -> result<void> {
        std::string const p{path};
        return check(xs_mkdir(xs_.get(), tx, p.c_str()));
    }
    auto remove(std::string_view path, xs_tx_t tx = no_tx) -> result<void> {
        std::string const p{path};
        return check(xs_rm(xs_.get(), tx, p.c_str()));
    }
    auto directory(std::string_view path, xs_tx_t tx = no_tx) -> result<std::vector<std::string>> {
        std::string const p{path};
        unsigned num = 0;
        std::unique_ptr<char*, free_c> v{xs_directory(xs_.get(), tx, p.c_str(), &num)};
        if (!v) return io::sys_error();
        return std::vector<std::string>(v.get(), v.get() + num);
    }
    auto set_permissions(std::string_view path, std::span<xs_permission const> perms, xs_tx_t tx = no_tx)
        -> result<void> {
        std::string const p{path};
        std::vector<xs_permissions> raw;
        for (auto const& x : perms)
            raw.push_back({x.domain, static_cast<unsigned>((x.read ? XS_PERM_READ : XS_PERM_NONE) |
                                                           (x.write ? XS_PERM_WRITE : XS_PERM_NONE))});
        return check(xs_set_permissions(xs_.get(), tx, p.c_str(), raw.data(), static_cast<unsigned>(raw.size())));
    }
    auto get_permissions(std::string_view path, xs_tx_t tx = no_tx) -> result<std::vector<xs_permission>> {
        std::string const p{path};
        unsigned num = 0;
        std::unique_ptr<xs_permissions, free_c> v{xs_get_permissions(xs_.get(), tx, p.c_str(), &num)};
        if (!v) return io::sys_error();
        std::vector<xs_permission> out;
        for (unsigned i = 0; i < num; ++i) {
            auto const& x = v.get()[i];
            out.push_back({static_cast<domid_t>(x.id), (x.perms & XS_PERM_READ) != 0, (x.perms & XS_PERM_WRITE) != 0});
        }
        return out;
    }
    auto transaction_start() -> result<xs_tx_t> {
        auto const t = xs_transaction_start(xs_.get());
        if (t == XBT_NULL) return io::sys_error();
        return t;
    }
    auto transaction_end(xs_tx_t tx, bool commit) -> result<bool> {
        if (xs_transaction_end(xs_.get(), tx, !commit)) return true;
        if (errno == EAGAIN) return false;
        return io::sys_error();
    }
    auto watch(std::string_view path, std::string_view token) -> result<void> {
        std::string const p{path}, t{token};
        return check(xs_watch(xs_.get(), p.c_str(), t.c_str()));
    }
    auto unwatch(std::string_view path, std::string_view token) -> result<void> {
        std::string const p{path}, t{token};
        return check(xs_unwatch(xs_.get(), p.c_str(), t.c_str()));
    }
    [[nodiscard]] auto xenstore_fd() const noexcept -> int { return xs_fileno(xs_.get()); }
    auto read_watch() -> result<std::optional<watch_event>> {
        std::unique_ptr<char*, free_c> v{xs_check_watch(xs_.get())};
        if (!v) {
            if (errno == EAGAIN) return std::nullopt;
            return io::sys_error();
        }
        return watch_event{v.get()[XS_WATCH_PATH], v.get()[XS_WATCH_TOKEN]};
    }

private:
    xen_hv() = default;

    static auto check(bool ok) -> result<void> {
        if (!ok) return io::sys_error();
        return {};
    }
    static auto check(int rc) -> result<void> {
        if (rc < 0) return io::sys_error();
        return {};
    }
    static auto port(xenevtchn_port_or_error_t p) -> result<evtchn_port_t> {
        if (p < 0) return io::sys_error();
        return static_cast<evtchn_port_t>(p);
    }

    std::shared_ptr<xengnttab_handle> gnt_;
    std::shared_ptr<xengntshr_handle> shr_;
    std::unique_ptr<xenevtchn_handle, close_evtchn> evt_;
    std::unique_ptr<xs_handle, close_xs> xs_;
    domid_t self_ = 0;
};

static_assert(hypervisor<xen_hv>);

}  // namespace xtpm::hv
