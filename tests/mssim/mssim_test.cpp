#include <xtpm/proto/mssim.hpp>
#include <xtpm/source/mssim_server.hpp>

#include <xtpm/pipeline.hpp>

#include "source/fake_device.hpp"
#include "source/net_client.hpp"

#include <catch2/catch.hpp>


namespace {
using namespace xtpm;
using namespace std::chrono_literals;
namespace ms = xtpm::proto::mssim;
using test::bytes;
using test::hex;

auto const get_random = test::tpm2_command(0x17B, hex("0008"));
auto send_command(std::uint8_t locality, bytes const& cmd) -> bytes {
    return test::cat(test::cat(test::cat(hex("00000008"), bytes{std::byte{locality}}),
                               test::be32(static_cast<std::uint32_t>(cmd.size()))),
                     cmd);
}

// Requests as the tpm2-tss mssim TCTI and the reference simulator define them.
struct golden {
    char const* what;
    char const* bytes;
};
golden const command_goldens[] = {
    {"TPM_SEND_COMMAND", "00000008 00 0000000c 8001 0000000c 0000017b 0008"},
    {"TPM_REMOTE_HANDSHAKE", "0000000f 00000001"},
    {"TPM_SIGNAL_HASH_START", "00000005"},
    {"TPM_SIGNAL_HASH_DATA", "00000006 00000003 616263"},
    {"TPM_SIGNAL_HASH_END", "00000007"},
    {"TPM_SET_ALTERNATIVE_RESULT", "00000010 00000000"},
    {"TPM_SESSION_END", "00000014"},
    {"TPM_STOP", "00000015"},
};
golden const platform_goldens[] = {
    {"POWER_ON", "00000001"},  {"NV_ON", "0000000b"},        {"CANCEL_ON", "00000009"},
    {"CANCEL_OFF", "0000000a"}, {"RESET", "00000011"},       {"GET_COMMAND_RESPONSE_SIZES", "00000019"},
    {"ACT_GET_SIGNALED", "0000001a 40000001"},               {"SESSION_END", "00000014"},
};

using fake_pipeline = pipeline<mssim_server, test::fake_device>;

struct fixture {
    explicit fixture(mssim_server_options o = {}, test::fake_device d = {})
        : log{d.log}, p{make(std::move(o)), std::move(d)}, run{p} {}
    static auto make(mssim_server_options o) -> mssim_server {
        o.command = io::tcp_endpoint{"127.0.0.1", 0};
        o.platform = io::tcp_endpoint{"127.0.0.1", 0};
        auto s = mssim_server::create(o);
        REQUIRE(s.has_value());
        return std::move(*s);
    }
    auto command() -> io::unique_fd { return test::connect(p.source().command_endpoint()); }
    auto platform() -> io::unique_fd { return test::connect(p.source().platform_endpoint()); }
    // A TPM command through TPM_SEND_COMMAND: {u32 len}{resp}{u32 0} -> resp.
    auto tpm(int fd, bytes const& cmd, std::uint8_t locality = 0) -> bytes {
        REQUIRE(test::send_all(fd, send_command(locality, cmd)));
        auto len = test::read_exact(fd, 4);
        REQUIRE(len);
        auto resp = test::read_exact(fd, test::u32_at(*len, 0));
        REQUIRE(resp);
        CHECK(test::read_exact(fd, 4) == hex("00000000"));
        return *resp;
    }
    auto signal(int fd, char const* req) -> std::optional<bytes> { return test::exchange(fd, hex(req), 4); }
    std::shared_ptr<test::fake_log> log;
    fake_pipeline p;
    test::served<fake_pipeline> run;
};
}  // namespace

TEST_CASE("mssim: requests decode, re-encode, and frame at every truncation point", "[mssim][codec]") {
    auto check = [](golden const& g, auto needed, auto decode, auto encode) {
        INFO(g.what);
        auto const in = hex(g.bytes);
        REQUIRE(needed(in).value() == in.size());
        auto req = decode(in);
        REQUIRE(req.has_value());
        std::array<std::byte, 64> buf{};
        auto out = encode(*req, buf);
        REQUIRE(out.has_value());
        CHECK(std::ranges::equal(*out, in));
        for (std::size_t n = 0; n < in.size(); ++n) {
            auto const part = wire::bytes_view{in}.first(n);
            auto need = needed(part);
            REQUIRE(need.has_value());
            CHECK(*need > n);
            CHECK(*need <= in.size());
            CHECK_FALSE(decode(part).has_value());
        }
    };
    for (auto const& g : command_goldens) check(g, ms::command_bytes_needed, ms::decode_command, ms::encode_command);
    for (auto const& g : platform_goldens)
        check(g, ms::platform_bytes_needed, ms::decode_platform, ms::encode_platform);
}

