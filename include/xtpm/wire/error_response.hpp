// The single table that turns an input error into a TPM return code of the
// right family, and the 10-byte error response carrying it. Every errc has a
// row; the table test checks that (tests/wire/header_test.cpp).
#pragma once

#include <xtpm/wire/header.hpp>

namespace xtpm::wire {

struct rc_row {
    errc error;
    tpm_rc tpm2;   // TPM 2.0 Part 2 section 6.6
    tpm_rc tpm12;  // TPM 1.2 Main Part 2 section 16
};

inline constexpr std::array rc_table{
    rc_row{errc::truncated, rc2::command_size, rc12::bad_param_size},
    rc_row{errc::trailing_bytes, rc2::command_size, rc12::bad_param_size},
    rc_row{errc::bad_tag, rc2::bad_tag, rc12::bad_tag},
    rc_row{errc::size_mismatch, rc2::command_size, rc12::bad_param_size},
    rc_row{errc::too_large, rc2::command_size, rc12::size},
    rc_row{errc::too_small, rc2::command_size, rc12::bad_param_size},
    rc_row{errc::bad_value, rc2::value, rc12::bad_parameter},
    rc_row{errc::unknown_command, rc2::command_code, rc12::bad_ordinal},
    rc_row{errc::buffer_full, rc2::failure, rc12::fail},
    rc_row{errc::device_failure, rc2::failure, rc12::fail},
    rc_row{errc::not_running, rc2::failure, rc12::fail},
    rc_row{errc::canceled, rc2::canceled, rc12::fail},
    rc_row{errc::io_error, rc2::failure, rc12::io_error},
    rc_row{errc::closed, rc2::failure, rc12::io_error},
    rc_row{errc::bad_state, rc2::failure, rc12::fail},
    rc_row{errc::bad_locality, rc2::locality, rc12::bad_locality},
    rc_row{errc::busy, rc2::retry, rc12::retry},
};

constexpr auto to_tpm_rc(errc e, family fam) noexcept -> tpm_rc {
    for (auto const& row : rc_table)
        if (row.error == e) return fam == family::tpm2 ? row.tpm2 : row.tpm12;
    return fam == family::tpm2 ? rc2::failure : rc12::fail;
}

inline auto to_tpm_rc(std::error_code ec, family fam) noexcept -> tpm_rc {
    return to_tpm_rc(to_errc(ec), fam);
}

// A 10-byte response header carrying `rc`: tag TPM_ST_NO_SESSIONS (2.0) or
// TPM_TAG_RSP_COMMAND (1.2). `out` must hold at least header_size bytes.
// Part 2 6.9 also allows TPM_ST_RSP_COMMAND for TPM_RC_BAD_TAG; xtpm answers
// NO_SESSIONS like libtpms does, which every TPM 2.0 client parses.
inline auto error_response(tpm_rc rc, family fam, bytes_span out) noexcept -> bytes_view {
    XTPM_ASSERT(out.size() >= header_size);
    auto const tag = fam == family::tpm2 ? tpm_st::no_sessions : tpm_st::rsp_command;
    auto r = encode_into(out, response_header{tag, header_size, rc});
    return *r;
}

inline auto error_response(std::error_code ec, family fam, bytes_span out) noexcept -> bytes_view {
    return error_response(to_tpm_rc(ec, fam), fam, out);
}

}  // namespace xtpm::wire
