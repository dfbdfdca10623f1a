// Wire format between sim_hv clients and the xtpm-simhv daemon: one message per
// SOCK_SEQPACKET packet, a struct xsd_sockmsg header (host-order u32s, exactly as
// xen/io/xs_wire.h and docs/misc/xenstore.txt define it) and a payload of NUL-terminated
// strings; errors travel as errno names from Xen's xsd_errors table. Grant-table and
// event-channel requests are sim-only message types in the same framing (docs/sim_hv.md).
#pragma once

#include <xtpm/error.hpp>
#include <xtpm/hv/concepts.hpp>

// xs_wire.h needs the fixed-width types first, and errno names for its xsd_errors table.
#include <cerrno>
#include <cstdint>
#include <xen/io/xs_wire.h>

#include <array>
#include <bit>
#include <charconv>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace xtpm::hv::sim {

enum class msg_type : std::uint32_t {
    directory = XS_DIRECTORY,
    read = XS_READ,
    get_perms = XS_GET_PERMS,
    watch = XS_WATCH,
    unwatch = XS_UNWATCH,
    transaction_start = XS_TRANSACTION_START,
    transaction_end = XS_TRANSACTION_END,
    introduce = XS_INTRODUCE,
    release = XS_RELEASE,
    get_domain_path = XS_GET_DOMAIN_PATH,
    write = XS_WRITE,
    mkdir = XS_MKDIR,
    rm = XS_RM,
    set_perms = XS_SET_PERMS,
    watch_event = XS_WATCH_EVENT,
    error = XS_ERROR,
    is_domain_introduced = XS_IS_DOMAIN_INTRODUCED,
    reset_watches = XS_RESET_WATCHES,
    // sim-only: above every xenstore type, below XS_INVALID (0xffff).
    gnt_share = 0x8000,  // grantee|count|writable|  + 1 sealed memfd  -> ref|*
    gnt_map = 0x8001,    // granter|writable|ref|+                     -> (fd index|page|)+ + fds
    gnt_end = 0x8002,    // ref|+                                      -> OK|
    evt_alloc_unbound = 0x8010,  // remote|                   -> port|  + wait fd, notify fd, words fd
    evt_bind = 0x8011,           // remote|remote port|       -> port|  + wait fd, notify fd, words fd
    evt_unbind = 0x8012,         // port|                     -> OK|
};

inline constexpr std::size_t header_size = sizeof(xsd_sockmsg);
static_assert(header_size == 16);
// Payload limit in both directions (xs_wire.h); a longer message ends the connection.
inline constexpr std::size_t payload_max = XENSTORE_PAYLOAD_MAX;
inline constexpr std::size_t packet_max = header_size + payload_max;
// Path limits (xs_wire.h): absolute after resolution, and relative as sent.
inline constexpr std::size_t abs_path_max = XENSTORE_ABS_PATH_MAX;
inline constexpr std::size_t rel_path_max = XENSTORE_REL_PATH_MAX;
// Pages per share or map call: a tpmif page plus its 255 extra pages (tpmif.h nr_extra_pages).
inline constexpr std::size_t max_pages_per_call = 256;
// SCM_MAX_FD in the Linux kernel: descriptors one sendmsg() may carry.
inline constexpr std::size_t max_fds_per_message = 253;

struct message {
    xsd_sockmsg header;
    std::span<std::byte const> payload;
    [[nodiscard]] auto type() const noexcept -> std::uint32_t { return header.type; }
};

// The header is host order by Xen's definition, so it is copied, not decoded big-endian.
inline auto parse_message(std::span<std::byte const> packet) -> result<message> {
    if (packet.size() < header_size) return fail(errc::truncated);
    std::array<std::byte, header_size> raw{};
    std::memcpy(raw.data(), packet.data(), header_size);
    auto const h = std::bit_cast<xsd_sockmsg>(raw);
    if (h.len > payload_max) return fail(errc::too_large);
    if (h.len != packet.size() - header_size) return fail(errc::size_mismatch);
    return message{h, packet.subspan(header_size)};
}

