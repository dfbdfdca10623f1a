// Covers include/xtpm/wire/reader.hpp and include/xtpm/wire/writer.hpp: every
// scalar width, all-or-nothing reads, offsets, sticky writer errors and the
// size_prefix backfill.
#include <xtpm/wire/reader.hpp>
#include <xtpm/wire/writer.hpp>
#include <xtpm/wire/types.hpp>

#include "wire/hex.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <limits>
#include <vector>

using namespace xtpm;
using xtpm::test::hex;
using xtpm::test::to_hex;

namespace {
// 0x01 0x02 ... 0x0f: every scalar read lands on distinct bytes.
auto const counting = hex("0102030405060708090a0b0c0d0e0f");
}  // namespace

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

TEST_CASE("reader: every scalar width reads big-endian and advances by its size", "[wire][reader]") {
    wire::reader r{counting};
    CHECK(r.read_be<std::uint8_t>().value() == 0x01);
    CHECK(r.offset() == 1);
    CHECK(r.read_be<std::uint16_t>().value() == 0x0203);
    CHECK(r.offset() == 3);
    CHECK(r.read_be<std::uint32_t>().value() == 0x04050607u);
    CHECK(r.offset() == 7);
    CHECK(r.read_be<std::uint64_t>().value() == 0x08090a0b0c0d0e0full);
    CHECK(r.offset() == 15);
    CHECK(r.remaining() == 0);
    CHECK_FALSE(r.expect_end());
}

TEST_CASE("reader: all-ones scalars keep their top bit", "[wire][reader]") {
    auto const ones = hex("ffffffffffffffffffffffffffffff");
    wire::reader r{ones};
    CHECK(r.read_be<std::uint8_t>().value() == 0xFF);
    CHECK(r.read_be<std::uint16_t>().value() == 0xFFFF);
    CHECK(r.read_be<std::uint32_t>().value() == 0xFFFFFFFFu);
    CHECK(r.read_be<std::uint64_t>().value() == std::numeric_limits<std::uint64_t>::max());
}

TEMPLATE_TEST_CASE("reader: a scalar past the end consumes nothing", "[wire][reader]", std::uint8_t,
                   std::uint16_t, std::uint32_t, std::uint64_t) {
    for (std::size_t have = 0; have < sizeof(TestType); ++have) {
        CAPTURE(have);
        // Two bytes already read, then `have` bytes left: the failure keeps offset 2.
        wire::reader r{wire::bytes_view{counting}.first(2 + have)};
        REQUIRE(r.read_be<std::uint16_t>());
        auto v = r.read_be<TestType>();
        REQUIRE_FALSE(v);
        CHECK(v.error() == errc::truncated);
        CHECK(r.offset() == 2);
        CHECK(r.remaining() == have);
    }
    wire::reader exact{wire::bytes_view{counting}.first(sizeof(TestType))};
    CHECK(exact.read_be<TestType>());
    CHECK_FALSE(exact.expect_end());
}

TEST_CASE("reader: enums read through their underlying type", "[wire][reader]") {
    auto const in = hex("8001 0000017e 1234 ab");
    wire::reader r{in};
    CHECK(r.read_be<wire::tpm_st>().value() == wire::tpm_st::no_sessions);
    CHECK(r.read_be<wire::tpm_cc>().value() == wire::tpm_cc::pcr_read);
    SECTION("a value the enum does not name is read as is") {
        CHECK(static_cast<std::uint16_t>(r.read_be<wire::tpm_st>().value()) == 0x1234);
        CHECK(r.read_be<std::byte>().value() == std::byte{0xab});
    }
    SECTION("an enum past the end consumes nothing") {
        REQUIRE(r.read_be<std::uint16_t>());
        auto v = r.read_be<wire::tpm_rc>();
        REQUIRE_FALSE(v);
        CHECK(v.error() == errc::truncated);
        CHECK(r.offset() == 8);
    }
}

