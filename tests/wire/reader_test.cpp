#include <xtpm/wire/reader.hpp>

#include <catch2/catch.hpp>

#include <array>

using namespace xtpm;

TEST_CASE("reader: u32 past the end consumes nothing", "[wire][reader]") {
    std::array<std::byte, 3> in{std::byte{1}, std::byte{2}, std::byte{3}};
    wire::reader r{in};
    auto v = r.read_be<std::uint32_t>();
    REQUIRE_FALSE(v);
    CHECK(v.error() == errc::truncated);
    CHECK(r.offset() == 0);
    CHECK(r.read_be<std::uint16_t>().value() == 0x0102);
    CHECK(r.expect_end() == errc::trailing_bytes);
    CHECK(r.read_be<std::uint8_t>().value() == 3);
    CHECK_FALSE(r.expect_end());
}
