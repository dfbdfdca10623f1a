// The three benchmark commands, declared as wire structures, the check of their
// responses, and the floors' canned responses. TCG TPM 2.0 Part 3 sections 16.1
// (GetRandom), 22.2 (PCR_Extend), 22.4 (PCR_Read); Part 1 section 18.6 and Part 2
// section 10.13.2 (TPMS_AUTH_COMMAND) for the password session TPM_RS_PW.
#pragma once

#include "cli.hpp"

#include <xtpm/wire/codec.hpp>
#include <xtpm/wire/header.hpp>

#include <array>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace xtpm::bench {

inline constexpr std::uint16_t alg_sha256 = 0x000B;     // Part 2 section 6.3, TPM_ALG_SHA256
inline constexpr std::uint32_t rs_pw = 0x40000009;      // Part 2 section 7.4, TPM_RS_PW
inline constexpr std::uint32_t bench_pcr = 16;          // resettable debug PCR: extending it is harmless
inline constexpr std::size_t sha256_size = 32;
inline constexpr std::uint16_t random_bytes = 32;

// TPMS_PCR_SELECTION (Part 2 section 10.6.2); 3 select bytes cover PCRs 0-23.
struct pcr_selection {
    std::uint16_t hash{};
    wire::sized<std::uint8_t, 4> select{};
    static constexpr auto fields = wire::describe(&pcr_selection::hash, &pcr_selection::select);
};

// TPMS_AUTH_COMMAND (Part 2 section 10.13.2): the empty password session.
struct auth_command {
    std::uint32_t handle = rs_pw;
    wire::sized<std::uint16_t, 64> nonce{};
    std::uint8_t attributes = 0;
    wire::sized<std::uint16_t, 64> hmac{};
    static constexpr auto fields = wire::describe(&auth_command::handle, &auth_command::nonce,
                                                  &auth_command::attributes, &auth_command::hmac);
};

// TPMT_HA (Part 2 section 10.3.2) for SHA-256 only, the one bank this bench extends.
struct sha256_digest_value {
    std::uint16_t hash = alg_sha256;
    wire::fixed_bytes<sha256_size> digest{};
    static constexpr auto fields =
        wire::describe(&sha256_digest_value::hash, &sha256_digest_value::digest);
};

struct get_random_command {
    wire::command_header header{wire::tpm_st::no_sessions, 0, wire::tpm_cc::get_random};
    std::uint16_t bytes_requested = random_bytes;
    static constexpr auto fields =
        wire::describe(&get_random_command::header, &get_random_command::bytes_requested);
};

struct pcr_extend_command {
    wire::command_header header{wire::tpm_st::sessions, 0, wire::tpm_cc::pcr_extend};
    std::uint32_t pcr_handle = bench_pcr;
    wire::sized<std::uint32_t, 64> authorization{};   // the encoded auth_command
    wire::counted<std::uint32_t, sha256_digest_value, 1> digests{};  // TPML_DIGEST_VALUES
    static constexpr auto fields =
        wire::describe(&pcr_extend_command::header, &pcr_extend_command::pcr_handle,
                       &pcr_extend_command::authorization, &pcr_extend_command::digests);
};

struct pcr_read_command {
    wire::command_header header{wire::tpm_st::no_sessions, 0, wire::tpm_cc::pcr_read};
    wire::counted<std::uint32_t, pcr_selection, 1> selection{};  // TPML_PCR_SELECTION
    static constexpr auto fields =
        wire::describe(&pcr_read_command::header, &pcr_read_command::selection);
};

enum class command_id : std::uint8_t { get_random, pcr_extend, pcr_read };
inline constexpr std::array all_commands{command_id::get_random, command_id::pcr_extend,
                                         command_id::pcr_read};

constexpr auto display_name(command_id c) noexcept -> std::string_view {
    switch (c) {
    case command_id::get_random: return "GetRandom(32)";
    case command_id::pcr_extend: return "PCR_Extend(16)";
    case command_id::pcr_read: return "PCR_Read(16)";
    }
    return "?";
}

// Stable key for the RESULT lines.
constexpr auto key_name(command_id c) noexcept -> std::string_view {
    switch (c) {
    case command_id::get_random: return "get_random";
    case command_id::pcr_extend: return "pcr_extend";
    case command_id::pcr_read: return "pcr_read";
    }
    return "?";
}

// Encode a described command and backfill the header's size field (offset 2).
template <class Cmd>
auto encode_command(wire::bytes_span out, Cmd const& cmd) -> result<wire::bytes_view> {
    wire::writer w{out};
    wire::encode(w, cmd);
    if (w.ok()) w.patch_be(2, static_cast<std::uint32_t>(w.size()));
    return w.finish();
}