TEST_CASE("reader: bytes aliases the input and advances", "[wire][reader]") {
    wire::reader r{counting};
    REQUIRE(r.read_be<std::uint8_t>());
    auto b = r.bytes(4);
    REQUIRE(b);
    CHECK(b->data() == counting.data() + 1);  // a view, not a copy
    CHECK(b->size() == 4);
    CHECK(r.offset() == 5);
    SECTION("zero bytes") {
        auto z = r.bytes(0);
        REQUIRE(z);
        CHECK(z->empty());
        CHECK(r.offset() == 5);
    }
    SECTION("one more than remains") {
        auto f = r.bytes(r.remaining() + 1);
        REQUIRE_FALSE(f);
        CHECK(f.error() == errc::truncated);
        CHECK(r.offset() == 5);
    }
    SECTION("a length near SIZE_MAX does not wrap") {
        auto f = r.bytes(std::numeric_limits<std::size_t>::max());
        REQUIRE_FALSE(f);
        CHECK(f.error() == errc::truncated);
        CHECK(r.offset() == 5);
    }
    SECTION("exactly what remains") {
        auto all = r.bytes(r.remaining());
        REQUIRE(all);
        CHECK(all->size() == counting.size() - 5);
        CHECK_FALSE(r.expect_end());
    }
}

TEST_CASE("reader: bytes on an empty input", "[wire][reader]") {
    wire::reader r{wire::bytes_view{}};
    CHECK(r.bytes(0).value().empty());
    CHECK(r.bytes(1).error() == errc::truncated);
    CHECK(r.read_be<std::uint8_t>().error() == errc::truncated);
    CHECK(r.rest().empty());
    CHECK_FALSE(r.expect_end());
}

TEST_CASE("reader: sub gives a child bounded by its region", "[wire][reader]") {
    wire::reader r{counting};
    REQUIRE(r.read_be<std::uint16_t>());
    auto child = r.sub(3);
    REQUIRE(child);
    CHECK(r.offset() == 5);  // the parent skipped the region
    CHECK(child->offset() == 0);
    CHECK(child->remaining() == 3);
    CHECK(child->read_be<std::uint16_t>().value() == 0x0304);
    SECTION("the child cannot read past its region though the parent has more") {
        auto v = child->read_be<std::uint16_t>();
        REQUIRE_FALSE(v);
        CHECK(v.error() == errc::truncated);
        CHECK(child->offset() == 2);
        CHECK(child->expect_end() == errc::trailing_bytes);
    }
    SECTION("the child ends exactly at its region") {
        CHECK(child->read_be<std::uint8_t>().value() == 0x05);
        CHECK_FALSE(child->expect_end());
        CHECK(r.read_be<std::uint8_t>().value() == 0x06);
    }
    SECTION("a region longer than what remains consumes nothing") {
        auto f = r.sub(r.remaining() + 1);
        REQUIRE_FALSE(f);
        CHECK(f.error() == errc::truncated);
        CHECK(r.offset() == 5);
    }
}

TEST_CASE("reader: rest takes everything left", "[wire][reader]") {
    wire::reader r{counting};
    REQUIRE(r.bytes(10));
    auto rest = r.rest();
    CHECK(rest.data() == counting.data() + 10);
    CHECK(rest.size() == 5);
    CHECK(r.offset() == counting.size());
    CHECK(r.rest().empty());
    CHECK_FALSE(r.expect_end());
}

TEST_CASE("reader: expect_end reports trailing bytes and consumes nothing", "[wire][reader]") {
    wire::reader r{counting};
    REQUIRE(r.bytes(14));
    CHECK(r.expect_end() == errc::trailing_bytes);
    CHECK(r.offset() == 14);
    CHECK(r.remaining() == 1);
}

TEST_CASE("reader: load_be reads the first bytes of a span", "[wire][reader]") {
    CHECK(wire::load_be<std::uint32_t>(counting) == 0x01020304u);
    CHECK(wire::load_be<std::uint16_t>(wire::bytes_view{counting}.subspan(13)) == 0x0e0f);
    static_assert(wire::wire_scalar<std::uint8_t> && wire::wire_scalar<wire::tpm_cc>);
    static_assert(!wire::wire_scalar<bool> && !wire::wire_scalar<int> && !wire::wire_scalar<float>);
}

// --- writer -------------------------------------------------------------------

