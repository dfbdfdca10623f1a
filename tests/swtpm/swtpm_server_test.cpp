#include <xtpm/source/swtpm_server.hpp>

#include <xtpm/pipeline.hpp>
#include <xtpm/stage/locality_policy.hpp>

#include "source/fake_device.hpp"
#include "source/net_client.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <filesystem>
#include <string>


namespace {
using namespace xtpm;
using namespace std::chrono_literals;
using test::bytes;
using test::hex;

auto const get_random = test::tpm2_command(0x17B, hex("0008"));

// Data and control on free loopback ports.
auto test_options() -> swtpm_server_options {
    swtpm_server_options o;
    o.data = io::tcp_endpoint{"127.0.0.1", 0};
    return o;
}

auto make_server(swtpm_server_options o = {}) -> swtpm_server {
    if (!o.data) o.data = io::tcp_endpoint{"127.0.0.1", 0};
    auto s = swtpm_server::create(std::move(o));
    REQUIRE(s.has_value());
    return std::move(*s);
}

using fake_pipeline = pipeline<swtpm_server, test::fake_device>;

struct fixture {
    explicit fixture(swtpm_server_options o = {}, test::fake_device d = {})
        : log{d.log}, p{make_server(std::move(o)), std::move(d)}, run{p} {}
    auto data() -> io::unique_fd { return test::connect(*p.source().data_endpoint()); }
    auto ctrl() -> io::unique_fd { return test::connect(p.source().ctrl_endpoint()); }
    // One control request on a fresh connection, as tpm2-tss and swtpm_ioctl do.
    auto ctrl_call(bytes const& req, std::size_t reply) -> bytes {
        auto fd = ctrl();
        auto r = test::exchange(fd.get(), req, reply);
        REQUIRE(r.has_value());
        return *r;
    }
    auto tpm(int fd, bytes const& cmd) -> bytes {
        REQUIRE(test::send_all(fd, cmd));
        auto r = test::read_response(fd);
        REQUIRE(r.has_value());
        return *r;
    }
    std::shared_ptr<test::fake_log> log;
    fake_pipeline p;
    test::served<fake_pipeline> run;
};

auto locality_of(bytes const& resp) -> int { return std::to_integer<int>(resp.at(10)); }

// A unique path for a unix socket in the temp directory.
auto temp_socket(char const* name) -> std::string {
    return (std::filesystem::temp_directory_path() /
            ("xtpm-" + std::to_string(::getpid()) + "-" + name + ".sock")).string();
}
}  // namespace

TEST_CASE("swtpm_server: raw and mssim-prefixed commands share one data connection", "[swtpm][server]") {
    fixture f;
    auto d = f.data();
    auto r = f.tpm(d.get(), get_random);
    CHECK(r.size() == 15);
    CHECK(test::u32_at(r, 11) == 0x17B);
    // {u32 8, u8 locality 2, u32 len} prefix: reply {u32 len}{resp}{u32 0}.
    REQUIRE(test::send_all(d.get(), test::cat(test::cat(hex("00000008 02"), test::be32(12)), get_random)));
    auto framed = test::read_exact(d.get(), 4 + 15 + 4);
    REQUIRE(framed);
    CHECK(test::u32_at(*framed, 0) == 15);
    CHECK(std::to_integer<int>(framed->at(14)) == 2);
    CHECK(test::u32_at(*framed, 19) == 0);
}

TEST_CASE("swtpm_server: a command split at every byte boundary is framed by its size", "[swtpm][server]") {
    fixture f;
    auto d = f.data();
    auto const two = test::cat(get_random, test::tpm2_command(0x17E));
    for (std::size_t cut = 1; cut < two.size(); ++cut) {
        INFO("cut at " << cut);
        REQUIRE(test::send_all(d.get(), wire::bytes_view{two}.first(cut)));
        REQUIRE(test::send_all(d.get(), wire::bytes_view{two}.subspan(cut)));
        auto a = test::read_response(d.get());
        auto b = test::read_response(d.get());
        REQUIRE((a && b));
        CHECK(test::u32_at(*a, 11) == 0x17B);
        CHECK(test::u32_at(*b, 11) == 0x17E);
    }
}

