#include <xtpm/pipeline.hpp>

#include "archetypes/archetypes.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <vector>

namespace {
using namespace xtpm;


auto bytes(std::initializer_list<unsigned> v) -> std::vector<std::byte> {
    std::vector<std::byte> out;
    for (auto b : v) out.push_back(static_cast<std::byte>(b));
    return out;
}

// A device that records what it saw and answers a fixed success response.
struct recording_device {
    wire::family fam = wire::family::tpm2;
    std::size_t max = 64;
    int calls = 0;
    std::vector<std::byte> answer = bytes({0x80, 0x01, 0, 0, 0, 0x0A, 0, 0, 0, 0});
    auto execute(wire::command_view, wire::bytes_span) -> result<wire::response_view> {
        ++calls;
        return wire::response_view{answer};
    }
    auto family() const -> wire::family { return fam; }
    auto max_command_size() const -> std::size_t { return max; }
};

struct veto_stage {
    errc veto = errc::bad_locality;
    int responses = 0;
    auto on_command(wire::command_view const& c) -> result<void> {
        if (c.locality == 4) return fail(veto);
        return {};
    }
    void on_response(wire::command_view const&, wire::response_view) { ++responses; }
};

auto rc_of(wire::bytes_view r) -> std::uint32_t { return wire::load_be<std::uint32_t>(r.subspan(6, 4)); }

auto const startup = bytes({0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0x01, 0x44, 0, 0});
}  // namespace

TEST_CASE("pipeline: a valid command reaches the device and its response comes back", "[pipeline]") {
    pipeline p{archetypes::source{}, recording_device{}, veto_stage{}};
    std::array<std::byte, 128> out{};
    auto r = p.process(startup, 0, out);
    REQUIRE(r.size() == 10);
    CHECK(rc_of(r) == 0);
    CHECK(p.with_device([](recording_device& d) { return d.calls; }) == 1);
}

TEST_CASE("pipeline: invalid commands are answered without the device", "[pipeline]") {
    pipeline p{archetypes::source{}, recording_device{}};
    std::array<std::byte, 128> out{};
    auto expect = [&](std::vector<std::byte> cmd, std::uint32_t rc, std::uint8_t loc = 0) {
        auto r = p.process(cmd, loc, out);
        REQUIRE(r.size() == 10);
        CHECK(wire::load_be<std::uint16_t>(r) == 0x8001);
        CHECK(wire::load_be<std::uint32_t>(r.subspan(2)) == 10);
        CHECK(rc_of(r) == rc);
    };
    SECTION("no header") { expect(bytes({0x80, 0x01, 0, 0}), 0x142); }
    SECTION("empty") { expect({}, 0x142); }
    SECTION("size field larger than bytes") { auto c = startup; c[5] = std::byte{0x0D}; expect(c, 0x142); }
    SECTION("size field smaller than bytes") { auto c = startup; c.push_back(std::byte{0}); expect(c, 0x142); }
    SECTION("size 0xFFFFFFFF") { auto c = startup; c[2] = c[3] = c[4] = c[5] = std::byte{0xFF}; expect(c, 0x142); }
    SECTION("TPM 1.2 tag to a TPM 2.0 device") { auto c = startup; c[0] = std::byte{0}; c[1] = std::byte{0xC1}; expect(c, 0x1E); }
    SECTION("unknown tag") { auto c = startup; c[0] = std::byte{0x12}; c[1] = std::byte{0x34}; expect(c, 0x1E); }
    SECTION("larger than the device's buffer") {
        std::vector<std::byte> c(65);
        std::copy_n(startup.begin(), 2, c.begin());
        wire::store_be<std::uint32_t>(std::span{c}.subspan(2, 4), 65);
        expect(c, 0x142);
    }
    SECTION("locality above 4") { expect(startup, 0x907, 5); }
    CHECK(p.with_device([](recording_device& d) { return d.calls; }) == 0);
}

TEST_CASE("pipeline: a stage veto becomes an error of the device's family", "[pipeline]") {
    recording_device d;
    d.fam = wire::family::tpm12;
    d.answer = bytes({0x00, 0xC4, 0, 0, 0, 0x0A, 0, 0, 0, 0});
    pipeline p{archetypes::source{}, d, veto_stage{}};
    auto cmd = bytes({0x00, 0xC1, 0, 0, 0, 0x0A, 0, 0, 0, 0x46});
    std::array<std::byte, 128> out{};
    auto r = p.process(cmd, 4, out);
    CHECK(wire::load_be<std::uint16_t>(r) == 0x00C4);
    CHECK(rc_of(r) == 0x3D);
    r = p.process(cmd, 0, out);
    CHECK(rc_of(r) == 0);
}

TEST_CASE("pipeline: a malformed device response is never forwarded", "[pipeline]") {
    recording_device d;
    d.answer = bytes({0x80, 0x01, 0, 0, 0, 0x20, 0, 0, 0, 0});  // size field says 32
    pipeline p{archetypes::source{}, d};
    std::array<std::byte, 128> out{};
    auto r = p.process(startup, 0, out);
    CHECK(rc_of(r) == 0x101);
}

TEST_CASE("pipeline: a device response of the other family is never forwarded", "[pipeline]") {
    recording_device d;
    d.fam = wire::family::tpm12;  // answers with the TPM 2.0 tag 0x8001
    pipeline p{archetypes::source{}, d};
    auto cmd = bytes({0x00, 0xC1, 0, 0, 0, 0x0A, 0, 0, 0, 0x46});
    std::array<std::byte, 128> out{};
    auto r = p.process(cmd, 0, out);
    CHECK(wire::load_be<std::uint16_t>(r) == 0x00C4);
    CHECK(rc_of(r) == 0x09);
}
