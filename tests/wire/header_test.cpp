// Covers include/xtpm/wire/header.hpp (frame_size, parse_command,
// parse_response) and include/xtpm/wire/error_response.hpp (the errc -> TPM rc
// table and the 10-byte error responses).
#include <xtpm/wire/header.hpp>
#include <xtpm/wire/error_response.hpp>

#include "wire/hex.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <vector>

using namespace xtpm;
using xtpm::test::hex;
using xtpm::test::to_hex;
using wire::family;

namespace {

constexpr std::size_t max = 4096;

// A well-formed command of `size` bytes (size >= 10) with `tag`: TPM2_Startup-like body of zeros.
auto command(std::uint16_t tag, std::uint32_t size, std::uint32_t code = 0x144) -> std::vector<std::byte> {
    std::vector<std::byte> c(size);
    wire::store_be(std::span{c}.first(2), tag);
    wire::store_be(std::span{c}.subspan(2, 4), size);
    wire::store_be(std::span{c}.subspan(6, 4), code);
    return c;
}

auto set_size(std::vector<std::byte> c, std::uint32_t size) -> std::vector<std::byte> {
    wire::store_be(std::span{c}.subspan(2, 4), size);
    return c;
}

}  // namespace

// --- frame_size ---------------------------------------------------------------

TEST_CASE("frame_size: fewer than 10 bytes are not yet a frame", "[wire][header]") {
    auto const c = command(0x8001, 12);
    for (std::size_t n = 0; n < wire::header_size; ++n) {
        CAPTURE(n);
        CHECK(wire::frame_size(std::span{c}.first(n), max).value() == 0);
    }
}

TEST_CASE("frame_size: the size field decides the frame length", "[wire][header]") {
    SECTION("a header alone announces the whole command") {
        auto const c = command(0x8001, 300);
        CHECK(wire::frame_size(std::span{c}.first(10), max).value() == 300);
    }
    SECTION("exactly the header") { CHECK(wire::frame_size(command(0x8001, 10), max).value() == 10); }
    SECTION("exactly the limit") { CHECK(wire::frame_size(command(0x8001, 64), 64).value() == 64); }
    SECTION("the tag is not frame_size's business") {
        CHECK(wire::frame_size(command(0x1234, 12), max).value() == 12);
    }
}

TEST_CASE("frame_size: a size field below the header or above the limit is refused", "[wire][header]") {
    auto const c = command(0x8001, 12);
    CHECK(wire::frame_size(set_size(c, 0), max).error() == errc::too_small);
    CHECK(wire::frame_size(set_size(c, 9), max).error() == errc::too_small);
    CHECK(wire::frame_size(set_size(c, 65), 64).error() == errc::too_large);
    CHECK(wire::frame_size(set_size(c, 0xFFFFFFFF), max).error() == errc::too_large);
}

// --- parse_command ------------------------------------------------------------

TEST_CASE("parse_command: every command tag is accepted by its family only", "[wire][header]") {
    struct row {
        std::uint16_t tag;
        family fam;
    };
    auto const tags = std::array{row{0x00C1, family::tpm12}, row{0x00C2, family::tpm12}, row{0x00C3, family::tpm12},
                                 row{0x8001, family::tpm2}, row{0x8002, family::tpm2}};
    for (auto const& t : tags) {
        CAPTURE(t.tag);
        auto const c = command(t.tag, 14);
        auto const other = t.fam == family::tpm2 ? family::tpm12 : family::tpm2;
        auto const v = wire::parse_command(c, t.fam, max);
        REQUIRE(v);
        CHECK(static_cast<std::uint16_t>(v->header.tag) == t.tag);
        CHECK(v->header.size == 14);
        CHECK(v->header.code == wire::tpm_cc::startup);
        CHECK(v->fam == t.fam);
        CHECK(v->locality == 0);
        CHECK(v->bytes.data() == c.data());  // aliases the receive buffer
        CHECK(v->bytes.size() == c.size());
        CHECK(wire::parse_command(c, other, max).error() == errc::bad_tag);
        CHECK(wire::command_family(static_cast<wire::tpm_st>(t.tag)) == t.fam);
    }
}

