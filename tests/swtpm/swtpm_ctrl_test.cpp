#include <xtpm/proto/swtpm_ctrl.hpp>

#include "source/net_client.hpp"

#include <catch2/catch.hpp>

namespace {
using namespace xtpm;
using namespace xtpm::proto::swtpm;
using test::hex;

auto encoded(request const& r) -> test::bytes {
    std::array<std::byte, 256> buf{};
    auto b = encode_request(r, buf);
    REQUIRE(b.has_value());
    return {b->begin(), b->end()};
}

template <class T>
auto encoded_response(T const& r) -> test::bytes {
    std::array<std::byte, 64> buf{};
    auto b = wire::encode_into(buf, r);
    REQUIRE(b.has_value());
    return {b->begin(), b->end()};
}

// Requests as Debian's swtpm_ioctl 0.7.1 sent them (recorded through a proxy).
struct golden {
    char const* what;
    char const* bytes;
    request expected;
};
auto const blob_start = hex("0201000a00040000052900040000");
golden const goldens[] = {
    {"-c", "00000001", get_capability_request{}},
    {"-e", "00000004", get_tpmestablished_request{}},
    {"-l 3", "0000000503", set_locality_request{3}},
    {"-r 3", "0000000b03", reset_tpmestablished_request{3}},
    {"-v", "0000000a", store_volatile_request{}},
    {"-g", "0000000f", get_config_request{}},
    {"-b 3000", "0000001100000bb8", set_buffersize_request{3000}},
    {"-C", "00000009", cancel_tpm_cmd_request{}},
    {"--info 1", "00000012000000000000000100000000 00000000", get_info_request{1, 0, 0}},
    {"-h abc (start)", "00000006", hash_start_request{}},
    {"-h abc (data)", "00000007 00000003 616263", hash_data_request{{wire::bytes_view{}}}},
    {"-h abc (end)", "00000008", hash_end_request{}},
    {"--save permanent", "0000000c 00000001 00000001 00000000", get_stateblob_request{1, 1, 0}},
    {"--stop", "0000000e", stop_request{}},
    {"--load permanent (14-byte blob)", "0000000d 00000000 00000001 0000000e 0201000a00040000052900040000",
     set_stateblob_request{0, 1, {wire::bytes_view{blob_start}}}},
    {"-i", "0000000200000001", init_request{1}},
    {"-s", "00000003", shutdown_request{}},
    {"QEMU SET_DATAFD", "00000010", set_datafd_request{}},
    {"swtpm 0.8 LOCK_STORAGE", "00000013 0000012c", lock_storage_request{300}},
};
}  // namespace

TEST_CASE("swtpm ctrl: swtpm_ioctl's requests decode, and re-encode to the same bytes", "[swtpm][ctrl]") {
    auto const abc = hex("616263");
    for (auto const& g : goldens) {
        INFO(g.what);
        auto const in = hex(g.bytes);
        auto need = bytes_needed(in);
        REQUIRE(need.has_value());
        CHECK(*need == in.size());
        auto req = decode_request(in);
        REQUIRE(req.has_value());
        CHECK(req->index() == g.expected.index());
        if (auto const* h = std::get_if<hash_data_request>(&*req)) CHECK(std::ranges::equal(h->data.data, abc));
        else CHECK(*req == g.expected);
        CHECK(encoded(*req) == in);
    }
}

TEST_CASE("swtpm ctrl: every truncation point asks for more and never decodes", "[swtpm][ctrl]") {
    for (auto const& g : goldens) {
        auto const in = hex(g.bytes);
        for (std::size_t n = 0; n < in.size(); ++n) {
            INFO(g.what << " cut at " << n);
            auto const part = wire::bytes_view{in}.first(n);
            auto need = bytes_needed(part);
            REQUIRE(need.has_value());
            CHECK(*need > n);              // more bytes wanted, never a premature "complete"
            CHECK(*need <= in.size());     // and never more than the whole request
            CHECK_FALSE(decode_request(part).has_value());
        }
    }
}