// One encoded command; 128 bytes hold the largest of the three (65). Holds a
// length, not a view, so that copies stay valid.
struct command_bytes {
    std::array<std::byte, 128> storage{};
    std::size_t size = 0;
    [[nodiscard]] auto bytes() const noexcept -> wire::bytes_view { return wire::bytes_view{storage}.first(size); }
};

inline auto build_command(command_id c) -> result<command_bytes> {
    command_bytes out;
    result<wire::bytes_view> r = fail(errc::bad_value);
    switch (c) {
    case command_id::get_random: r = encode_command(out.storage, get_random_command{}); break;
    case command_id::pcr_extend: {
        std::array<std::byte, 16> auth_buf{};
        auto auth = wire::encode_into(auth_buf, auth_command{});
        if (!auth) return std::unexpected{auth.error()};
        pcr_extend_command cmd;
        cmd.authorization.data = *auth;
        cmd.digests.count = 1;
        cmd.digests.items[0].digest.fill(std::byte{0x5A});
        r = encode_command(out.storage, cmd);
        break;
    }
    case command_id::pcr_read: {
        static constexpr std::array select{std::byte{0x00}, std::byte{0x00}, std::byte{0x01}};  // bit 16
        pcr_read_command cmd;
        cmd.selection.count = 1;
        cmd.selection.items[0] = pcr_selection{alg_sha256, {select}};
        r = encode_command(out.storage, cmd);
        break;
    }
    }
    if (!r) return std::unexpected{r.error()};
    out.size = r->size();
    return out;
}

// Response sizes of a real TPM 2.0 for these commands, which the floor server
// mimics so that every contestant moves the same bytes. The bench checks them
// against in-process libtpms at start-up.
//   GetRandom: header + TPM2B_DIGEST(2 + 32)
//   PCR_Extend: header + parameterSize(4) + TPMS_AUTH_RESPONSE(2 + 1 + 2)
//   PCR_Read: header + pcrUpdateCounter(4) + TPML_PCR_SELECTION(4 + 2 + 1 + 3)
//             + TPML_DIGEST(4 + 2 + 32)
constexpr auto response_size(command_id c) noexcept -> std::size_t {
    switch (c) {
    case command_id::get_random: return wire::header_size + 2 + random_bytes;
    case command_id::pcr_extend: return wire::header_size + 4 + 5;
    case command_id::pcr_read: return wire::header_size + 4 + 10 + 4 + 2 + sha256_size;
    }
    return wire::header_size;
}

constexpr auto command_for_code(wire::tpm_cc cc) noexcept -> std::optional<command_id> {
    switch (cc) {
    case wire::tpm_cc::get_random: return command_id::get_random;
    case wire::tpm_cc::pcr_extend: return command_id::pcr_extend;
    case wire::tpm_cc::pcr_read: return command_id::pcr_read;
    default: return std::nullopt;
    }
}

// A success response of `size` bytes: header, then zeros.
struct canned_response {
    std::array<std::byte, 128> storage{};
    std::size_t size = 0;
    [[nodiscard]] auto bytes() const noexcept -> wire::bytes_view { return wire::bytes_view{storage}.first(size); }
};

inline auto build_canned_response(wire::tpm_st tag, std::size_t size) -> result<canned_response> {
    canned_response out;
    if (size < wire::header_size || size > out.storage.size()) return fail(errc::too_large);
    wire::writer w{out.storage};
    wire::encode(w, wire::response_header{tag, static_cast<std::uint32_t>(size), wire::tpm_rc::success});
    auto r = w.finish();
    if (!r) return std::unexpected{r.error()};
    out.size = size;
    return out;
}

// A round trip's outcome, checked: a response that parses, with rc TPM_RC_SUCCESS.
inline auto check_response(result<wire::bytes_view> const& rsp) -> outcome<> {
    if (!rsp) return std::unexpected{rsp.error().message()};
    auto hdr = wire::parse_response(*rsp);
    if (!hdr) return std::unexpected{"malformed response: " + hdr.error().message()};
    if (hdr->rc != wire::tpm_rc::success) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "TPM rc 0x%X", static_cast<unsigned>(hdr->rc));
        return std::unexpected{std::string{buf}};
    }
    return {};
}

// What every floor answers, by command_id: a real TPM's response size and tag
// (PCR_Extend's response carries a session area, so it is tagged `sessions`).
using canned_responses = std::array<canned_response, all_commands.size()>;

inline auto build_canned_responses() -> result<canned_responses> {
    canned_responses out{};
    for (auto c : all_commands) {
        auto const tag = c == command_id::pcr_extend ? wire::tpm_st::sessions : wire::tpm_st::no_sessions;
        auto r = build_canned_response(tag, response_size(c));
        if (!r) return std::unexpected{r.error()};
        out[static_cast<std::size_t>(c)] = *r;
    }
    return out;
}

}  // namespace xtpm::bench