TEST_CASE("swtpm_server: a bad size field is answered, then the connection closes", "[swtpm][server]") {
    fixture f;
    auto expect_error_then_eof = [&](bytes const& cmd, std::uint32_t rc, bool mssim = false) {
        auto d = f.data();
        REQUIRE(test::send_all(d.get(), cmd));
        auto all = test::read_to_eof(d.get());
        REQUIRE(all.has_value());
        auto const off = mssim ? 4U : 0U;
        REQUIRE(all->size() == off + 10 + (mssim ? 4U : 0U));
        CHECK(test::u32_at(*all, off + 2) == 10);
        CHECK(test::u32_at(*all, off + 6) == rc);
    };
    SECTION("size 0xFFFFFFFF") { expect_error_then_eof(hex("8001 ffffffff 0000017b"), 0x142); }
    SECTION("size below the header") { expect_error_then_eof(hex("8001 00000009 0000017b"), 0x142); }
    SECTION("larger than the device buffer") { expect_error_then_eof(hex("8001 00001001 0000017b"), 0x142); }
    SECTION("mssim prefix with a length the command does not fit") {
        expect_error_then_eof(hex("00000008 00 00100000"), 0x142, true);
    }
    SECTION("mssim prefix with locality 5") { expect_error_then_eof(hex("00000008 05 0000000c"), 0x907, true); }
    // Each bad client only lost its own connection.
    auto d = f.data();
    CHECK(test::rc_of(f.tpm(d.get(), get_random)) == 0);
}

TEST_CASE("swtpm_server: an oversized command sent whole still gets its error reply", "[swtpm][server]") {
    fixture f;
    auto d = f.data();
    bytes big(64 * 1024);
    auto const hdr = test::cat(hex("8001"), test::cat(test::be32(static_cast<std::uint32_t>(big.size())), test::be32(0x17B)));
    std::ranges::copy(hdr, big.begin());
    REQUIRE(test::send_all(d.get(), big));  // most of the body is never read by the server
    auto all = test::read_to_eof(d.get());
    REQUIRE(all.has_value());
    REQUIRE(all->size() == 10);
    CHECK(test::rc_of(*all) == 0x142);
}

TEST_CASE("swtpm_server: an inherited data_fd is served like a connection", "[swtpm][server]") {
    std::array<int, 2> sp{};
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp.data()) == 0);
    io::unique_fd mine{sp[0]};
    swtpm_server_options o;
    o.data_fd = sp[1];
    fixture f{o};
    REQUIRE(test::send_all(mine.get(), get_random));
    auto r = test::read_response(mine.get());
    REQUIRE(r.has_value());
    CHECK(test::u32_at(*r, 11) == 0x17B);
}

TEST_CASE("swtpm_server: a stalled partial client does not block another", "[swtpm][server]") {
    swtpm_server_options o;
    o.limits.idle_timeout = 1000ms;
    fixture f{o};
    auto stalled = f.data();
    REQUIRE(test::send_all(stalled.get(), wire::bytes_view{get_random}.first(5)));
    auto const t0 = std::chrono::steady_clock::now();
    auto other = f.data();
    CHECK(test::rc_of(f.tpm(other.get(), get_random)) == 0);
    CHECK(std::chrono::steady_clock::now() - t0 < 900ms);  // answered before the stall's timeout
    // The stalled one gets TPM_RC_COMMAND_SIZE after the idle timeout, then EOF.
    auto all = test::read_to_eof(stalled.get());
    REQUIRE(all.has_value());
    REQUIRE(all->size() == 10);
    CHECK(test::rc_of(*all) == 0x142);
}