TEST_CASE("writer: every scalar width writes big-endian", "[wire][writer]") {
    std::array<std::byte, 32> buf{};
    wire::writer w{buf};
    w.write_be<std::uint8_t>(0x01).write_be<std::uint16_t>(0x0203).write_be<std::uint32_t>(0x04050607);
    w.write_be<std::uint64_t>(0x08090a0b0c0d0e0f);
    w.write_be(wire::tpm_st::sessions).write_be(std::byte{0xab});
    REQUIRE(w.ok());
    CHECK(w.size() == 18);
    auto out = w.finish();
    REQUIRE(out);
    CHECK(out->data() == buf.data());
    CHECK(to_hex(*out) == "0102030405060708090a0b0c0d0e0f8002ab");
}

TEST_CASE("writer: works in constant expressions", "[wire][writer]") {
    constexpr auto written = [] {
        std::array<std::byte, 4> b{};
        wire::writer w{b};
        w.write_be<std::uint16_t>(0x0102);
        return w.size();
    }();
    static_assert(written == 2);
    CHECK(written == 2);
}

TEST_CASE("writer: a write that does not fit fails and the failure is sticky", "[wire][writer]") {
    std::array<std::byte, 5> buf{};
    wire::writer w{buf};
    w.write_be<std::uint32_t>(0xdeadbeef);
    REQUIRE(w.ok());
    SECTION("a scalar") {
        w.write_be<std::uint16_t>(0x1111);
    }
    SECTION("bytes") {
        auto const two = hex("1111");
        w.bytes(two);
    }
    CHECK_FALSE(w.ok());
    CHECK(w.size() == 4);  // nothing of the failed write
    w.write_be<std::uint8_t>(0x22);  // would fit, but the error is sticky
    CHECK(w.size() == 4);
    CHECK(to_hex(w.written()) == "deadbeef");
    CHECK(std::to_integer<int>(buf[4]) == 0);
    CHECK(w.finish().error() == errc::buffer_full);
}

TEST_CASE("writer: filling the buffer exactly succeeds", "[wire][writer]") {
    std::array<std::byte, 6> buf{};
    wire::writer w{buf};
    auto const four = hex("01020304");
    w.bytes(four).write_be<std::uint16_t>(0x0506);
    CHECK(to_hex(w.finish().value()) == "010203040506");
    w.bytes({});  // an empty write into a full buffer is fine
    CHECK(w.ok());
    wire::writer none{wire::bytes_span{}};
    none.bytes({});
    CHECK(none.finish().value().empty());
    none.write_be<std::uint8_t>(0);
    CHECK(none.finish().error() == errc::buffer_full);
}

TEST_CASE("writer: size_prefix backfills the length of its region", "[wire][writer]") {
    std::array<std::byte, 64> buf{};
    wire::writer w{buf};
    SECTION("u16 around three bytes") {
        {
            wire::writer::size_prefix<std::uint16_t> p{w};
            w.write_be<std::uint8_t>(0xaa).write_be<std::uint16_t>(0xbbcc);
        }
        CHECK(to_hex(w.finish().value()) == "0003aabbcc");
    }
    SECTION("an empty region") {
        { wire::writer::size_prefix<std::uint32_t> p{w}; }
        CHECK(to_hex(w.finish().value()) == "00000000");
    }
    SECTION("nested prefixes") {
        {
            wire::writer::size_prefix<std::uint32_t> outer{w};
            w.write_be<std::uint8_t>(0x01);
            {
                wire::writer::size_prefix<std::uint8_t> inner{w};
                w.write_be<std::uint16_t>(0x0203);
            }
        }
        CHECK(to_hex(w.finish().value()) == "0000000401020203");
    }
    SECTION("bias 6: a command header's size field counts the tag and itself") {
        w.write_be(wire::tpm_st::no_sessions);
        {
            wire::writer::size_prefix<std::uint32_t> size{w, 6};
            w.write_be(wire::tpm_cc::startup).write_be<std::uint16_t>(0);
        }
        CHECK(to_hex(w.finish().value()) == "80010000000c000001440000");  // TPM2_Startup(CLEAR)
    }
}

