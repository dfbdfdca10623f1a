#include <xtpm/source/multi_source.hpp>

#include <xtpm/pipeline.hpp>
#include <xtpm/source/mssim_server.hpp>
#include <xtpm/source/swtpm_server.hpp>
#include <xtpm/stage/locality_policy.hpp>

#include "archetypes/archetypes.hpp"
#include "source/fake_device.hpp"
#include "source/net_client.hpp"

#include <catch2/catch.hpp>

namespace {
using namespace xtpm;
using test::hex;

static_assert(request_source<swtpm_server>);
static_assert(request_source<mssim_server>);
static_assert(request_source<multi_source<swtpm_server, mssim_server>>);
static_assert(request_source<multi_source<archetypes::source, archetypes::source>>);
static_assert(stage<locality_policy>);

auto const get_random = test::tpm2_command(0x17B, hex("0008"));

// Data and control on free loopback ports.
auto test_options() -> swtpm_server_options {
    swtpm_server_options o;
    o.data = io::tcp_endpoint{"127.0.0.1", 0};
    return o;
}

auto make_pair() -> multi_source<swtpm_server, mssim_server> {
    auto sw = swtpm_server::create(test_options());
    auto ms = mssim_server::create({io::tcp_endpoint{"127.0.0.1", 0}, io::tcp_endpoint{"127.0.0.1", 0}});
    REQUIRE((sw && ms));
    return {std::move(*sw), std::move(*ms)};
}
}  // namespace

TEST_CASE("multi_source: one pipeline serves swtpm and mssim clients at once", "[source][multi]") {
    test::fake_device dev;
    pipeline p{make_pair(), dev};
    test::served run{p};
    auto sw = test::connect(*p.source().first().data_endpoint());
    auto ms = test::connect(p.source().second().command_endpoint());
    for (int i = 0; i < 10; ++i) {
        REQUIRE(test::send_all(sw.get(), get_random));
        REQUIRE(test::send_all(ms.get(), test::cat(test::cat(hex("00000008 01"), test::be32(12)), get_random)));
        auto a = test::read_response(sw.get());
        auto b = test::read_exact(ms.get(), 4 + 15 + 4);
        REQUIRE((a && b));
        CHECK(std::to_integer<int>(a->at(10)) == 0);
        CHECK(std::to_integer<int>(b->at(14)) == 1);
    }
    CHECK(dev.log->snapshot().size() == 20);
}

TEST_CASE("multi_source: a SHUTDOWN on one source stops both", "[source][multi]") {
    test::fake_device dev;
    pipeline p{make_pair(), dev};
    test::served run{p};
    auto ms = test::connect(p.source().second().command_endpoint());
    CHECK(test::exchange(test::connect(p.source().first().ctrl_endpoint()).get(), hex("00000003"), 4) ==
          hex("00000000"));
    REQUIRE(run.wait_done());
    CHECK(run.result().has_value());
    CHECK(test::read_to_eof(ms.get()).has_value());  // the mssim client was let go too
}

TEST_CASE("multi_source: stop() ends both", "[source][multi]") {
    test::fake_device dev;
    pipeline p{make_pair(), dev};
    test::served run{p};
    auto sw = test::connect(*p.source().first().data_endpoint());
    REQUIRE(test::send_all(sw.get(), get_random));
    REQUIRE(test::read_response(sw.get()).has_value());
    p.stop();
    REQUIRE(run.wait_done());
    CHECK(run.result().has_value());
}

TEST_CASE("locality_policy: rejects only the localities it does not allow", "[source][stage]") {
    auto const cmd = [](std::uint8_t loc) {
        return wire::command_view{{wire::tpm_st::no_sessions, 10, wire::tpm_cc::get_random}, {}, wire::family::tpm2, loc};
    };
    auto const all = locality_policy::all();
    auto const no4 = locality_policy::without_locality_4();
    for (std::uint8_t l = 0; l < 4; ++l) {
        CHECK(all.allows(l));
        CHECK(no4.allows(l));
    }
    CHECK(all.allows(4));
    CHECK_FALSE(no4.allows(4));
    CHECK_FALSE(all.allows(5));
    auto p = no4;
    CHECK(p.on_command(cmd(0)).has_value());
    CHECK(p.on_command(cmd(4)).error() == errc::bad_locality);
    CHECK(locality_policy{0x01}.on_command(cmd(2)).error() == errc::bad_locality);
}