TEST_CASE("swtpm_server: a half-close inside a command is answered with an error", "[swtpm][server]") {
    fixture f;
    auto d = f.data();
    REQUIRE(test::send_all(d.get(), wire::bytes_view{get_random}.first(11)));
    ::shutdown(d.get(), SHUT_WR);
    auto all = test::read_to_eof(d.get());
    REQUIRE(all.has_value());
    REQUIRE(all->size() == 10);
    CHECK(test::rc_of(*all) == 0x142);
}

TEST_CASE("swtpm_server: many clients at once are all answered", "[swtpm][server]") {
    fixture f;
    constexpr int clients = 16, rounds = 20;
    std::vector<io::unique_fd> fds;
    for (int i = 0; i < clients; ++i) fds.push_back(f.data());
    for (int round = 0; round < rounds; ++round) {
        for (int i = 0; i < clients; ++i)  // every client has a command in flight
            REQUIRE(test::send_all(fds[i].get(), test::tpm2_command(static_cast<std::uint32_t>(0x100 + i))));
        for (int i = 0; i < clients; ++i) {
            auto r = test::read_response(fds[i].get());
            REQUIRE(r.has_value());
            CHECK(test::u32_at(*r, 11) == static_cast<std::uint32_t>(0x100 + i));
        }
    }
    CHECK(f.log->snapshot().size() == clients * rounds);
}

TEST_CASE("swtpm_server: control commands answer as swtpm 0.7.1 does", "[swtpm][server]") {
    fixture f;
    // Everything this fake device can do; no SET_DATAFD over TCP.
    CHECK(f.ctrl_call(hex("00000001"), 8) == hex("000000000000 efff"));
    CHECK(f.ctrl_call(hex("00000004"), 8) == hex("00000000 01 000000"));
    CHECK(f.ctrl_call(hex("0000000f"), 8) == hex("00000000 00000000"));
    CHECK(f.ctrl_call(hex("00000011 00000000"), 16) == hex("00000000 00001000 00000af8 00001000"));
    CHECK(f.ctrl_call(hex("00000011 00000bb8"), 4) == hex("0000000a"));  // resize while running
    CHECK(f.ctrl_call(hex("0000000a"), 4) == hex("00000000"));
    CHECK(f.log->count("store_volatile") == 1);
    CHECK(f.ctrl_call(hex("0000000b 00"), 4) == hex("0000003d"));  // reset established needs locality 3+
    CHECK(f.ctrl_call(hex("0000000b 05"), 4) == hex("0000003d"));
    CHECK(f.ctrl_call(hex("0000000b 03"), 4) == hex("00000000"));
    CHECK(f.ctrl_call(hex("00000004"), 8) == hex("00000000 00 000000"));
    CHECK(f.ctrl_call(hex("00000099"), 4) == hex("0000000a"));  // unknown
    CHECK(f.ctrl_call(hex("0000000d 00000000 00000001 00000003 010203"), 4) == hex("0000000a"));  // running

    SECTION("HASH_START/DATA/END on one connection") {
        auto c = f.ctrl();
        CHECK(test::exchange(c.get(), hex("00000006"), 4) == hex("00000000"));
        CHECK(test::exchange(c.get(), hex("00000007 00000003 616263"), 4) == hex("00000000"));
        CHECK(test::exchange(c.get(), hex("00000008"), 4) == hex("00000000"));
        CHECK(f.log->count("hash_data 3") == 1);
    }
    SECTION("an unknown code leaves the connection usable") {
        auto c = f.ctrl();
        CHECK(test::exchange(c.get(), hex("00000077"), 4) == hex("0000000a"));
        CHECK(test::exchange(c.get(), hex("00000001"), 8) == hex("000000000000efff"));
    }
}

