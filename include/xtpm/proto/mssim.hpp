// The Microsoft/IBM TPM simulator TCP protocol ("mssim"), sans-I/O: command-port
// and platform-port requests as declared codecs, their framing, and the replies.
// Follows TpmTcpProtocol.h / TcpServer.c of the TCG reference simulator
// (peers-and-protocols.md 4.3) as the tpm2-tss mssim TCTI and IBM TSS use it (4.4).
#pragma once

#include <xtpm/proto/detail/coded_message.hpp>
#include <xtpm/wire/header.hpp>

#include <variant>

namespace xtpm::proto::mssim {

enum class cmd : std::uint32_t {
    power_on = 1,
    power_off = 2,
    phys_pres_on = 3,
    phys_pres_off = 4,
    hash_start = 5,
    hash_data = 6,
    hash_end = 7,
    send_command = 8,
    cancel_on = 9,
    cancel_off = 10,
    nv_on = 11,
    nv_off = 12,
    key_cache_on = 13,
    key_cache_off = 14,
    remote_handshake = 15,
    set_alternative_result = 16,
    reset = 17,
    restart = 18,
    session_end = 20,
    stop = 21,
    get_command_response_sizes = 25,
    act_get_signaled = 26,
    test_failure_mode = 30,
};

// The reference server's MAX_BUFFER; servers also apply the device's own buffer size.
inline constexpr std::size_t max_command = std::size_t{1} << 20;
// DRTM data per SIGNAL_HASH_DATA; longer sequences take several requests.
inline constexpr std::size_t max_hash_data = std::size_t{64} << 10;

inline constexpr std::uint32_t ack = 0;    // "done", after every reply
inline constexpr std::uint32_t nack = 1;   // platform port: unknown or failed signal
inline constexpr std::uint32_t server_version = 1;

// TpmEndPointInfo bits of the handshake reply.
namespace endpoint_info {
inline constexpr std::uint32_t platform_available = 0x01;
inline constexpr std::uint32_t uses_tbs = 0x02;
inline constexpr std::uint32_t in_raw_mode = 0x04;
inline constexpr std::uint32_t supports_pp = 0x08;
}  // namespace endpoint_info

template <cmd C>
using bare_request = detail::bare<C>;

// --- command port (TPM_SEND_COMMAND and the DRTM signals) ---
struct send_command_request {  // {u8 locality, u32 length, command}
    static constexpr auto code = cmd::send_command;
    std::uint8_t locality;
    wire::sized<std::uint32_t, max_command> command;
    static constexpr auto fields = wire::describe(&send_command_request::locality, &send_command_request::command);
};
// The part before the TPM command: what swtpm also accepts on its data channel.
inline constexpr std::size_t send_command_prefix_size = 9;

struct hash_data_request {
    static constexpr auto code = cmd::hash_data;
    wire::sized<std::uint32_t, max_hash_data> data;
    static constexpr auto fields = wire::describe(&hash_data_request::data);
};

struct handshake_request {
    static constexpr auto code = cmd::remote_handshake;
    std::uint32_t client_version;  // 0 is refused: the server closes
    static constexpr auto fields = wire::describe(&handshake_request::client_version);
};

struct alternative_result_request {  // accepted and ignored, as the reference server does
    static constexpr auto code = cmd::set_alternative_result;
    std::uint32_t result;
    static constexpr auto fields = wire::describe(&alternative_result_request::result);
};

using command_request =
    std::variant<send_command_request, bare_request<cmd::hash_start>, hash_data_request,
                 bare_request<cmd::hash_end>, handshake_request, alternative_result_request,
                 bare_request<cmd::session_end>, bare_request<cmd::stop>>;

// --- platform port: bare u32 signals, one with a handle ---
struct act_get_signaled_request {
    static constexpr auto code = cmd::act_get_signaled;
    std::uint32_t handle;
    static constexpr auto fields = wire::describe(&act_get_signaled_request::handle);
};

using platform_request =
    std::variant<bare_request<cmd::power_on>, bare_request<cmd::power_off>, bare_request<cmd::phys_pres_on>,
                 bare_request<cmd::phys_pres_off>, bare_request<cmd::cancel_on>, bare_request<cmd::cancel_off>,
                 bare_request<cmd::nv_on>, bare_request<cmd::nv_off>, bare_request<cmd::key_cache_on>,
                 bare_request<cmd::key_cache_off>, bare_request<cmd::reset>, bare_request<cmd::restart>,
                 bare_request<cmd::session_end>, bare_request<cmd::stop>,
                 bare_request<cmd::get_command_response_sizes>, act_get_signaled_request>;

// Framing (detail::bytes_needed): the code, then the fixed part, then the
// whole request. errc::too_large past max_command/max_hash_data,
// errc::unknown_command for a code the port does not serve (the reference
// server closes the connection; the platform port first answers nack).
inline auto command_bytes_needed(wire::bytes_view in) -> result<std::size_t> {
    return detail::bytes_needed<command_request>(in);
}
inline auto decode_command(wire::bytes_view in) -> result<command_request> {
    return detail::decode_message<command_request>(in);
}
inline auto encode_command(command_request const& r, wire::bytes_span out) -> result<wire::bytes_view> {
    return detail::encode_message(r, out);
}
inline auto platform_bytes_needed(wire::bytes_view in) -> result<std::size_t> {
    return detail::bytes_needed<platform_request>(in);
}
inline auto decode_platform(wire::bytes_view in) -> result<platform_request> {
    return detail::decode_message<platform_request>(in);
}
inline auto encode_platform(platform_request const& r, wire::bytes_span out) -> result<wire::bytes_view> {
    return detail::encode_message(r, out);
}

inline auto code_of(command_request const& r) noexcept -> cmd {
    return std::visit([](auto const& m) { return std::remove_cvref_t<decltype(m)>::code; }, r);
}
inline auto code_of(platform_request const& r) noexcept -> cmd {
    return std::visit([](auto const& m) { return std::remove_cvref_t<decltype(m)>::code; }, r);
}

// --- replies ---
struct ack_reply {
    std::uint32_t status;
    static constexpr auto fields = wire::describe(&ack_reply::status);
};

struct handshake_reply {
    std::uint32_t version;
    std::uint32_t info;
    std::uint32_t status;
    static constexpr auto fields =
        wire::describe(&handshake_reply::version, &handshake_reply::info, &handshake_reply::status);
};

// GET_COMMAND_RESPONSE_SIZES: a u32-length-prefixed 16-byte record, then the ack.
struct command_response_sizes {
    std::uint32_t largest_command_size;
    std::uint32_t largest_command;   // its command code
    std::uint32_t largest_response_size;
    std::uint32_t largest_response;  // its response code
    static constexpr auto fields =
        wire::describe(&command_response_sizes::largest_command_size, &command_response_sizes::largest_command,
                       &command_response_sizes::largest_response_size, &command_response_sizes::largest_response);
};
struct sizes_reply {
    std::uint32_t length;  // always 16
    command_response_sizes sizes;
    std::uint32_t status;
    static constexpr auto fields = wire::describe(&sizes_reply::length, &sizes_reply::sizes, &sizes_reply::status);
};

struct act_reply {
    std::uint32_t signaled;
    std::uint32_t status;
    static constexpr auto fields = wire::describe(&act_reply::signaled, &act_reply::status);
};

// A TPM response travels as {u32 length}{response}{u32 0}. The caller leaves
// reply_headroom bytes in front of the response in `buf` and reply_tailroom
// after it; wrap_response fills both in place and returns the whole reply.
inline constexpr std::size_t reply_headroom = 4;
inline constexpr std::size_t reply_tailroom = 4;
inline auto wrap_response(wire::bytes_span buf, std::size_t response_size) noexcept -> wire::bytes_view {
    XTPM_ASSERT(buf.size() >= reply_headroom + response_size + reply_tailroom);
    wire::store_be(buf.first(4), static_cast<std::uint32_t>(response_size));
    wire::store_be(buf.subspan(reply_headroom + response_size, 4), ack);
    return buf.first(reply_headroom + response_size + reply_tailroom);
}

}  // namespace xtpm::proto::mssim
