// What both vTPM xenbus handshake machines share: XenbusState (xen/io/xenbus.h), the
// xenstore keys of the vtpm device class (xen-vtpm-protocol.md 4.1, 4.5), strict
// parsers for the values a peer writes, and the actions the machines ask the I/O layer
// to perform. Every value read from xenstore is untrusted text.
#pragma once

#include <cstdint>  // the Xen public headers do not include it themselves
#include <xen/event_channel.h>
#include <xen/io/xenbus.h>
#include <xen/io/xs_wire.h>
#include <xen/xen.h>

#include <xtpm/error.hpp>

#include <array>
#include <charconv>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace xtpm::proto::xenbus {

// XenbusState (enum xenbus_state of xen/io/xenbus.h, whose name we must not reuse).
enum class device_state : std::uint8_t {
    unknown = XenbusStateUnknown,            // also: the state node is gone
    initialising = XenbusStateInitialising,  // written by the toolstack at creation
    init_wait = XenbusStateInitWait,
    initialised = XenbusStateInitialised,
    connected = XenbusStateConnected,
    closing = XenbusStateClosing,
    closed = XenbusStateClosed,
    reconfiguring = XenbusStateReconfiguring,  // unused by vtpm
    reconfigured = XenbusStateReconfigured,    // unused by vtpm
};

using domid = std::uint16_t;
using grant_ref = std::uint32_t;
using evtchn_port = std::uint32_t;

// Ordinary domains are below DOMID_FIRST_RESERVED (xen.h).
inline constexpr std::uint64_t max_domid = DOMID_FIRST_RESERVED - 1;
// Port 0 is never allocated; the FIFO ABI has the most ports (event_channel.h).
inline constexpr std::uint64_t max_port = EVTCHN_FIFO_NR_CHANNELS - 1;
inline constexpr std::uint64_t max_grant_ref = UINT32_MAX;
// xenstore's own bound on a path (xs_wire.h); a longer value cannot be a path.
inline constexpr std::size_t max_path = XENSTORE_ABS_PATH_MAX;

namespace keys {
inline constexpr std::string_view state = "state";
inline constexpr std::string_view frontend = "frontend";        // backend dir: the frontend's path
inline constexpr std::string_view backend = "backend";          // frontend dir: the backend's path
inline constexpr std::string_view backend_id = "backend-id";    // frontend dir
inline constexpr std::string_view uuid = "uuid";                // backend dir: the vTPM's identity
inline constexpr std::string_view ring_ref = "ring-ref";        // frontend: grant ref, decimal
inline constexpr std::string_view event_channel = "event-channel";
inline constexpr std::string_view protocol_v2 = "feature-protocol-v2";  // both ends, "1"
inline constexpr std::string_view online = "online";            // backend dir: "0" = the toolstack removes it
inline constexpr std::string_view ready = "ready";              // Mini-OS backend, legacy
// xtpm's extension (docs/tpmif.md): both ends write "1", then requests may name
// extra pages. No other implementation knows it; without it, tpmif is single-page.
inline constexpr std::string_view extra_pages = "feature-extra-pages";
}  // namespace keys

inline auto to_string(device_state s) -> std::string {
    return std::to_string(static_cast<unsigned>(s));  // xenstore holds states as "%d"
}

inline auto join(std::string_view dir, std::string_view key) -> std::string {
    std::string p{dir};
    p += '/';
    p += key;
    return p;
}

// A decimal written by a peer, in the canonical form every writer produces ("%u"):
// digits only (no sign, space, leading zero or trailing junk), at most `max`.
inline auto parse_decimal(std::string_view s, std::uint64_t max) noexcept -> result<std::uint64_t> {
    std::uint64_t v = 0;
    if (s.empty() || s.front() < '0' || s.front() > '9' || (s.front() == '0' && s.size() > 1))
        return fail(errc::bad_value);
    auto const [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || end != s.data() + s.size() || v > max) return fail(errc::bad_value);
    return v;
}

// A state node's value; anything but a decimal 0..8 is errc::bad_value.
inline auto parse_state(std::string_view s) noexcept -> result<device_state> {
    auto v = parse_decimal(s, static_cast<std::uint64_t>(device_state::reconfigured));
    if (!v) return std::unexpected{v.error()};
    return static_cast<device_state>(*v);
}

using uuid_bytes = std::array<std::byte, 16>;

// The canonical 36-character form 8-4-4-4-12 (RFC 9562 section 4), either hex case.
inline auto parse_uuid(std::string_view s) noexcept -> result<uuid_bytes> {
    if (s.size() != 36) return fail(errc::bad_value);
    uuid_bytes out{};
    std::size_t n = 0;
    for (std::size_t i = 0; i < s.size();) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i++] != '-') return fail(errc::bad_value);
            continue;
        }
        std::uint8_t byte = 0;
        auto const [end, ec] = std::from_chars(s.data() + i, s.data() + i + 2, byte, 16);
        if (ec != std::errc{} || end != s.data() + i + 2) return fail(errc::bad_value);  // "+f", " f"
        out[n++] = std::byte{byte};
        i += 2;
    }
    return out;
}

// An absolute xenstore path made of xenstore's path characters (xs_lib: alnum and
// "-/_@"), without empty or trailing components, under /local/domain/<dom>/.
inline auto path_under_domain(std::string_view p, domid dom) -> bool {
    auto const prefix = "/local/domain/" + std::to_string(dom) + "/";
    if (p.size() <= prefix.size() || p.size() > max_path || !p.starts_with(prefix)) return false;
    if (p.back() == '/' || p.find("//") != std::string_view::npos) return false;
    auto const ok = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '/' || c == '_' || c == '@';
    };
    for (char c : p)
        if (!ok(c)) return false;
    return true;
}

// --- actions: what a machine asks of the I/O layer, in order ---------------------

// Read each path (nullopt for a missing node) and pass the values, in this order, to
// the machine's on_values().
struct read_keys {
    std::vector<std::string> paths;
};
// Write every entry; with `transaction`, all in one transaction whose outcome goes to
// on_transaction() (the machine retries when it must be restarted, EAGAIN).
struct write_keys {
    std::vector<std::pair<std::string, std::string>> entries;
    bool transaction = false;
};
struct remove_keys {  // xenstore rm: recursive
    std::vector<std::string> paths;
};
struct switch_state {  // write `path` (the machine's own <dir>/state) = to_string(state)
    std::string path;
    device_state state;
};
struct watch_path {  // on every event, read the node and pass its value to the machine
    std::string path;
};
struct unwatch_path {
    std::string path;
};
struct map_ring {  // backend: map the grant read-write and bind the port; then on_mapped()
    domid frontend;
    grant_ref ring_ref;
    evtchn_port port;
    bool extra_pages;  // feature-extra-pages negotiated
};
struct unmap_ring {};
struct setup_ring {  // frontend: grant a zeroed page and allocate an unbound port; then on_ring_ready()
    domid backend;
};
struct release_ring {};  // frontend: end the grant, free the page, close the port
struct channel_ready {   // frontend: the channel may carry commands now
    bool extra_pages;
};

using action = std::variant<read_keys, write_keys, remove_keys, switch_state, watch_path, unwatch_path,
                            map_ring, unmap_ring, setup_ring, release_ring, channel_ready>;
using actions = std::vector<action>;

// Both machines build their answer from the answers of smaller steps.
inline void append(actions& out, actions more) {
    for (auto& a : more) out.push_back(std::move(a));
}

}  // namespace xtpm::proto::xenbus