TEST_CASE("swtpm_server: GET_INFO pages the device's JSON by offset, NUL included", "[swtpm][server]") {
    fixture f;
    auto const json = test::fake_device{}.info(5).value();  // 3117 characters
    auto const total = json.size() + 1;
    auto const get = [&](std::uint32_t offset, std::size_t n) {
        bytes req = hex("00000012 0000000000000005");
        for (int shift = 24; shift >= 0; shift -= 8) req.push_back(std::byte(offset >> shift));
        req.resize(req.size() + 4);  // pad
        return f.ctrl_call(req, n);
    };
    auto const expect = [&](std::size_t offset, std::size_t n) {
        bytes b;
        for (auto v : {std::uint32_t{0}, static_cast<std::uint32_t>(total), static_cast<std::uint32_t>(n)})
            for (int shift = 24; shift >= 0; shift -= 8) b.push_back(std::byte(v >> shift));
        auto const* p = reinterpret_cast<std::byte const*>(json.c_str()) + offset;
        b.insert(b.end(), p, p + n);  // the last chunk carries the NUL
        return b;
    };
    CHECK(get(0, 12 + 3072) == expect(0, 3072));
    CHECK(get(3072, 12 + total - 3072) == expect(3072, total - 3072));
    CHECK(get(static_cast<std::uint32_t>(json.size() - 1), 14) == expect(json.size() - 1, 2));
    CHECK(get(static_cast<std::uint32_t>(json.size()), 4) == hex("00000003"));  // at the end: TPM_BAD_PARAMETER
    CHECK(get(0xFFFFFFFF, 4) == hex("00000003"));
    CHECK(f.log->count("info 5") == 5);
}

TEST_CASE("swtpm_server: SET_LOCALITY applies to raw data commands", "[swtpm][server]") {
    SECTION("default") {
        fixture f;
        CHECK(f.ctrl_call(hex("00000005 03"), 4) == hex("00000000"));
        auto d = f.data();
        CHECK(locality_of(f.tpm(d.get(), get_random)) == 3);
        CHECK(f.ctrl_call(hex("00000005 05"), 4) == hex("0000003d"));
        CHECK(f.ctrl_call(hex("00000005 04"), 4) == hex("00000000"));
        CHECK(locality_of(f.tpm(d.get(), get_random)) == 4);
    }
    SECTION("reject_locality_4") {
        swtpm_server_options o;
        o.reject_locality_4 = true;
        fixture f{o};
        CHECK(f.ctrl_call(hex("00000005 04"), 4) == hex("0000003d"));
        CHECK(f.p.source().locality() == 0);
    }
    SECTION("in-band SetLocality only when allowed") {
        auto const set_loc_2 = test::tpm2_command(0x20001000, hex("02"));
        swtpm_server_options o;
        o.allow_set_locality = true;
        fixture f{o};
        auto d = f.data();
        auto r = f.tpm(d.get(), set_loc_2);
        CHECK(r == hex("8001 0000000a 00000000"));
        CHECK(f.p.source().locality() == 2);
        CHECK(test::rc_of(f.tpm(d.get(), test::tpm2_command(0x20001000, hex("07")))) == 0x907);
        CHECK(f.log->count("execute 536875008 at 2") == 0);  // never reached the device
    }
    SECTION("in-band SetLocality goes to the pipeline when not allowed") {
        fixture f;
        auto d = f.data();
        f.tpm(d.get(), test::tpm2_command(0x20001000, hex("02")));
        CHECK(f.log->count("execute 536875008 at 0") == 1);
        CHECK(f.p.source().locality() == 0);
    }
}