TEST_CASE("swtpm ctrl: the length of a variable request is known once its header is in", "[swtpm][ctrl]") {
    auto const hdr = hex("0000000d 00000000 00000001 00001000");
    CHECK(bytes_needed(wire::bytes_view{hdr}.first(15)).value() == 16);
    CHECK(bytes_needed(hdr).value() == 16 + 0x1000);
    CHECK(bytes_needed(hex("00000007 00000000")).value() == 8);  // empty HASH_DATA is complete
}

TEST_CASE("swtpm ctrl: lengths above the named limits are refused before any body", "[swtpm][ctrl]") {
    SECTION("SET_STATEBLOB 0xFFFFFFFF") {
        auto r = bytes_needed(hex("0000000d 00000000 00000001 ffffffff"));
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error() == errc::too_large);
    }
    SECTION("SET_STATEBLOB max_state_blob + 1") {
        auto r = bytes_needed(test::cat(hex("0000000d 00000000 00000001"),
                                        test::be32(static_cast<std::uint32_t>(max_state_blob + 1))));
        CHECK(r.error() == errc::too_large);
    }
    SECTION("SET_STATEBLOB max_state_blob is accepted") {
        auto r = bytes_needed(test::cat(hex("0000000d 00000000 00000001"),
                                        test::be32(static_cast<std::uint32_t>(max_state_blob))));
        CHECK(r.value() == 16 + max_state_blob);
    }
    SECTION("HASH_DATA max_hash_data + 1") {
        auto r = bytes_needed(test::cat(hex("00000007"), test::be32(static_cast<std::uint32_t>(max_hash_data + 1))));
        CHECK(r.error() == errc::too_large);
    }
}

TEST_CASE("swtpm ctrl: unknown codes and trailing bytes are errors", "[swtpm][ctrl]") {
    CHECK(bytes_needed(hex("00000099")).error() == errc::unknown_command);
    CHECK(bytes_needed(hex("00000000")).error() == errc::unknown_command);
    CHECK(decode_request(hex("00000099")).error() == errc::unknown_command);
    CHECK(decode_request(hex("00000001 00")).error() == errc::trailing_bytes);
    CHECK(decode_request(hex("0000000503 00")).error() == errc::trailing_bytes);
}

TEST_CASE("swtpm ctrl: responses encode as swtpm 0.7.1 answered swtpm_ioctl", "[swtpm][ctrl]") {
    CHECK(encoded_response(capability_response{0xFFFF}) == hex("000000000000ffff"));
    CHECK(encoded_response(established_response{res::success, 0, {}}) == hex("0000000000000000"));
    CHECK(encoded_response(config_response{res::success, 0}) == hex("0000000000000000"));
    CHECK(encoded_response(buffersize_response{res::success, 4096, 2808, 4096}) ==
          hex("00000000 00001000 00000af8 00001000"));
    CHECK(encoded_response(stateblob_header{res::success, 0, 0x529, 0x529}) ==
          hex("00000000 00000000 00000529 00000529"));
    CHECK(encoded_response(stateblob_header{res::retry, 0, 0, 0}) == hex("00000800 00000000 00000000 00000000"));
    CHECK(encoded_response(info_header{res::success, 0x3f, 0x3f}) == hex("00000000 0000003f 0000003f"));
    CHECK(encoded_response(result_response{res::bad_ordinal}) == hex("0000000a"));
}

TEST_CASE("swtpm ctrl: every errc has a result row", "[swtpm][ctrl]") {
    for (int e = 1; e <= static_cast<int>(errc::busy); ++e) {
        INFO("errc " << e);
        CHECK(std::ranges::count(result_table, static_cast<errc>(e), &result_row::error) == 1);
    }
    CHECK(to_result({}) == res::success);
    CHECK(to_result(errc::bad_locality) == res::bad_locality);
    CHECK(to_result(errc::not_running) == res::bad_ordinal);
    CHECK(to_result(std::error_code{EIO, std::system_category()}) == res::io_error);
}