TEST_CASE("parse_command: response and unknown tags are bad_tag for both families", "[wire][header]") {
    auto const tags = std::array<std::uint16_t, 8>{0x00C4, 0x00C5, 0x00C6, 0x0000, 0x1234, 0x8000, 0x8003, 0xFFFF};
    for (auto const tag : tags) {
        CAPTURE(tag);
        auto const c = command(tag, 12);
        CHECK(wire::parse_command(c, family::tpm2, max).error() == errc::bad_tag);
        CHECK(wire::parse_command(c, family::tpm12, max).error() == errc::bad_tag);
    }
}

TEST_CASE("parse_command: a short input is truncated at every length", "[wire][header]") {
    auto const c = command(0x8001, 12);
    for (std::size_t n = 0; n < wire::header_size; ++n) {
        CAPTURE(n);
        CHECK(wire::parse_command(std::span{c}.first(n), family::tpm2, max).error() == errc::truncated);
    }
}

TEST_CASE("parse_command: the size field must equal the bytes received", "[wire][header]") {
    auto const c = command(0x8001, 12);
    CHECK(wire::parse_command(c, family::tpm2, max));
    SECTION("larger") { CHECK(wire::parse_command(set_size(c, 13), family::tpm2, max).error() == errc::size_mismatch); }
    SECTION("smaller") { CHECK(wire::parse_command(set_size(c, 11), family::tpm2, max).error() == errc::size_mismatch); }
    SECTION("0xFFFFFFFF") {
        CHECK(wire::parse_command(set_size(c, 0xFFFFFFFF), family::tpm2, max).error() == errc::size_mismatch);
    }
    SECTION("below the header") {
        CHECK(wire::parse_command(set_size(c, 9), family::tpm2, max).error() == errc::too_small);
        CHECK(wire::parse_command(set_size(c, 0), family::tpm2, max).error() == errc::too_small);
    }
    SECTION("exactly the header") { CHECK(wire::parse_command(command(0x8001, 10), family::tpm2, max)); }
}

TEST_CASE("parse_command: a command above the limit is too_large", "[wire][header]") {
    CHECK(wire::parse_command(command(0x8001, 64), family::tpm2, 64));
    CHECK(wire::parse_command(command(0x8001, 65), family::tpm2, 64).error() == errc::too_large);
    CHECK(wire::parse_command(command(0x00C1, 65), family::tpm12, 64).error() == errc::too_large);
}

TEST_CASE("parse_command: locality 0-4 is accepted, above 4 refused", "[wire][header]") {
    auto const c = command(0x8001, 12);
    for (std::uint8_t loc = 0; loc <= wire::max_locality; ++loc) {
        CAPTURE(loc);
        auto const v = wire::parse_command(c, family::tpm2, max, loc);
        REQUIRE(v);
        CHECK(v->locality == loc);
    }
    CHECK(wire::parse_command(c, family::tpm2, max, 5).error() == errc::bad_locality);
    CHECK(wire::parse_command(command(0x00C1, 12), family::tpm12, max, 255).error() == errc::bad_locality);
}

// --- parse_response -----------------------------------------------------------

TEST_CASE("parse_response: every response tag with a matching size is accepted", "[wire][header]") {
    for (std::uint16_t tag : std::array<std::uint16_t, 5>{0x00C4, 0x00C5, 0x00C6, 0x8001, 0x8002}) {
        CAPTURE(tag);
        auto r = command(tag, 16, 0x101);
        auto const h = wire::parse_response(r);
        REQUIRE(h);
        CHECK(static_cast<std::uint16_t>(h->tag) == tag);
        CHECK(h->size == 16);
        CHECK(h->rc == wire::rc2::failure);
        CHECK(wire::response_view{r}.rc() == wire::rc2::failure);
        CHECK(wire::response_family(h->tag).has_value());
    }
}