TEST_CASE("swtpm_server: STOP, state blobs and INIT as QEMU migrates", "[swtpm][server]") {
    test::fake_device dev;
    dev.blobs[state_blob::permanent] = hex("01020304050607");
    fixture f{{}, dev};
    auto const get_perm = [&](std::uint32_t offset) {
        auto c = f.ctrl();
        REQUIRE(test::send_all(c.get(), test::cat(hex("0000000c 00000001 00000001"), test::be32(offset))));
        auto hdr = test::read_exact(c.get(), 16);
        REQUIRE(hdr);
        auto body = test::read_exact(c.get(), test::u32_at(*hdr, 12));
        REQUIRE(body);
        return std::pair{*hdr, *body};
    };
    auto [hdr, body] = get_perm(0);
    CHECK(hdr == hex("00000000 00000000 00000007 00000007"));
    CHECK(body == hex("01020304050607"));
    std::tie(hdr, body) = get_perm(5);  // totlength is what is left from the offset (swtpm 0.7.1)
    CHECK(hdr == hex("00000000 00000000 00000002 00000002"));
    CHECK(body == hex("0607"));
    std::tie(hdr, body) = get_perm(100);
    CHECK(hdr == hex("00000000 00000000 00000000 00000000"));
    CHECK(f.ctrl_call(hex("0000000c 00000000 00000003 00000000"), 16) == hex("00000800 000000000000000000000000"));
    CHECK(f.ctrl_call(hex("0000000c 00000000 00000009 00000000"), 16) == hex("00000003 000000000000000000000000"));

    CHECK(f.ctrl_call(hex("0000000e"), 4) == hex("00000000"));  // STOP
    CHECK(f.log->count("power_off") == 1);
    auto d = f.data();
    CHECK(test::rc_of(f.tpm(d.get(), get_random)) == 0x101);  // TPM_RC_FAILURE while stopped
    std::tie(hdr, body) = get_perm(0);  // stopped: the stored state (swtpm answers TPM_BAD_ORDINAL)
    CHECK(body == hex("01020304050607"));
    CHECK(f.ctrl_call(hex("00000004"), 4) == hex("0000000a"));  // needs a running TPM

    SECTION("a corrupt blob is refused and the server keeps serving") {
        CHECK(f.ctrl_call(hex("0000000d 00000000 00000001 00000002 ba01"), 4) == hex("00000003"));
        CHECK(f.ctrl_call(hex("00000001"), 8) == hex("000000000000efff"));
    }
    SECTION("header and body in separate writes, as QEMU sends them") {
        auto c = f.ctrl();
        REQUIRE(test::send_all(c.get(), hex("0000000d 00000000 00000002 00000004")));
        REQUIRE(test::send_all(c.get(), hex("aabbccdd")));
        CHECK(test::read_exact(c.get(), 4) == hex("00000000"));
        CHECK(f.log->count("set_state 2 4") == 1);
    }
    SECTION("an oversized blob is refused at once and the connection closed") {
        auto c = f.ctrl();
        REQUIRE(test::send_all(c.get(), hex("0000000d 00000000 00000001 ffffffff")));
        CHECK(test::read_to_eof(c.get()) == hex("00000003"));
    }
    SECTION("swtpm-encrypted blobs are refused") {
        CHECK(f.ctrl_call(hex("0000000d 00000002 00000001 00000001 00"), 4) == hex("00000003"));
    }
    CHECK(f.ctrl_call(hex("00000002 00000001"), 4) == hex("00000000"));  // INIT(DELETE_VOLATILE)
    CHECK(f.log->count("power_on delete_volatile") == 1);
    CHECK(test::rc_of(f.tpm(d.get(), get_random)) == 0);
}

TEST_CASE("swtpm_server: megabyte state blobs travel both ways", "[swtpm][server]") {
    test::fake_device dev;
    bytes blob(3 << 20);
    for (std::size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<std::byte>(i * 7 + 1);
    dev.blobs[state_blob::permanent] = blob;
    fixture f{{}, dev};
    auto c = f.ctrl();
    REQUIRE(test::send_all(c.get(), hex("0000000c 00000001 00000001 00000000")));
    auto hdr = test::read_exact(c.get(), 16);
    REQUIRE(hdr);
    CHECK(test::u32_at(*hdr, 12) == blob.size());
    CHECK(test::read_exact(c.get(), blob.size()) == blob);  // more than a socket buffer: EAGAIN and resume
    CHECK(test::exchange(c.get(), hex("0000000e"), 4) == hex("00000000"));
    blob[0] = std::byte{0x5A};
    auto const set = test::cat(test::cat(hex("0000000d 00000000 00000001"), test::be32(static_cast<std::uint32_t>(blob.size()))), blob);
    CHECK(test::exchange(c.get(), set, 4) == hex("00000000"));
    CHECK(f.log->count("set_state 1 3145728") == 1);
}

TEST_CASE("swtpm_server: CANCEL_TPM_CMD ends a command that is running", "[swtpm][server]") {
    fixture f;
    auto d = f.data();
    REQUIRE(test::send_all(d.get(), test::tpm2_command(test::slow_code)));
    REQUIRE(f.log->wait_executing(test::io_limit));
    auto const t0 = std::chrono::steady_clock::now();
    CHECK(f.ctrl_call(hex("00000009"), 4) == hex("00000000"));
    auto r = test::read_response(d.get());
    REQUIRE(r.has_value());
    CHECK(test::rc_of(*r) == 0x909);
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);  // the fake would sleep 5 s uncanceled
}