TEST_CASE("mssim: each port refuses the other's codes and oversized lengths", "[mssim][codec]") {
    CHECK(ms::command_bytes_needed(hex("00000001")).error() == errc::unknown_command);
    CHECK(ms::platform_bytes_needed(hex("00000008")).error() == errc::unknown_command);
    CHECK(ms::platform_bytes_needed(hex("0000001e")).error() == errc::unknown_command);  // TEST_FAILURE_MODE
    CHECK(ms::command_bytes_needed(hex("00000008 00 ffffffff")).error() == errc::too_large);
    CHECK(ms::command_bytes_needed(hex("00000006 00010001")).error() == errc::too_large);
    CHECK(ms::command_bytes_needed(hex("00000008 00 00100000")).value() == 9 + ms::max_command);
}

TEST_CASE("mssim: replies encode as the reference server writes them", "[mssim][codec]") {
    std::array<std::byte, 64> buf{};
    CHECK(std::ranges::equal(*wire::encode_into(buf, ms::handshake_reply{1, 5, 0}), hex("00000001 00000005 00000000")));
    CHECK(std::ranges::equal(*wire::encode_into(buf, ms::sizes_reply{16, {12, 0x17B, 20, 0}, 0}),
                             hex("00000010 0000000c 0000017b 00000014 00000000 00000000")));
    CHECK(std::ranges::equal(*wire::encode_into(buf, ms::act_reply{0, 0}), hex("00000000 00000000")));
}

TEST_CASE("mssim_server: the tpm2-tss start-up sequence keeps a running TPM as it is", "[mssim][server]") {
    fixture f;
    for (int tool = 0; tool < 3; ++tool) {  // each tpm2-tools run: POWER_ON, NV_ON, commands, close
        auto plat = f.platform();
        auto cmd = f.command();
        CHECK(f.signal(plat.get(), "00000001") == hex("00000000"));
        CHECK(f.signal(plat.get(), "0000000b") == hex("00000000"));
        auto r = f.tpm(cmd.get(), get_random, 0);
        CHECK(test::u32_at(r, 11) == 0x17B);
    }
    auto const calls = f.log->snapshot();
    CHECK(std::ranges::count(calls, "power_on") == 0);
    CHECK(std::ranges::count(calls, "power_off") == 0);
    CHECK(calls.size() == 3);
}

TEST_CASE("mssim_server: the handshake reports a platform port in raw mode", "[mssim][server]") {
    fixture f;
    auto c = f.command();
    CHECK(test::exchange(c.get(), hex("0000000f 00000001"), 12) == hex("00000001 00000005 00000000"));
    CHECK(test::rc_of(f.tpm(c.get(), get_random)) == 0);
    SECTION("client version 0 is refused") {
        auto d = f.command();
        REQUIRE(test::send_all(d.get(), hex("0000000f 00000000")));
        CHECK(test::read_to_eof(d.get()) == bytes{});
    }
}

TEST_CASE("mssim_server: platform power signals", "[mssim][server]") {
    fixture f;
    auto plat = f.platform();
    auto cmd = f.command();
    CHECK(f.signal(plat.get(), "00000002") == hex("00000000"));  // POWER_OFF
    CHECK(test::rc_of(f.tpm(cmd.get(), get_random)) == 0x101);
    CHECK(f.signal(plat.get(), "00000001") == hex("00000000"));  // POWER_ON
    CHECK(test::rc_of(f.tpm(cmd.get(), get_random)) == 0);
    CHECK(f.signal(plat.get(), "00000011") == hex("00000000"));  // RESET: a power cycle
    CHECK(f.signal(plat.get(), "00000012") == hex("00000000"));  // RESTART
    CHECK(f.log->count("power_off") == 3);
    CHECK(f.log->count("power_on") == 3);
    for (auto const* noop : {"00000003", "00000004", "0000000a", "0000000b", "0000000c", "0000000d", "0000000e"})
        CHECK(f.signal(plat.get(), noop) == hex("00000000"));
    CHECK(test::exchange(plat.get(), hex("0000001a 40000001"), 8) == hex("00000000 00000000"));
}

