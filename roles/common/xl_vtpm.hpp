// What xl/libxl write to xenstore for `vtpm=["backend=B,uuid=U"]` and `xl vtpm-detach`
// (xen-vtpm-protocol.md 4.1: libxl generic device add + libxl__set_xenstore_vtpm,
// libxl_device.c permissions), for the sim toolstack and the tests. Runs as dom0.
#pragma once

#include <xtpm/hv/concepts.hpp>
#include <xtpm/hv/xenstore_ops.hpp>
#include <xtpm/proto/xenbus/common.hpp>

#include <array>
#include <chrono>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <poll.h>

namespace xtpm::roles {

struct vtpm_attachment {
    hv::domid_t frontend = 0;
    hv::domid_t backend = 0;
    unsigned devid = 0;
    std::string uuid;  // canonical; random (v4) when empty, as libxl does per boot
};

inline auto backend_dir(vtpm_attachment const& a) -> std::string {
    return "/local/domain/" + std::to_string(a.backend) + "/backend/vtpm/" + std::to_string(a.frontend) + "/" +
           std::to_string(a.devid);
}
inline auto frontend_dir(vtpm_attachment const& a) -> std::string {
    return "/local/domain/" + std::to_string(a.frontend) + "/device/vtpm/" + std::to_string(a.devid);
}
inline auto libxl_dir(vtpm_attachment const& a) -> std::string {
    return "/libxl/" + std::to_string(a.frontend) + "/device/vtpm/" + std::to_string(a.devid);
}

inline auto random_uuid() -> std::string {
    std::random_device rd;
    std::array<unsigned char, 16> b{};
    for (auto& x : b) x = static_cast<unsigned char>(rd());
    b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);  // version 4
    b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);  // RFC 9562 variant
    static constexpr char hex[] = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < b.size(); ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
        s += hex[b[i] >> 4];
        s += hex[b[i] & 15];
    }
    return s;
}

// One transaction, retried on EAGAIN (libxl does the same): both directories with state 1,
// the frontend's owned by the guest and readable by the backend, the backend's owned by
// the backend domain and readable by the guest, and libxl's own bookkeeping copy.
template <class Hv>
auto vtpm_attach(Hv& dom0, vtpm_attachment& a) -> result<void> {
    if (a.uuid.empty()) a.uuid = random_uuid();
    if (!proto::xenbus::parse_uuid(a.uuid)) return fail(errc::bad_value);
    auto const be = backend_dir(a), fe = frontend_dir(a), lx = libxl_dir(a);
    auto const devid = std::to_string(a.devid);
    std::vector<std::pair<std::string, std::string>> const be_keys{
        {"frontend", fe}, {"frontend-id", std::to_string(a.frontend)}, {"online", "1"}, {"state", "1"},
        {"handle", devid}, {"uuid", a.uuid}, {"resume", "False"}};
    std::vector<std::pair<std::string, std::string>> const fe_keys{
        {"backend", be}, {"backend-id", std::to_string(a.backend)}, {"state", "1"}, {"handle", devid}};
    std::array const fe_perms{hv::xs_permission{a.frontend, false, false}, hv::xs_permission{a.backend, true, false}};
    std::array const be_perms{hv::xs_permission{a.backend, false, false}, hv::xs_permission{a.frontend, true, false}};
    std::vector<std::pair<std::string, std::string>> writes{{lx + "/frontend", fe}, {lx + "/backend", be}};
    for (auto const& [k, v] : be_keys) {
        writes.emplace_back(be + "/" + k, v);
        writes.emplace_back(lx + "/" + k, v);
    }
    for (auto const& [k, v] : fe_keys) writes.emplace_back(fe + "/" + k, v);
    auto const done = hv::in_transaction(dom0, [&](hv::xs_tx_t tx) -> result<bool> {
        for (auto const& [dir, perms] : {std::pair{fe, std::span{fe_perms}}, std::pair{be, std::span{be_perms}}}) {
            if (auto r = dom0.mkdir(dir, tx); !r) return std::unexpected{r.error()};
            if (auto r = dom0.set_permissions(dir, perms, tx); !r) return std::unexpected{r.error()};
        }
        for (auto const& [k, v] : writes)
            if (auto r = dom0.write(k, v, tx); !r) return std::unexpected{r.error()};
        return true;
    }, 64);
    if (!done) return std::unexpected{done.error()};
    return *done ? result<void>{} : fail(errc::busy);
}

// The toolstack's removal after the backend closed (or without waiting, forced): frontend
// directory, backend directory, libxl's record.
template <class Hv>
auto vtpm_remove(Hv& dom0, vtpm_attachment const& a) -> result<void> {
    if (auto r = dom0.remove(frontend_dir(a), hv::no_tx); !r) return r;
    (void)dom0.remove(backend_dir(a), hv::no_tx);
    return dom0.remove(libxl_dir(a), hv::no_tx);
}

// xl vtpm-detach as libxl does it (libxl__initiate_device_generic_remove): online=0 and, unless
// already Closed, state=Closing on the backend in one transaction; wait for the backend's
// Closed (LIBXL_DESTROY_TIMEOUT, 10 s); then remove. On timeout libxl retries by force, which
// removes all the same: false says the backend never reached Closed.
template <class Hv>
auto vtpm_detach(Hv& dom0, vtpm_attachment const& a, std::chrono::milliseconds timeout = std::chrono::seconds{10})
    -> result<bool> {
    using dev = proto::xenbus::device_state;
    auto const state = backend_dir(a) + "/state";
    auto const closed = proto::xenbus::to_string(dev::closed);
    auto const asked = hv::in_transaction(dom0, [&](hv::xs_tx_t tx) -> result<bool> {
        auto now = dom0.read(state, tx);
        if (!now) return std::unexpected{now.error()};
        if (!*now) return true;  // no backend directory: nothing to ask or wait for
        if (auto r = dom0.write(backend_dir(a) + "/online", "0", tx); !r) return std::unexpected{r.error()};
        if (**now != closed)
            if (auto r = dom0.write(state, proto::xenbus::to_string(dev::closing), tx); !r)
                return std::unexpected{r.error()};
        return true;
    }, 64);
    if (!asked) return std::unexpected{asked.error()};
    if (!*asked) return fail(errc::busy);
    std::string const token = "xtpm-simxl-detach";
    bool reached = false;
    if (dom0.watch(state, token)) {
        auto const deadline = std::chrono::steady_clock::now() + timeout;
        while (!reached) {
            auto const v = dom0.read(state, hv::no_tx);
            reached = !v || !*v || **v == closed;
            auto const left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (reached || left.count() <= 0) break;
            pollfd p{dom0.xenstore_fd(), POLLIN, 0};
            (void)::poll(&p, 1, static_cast<int>(left.count()));
            while (auto ev = dom0.read_watch())
                if (!*ev) break;
        }
        (void)dom0.unwatch(state, token);
    }
    if (auto r = vtpm_remove(dom0, a); !r) return std::unexpected{r.error()};
    return reached;
}

}  // namespace xtpm::roles