TEST_CASE("swtpm_server: truncated control requests are answered, not dropped", "[swtpm][server]") {
    swtpm_server_options o;
    o.limits.idle_timeout = 200ms;
    fixture f{o};
    SECTION("half-close") {
        auto c = f.ctrl();
        REQUIRE(test::send_all(c.get(), hex("00000005")));
        ::shutdown(c.get(), SHUT_WR);
        CHECK(test::read_to_eof(c.get()) == hex("00000003"));
    }
    SECTION("idle") {
        auto c = f.ctrl();
        REQUIRE(test::send_all(c.get(), hex("0000000c 0000")));
        CHECK(test::read_to_eof(c.get()) == hex("00000003"));
    }
}

TEST_CASE("swtpm_server: SHUTDOWN powers off orderly, answers, and ends serve()", "[swtpm][server]") {
    fixture f;
    CHECK(f.ctrl_call(hex("00000003"), 4) == hex("00000000"));
    REQUIRE(f.run.wait_done());
    CHECK(f.run.result().has_value());
    CHECK(f.log->count("power_off") == 1);
}

TEST_CASE("swtpm_server: SET_DATAFD turns a passed socket into a data channel", "[swtpm][server]") {
    swtpm_server_options o;
    o.data.reset();
    o.ctrl = io::unix_endpoint{temp_socket("ctrl")};
    auto srv = swtpm_server::create(o);
    REQUIRE(srv.has_value());
    test::fake_device dev;
    fake_pipeline p{std::move(*srv), dev};
    test::served run{p};
    CHECK(test::u32_at(*test::exchange(test::connect(p.source().ctrl_endpoint()).get(), hex("00000001"), 8), 4) ==
          0xffff);  // SET_DATAFD now reported

    std::array<int, 2> sp{};
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp.data()) == 0);
    io::unique_fd mine{sp[0]}, theirs{sp[1]};
    auto c = test::connect(p.source().ctrl_endpoint());
    auto const code = hex("00000010");
    iovec iov{const_cast<std::byte*>(code.data()), code.size()};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    auto* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    int const passed = theirs.get();
    std::memcpy(CMSG_DATA(cm), &passed, sizeof passed);
    REQUIRE(::sendmsg(c.get(), &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(code.size()));
    CHECK(test::read_exact(c.get(), 4) == hex("00000000"));
    theirs.reset();

    REQUIRE(test::send_all(mine.get(), get_random));
    auto r = test::read_response(mine.get());
    REQUIRE(r.has_value());
    CHECK(test::u32_at(*r, 11) == 0x17B);

    // Without a descriptor: TPM_BAD_PARAMETER.
    CHECK(test::exchange(c.get(), hex("00000010"), 4) == hex("00000003"));
    // QEMU going away ends serve(), as it ends swtpm.
    mine.reset();
    REQUIRE(run.wait_done());
    CHECK(run.result().has_value());
}