TEST_CASE("parse_response: bad tag, size mismatch and short input are refused", "[wire][header]") {
    auto const r = command(0x8001, 12, 0);
    SECTION("a command tag") { CHECK(wire::parse_response(command(0x00C1, 12)).error() == errc::bad_tag); }
    SECTION("an unknown tag") { CHECK(wire::parse_response(command(0x1234, 12)).error() == errc::bad_tag); }
    SECTION("size larger") { CHECK(wire::parse_response(set_size(r, 13)).error() == errc::size_mismatch); }
    SECTION("size smaller") { CHECK(wire::parse_response(set_size(r, 10)).error() == errc::size_mismatch); }
    SECTION("size 0xFFFFFFFF") { CHECK(wire::parse_response(set_size(r, 0xFFFFFFFF)).error() == errc::size_mismatch); }
    SECTION("every length below the header") {
        for (std::size_t n = 0; n < wire::header_size; ++n) {
            CAPTURE(n);
            CHECK(wire::parse_response(std::span{r}.first(n)).error() == errc::truncated);
            CHECK(wire::response_view{std::span{r}.first(n)}.rc() == wire::rc2::failure);
        }
    }
}

TEST_CASE("command_family and response_family: the tag table", "[wire][header]") {
    using wire::tpm_st;
    CHECK(wire::command_family(tpm_st::rsp_command) == std::nullopt);
    CHECK(wire::response_family(tpm_st::rqu_command) == std::nullopt);
    CHECK(wire::response_family(tpm_st::rsp_auth2) == family::tpm12);
    CHECK(wire::response_family(tpm_st::sessions) == family::tpm2);
    CHECK(wire::command_family(static_cast<tpm_st>(0x1234)) == std::nullopt);
}

// --- error_response -----------------------------------------------------------

namespace {
struct expected_row {
    errc error;
    std::uint32_t tpm2;   // TPM 2.0 Part 2 6.6.3
    std::uint32_t tpm12;  // TPM 1.2 Main Part 2 16
};
// An independent copy of the table: a change to wire::rc_table must change this too.
constexpr std::array expected_rc{
    expected_row{errc::truncated, 0x142, 0x19},        // COMMAND_SIZE, BAD_PARAM_SIZE
    expected_row{errc::trailing_bytes, 0x142, 0x19},   // COMMAND_SIZE, BAD_PARAM_SIZE
    expected_row{errc::bad_tag, 0x01E, 0x1E},          // BAD_TAG, BADTAG
    expected_row{errc::size_mismatch, 0x142, 0x19},    // COMMAND_SIZE, BAD_PARAM_SIZE
    expected_row{errc::too_large, 0x142, 0x17},        // COMMAND_SIZE, SIZE
    expected_row{errc::too_small, 0x142, 0x19},        // COMMAND_SIZE, BAD_PARAM_SIZE
    expected_row{errc::bad_value, 0x084, 0x03},        // VALUE, BAD_PARAMETER
    expected_row{errc::unknown_command, 0x143, 0x0A},  // COMMAND_CODE, BAD_ORDINAL
    expected_row{errc::buffer_full, 0x101, 0x09},      // FAILURE, FAIL
    expected_row{errc::device_failure, 0x101, 0x09},   // FAILURE, FAIL
    expected_row{errc::not_running, 0x101, 0x09},      // FAILURE, FAIL
    expected_row{errc::canceled, 0x909, 0x09},         // CANCELED, FAIL
    expected_row{errc::io_error, 0x101, 0x1F},         // FAILURE, IOERROR
    expected_row{errc::closed, 0x101, 0x1F},           // FAILURE, IOERROR
    expected_row{errc::bad_state, 0x101, 0x09},        // FAILURE, FAIL
    expected_row{errc::bad_locality, 0x907, 0x3D},     // LOCALITY, BAD_LOCALITY
    expected_row{errc::busy, 0x922, 0x800},            // RETRY, RETRY
};
constexpr int last_errc = 17;
}  // namespace