TEST_CASE("writer: size_prefix fails when the region outgrows the prefix type", "[wire][writer]") {
    std::vector<std::byte> buf(300);
    std::vector<std::byte> const body(256, std::byte{0x5a});
    wire::writer w{buf};
    SECTION("255 bytes fit a u8 prefix") {
        {
            wire::writer::size_prefix<std::uint8_t> p{w};
            w.bytes(wire::bytes_view{body}.first(255));
        }
        auto out = w.finish();
        REQUIRE(out);
        CHECK(std::to_integer<int>((*out)[0]) == 255);
        CHECK(out->size() == 256);
    }
    SECTION("256 bytes do not") {
        {
            wire::writer::size_prefix<std::uint8_t> p{w};
            w.bytes(body);
        }
        CHECK_FALSE(w.ok());
        CHECK(w.finish().error() == errc::too_large);
    }
    SECTION("a bias can push the count over the top") {
        {
            wire::writer::size_prefix<std::uint8_t> p{w, 2};
            w.bytes(wire::bytes_view{body}.first(254));
        }
        CHECK(w.finish().error() == errc::too_large);
    }
}

TEST_CASE("writer: size_prefix leaves a writer that overflowed inside it alone", "[wire][writer]") {
    std::array<std::byte, 4> buf{};
    wire::writer w{buf};
    {
        wire::writer::size_prefix<std::uint16_t> p{w};
        w.write_be<std::uint32_t>(0x01020304);  // does not fit after the 2-byte prefix
    }
    CHECK(w.finish().error() == errc::buffer_full);  // the cause, not too_large
    CHECK(to_hex(w.written()) == "0000");             // prefix not backfilled
    SECTION("a prefix that does not fit itself") {
        std::array<std::byte, 1> tiny{};
        wire::writer t{tiny};
        { wire::writer::size_prefix<std::uint16_t> p{t}; }
        CHECK(t.size() == 0);
        CHECK(t.finish().error() == errc::buffer_full);
    }
}

TEST_CASE("writer: patch_be overwrites written bytes only", "[wire][writer]") {
    std::array<std::byte, 16> buf{};
    wire::writer w{buf};
    w.write_be<std::uint16_t>(0x8001).write_be<std::uint32_t>(0).write_be<std::uint32_t>(0x144);
    SECTION("inside the written bytes") {
        w.patch_be<std::uint32_t>(2, 10);
        w.patch_be<std::uint32_t>(6, 0x17b);  // ends exactly at size()
        CHECK(to_hex(w.finish().value()) == "80010000000a0000017b");
    }
    SECTION("crossing the end of the written bytes") {
        w.patch_be<std::uint32_t>(7, 0xffffffff);
        CHECK(w.finish().error() == errc::bad_value);
        CHECK(to_hex(w.written()) == "80010000000000000144");  // nothing written
    }
    SECTION("starting at the end") {
        w.patch_be<std::uint8_t>(w.size(), 0xff);
        CHECK(w.finish().error() == errc::bad_value);
    }
    SECTION("an offset near SIZE_MAX does not wrap around") {
        w.patch_be<std::uint32_t>(std::numeric_limits<std::size_t>::max() - 1, 0xffffffff);
        CHECK(w.finish().error() == errc::bad_value);
        CHECK(to_hex(w.written()) == "80010000000000000144");
    }
}

TEST_CASE("writer: invalidate is sticky and the first error wins", "[wire][writer]") {
    std::array<std::byte, 4> buf{};
    wire::writer w{buf};
    SECTION("default cause") {
        w.invalidate();
        w.write_be<std::uint8_t>(1);
        CHECK(w.size() == 0);
        CHECK(w.finish().error() == errc::bad_value);
    }
    SECTION("given cause") {
        w.invalidate(errc::too_large);
        CHECK(w.finish().error() == errc::too_large);
    }
    SECTION("overflow, then invalidate") {
        w.write_be<std::uint64_t>(1);
        w.invalidate(errc::too_large);
        CHECK(w.finish().error() == errc::buffer_full);
    }
    SECTION("invalidate, then overflow") {
        w.invalidate(errc::too_large);
        w.write_be<std::uint64_t>(1);
        CHECK(w.finish().error() == errc::too_large);
    }
    CHECK_FALSE(w.ok());
}

TEST_CASE("writer: store_be writes the first bytes of a span", "[wire][writer]") {
    std::array<std::byte, 6> buf{};
    wire::store_be<std::uint32_t>(wire::bytes_span{buf}.subspan(1), 0xa1b2c3d4);
    CHECK(to_hex(buf) == "00a1b2c3d400");
    CHECK(wire::load_be<std::uint32_t>(wire::bytes_view{buf}.subspan(1)) == 0xa1b2c3d4u);
}
