// The TPM 2.0 commands the hostile frontend sends, declared as wire structures, and the
// readers for the responses it checks. TCG TPM 2.0 Part 3 sections 16.1 (GetRandom),
// 22.3 (PCR_Event; TPM_RH_NULL as pcrHandle computes the digests without extending a PCR),
// 24.1 (CreatePrimary); Part 2 section 10.13.2 (TPMS_AUTH_COMMAND) and 10.3.2 (TPMT_HA).
#pragma once

#include <xtpm/wire/codec.hpp>
#include <xtpm/wire/header.hpp>

#include <array>
#include <optional>
#include <vector>

namespace xtpm::hostile {

inline constexpr std::uint32_t rh_null = 0x40000007;  // Part 2 section 7.4, TPM_RH_NULL
inline constexpr std::uint32_t rs_pw = 0x40000009;    // Part 2 section 7.4, TPM_RS_PW
inline constexpr auto cc_pcr_event = static_cast<wire::tpm_cc>(0x13C);
inline constexpr auto cc_create_primary = static_cast<wire::tpm_cc>(0x131);
inline constexpr std::size_t max_event = 1024;        // TPM2B_EVENT (Part 2 section 10.4.7)

// TPM 2.0 response codes the scenarios name (Part 2 section 6.6).
inline constexpr std::uint32_t rc_value = 0x084;         // what the backend answers unusable extra pages with
inline constexpr std::uint32_t rc_command_size = 0x142;  // ... and requests past the page or the buffer
inline constexpr std::uint32_t rc_canceled = 0x909;
inline constexpr std::uint32_t rc_initialize = 0x100;    // Startup when already started

struct auth_command {  // the empty password session
    std::uint32_t handle = rs_pw;
    wire::sized<std::uint16_t, 64> nonce{};
    std::uint8_t attributes = 0;
    wire::sized<std::uint16_t, 64> hmac{};
    static constexpr auto fields = wire::describe(&auth_command::handle, &auth_command::nonce,
                                                  &auth_command::attributes, &auth_command::hmac);
};

struct startup_command {  // Part 3 section 9.3; TPM_SU_CLEAR = 0
    wire::command_header header{wire::tpm_st::no_sessions, 0, wire::tpm_cc::startup};
    std::uint16_t type = 0;
    static constexpr auto fields = wire::describe(&startup_command::header, &startup_command::type);
};

struct get_random_command {
    wire::command_header header{wire::tpm_st::no_sessions, 0, wire::tpm_cc::get_random};
    std::uint16_t bytes_requested = 0;
    static constexpr auto fields = wire::describe(&get_random_command::header, &get_random_command::bytes_requested);
};

struct get_random_response {
    wire::response_header header;
    wire::sized<std::uint16_t, 64> random;
    static constexpr auto fields = wire::describe(&get_random_response::header, &get_random_response::random);
};

struct pcr_event_command {
    wire::command_header header{wire::tpm_st::sessions, 0, cc_pcr_event};
    std::uint32_t pcr_handle = rh_null;
    wire::sized<std::uint32_t, 64> authorization{};  // the encoded auth_command
    wire::sized<std::uint16_t, max_event> event{};
    static constexpr auto fields = wire::describe(&pcr_event_command::header, &pcr_event_command::pcr_handle,
                                                  &pcr_event_command::authorization, &pcr_event_command::event);
};

// Offset of eventData's first byte inside an encoded pcr_event_command.
inline constexpr std::size_t pcr_event_data_offset = wire::header_size + 4 + 4 + 9 + 2;

// Encode a described command and backfill the header's size field (offset 2).
template <class Cmd>
auto encode_command(Cmd const& cmd) -> result<std::vector<std::byte>> {
    std::vector<std::byte> out(wire::header_size + 8 + 64 + 2 + max_event);
    wire::writer w{out};
    wire::encode(w, cmd);
    if (w.ok()) w.patch_be(2, static_cast<std::uint32_t>(w.size()));
    auto r = w.finish();
    if (!r) return std::unexpected{r.error()};
    out.resize(r->size());
    return out;
}

inline auto startup_clear() -> std::vector<std::byte> {
    auto c = encode_command(startup_command{});
    XTPM_ASSERT(c.has_value());
    return *c;
}

inline auto get_random(std::uint16_t n) -> std::vector<std::byte> {
    auto c = encode_command(get_random_command{.bytes_requested = n});
    XTPM_ASSERT(c.has_value());
    return *c;
}

inline auto pcr_event(wire::bytes_view event) -> std::vector<std::byte> {
    std::array<std::byte, 16> auth_buf{};
    auto auth = wire::encode_into(auth_buf, auth_command{});
    XTPM_ASSERT(auth.has_value() && event.size() <= max_event);
    pcr_event_command cmd;
    cmd.authorization.data = *auth;
    cmd.event.data = event;
    auto c = encode_command(cmd);
    XTPM_ASSERT(c.has_value() && c->size() == pcr_event_data_offset + event.size());
    return *c;
}

// TPM2_CreatePrimary(TPM_RH_NULL) of an RSA-2048 restricted decryption key (the storage key
// template of TCG's EK/SRK profiles): the slowest common command, so a frontend can vanish
// while the vTPM is busy. A golden vector: Part 3 section 24.1, fields in order.
inline constexpr std::array<std::uint8_t, 67> create_primary_rsa{
    0x80, 0x02, 0x00, 0x00, 0x00, 0x43, 0x00, 0x00, 0x01, 0x31,  // sessions, size 67, CreatePrimary
    0x40, 0x00, 0x00, 0x07,                                      // primaryHandle TPM_RH_NULL
    0x00, 0x00, 0x00, 0x09, 0x40, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00,  // TPM_RS_PW
    0x00, 0x04, 0x00, 0x00, 0x00, 0x00,                          // inSensitive: empty auth and data
    0x00, 0x1A,                                                  // inPublic, 26 bytes:
    0x00, 0x01, 0x00, 0x0B, 0x00, 0x03, 0x00, 0x72,              //   RSA, SHA-256, fixedTPM|fixedParent|
    0x00, 0x00,                                                  //   sensitiveDataOrigin|userWithAuth|
    0x00, 0x06, 0x00, 0x80, 0x00, 0x43,                          //   restricted|decrypt; AES-128-CFB
    0x00, 0x10, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,              //   no scheme, 2048 bits, exponent 0
    0x00, 0x00,                                                  //   unique: empty
    0x00, 0x00,                                                  // outsideInfo
    0x00, 0x00, 0x00, 0x00,                                      // creationPCR: none
};

// The digest size of a TPMI_ALG_HASH (Part 2 section 6.3), 0 for an algorithm we do not know.
constexpr auto digest_size(std::uint16_t alg) noexcept -> std::size_t {
    switch (alg) {
    case 0x0004: return 20;  // SHA1
    case 0x000B: return 32;  // SHA256
    case 0x000C: return 48;  // SHA384
    case 0x000D: return 64;  // SHA512
    case 0x0012: return 32;  // SM3_256
    default: return 0;
    }
}

struct bank_digest {
    std::uint16_t alg = 0;
    std::vector<std::byte> digest;
    friend auto operator==(bank_digest const&, bank_digest const&) -> bool = default;
};

// The digests of a successful PCR_Event response: header, parameterSize, TPML_DIGEST_VALUES
// (TPMT_HA is a selector union: the size follows the algorithm), then the session area.
// nullopt when the parameter area does not parse exactly.
inline auto event_digests(wire::bytes_view resp) -> std::optional<std::vector<bank_digest>> {
    wire::reader r{resp};
    auto hdr = wire::decode<wire::response_header>(r);
    auto param_size = r.read_be<std::uint32_t>();
    if (!hdr || !param_size || hdr->rc != wire::tpm_rc::success) return std::nullopt;
    auto params = r.sub(*param_size);
    auto count = params ? params->read_be<std::uint32_t>() : result<std::uint32_t>{fail(errc::truncated)};
    if (!count || *count == 0 || *count > 16) return std::nullopt;  // TPML_DIGEST_VALUES holds at most HASH_COUNT
    std::vector<bank_digest> out;
    for (std::uint32_t i = 0; i < *count; ++i) {
        auto alg = params->read_be<std::uint16_t>();
        if (!alg || digest_size(*alg) == 0) return std::nullopt;
        auto d = params->bytes(digest_size(*alg));
        if (!d) return std::nullopt;
        out.push_back({*alg, {d->begin(), d->end()}});
    }
    if (params->expect_end()) return std::nullopt;
    return out;
}

}  // namespace xtpm::hostile
