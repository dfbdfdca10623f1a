// swtpm's control channel ("--ctrl", CMD_* over a stream socket), sans-I/O:
// request framing and decoding, response bodies, result codes. Follows the
// non-CUSE framing of swtpm's include/swtpm/tpm_ioctl.h (u32 BE code + the `req`
// member, answered with the `resp` member) as measured in peers-and-protocols.md
// 4.1 and 4.5 against Debian's swtpm 0.7.1.
#pragma once

#include <xtpm/proto/detail/coded_message.hpp>
#include <xtpm/wire/header.hpp>

#include <variant>

namespace xtpm::proto::swtpm {

enum class ctrl_cmd : std::uint32_t {
    get_capability = 0x01,
    init = 0x02,
    shutdown = 0x03,
    get_tpmestablished = 0x04,
    set_locality = 0x05,
    hash_start = 0x06,
    hash_data = 0x07,
    hash_end = 0x08,
    cancel_tpm_cmd = 0x09,
    store_volatile = 0x0A,
    reset_tpmestablished = 0x0B,
    get_stateblob = 0x0C,
    set_stateblob = 0x0D,
    stop = 0x0E,
    get_config = 0x0F,
    set_datafd = 0x10,
    set_buffersize = 0x11,
    get_info = 0x12,
    lock_storage = 0x13,  // swtpm 0.8+; Debian's 0.7.1 answers TPM_BAD_ORDINAL
};

// PTM_CAP_* bits of GET_CAPABILITY.
namespace cap {
inline constexpr std::uint64_t init = 1U << 0;
inline constexpr std::uint64_t shutdown = 1U << 1;
inline constexpr std::uint64_t get_tpmestablished = 1U << 2;
inline constexpr std::uint64_t set_locality = 1U << 3;
inline constexpr std::uint64_t hashing = 1U << 4;  // HASH_START/DATA/END
inline constexpr std::uint64_t cancel_tpm_cmd = 1U << 5;
inline constexpr std::uint64_t store_volatile = 1U << 6;
inline constexpr std::uint64_t reset_tpmestablished = 1U << 7;
inline constexpr std::uint64_t get_stateblob = 1U << 8;
inline constexpr std::uint64_t set_stateblob = 1U << 9;
inline constexpr std::uint64_t stop = 1U << 10;
inline constexpr std::uint64_t get_config = 1U << 11;
inline constexpr std::uint64_t set_datafd = 1U << 12;
inline constexpr std::uint64_t set_buffersize = 1U << 13;
inline constexpr std::uint64_t get_info = 1U << 14;
inline constexpr std::uint64_t send_command_header = 1U << 15;  // mssim prefix on the data channel
inline constexpr std::uint64_t lock_storage = 1U << 16;
}  // namespace cap

// ptm_res values: TPM 1.2 return codes whatever the TPM family (tpm_ioctl.h).
namespace res {
inline constexpr wire::tpm_rc success = wire::tpm_rc::success;
inline constexpr wire::tpm_rc bad_parameter = wire::rc12::bad_parameter;  // malformed body
inline constexpr wire::tpm_rc fail = wire::rc12::fail;
inline constexpr wire::tpm_rc bad_ordinal = wire::rc12::bad_ordinal;  // unknown, unsupported, or wrong TPM state
inline constexpr wire::tpm_rc io_error = wire::rc12::io_error;
inline constexpr wire::tpm_rc bad_locality = wire::rc12::bad_locality;
inline constexpr wire::tpm_rc retry = wire::rc12::retry;  // GET_STATEBLOB: no such blob (QEMU tolerates it)
}  // namespace res

inline constexpr std::uint32_t init_flag_delete_volatile = 1U << 0;
inline constexpr std::uint32_t state_flag_decrypted = 1;  // request: wants plaintext
inline constexpr std::uint32_t state_flag_encrypted = 2;  // blob is encrypted (swtpm's own key)

// Limits on one request. swtpm accepts up to 0xFFFFFFFF and streams; a daemon
// that holds a request whole needs a bound.
// libtpms 0.9's TPM 2.0 permanent state is below 200 KiB (128 KiB NV); 4 MiB
// leaves room for larger NV profiles and TPM 1.2 while bounding memory.
inline constexpr std::size_t max_state_blob = std::size_t{4} << 20;
// DRTM data per HASH_DATA request; longer sequences take several requests.
inline constexpr std::size_t max_hash_data = std::size_t{64} << 10;

// --- requests: the `u.req` members of tpm_ioctl.h, each after its u32 code ---
template <ctrl_cmd C>
using bare_request = detail::bare<C>;

using get_capability_request = bare_request<ctrl_cmd::get_capability>;
using shutdown_request = bare_request<ctrl_cmd::shutdown>;
using get_tpmestablished_request = bare_request<ctrl_cmd::get_tpmestablished>;
using hash_start_request = bare_request<ctrl_cmd::hash_start>;
using hash_end_request = bare_request<ctrl_cmd::hash_end>;
using cancel_tpm_cmd_request = bare_request<ctrl_cmd::cancel_tpm_cmd>;
using store_volatile_request = bare_request<ctrl_cmd::store_volatile>;
using stop_request = bare_request<ctrl_cmd::stop>;
using get_config_request = bare_request<ctrl_cmd::get_config>;
using set_datafd_request = bare_request<ctrl_cmd::set_datafd>;  // + one fd by SCM_RIGHTS

struct init_request {  // ptm_init
    static constexpr auto code = ctrl_cmd::init;
    std::uint32_t init_flags;
    static constexpr auto fields = wire::describe(&init_request::init_flags);
    friend constexpr auto operator==(init_request, init_request) noexcept -> bool = default;
};

struct set_locality_request {  // ptm_loc
    static constexpr auto code = ctrl_cmd::set_locality;
    std::uint8_t locality;
    static constexpr auto fields = wire::describe(&set_locality_request::locality);
    friend constexpr auto operator==(set_locality_request, set_locality_request) noexcept -> bool = default;
};

struct hash_data_request {  // ptm_hdata
    static constexpr auto code = ctrl_cmd::hash_data;
    wire::sized<std::uint32_t, max_hash_data> data;
    static constexpr auto fields = wire::describe(&hash_data_request::data);
    friend constexpr auto operator==(hash_data_request, hash_data_request) noexcept -> bool = default;
};

struct reset_tpmestablished_request {  // ptm_reset_est
    static constexpr auto code = ctrl_cmd::reset_tpmestablished;
    std::uint8_t locality;
    static constexpr auto fields = wire::describe(&reset_tpmestablished_request::locality);
    friend constexpr auto operator==(reset_tpmestablished_request, reset_tpmestablished_request) noexcept
        -> bool = default;
};

struct get_stateblob_request {  // ptm_getstate
    static constexpr auto code = ctrl_cmd::get_stateblob;
    std::uint32_t state_flags;
    std::uint32_t type;  // state_blob: 1 permanent, 2 volatile, 3 savestate
    std::uint32_t offset;
    static constexpr auto fields = wire::describe(&get_stateblob_request::state_flags,
                                                  &get_stateblob_request::type, &get_stateblob_request::offset);
    friend constexpr auto operator==(get_stateblob_request, get_stateblob_request) noexcept -> bool = default;
};

struct set_stateblob_request {  // ptm_setstate: header, then `length` bytes (QEMU sends them separately)
    static constexpr auto code = ctrl_cmd::set_stateblob;
    std::uint32_t state_flags;
    std::uint32_t type;
    wire::sized<std::uint32_t, max_state_blob> blob;
    static constexpr auto fields = wire::describe(&set_stateblob_request::state_flags,
                                                  &set_stateblob_request::type, &set_stateblob_request::blob);
    friend constexpr auto operator==(set_stateblob_request, set_stateblob_request) noexcept -> bool = default;
};

struct set_buffersize_request {  // ptm_setbuffersize; 0 queries
    static constexpr auto code = ctrl_cmd::set_buffersize;
    std::uint32_t buffer_size;
    static constexpr auto fields = wire::describe(&set_buffersize_request::buffer_size);
    friend constexpr auto operator==(set_buffersize_request, set_buffersize_request) noexcept -> bool = default;
};

struct get_info_request {  // ptm_getinfo
    static constexpr auto code = ctrl_cmd::get_info;
    std::uint64_t flags;
    std::uint32_t offset;
    std::uint32_t pad;
    static constexpr auto fields =
        wire::describe(&get_info_request::flags, &get_info_request::offset, &get_info_request::pad);
    friend constexpr auto operator==(get_info_request, get_info_request) noexcept -> bool = default;
};

struct lock_storage_request {  // ptm_lockstorage (swtpm 0.8+)
    static constexpr auto code = ctrl_cmd::lock_storage;
    std::uint32_t retries;
    static constexpr auto fields = wire::describe(&lock_storage_request::retries);
    friend constexpr auto operator==(lock_storage_request, lock_storage_request) noexcept -> bool = default;
};

using request = std::variant<get_capability_request, init_request, shutdown_request, get_tpmestablished_request,
                             set_locality_request, hash_start_request, hash_data_request, hash_end_request,
                             cancel_tpm_cmd_request, store_volatile_request, reset_tpmestablished_request,
                             get_stateblob_request, set_stateblob_request, stop_request, get_config_request,
                             set_datafd_request, set_buffersize_request, get_info_request, lock_storage_request>;

// Bytes the request at the start of `in` needs (see detail::bytes_needed): fixed
// per code; HASH_DATA and SET_STATEBLOB add their length field, bounded by
// max_hash_data / max_state_blob (errc::too_large). errc::unknown_command for a
// code this header does not list: the server answers TPM_BAD_ORDINAL.
inline auto bytes_needed(wire::bytes_view in) -> result<std::size_t> {
    return detail::bytes_needed<request>(in);
}

// One whole request, exactly bytes_needed() bytes: trailing bytes are an error.
inline auto decode_request(wire::bytes_view in) -> result<request> {
    return detail::decode_message<request>(in);
}

inline auto encode_request(request const& r, wire::bytes_span out) -> result<wire::bytes_view> {
    return detail::encode_message(r, out);
}

// --- responses: the `u.resp` members. Any failure is answered with the 4-byte
// result alone, as swtpm does and as QEMU (>= 9.2) reads it, except GET_STATEBLOB.
struct result_response {
    wire::tpm_rc result;
    static constexpr auto fields = wire::describe(&result_response::result);
};

// swtpm writes htobe64(caps); clients that read a result first see 0 in the top half.
struct capability_response {
    std::uint64_t caps;
    static constexpr auto fields = wire::describe(&capability_response::caps);
};

struct established_response {  // ptm_est: the C struct's padding goes on the wire
    wire::tpm_rc result;
    std::uint8_t bit;
    wire::fixed_bytes<3> pad;
    static constexpr auto fields =
        wire::describe(&established_response::result, &established_response::bit, &established_response::pad);
};

// Followed by `length` blob bytes. GET_STATEBLOB always answers with this
// 16-byte header, zeros after an error, because QEMU reads it whole.
struct stateblob_header {
    wire::tpm_rc result;
    std::uint32_t state_flags;
    std::uint32_t totlength;  // bytes from `offset` to the end: equal to `length` (swtpm 0.7.1)
    std::uint32_t length;
    static constexpr auto fields = wire::describe(&stateblob_header::result, &stateblob_header::state_flags,
                                                  &stateblob_header::totlength, &stateblob_header::length);
};
inline constexpr std::size_t stateblob_header_size = 16;

struct config_response {
    wire::tpm_rc result;
    std::uint32_t flags;  // 1 FILE_KEY, 2 MIGRATION_KEY
    static constexpr auto fields = wire::describe(&config_response::result, &config_response::flags);
};

struct buffersize_response {
    wire::tpm_rc result;
    std::uint32_t buffer_size;
    std::uint32_t min_size;
    std::uint32_t max_size;
    static constexpr auto fields = wire::describe(&buffersize_response::result, &buffersize_response::buffer_size,
                                                  &buffersize_response::min_size, &buffersize_response::max_size);
};

// Followed by `length` bytes of libtpms's JSON from `offset`, NUL included (swtpm ctrlchannel.c).
struct info_header {
    wire::tpm_rc result;
    std::uint32_t totlength;  // strlen(json) + 1
    std::uint32_t length;     // at most max_info_chunk
    static constexpr auto fields =
        wire::describe(&info_header::result, &info_header::totlength, &info_header::length);
};
inline constexpr std::size_t max_info_chunk = 3 * 1024;  // tpm_ioctl.h PTM_GETINFO_SIZE

// The ptm_res for an xtpm error, as swtpm answers the same condition.
struct result_row {
    errc error;
    wire::tpm_rc result;
};
inline constexpr std::array result_table{
    result_row{errc::truncated, res::bad_parameter},
    result_row{errc::trailing_bytes, res::bad_parameter},
    result_row{errc::bad_tag, res::bad_parameter},
    result_row{errc::size_mismatch, res::bad_parameter},
    result_row{errc::too_large, res::bad_parameter},
    result_row{errc::too_small, res::bad_parameter},
    result_row{errc::bad_value, res::bad_parameter},
    result_row{errc::unknown_command, res::bad_ordinal},
    result_row{errc::buffer_full, res::fail},
    result_row{errc::device_failure, res::fail},
    result_row{errc::not_running, res::bad_ordinal},  // swtpm: "needs a running TPM" is TPM_BAD_ORDINAL
    result_row{errc::canceled, res::fail},
    result_row{errc::io_error, res::io_error},
    result_row{errc::closed, res::io_error},
    result_row{errc::bad_state, res::bad_parameter},  // a blob the device refuses; swtpm 0.7.1 answers 3 too
    result_row{errc::bad_locality, res::bad_locality},
    result_row{errc::busy, res::bad_ordinal},  // e.g. SET_STATEBLOB or SET_BUFFERSIZE while running
};

inline auto to_result(std::error_code ec) noexcept -> wire::tpm_rc {
    if (!ec) return res::success;
    auto const e = to_errc(ec);
    for (auto const& row : result_table)
        if (row.error == e) return row.result;
    return res::fail;
}

}  // namespace xtpm::proto::swtpm
