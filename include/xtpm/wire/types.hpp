// Strong types for TPM wire values: the two families, structure tags, command
// codes and return codes (TCG TPM 2.0 Part 2 sections 6.5, 6.9, 6.6; TPM 1.2
// Main Part 2 sections 6 and 16). Only the values xtpm itself names are listed.
#pragma once

#include <cstdint>
#include <optional>

namespace xtpm::wire {

enum class family : std::uint8_t { tpm12, tpm2 };

enum class tpm_st : std::uint16_t {
    rqu_command = 0x00C1,  // TPM 1.2 TPM_TAG_RQU_COMMAND
    rqu_auth1 = 0x00C2,
    rqu_auth2 = 0x00C3,
    rsp_command = 0x00C4,  // TPM 1.2 TPM_TAG_RSP_COMMAND
    rsp_auth1 = 0x00C5,
    rsp_auth2 = 0x00C6,
    no_sessions = 0x8001,  // TPM 2.0 TPM_ST_NO_SESSIONS
    sessions = 0x8002,     // TPM 2.0 TPM_ST_SESSIONS
};

enum class tpm_cc : std::uint32_t {
    // TPM 2.0 (Part 2 section 6.5.2)
    self_test = 0x143,
    startup = 0x144,
    shutdown = 0x145,
    get_capability = 0x17A,
    get_random = 0x17B,
    pcr_read = 0x17E,
    pcr_extend = 0x182,
    // TPM 1.2 ordinals (Main Part 2 section 17)
    tpm12_extend = 0x14,
    tpm12_pcr_read = 0x15,
    tpm12_get_random = 0x46,
    tpm12_save_state = 0x98,
    tpm12_startup = 0x99,
};

enum class tpm_rc : std::uint32_t { success = 0 };

// TPM 2.0 response codes (Part 2 section 6.6).
namespace rc2 {
inline constexpr tpm_rc initialize{0x100};
inline constexpr tpm_rc failure{0x101};
inline constexpr tpm_rc value{0x084};
inline constexpr tpm_rc size{0x095};
inline constexpr tpm_rc insufficient{0x09A};
inline constexpr tpm_rc bad_tag{0x01E};
inline constexpr tpm_rc command_size{0x142};
inline constexpr tpm_rc command_code{0x143};
inline constexpr tpm_rc locality{0x907};
inline constexpr tpm_rc canceled{0x909};
inline constexpr tpm_rc retry{0x922};
}  // namespace rc2

// TPM 1.2 return codes (Main Part 2 section 16).
namespace rc12 {
inline constexpr tpm_rc bad_parameter{0x03};
inline constexpr tpm_rc fail{0x09};
inline constexpr tpm_rc bad_ordinal{0x0A};
inline constexpr tpm_rc size{0x17};
inline constexpr tpm_rc bad_param_size{0x19};
inline constexpr tpm_rc bad_tag{0x1E};
inline constexpr tpm_rc io_error{0x1F};
inline constexpr tpm_rc invalid_postinit{0x26};
inline constexpr tpm_rc bad_locality{0x3D};
inline constexpr tpm_rc retry{0x800};
}  // namespace rc12

// Locality of a command, 0-4 (TIS / PTP section 5.5).
inline constexpr std::uint8_t max_locality = 4;

constexpr auto command_family(tpm_st tag) noexcept -> std::optional<family> {
    switch (tag) {
    case tpm_st::rqu_command:
    case tpm_st::rqu_auth1:
    case tpm_st::rqu_auth2: return family::tpm12;
    case tpm_st::no_sessions:
    case tpm_st::sessions: return family::tpm2;
    default: return std::nullopt;
    }
}

constexpr auto response_family(tpm_st tag) noexcept -> std::optional<family> {
    switch (tag) {
    case tpm_st::rsp_command:
    case tpm_st::rsp_auth1:
    case tpm_st::rsp_auth2: return family::tpm12;
    case tpm_st::no_sessions:
    case tpm_st::sessions: return family::tpm2;
    default: return std::nullopt;
    }
}

}  // namespace xtpm::wire