TEST_CASE("mssim_server: GET_COMMAND_RESPONSE_SIZES reports the largest since last asked", "[mssim][server]") {
    fixture f;
    auto cmd = f.command();
    auto plat = f.platform();
    f.tpm(cmd.get(), get_random);
    f.tpm(cmd.get(), test::tpm2_command(0x17E));
    CHECK(test::exchange(plat.get(), hex("00000019"), 24) ==
          hex("00000010 0000000c 0000017b 0000000f 00000000 00000000"));
    CHECK(test::exchange(plat.get(), hex("00000019"), 24) ==
          hex("00000010 00000000 00000000 00000000 00000000 00000000"));
}

TEST_CASE("mssim_server: CANCEL_ON ends a command that is running", "[mssim][server]") {
    fixture f;
    auto cmd = f.command();
    auto plat = f.platform();
    REQUIRE(test::send_all(cmd.get(), send_command(0, test::tpm2_command(test::slow_code))));
    REQUIRE(f.log->wait_executing(test::io_limit));
    auto const t0 = std::chrono::steady_clock::now();
    CHECK(f.signal(plat.get(), "00000009") == hex("00000000"));
    auto len = test::read_exact(cmd.get(), 4);
    REQUIRE(len);
    auto resp = test::read_exact(cmd.get(), test::u32_at(*len, 0) + 4);
    REQUIRE(resp);
    CHECK(test::rc_of(*resp) == 0x909);
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
    CHECK(f.signal(plat.get(), "0000000a") == hex("00000000"));
}

TEST_CASE("mssim_server: bad TPM_SEND_COMMAND lengths get a framed error, then close", "[mssim][server]") {
    fixture f;
    auto expect = [&](bytes const& req, std::uint32_t rc) {
        auto c = f.command();
        REQUIRE(test::send_all(c.get(), req));
        auto all = test::read_to_eof(c.get());
        REQUIRE(all.has_value());
        REQUIRE(all->size() == 18);
        CHECK(test::u32_at(*all, 0) == 10);
        CHECK(test::u32_at(*all, 10) == rc);
        CHECK(test::u32_at(*all, 14) == 0);
    };
    SECTION("larger than the device buffer") { expect(hex("00000008 00 00001001"), 0x142); }
    SECTION("0xFFFFFFFF") { expect(hex("00000008 00 ffffffff"), 0x142); }
    SECTION("below the header") { expect(hex("00000008 00 00000009"), 0x142); }
    SECTION("larger than the device buffer, body sent too") {
        expect(test::cat(hex("00000008 00 00010000"), bytes(0x10000)), 0x142);
    }
    SECTION("half-close inside the command") {
        auto c = f.command();
        REQUIRE(test::send_all(c.get(), wire::bytes_view{send_command(0, get_random)}.first(15)));
        ::shutdown(c.get(), SHUT_WR);
        auto all = test::read_to_eof(c.get());
        REQUIRE(all.has_value());
        REQUIRE(all->size() == 18);
        CHECK(test::u32_at(*all, 10) == 0x142);
    }
    auto c = f.command();  // the server goes on
    CHECK(test::rc_of(f.tpm(c.get(), get_random)) == 0);
}

TEST_CASE("mssim_server: a locality above 4 is a TPM error, not a broken stream", "[mssim][server]") {
    fixture f;
    auto c = f.command();
    CHECK(test::rc_of(f.tpm(c.get(), get_random, 5)) == 0x907);
    auto r = f.tpm(c.get(), get_random, 3);
    CHECK(std::to_integer<int>(r.at(10)) == 3);
}