TEST_CASE("error_response: every errc has exactly one row with the exact TPM codes", "[wire][error]") {
    CHECK(wire::rc_table.size() == last_errc);
    CHECK(expected_rc.size() == last_errc);
    for (int v = 1; v <= last_errc; ++v) {
        auto const e = static_cast<errc>(v);
        CAPTURE(v);
        auto const rows = std::ranges::count_if(wire::rc_table, [&](wire::rc_row const& r) { return r.error == e; });
        CHECK(rows == 1);
        auto const want = std::ranges::find_if(expected_rc, [&](expected_row const& r) { return r.error == e; });
        REQUIRE(want != expected_rc.end());
        CHECK(static_cast<std::uint32_t>(wire::to_tpm_rc(e, family::tpm2)) == want->tpm2);
        CHECK(static_cast<std::uint32_t>(wire::to_tpm_rc(e, family::tpm12)) == want->tpm12);
        CHECK(static_cast<std::uint32_t>(wire::to_tpm_rc(make_error_code(e), family::tpm2)) == want->tpm2);
        // Every errc also has its own message, not the fallback.
        auto const msg = make_error_code(e).message();
        CHECK_FALSE(msg.empty());
        CHECK(msg != "unknown xtpm error");
    }
}

TEST_CASE("error_response: a well-formed 10-byte response of the family's tag", "[wire][error]") {
    for (auto const& row : expected_rc) {
        CAPTURE(static_cast<int>(row.error));
        std::array<std::byte, 32> out{};
        out.fill(std::byte{0xEE});
        auto const r2 = wire::error_response(make_error_code(row.error), family::tpm2, out);
        CHECK(r2.data() == out.data());
        REQUIRE(r2.size() == 10);
        CHECK(wire::load_be<std::uint16_t>(r2) == 0x8001);  // TPM_ST_NO_SESSIONS
        CHECK(wire::load_be<std::uint32_t>(r2.subspan(2)) == 10);
        CHECK(wire::load_be<std::uint32_t>(r2.subspan(6)) == row.tpm2);
        CHECK(std::to_integer<int>(out[10]) == 0xEE);  // nothing past the 10 bytes
        auto const h2 = wire::parse_response(r2);
        REQUIRE(h2);
        CHECK(wire::response_family(h2->tag) == family::tpm2);

        std::array<std::byte, 10> exact{};
        auto const r12 = wire::error_response(make_error_code(row.error), family::tpm12, exact);
        REQUIRE(r12.size() == 10);
        CHECK(wire::load_be<std::uint16_t>(r12) == 0x00C4);  // TPM_TAG_RSP_COMMAND
        CHECK(wire::load_be<std::uint32_t>(r12.subspan(2)) == 10);
        CHECK(wire::load_be<std::uint32_t>(r12.subspan(6)) == row.tpm12);
        auto const h12 = wire::parse_response(r12);
        REQUIRE(h12);
        CHECK(wire::response_family(h12->tag) == family::tpm12);
    }
}

TEST_CASE("error_response: golden bytes", "[wire][error]") {
    std::array<std::byte, 10> out{};
    CHECK(to_hex(wire::error_response(errc::too_large, family::tpm2, out)) == "80010000000a00000142");
    CHECK(to_hex(wire::error_response(errc::bad_locality, family::tpm12, out)) == "00c40000000a0000003d");
    CHECK(to_hex(wire::error_response(wire::rc2::initialize, family::tpm2, out)) == "80010000000a00000100");
}

TEST_CASE("error_response: foreign and unknown errors become a failure", "[wire][error]") {
    auto const reset = std::make_error_code(std::errc::connection_reset);
    CHECK(to_errc(reset) == errc::io_error);
    CHECK(wire::to_tpm_rc(reset, family::tpm2) == wire::rc2::failure);
    CHECK(wire::to_tpm_rc(reset, family::tpm12) == wire::rc12::io_error);
    CHECK(wire::to_tpm_rc(static_cast<errc>(0), family::tpm2) == wire::rc2::failure);
    CHECK(wire::to_tpm_rc(static_cast<errc>(last_errc + 1), family::tpm12) == wire::rc12::fail);
    CHECK(make_error_code(static_cast<errc>(last_errc + 1)).message() == "unknown xtpm error");
    static_assert(wire::to_tpm_rc(errc::bad_tag, family::tpm2) == wire::rc2::bad_tag);  // usable at compile time
}
