// The hypervisor policy `Hv`: grant tables, event channels and xenstore, the
// three Xen services a split driver needs. Models: xen_hv (libxengnttab,
// libxenevtchn, libxenstore) and sim_hv (a simulated hypervisor with the same
// semantics for machines without Xen). Protocol code above Hv cannot tell them apart.
// Xen facts: xen/include/public/grant_table.h, event_channel.h, io/xs_wire.h.
#pragma once

#include <xtpm/error.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace xtpm::hv {

using domid_t = std::uint16_t;
using grant_ref_t = std::uint32_t;
using evtchn_port_t = std::uint32_t;
using xs_tx_t = std::uint32_t;

inline constexpr xs_tx_t no_tx = 0;
inline constexpr std::size_t page_size = 4096;

// Foreign pages mapped contiguously into this process (the backend side), or
// pages of ours granted to another domain (the frontend side). Both unmap /
// end the grant on destruction and are movable.
template <class M>
concept page_mapping = std::movable<M> && requires(M& m) {
    { m.bytes() } -> std::same_as<std::span<std::byte>>;
};
template <class S>
concept page_share = page_mapping<S> && requires(S const& s) {
    { s.refs() } -> std::same_as<std::span<grant_ref_t const>>;
};

// Not checked by the compiler:
//  - map_grants fails unless every ref was granted by `granter` to this domain, and a read-only
//    grant cannot be mapped writable: an errno in std::system_category (EPERM: not ours or not
//    writable; EINVAL: no such ref), i.e. errc::io_error through to_errc(); a read-only mapping
//    faults on write;
//  - the pages of one map_grants call are contiguous in bytes(), in ref order (1-256 refs);
//  - share_pages returns 1-256 zeroed pages granted to `grantee`; destroying the share ends the
//    grants: later maps fail, existing foreign mappings stay valid (a busy grant in Xen).
template <class H>
concept grant_table = requires(H& h, domid_t d, std::span<grant_ref_t const> refs, bool writable,
                               std::size_t count) {
    typename H::mapping;
    typename H::share;
    requires page_mapping<typename H::mapping>;
    requires page_share<typename H::share>;
    { h.map_grants(d, refs, writable) } -> std::same_as<result<typename H::mapping>>;
    { h.share_pages(d, count, writable) } -> std::same_as<result<typename H::share>>;
};

// Event channels: pairs of ports with a pending bit each. Not checked by the compiler:
//  - alloc_unbound(remote) makes a port that `remote` may bind with bind_interdomain(us, port);
//  - binding marks the new local port pending (Xen's "lost notifications" rule), so a notify
//    sent before the other end bound is never lost;
//  - notify on a port whose peer is gone (or not bound yet) succeeds and does nothing, as in
//    Xen; on a port this handle does not hold it fails (EINVAL);
//  - evtchn_fd() becomes readable when any port is pending; pending() consumes one pending
//    port or returns nullopt, never blocks; unmask(port) re-arms it after handling (sim_hv:
//    a no-op, a port is never masked); spurious wakeups are allowed.
template <class H>
concept event_channels = requires(H& h, domid_t d, evtchn_port_t p) {
    { h.alloc_unbound(d) } -> std::same_as<result<evtchn_port_t>>;
    { h.bind_interdomain(d, p) } -> std::same_as<result<evtchn_port_t>>;
    { h.notify(p) } -> std::same_as<result<void>>;
    { h.unbind(p) } -> std::same_as<result<void>>;
    { h.evtchn_fd() } -> std::same_as<int>;
    { h.pending() } -> std::same_as<result<std::optional<evtchn_port_t>>>;
    { h.unmask(p) } -> std::same_as<result<void>>;
};

// xenstore permission entry, as in xs_wire.h / xs_lib: the first entry names the owner and
// the default for everyone else; later entries grant domains read and/or write.
struct xs_permission {
    domid_t domain;
    bool read;
    bool write;
};

struct watch_event {
    std::string path;
    std::string token;
};

// xenstore as a client sees it (docs/misc/xenstore.txt). Not checked by the compiler:
//  - read of a missing node is nullopt, not an error; other failures carry the store's errno
//    (EACCES for a permission refusal) in a std::system_category error_code;
//  - paths not starting with '/' are relative to /local/domain/<self()>;
//  - a watch fires once when registered and then on every change at or below its path,
//    including removal (of the node or of a parent), for nodes this domain may read; a relative
//    watch reports relative paths; xenstore_fd() becomes readable when an event may be queued:
//    then call read_watch() until it returns nullopt (as with xs_check_watch);
//  - transaction_end(tx, true) returns false when the transaction must be retried (EAGAIN);
//    changes made in a transaction fire watches at commit.
template <class H>
concept xenstore = requires(H& h, std::string_view path, std::string_view value, xs_tx_t tx,
                            std::span<xs_permission const> perms, bool commit) {
    { h.self() } -> std::same_as<domid_t>;
    { h.read(path, tx) } -> std::same_as<result<std::optional<std::string>>>;
    { h.write(path, value, tx) } -> std::same_as<result<void>>;
    { h.mkdir(path, tx) } -> std::same_as<result<void>>;
    { h.remove(path, tx) } -> std::same_as<result<void>>;
    { h.directory(path, tx) } -> std::same_as<result<std::vector<std::string>>>;
    { h.set_permissions(path, perms, tx) } -> std::same_as<result<void>>;
    { h.transaction_start() } -> std::same_as<result<xs_tx_t>>;
    { h.transaction_end(tx, commit) } -> std::same_as<result<bool>>;
    { h.watch(path, value) } -> std::same_as<result<void>>;
    { h.unwatch(path, value) } -> std::same_as<result<void>>;
    { h.xenstore_fd() } -> std::same_as<int>;
    { h.read_watch() } -> std::same_as<result<std::optional<watch_event>>>;
};

template <class H>
concept hypervisor = grant_table<H> && event_channels<H> && xenstore<H>;

}  // namespace xtpm::hv