TEST_CASE("mssim_server: unknown codes, SESSION_END and hash signals", "[mssim][server]") {
    fixture f;
    SECTION("unknown platform signal: nack, then close") {
        auto p = f.platform();
        REQUIRE(test::send_all(p.get(), hex("0000001e")));
        CHECK(test::read_to_eof(p.get()) == hex("00000001"));
    }
    SECTION("unknown command-port code: close") {
        auto c = f.command();
        REQUIRE(test::send_all(c.get(), hex("00000063")));
        CHECK(test::read_to_eof(c.get()) == bytes{});
    }
    SECTION("SESSION_END closes without a reply") {
        auto c = f.command();
        REQUIRE(test::send_all(c.get(), hex("00000014")));
        CHECK(test::read_to_eof(c.get()) == bytes{});
        auto p = f.platform();
        REQUIRE(test::send_all(p.get(), hex("00000014")));
        CHECK(test::read_to_eof(p.get()) == bytes{});
    }
    SECTION("hash signals reach the device") {
        auto c = f.command();
        CHECK(test::exchange(c.get(), hex("00000005"), 4) == hex("00000000"));
        CHECK(test::exchange(c.get(), hex("00000006 00000003 616263"), 4) == hex("00000000"));
        CHECK(test::exchange(c.get(), hex("00000007"), 4) == hex("00000000"));
        CHECK(test::exchange(c.get(), hex("00000010 00000001"), 4) == hex("00000000"));
        CHECK(f.log->count("hash_data 3") == 1);
    }
}

TEST_CASE("mssim_server: TPM_STOP ends serve()", "[mssim][server]") {
    fixture f;
    auto c = f.command();
    REQUIRE(test::send_all(c.get(), hex("00000015")));
    REQUIRE(f.run.wait_done());
    CHECK(f.run.result().has_value());
}

TEST_CASE("mssim_server: a device without capabilities gets nack", "[mssim][server]") {
    auto s = mssim_server::create({io::tcp_endpoint{"127.0.0.1", 0}, io::tcp_endpoint{"127.0.0.1", 0}});
    REQUIRE(s.has_value());
    pipeline p{std::move(*s), test::bare_device{}};
    test::served run{p};
    auto plat = test::connect(p.source().platform_endpoint());
    auto cmd = test::connect(p.source().command_endpoint());
    CHECK(test::exchange(plat.get(), hex("00000001"), 4) == hex("00000000"));  // always on
    CHECK(test::exchange(plat.get(), hex("00000009"), 4) == hex("00000001"));  // no cancel
    CHECK(test::exchange(plat.get(), hex("00000011"), 4) == hex("00000001"));  // no power cycle
    CHECK(test::exchange(cmd.get(), hex("00000005"), 4) == hex("00000001"));   // no DRTM hashing
}


TEST_CASE("mssim_server: the tpm2-tss mssim TCTI drives it", "[mssim][server][interop]") {
    if (test::run_program({"tpm2_startup", "--version"}) != 0) {
        WARN("tpm2-tools not installed: skipped");
        return;
    }
    // The TCTI wants the platform port at P+1: try random high port pairs.
    std::optional<mssim_server> srv;
    std::uint16_t port = 0;
    for (int attempt = 0; attempt < 50 && !srv; ++attempt) {
        port = static_cast<std::uint16_t>(20000 + (::getpid() * 7919 + attempt * 104729) % 40000);
        auto s = mssim_server::create({io::tcp_endpoint{"127.0.0.1", port},
                                       io::tcp_endpoint{"127.0.0.1", static_cast<std::uint16_t>(port + 1)}});
        if (s) srv.emplace(std::move(*s));
    }
    REQUIRE(srv.has_value());
    test::fake_device dev;
    dev.short_answers = true;  // a bare success header: what TPM2_Startup returns
    pipeline p{std::move(*srv), dev};
    test::served run{p};
    auto const tcti = "mssim:host=127.0.0.1,port=" + std::to_string(port);
    for (int i = 0; i < 2; ++i) CHECK(test::run_program({"tpm2_startup", "-c", "-T", tcti}) == 0);
    auto const calls = dev.log->snapshot();
    CHECK(std::ranges::count(calls, "execute 324 at 0") == 2);  // TPM2_Startup, once per tool
    CHECK(std::ranges::count(calls, "power_on") == 0);        // POWER_ON left the running TPM alone
    CHECK(std::ranges::count(calls, "power_off") == 0);
}
