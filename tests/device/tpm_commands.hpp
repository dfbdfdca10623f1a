// TPM command bytes for device tests, built with wire::writer (TPM 2.0 Part 3,
// TPM 1.2 Main Part 3), and small response readers. Test-only: no validation
// beyond what a test needs.
#pragma once

#include <xtpm/wire/header.hpp>

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace xtpm::test {

using bytes = std::vector<std::byte>;

// tag, size (patched at the end), code, then whatever `body` writes.
template <class Body>
auto build(wire::tpm_st tag, std::uint32_t code, Body&& body) -> bytes {
    std::array<std::byte, 1024> buf{};
    wire::writer w{buf};
    w.write_be(tag).write_be(std::uint32_t{0}).write_be(code);
    body(w);
    w.patch_be(2, static_cast<std::uint32_t>(w.size()));
    auto out = w.finish();
    XTPM_ASSERT(out.has_value());
    return {out->begin(), out->end()};
}

inline auto build(wire::tpm_st tag, std::uint32_t code) -> bytes {
    return build(tag, code, [](wire::writer&) {});
}

namespace tpm2 {
inline constexpr std::uint32_t rs_pw = 0x40000009;      // TPM_RS_PW
inline constexpr std::uint32_t rh_owner = 0x40000001;   // TPM_RH_OWNER
inline constexpr std::uint16_t alg_sha256 = 0x000B;
inline constexpr std::uint32_t nv_index = 0x01500000;   // owner NV range
inline constexpr std::uint32_t rc_initialize = 0x100;
inline constexpr std::uint32_t rc_locality = 0x907;

// An empty password authorization area (Part 1 section 19.8.4).
inline void password_auth(wire::writer& w) {
    w.write_be(std::uint32_t{9}).write_be(rs_pw).write_be(std::uint16_t{0}).write_be(std::uint8_t{0}).write_be(
        std::uint16_t{0});
}

inline auto startup_clear() -> bytes {
    return build(wire::tpm_st::no_sessions, 0x144, [](wire::writer& w) { w.write_be(std::uint16_t{0}); });
}
inline auto get_random(std::uint16_t n) -> bytes {
    return build(wire::tpm_st::no_sessions, 0x17B, [&](wire::writer& w) { w.write_be(n); });
}
inline auto pcr_extend(std::uint32_t pcr, std::span<std::byte const, 32> digest) -> bytes {
    return build(wire::tpm_st::sessions, 0x182, [&](wire::writer& w) {
        w.write_be(pcr);
        password_auth(w);
        w.write_be(std::uint32_t{1}).write_be(alg_sha256).bytes(digest);
    });
}
// PCR_Read of one SHA-256 PCR; the digest is at offset 30 of the response.
inline auto pcr_read(std::uint32_t pcr) -> bytes {
    return build(wire::tpm_st::no_sessions, 0x17E, [&](wire::writer& w) {
        std::array<std::byte, 3> select{};
        select[pcr / 8] = static_cast<std::byte>(1u << (pcr % 8));
        w.write_be(std::uint32_t{1}).write_be(alg_sha256).write_be(std::uint8_t{3}).bytes(select);
    });
}
inline constexpr std::size_t pcr_read_digest_offset = 30;

inline auto pcr_reset(std::uint32_t pcr) -> bytes {
    return build(wire::tpm_st::sessions, 0x13D, [&](wire::writer& w) {
        w.write_be(pcr);
        password_auth(w);
    });
}
// An ordinary index readable and writable with its own empty password.
inline auto nv_define_space(std::uint32_t index, std::uint16_t size) -> bytes {
    return build(wire::tpm_st::sessions, 0x12A, [&](wire::writer& w) {
        w.write_be(rh_owner);
        password_auth(w);
        w.write_be(std::uint16_t{0});  // auth
        wire::writer::size_prefix<std::uint16_t> pub{w};
        std::uint32_t const attrs = 0x00000004u     // TPMA_NV_AUTHWRITE
                                    | 0x00040000u   // TPMA_NV_AUTHREAD
                                    | 0x02000000u;  // TPMA_NV_NO_DA
        w.write_be(index).write_be(alg_sha256).write_be(attrs).write_be(std::uint16_t{0}).write_be(size);
    });
}
inline auto nv_write(std::uint32_t index, std::span<std::byte const> data) -> bytes {
    return build(wire::tpm_st::sessions, 0x137, [&](wire::writer& w) {
        w.write_be(index).write_be(index);
        password_auth(w);
        w.write_be(static_cast<std::uint16_t>(data.size())).bytes(data).write_be(std::uint16_t{0});
    });
}
// The data is at offset 16 of the response (header, parameterSize, TPM2B size).
inline auto nv_read(std::uint32_t index, std::uint16_t size) -> bytes {
    return build(wire::tpm_st::sessions, 0x14E, [&](wire::writer& w) {
        w.write_be(index).write_be(index);
        password_auth(w);
        w.write_be(size).write_be(std::uint16_t{0});
    });
}
inline constexpr std::size_t nv_read_data_offset = 16;

// GetCapability(TPM_CAP_TPM_PROPERTIES, property, 1); the value is at offset 23.
inline auto get_tpm_property(std::uint32_t property) -> bytes {
    return build(wire::tpm_st::no_sessions, 0x17A, [&](wire::writer& w) {
        w.write_be(std::uint32_t{6}).write_be(property).write_be(std::uint32_t{1});
    });
}
inline constexpr std::uint32_t pt_max_command_size = 0x11E;
inline constexpr std::uint32_t pt_max_response_size = 0x11F;
inline constexpr std::size_t property_value_offset = 23;
}  // namespace tpm2

namespace tpm12 {
inline auto startup(std::uint16_t type) -> bytes {  // 1 = TPM_ST_CLEAR, 2 = TPM_ST_STATE
    return build(wire::tpm_st::rqu_command, 0x99, [&](wire::writer& w) { w.write_be(type); });
}
inline auto get_random(std::uint32_t n) -> bytes {
    return build(wire::tpm_st::rqu_command, 0x46, [&](wire::writer& w) { w.write_be(n); });
}
inline auto extend(std::uint32_t pcr, std::span<std::byte const, 20> digest) -> bytes {
    return build(wire::tpm_st::rqu_command, 0x14, [&](wire::writer& w) { w.write_be(pcr).bytes(digest); });
}
// The value is at offset 10 of the response.
inline auto pcr_read(std::uint32_t pcr) -> bytes {
    return build(wire::tpm_st::rqu_command, 0x15, [&](wire::writer& w) { w.write_be(pcr); });
}
}  // namespace tpm12

inline auto rc_of(std::span<std::byte const> resp) -> std::uint32_t {
    return resp.size() >= 10 ? wire::load_be<std::uint32_t>(resp.subspan(6, 4)) : 0xFFFFFFFF;
}
inline auto u32_at(std::span<std::byte const> resp, std::size_t off) -> std::uint32_t {
    return wire::load_be<std::uint32_t>(resp.subspan(off, 4));
}

}  // namespace xtpm::test
