// xtpm error codes: one stable enum for every input or I/O failure, its
// std::error_category, and result<T> = std::expected<T, std::error_code>.
// TPM return codes are data (wire::tpm_rc), not errors; see wire/error_response.hpp
// for the single table that turns an errc into a TPM error response.
#pragma once

#include <expected>
#include <string>
#include <system_error>

namespace xtpm {

// Values are stable: never renumber, only append. Each one has a row in
// wire::rc_table (wire/error_response.hpp) and in its table test.
enum class errc : int {
    truncated = 1,        // input ended inside a field
    trailing_bytes = 2,   // bytes left after a complete message
    bad_tag = 3,          // header tag is not a command tag of the device's family
    size_mismatch = 4,    // header size field differs from the bytes received
    too_large = 5,        // larger than the advertised buffer or a named limit
    too_small = 6,        // size field below the 10-byte header
    bad_value = 7,        // a field holds a value outside its range
    unknown_command = 8,  // unknown ordinal or control code
    buffer_full = 9,      // writer capacity exceeded (a bug or an undersized buffer)
    device_failure = 10,  // the device could not execute the command
    not_running = 11,     // the device is stopped or not initialised
    canceled = 12,        // the command was canceled
    io_error = 13,        // a system call failed
    closed = 14,          // the peer closed the connection
    bad_state = 15,       // a state blob is corrupt or unacceptable
    bad_locality = 16,    // locality out of range or not allowed
    busy = 17,            // the operation is not allowed in the current state
};

class error_category_impl final : public std::error_category {
public:
    [[nodiscard]] auto name() const noexcept -> char const* override { return "xtpm"; }
    [[nodiscard]] auto message(int v) const -> std::string override {
        switch (static_cast<errc>(v)) {
        case errc::truncated: return "input truncated";
        case errc::trailing_bytes: return "trailing bytes after message";
        case errc::bad_tag: return "bad tag";
        case errc::size_mismatch: return "size field does not match bytes received";
        case errc::too_large: return "too large";
        case errc::too_small: return "size field smaller than header";
        case errc::bad_value: return "value out of range";
        case errc::unknown_command: return "unknown command";
        case errc::buffer_full: return "output buffer full";
        case errc::device_failure: return "device failure";
        case errc::not_running: return "device not running";
        case errc::canceled: return "canceled";
        case errc::io_error: return "I/O error";
        case errc::closed: return "connection closed";
        case errc::bad_state: return "bad state blob";
        case errc::bad_locality: return "bad locality";
        case errc::busy: return "operation not allowed now";
        }
        return "unknown xtpm error";
    }
};

inline auto error_category() noexcept -> std::error_category const& {
    static error_category_impl const cat;
    return cat;
}

inline auto make_error_code(errc e) noexcept -> std::error_code {
    return {static_cast<int>(e), error_category()};
}

template <class T>
using result = std::expected<T, std::error_code>;

// Shorthand for `return fail(errc::truncated);` inside functions returning result<T>.
inline auto fail(errc e) -> std::unexpected<std::error_code> {
    return std::unexpected{make_error_code(e)};
}

// errc of an error_code from this category, or errc::io_error for foreign ones.
inline auto to_errc(std::error_code ec) noexcept -> errc {
    return ec.category() == error_category() ? static_cast<errc>(ec.value()) : errc::io_error;
}

}  // namespace xtpm

template <>
struct std::is_error_code_enum<xtpm::errc> : std::true_type {};