// Builds one message: strings get their NUL, raw bytes do not (WRITE's value).
class message_builder {
public:
    message_builder() { buf_.resize(header_size); }
    auto str(std::string_view s) -> message_builder& {
        raw(s);
        buf_.push_back(std::byte{0});
        return *this;
    }
    auto raw(std::string_view s) -> message_builder& {
        auto const b = std::as_bytes(std::span{s.data(), s.size()});
        buf_.insert(buf_.end(), b.begin(), b.end());
        return *this;
    }
    template <std::unsigned_integral T>
    auto num(T v) -> message_builder& { return str(std::to_string(v)); }
    // The whole message (the builder is left empty); errc::too_large if the payload exceeds payload_max.
    auto finish(std::uint32_t type, std::uint32_t req_id, std::uint32_t tx_id) -> result<std::vector<std::byte>> {
        auto const len = buf_.size() - header_size;
        if (len > payload_max) return fail(errc::too_large);
        xsd_sockmsg const h{type, req_id, tx_id, static_cast<std::uint32_t>(len)};
        auto const raw_h = std::bit_cast<std::array<std::byte, header_size>>(h);
        std::memcpy(buf_.data(), raw_h.data(), header_size);
        return std::move(buf_);
    }
    auto finish(msg_type type, std::uint32_t req_id, std::uint32_t tx_id) -> result<std::vector<std::byte>> {
        return finish(static_cast<std::uint32_t>(type), req_id, tx_id);
    }

private:
    std::vector<std::byte> buf_;
};

inline auto as_view(std::span<std::byte const> b) -> std::string_view {
    return {reinterpret_cast<char const*>(b.data()), b.size()};  // bytes viewed as chars: same object representation
}

// A payload of NUL-terminated strings (xenstore.txt "<foo>|*"). Bytes after the last
// NUL are an error: every argument must be terminated.
inline auto split_strings(std::span<std::byte const> payload) -> result<std::vector<std::string_view>> {
    std::vector<std::string_view> out;
    auto rest = as_view(payload);
    while (!rest.empty()) {
        auto const nul = rest.find('\0');
        if (nul == std::string_view::npos) return fail(errc::truncated);
        out.push_back(rest.substr(0, nul));
        rest.remove_prefix(nul + 1);
    }
    return out;
}

// Strict unsigned decimal: digits only, no sign, no leading zeros beyond "0", in range.
template <std::unsigned_integral T>
auto parse_decimal(std::string_view s) -> std::optional<T> {
    if (s.empty() || s.size() > 20 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
    T v{};
    auto const [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
}

// errno <-> name through Xen's own table (xs_wire.h xsd_errors), plus ESRCH for the sim-only
// requests (Xen's EVTCHNOP_alloc_unbound answers it for a domain that does not exist).
// Unknown names read as EIO.
inline auto errno_name(int e) -> std::string_view {
    for (auto const& x : xsd_errors)
        if (x.errnum == e) return x.errstring;
    return e == ESRCH ? "ESRCH" : "EIO";
}
inline auto errno_from_name(std::string_view name) -> int {
    for (auto const& x : xsd_errors)
        if (name == x.errstring) return x.errnum;
    return name == "ESRCH" ? ESRCH : EIO;
}

inline auto sys_error(int e) -> std::unexpected<std::error_code> {
    return std::unexpected{std::error_code{e, std::system_category()}};
}

// The errno to put on the wire for an error: system errors as they are; xtpm errc as EINVAL
// (malformed input) or E2BIG (a limit).
inline auto wire_errno(std::error_code ec) -> int {
    if (ec.category() == std::system_category()) return ec.value();
    auto const e = to_errc(ec);
    return e == errc::too_large ? E2BIG : EINVAL;
}

// xs_permission <-> "b0", "r3", "w5", "n7" (xenstore.txt GET_PERMS/SET_PERMS).
inline auto perm_string(xs_permission p) -> std::string {
    std::string s(1, p.read && p.write ? 'b' : p.read ? 'r' : p.write ? 'w' : 'n');
    return s.append(std::to_string(p.domain));
}
inline auto parse_perm(std::string_view s) -> std::optional<xs_permission> {
    if (s.empty()) return std::nullopt;
    auto const d = parse_decimal<domid_t>(s.substr(1));
    if (!d) return std::nullopt;
    switch (s[0]) {
    case 'b': return xs_permission{*d, true, true};
    case 'r': return xs_permission{*d, true, false};
    case 'w': return xs_permission{*d, false, true};
    case 'n': return xs_permission{*d, false, false};
    default: return std::nullopt;
    }
}

}  // namespace xtpm::hv::sim