TEST_CASE("swtpm_server: a device without capabilities gets TPM_BAD_ORDINAL", "[swtpm][server]") {
    auto srv = swtpm_server::create(test_options());
    REQUIRE(srv.has_value());
    pipeline p{std::move(*srv), test::bare_device{}};
    test::served run{p};
    auto call = [&](bytes const& req, std::size_t n) {
        return test::exchange(test::connect(p.source().ctrl_endpoint()).get(), req, n);
    };
    CHECK(call(hex("00000001"), 8) == hex("00000000 0000a80a"));
    CHECK(call(hex("00000002 00000000"), 4) == hex("0000000a"));
    CHECK(call(hex("00000009"), 4) == hex("0000000a"));
    CHECK(call(hex("00000006"), 4) == hex("0000000a"));
    CHECK(call(hex("0000000e"), 4) == hex("0000000a"));
    CHECK(call(hex("00000012 0000000000000001 00000000 00000000"), 4) == hex("0000000a"));  // GET_INFO
    CHECK(call(hex("00000011 00000000"), 16) == hex("00000000 00001000 00001000 00001000"));
    CHECK(call(hex("00000003"), 4) == hex("00000000"));
    REQUIRE(run.wait_done());
}

TEST_CASE("swtpm_server: the locality policy stage rejects locality 4 from the mssim prefix", "[swtpm][server]") {
    auto srv = swtpm_server::create(test_options());
    REQUIRE(srv.has_value());
    test::fake_device dev;
    pipeline p{std::move(*srv), dev, locality_policy::without_locality_4()};
    test::served run{p};
    auto d = test::connect(*p.source().data_endpoint());
    REQUIRE(test::send_all(d.get(), test::cat(test::cat(hex("00000008 04"), test::be32(12)), get_random)));
    auto framed = test::read_exact(d.get(), 4 + 10 + 4);
    REQUIRE(framed);
    CHECK(test::u32_at(*framed, 10) == 0x907);
    CHECK(dev.log->snapshot().empty());
}


TEST_CASE("swtpm_server: Debian's swtpm_ioctl drives it", "[swtpm][server][interop]") {
    if (test::run_program({"swtpm_ioctl", "--version"}) != 0) {
        WARN("swtpm_ioctl not installed: skipped");
        return;
    }
    test::fake_device dev;
    dev.blobs[state_blob::permanent] = hex("0102030405060708090a");
    fixture f{{}, dev};
    auto const port = std::get<io::tcp_endpoint>(f.p.source().ctrl_endpoint()).port;
    auto const at = "127.0.0.1:" + std::to_string(port);
    auto ioctl = [&](std::vector<std::string> more) {
        std::vector<std::string> args{"swtpm_ioctl", "--tcp", at};
        args.insert(args.end(), more.begin(), more.end());
        return test::run_program(args);
    };
    auto const file = std::filesystem::temp_directory_path() / ("xtpm-perm-" + std::to_string(::getpid()));
    CHECK(ioctl({"-c"}) == 0);
    CHECK(ioctl({"-e"}) == 0);
    CHECK(ioctl({"-l", "3"}) == 0);
    CHECK(ioctl({"-b", "0"}) == 0);
    CHECK(ioctl({"-g"}) == 0);
    CHECK(ioctl({"-v"}) == 0);
    CHECK(ioctl({"-h", "abc"}) == 0);
    CHECK(ioctl({"-C"}) == 0);
    CHECK(ioctl({"--info", "1"}) == 0);
    CHECK(ioctl({"--save", "permanent", file.string()}) == 0);
    CHECK(std::filesystem::file_size(file) == 10);
    CHECK(ioctl({"--stop"}) == 0);
    CHECK(ioctl({"--load", "permanent", file.string()}) == 0);
    CHECK(ioctl({"-i"}) == 0);
    CHECK(ioctl({"-s"}) == 0);
    std::filesystem::remove(file);
    REQUIRE(f.run.wait_done());
    auto const calls = f.log->snapshot();
    CHECK(std::ranges::count(calls, "hash_data 3") == 1);
    CHECK(std::ranges::count(calls, "set_state 1 10") == 1);
    CHECK(std::ranges::count(calls, "power_on delete_volatile") == 1);
    CHECK(f.p.source().locality() == 3);
}
