#include <xtpm/hv/sim.hpp>

#include "hv/sim_fixture.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

namespace {
using namespace xtpm;
using namespace xtpm::hv;
using test::sys;

auto str(result<std::optional<std::string>> const& r) -> std::string {
    if (!r) return "error: " + r.error().message();
    return *r ? **r : "<missing>";
}

// A raw client of a domain socket, for bytes no sim_hv would send.
struct raw_client {
    io::unique_fd fd;
    explicit raw_client(std::filesystem::path const& sock) {
        auto c = sim::connect_packets(sock);
        REQUIRE(c.has_value());
        fd = std::move(*c);
    }
    void send(std::vector<std::byte> const& b) const { REQUIRE(sim::send_packet(fd.get(), b, {}).has_value()); }
    void send(sim::msg_type t, std::string_view payload, std::uint32_t tx = 0) const {
        sim::message_builder b;
        b.raw(payload);
        auto m = b.finish(t, 7, tx);
        REQUIRE(m.has_value());
        send(*m);
    }
    // The reply payload ("E..." for an error), or nullopt once the daemon hung up.
    auto reply() const -> std::optional<std::string> {
        REQUIRE(test::wait_readable(fd.get()));
        std::vector<std::byte> buf(sim::packet_max);
        std::vector<io::unique_fd> fds;
        auto n = sim::recv_packet(fd.get(), buf, fds);
        if (!n) return std::nullopt;
        auto m = sim::parse_message(std::span{buf}.first(*n));
        REQUIRE(m.has_value());
        auto const p = sim::as_view(m->payload);
        return std::string{p.substr(0, p.find('\0'))};
    }
};
}  // namespace

TEST_CASE("sim_hv: connecting as a domain without a socket fails with ENOENT", "[hv][sim]") {
    test::simhv_daemon d{{}};
    auto h = sim_hv::connect(d.dir(), 5);
    REQUIRE_FALSE(h.has_value());
    CHECK(h.error() == sys(ENOENT));
}

TEST_CASE("sim_hv xenstore: write, read, directory and remove", "[hv][sim][xenstore]") {
    test::simhv_daemon d;
    auto dom0 = d.connect(0);
    CHECK(dom0.self() == 0);
    REQUIRE(dom0.write("/a/b/c", "v1"));
    CHECK(str(dom0.read("/a/b/c")) == "v1");
    CHECK(str(dom0.read("/a/b")).empty());  // parents are created with empty values
    CHECK(str(dom0.read("/a/none")) == "<missing>");
    auto const binary = std::string{"x\0y", 3};
    REQUIRE(dom0.write("/a/bin", binary));
    CHECK(str(dom0.read("/a/bin")) == binary);
    REQUIRE(dom0.mkdir("/a/dir"));
    REQUIRE(dom0.mkdir("/a/dir"));  // existing: fine
    CHECK(dom0.directory("/a") == std::vector<std::string>{"b", "bin", "dir"});
    CHECK(dom0.directory("/a/none").error() == sys(ENOENT));
    REQUIRE(dom0.remove("/a/b"));
    CHECK(str(dom0.read("/a/b/c")) == "<missing>");
    CHECK(dom0.remove("/a/b").has_value());               // missing, parent exists: fine
    CHECK(dom0.remove("/a/b/c/d").error() == sys(ENOENT));  // missing parent
    CHECK(dom0.remove("/").error() == sys(EINVAL));
    SECTION("bad paths are EINVAL") {
        for (auto const* p : {"", "/a//b", "/a/", "/a b", "@foo", "/a/\xff"})
            CHECK(dom0.write(p, "x").error() == sys(EINVAL));
        CHECK(dom0.read(std::string(sim::abs_path_max + 1, 'a').insert(0, "/")).error() == sys(EINVAL));
    }
}

TEST_CASE("sim_hv xenstore: relative paths resolve under the caller's home", "[hv][sim][xenstore]") {
    test::simhv_daemon d;
    auto dom0 = d.connect(0);
    auto dom1 = d.connect(1);
    REQUIRE(dom1.write("device/vtpm/0/state", "1"));
    CHECK(str(dom0.read("/local/domain/1/device/vtpm/0/state")) == "1");
    CHECK(str(dom1.read("/local/domain/1/device/vtpm/0/state")) == "1");
    REQUIRE(dom0.write("device/x", "0"));
    CHECK(str(dom0.read("/local/domain/0/device/x")) == "0");
    CHECK(dom1.directory("device/vtpm") == std::vector<std::string>{"0"});
}

TEST_CASE("sim_hv xenstore: a domain cannot touch dom0's nodes unless permitted", "[hv][sim][xenstore][perms]") {
    test::simhv_daemon d;
    auto dom0 = d.connect(0);
    auto dom1 = d.connect(1);
    auto dom2 = d.connect(2);
    REQUIRE(dom0.write("/tool/x", "secret"));
    CHECK(dom1.write("/tool/x", "mine").error() == sys(EACCES));
    CHECK(dom1.read("/tool/x").error() == sys(EACCES));
    CHECK(dom1.write("/tool/new", "mine").error() == sys(EACCES));  // create needs the parent
    CHECK(dom1.remove("/tool/x").error() == sys(EACCES));
    CHECK(dom1.read("/tool/none").error() == sys(EACCES));  // absence does not leak

    // Owner dom0, nobody by default, dom1 may write, dom2 may read.
    xs_permission const perms[] = {{0, false, false}, {1, false, true}, {2, true, false}};
    REQUIRE(dom0.set_permissions("/tool/x", perms));
    CHECK(dom1.write("/tool/x", "mine").has_value());
    CHECK(dom1.read("/tool/x").error() == sys(EACCES));
    CHECK(str(dom2.read("/tool/x")) == "mine");
    CHECK(dom2.write("/tool/x", "no").error() == sys(EACCES));
    auto const got = dom0.get_permissions("/tool/x");
    REQUIRE(got.has_value());
    REQUIRE(got->size() == 3);
    CHECK((got->at(1).domain == 1 && !got->at(1).read && got->at(1).write));

    SECTION("only the owner sets permissions, and cannot give the node away") {
        CHECK(dom1.set_permissions("/tool/x", perms).error() == sys(EACCES));
        REQUIRE(dom1.write("data/k", "v"));
        xs_permission const give[] = {{2, true, true}};
        CHECK(dom1.set_permissions("data/k", give).error() == sys(EPERM));
        xs_permission const share[] = {{1, false, false}, {2, true, false}};
        REQUIRE(dom1.set_permissions("data/k", share));
        CHECK(str(dom2.read("/local/domain/1/data/k")) == "v");
    }
    SECTION("what a domain creates, it owns") {
        xs_permission const open_dir[] = {{0, false, false}, {1, true, true}};
        REQUIRE(dom0.mkdir("/shared"));
        REQUIRE(dom0.set_permissions("/shared", open_dir));
        REQUIRE(dom1.write("/shared/a/b", "1"));
        auto p = dom0.get_permissions("/shared/a/b");
        REQUIRE(p.has_value());
        CHECK(p->at(0).domain == 1);
        CHECK(dom2.read("/shared/a/b").error() == sys(EACCES));
    }
    SECTION("a domain's home is its own") {
        CHECK(dom1.write("x", "1").has_value());
        CHECK(dom2.read("/local/domain/1/x").error() == sys(EACCES));
        CHECK(dom2.write("/local/domain/1/y", "1").error() == sys(EACCES));
    }
    SECTION("quotas bound what an unprivileged domain may store, watch and open") {
        CHECK(dom1.write("big", std::string(2049, 'x')).error() == sys(ENOSPC));
        CHECK(dom0.write("/big", std::string(4000, 'x')).has_value());
        for (int i = 0; i < 128; ++i) REQUIRE(dom1.watch(std::string{"w"}.append(std::to_string(i)), "t"));
        CHECK(dom1.watch("w128", "t").error() == sys(E2BIG));
        for (int i = 0; i < 10; ++i) REQUIRE(dom1.transaction_start());
        CHECK(dom1.transaction_start().error() == sys(ENOSPC));
        for (int i = 0; i < 200; ++i) REQUIRE(dom0.watch(std::string{"/w"}.append(std::to_string(i)), "t"));  // dom0: no quota
        int stored = 0;
        while (stored < 2000 && dom1.write(std::string{"n"}.append(std::to_string(stored)), "").has_value()) ++stored;
        CHECK(stored == 999);  // 1000 nodes, its home included
        CHECK(dom1.write("n0", "overwrite").has_value());  // changing a node is not a new node
        CHECK(dom1.write("n9999", "").error() == sys(ENOSPC));
    }
}

TEST_CASE("sim_hv xenstore: a transaction commits atomically and a conflict is retried", "[hv][sim][xenstore][tx]") {
    test::simhv_daemon d;
    auto dom0 = d.connect(0);
    auto dom1 = d.connect(1);
    REQUIRE(dom1.write("counter", "0"));

    SECTION("writes are invisible until commit") {
        auto tx = dom1.transaction_start();
        REQUIRE(tx.has_value());
        REQUIRE(dom1.write("a", "1", *tx));
        REQUIRE(dom1.write("b", "2", *tx));
        CHECK(str(dom1.read("a", *tx)) == "1");
        CHECK(str(dom0.read("/local/domain/1/a")) == "<missing>");
        CHECK(dom1.transaction_end(*tx, true) == result<bool>{true});
        CHECK(str(dom0.read("/local/domain/1/a")) == "1");
        CHECK(str(dom0.read("/local/domain/1/b")) == "2");
    }
    SECTION("abort discards") {
        auto tx = dom1.transaction_start();
        REQUIRE(dom1.write("a", "1", *tx));
        REQUIRE(dom1.remove("counter", *tx));
        CHECK(dom1.transaction_end(*tx, false) == result<bool>{true});
        CHECK(str(dom1.read("a")) == "<missing>");
        CHECK(str(dom1.read("counter")) == "0");
    }
    SECTION("a node read in the transaction changed: EAGAIN, then a retry succeeds") {
        int attempts = 0;
        for (;;) {
            ++attempts;
            REQUIRE(attempts <= 3);
            auto tx = dom1.transaction_start();
            REQUIRE(tx.has_value());
            auto v = dom1.read("counter", *tx);
            REQUIRE((v && *v));
            if (attempts == 1) REQUIRE(dom0.write("/local/domain/1/counter", "10"));  // interferes
            REQUIRE(dom1.write("counter", std::to_string(std::stoi(**v) + 1), *tx));
            auto done = dom1.transaction_end(*tx, true);
            REQUIRE(done.has_value());
            if (*done) break;
        }
        CHECK(attempts == 2);
        CHECK(str(dom1.read("counter")) == "11");
    }
    SECTION("an unrelated change does not conflict") {
        auto tx = dom1.transaction_start();
        REQUIRE(dom1.write("mine", "1", *tx));
        REQUIRE(dom0.write("/elsewhere", "x"));
        CHECK(dom1.transaction_end(*tx, true) == result<bool>{true});
    }
    SECTION("an unknown transaction id is ENOENT") {
        CHECK(dom1.write("counter", "1", 12345).error() == sys(ENOENT));
        CHECK(dom1.transaction_end(12345, true).error() == sys(ENOENT));
        auto tx = dom1.transaction_start();
        CHECK(dom0.directory("/local/domain/1", *tx).error() == sys(ENOENT));  // another connection's
    }
}

TEST_CASE("sim_hv watch: fires on registration, change and removal with its token", "[hv][sim][xenstore][watch]") {
    test::simhv_daemon d;
    auto dom0 = d.connect(0);
    auto dom1 = d.connect(1);
    REQUIRE(dom0.write("/w/a", "1"));
    REQUIRE(dom0.watch("/w", "tok"));
    auto ev = test::next_event(dom0);
    REQUIRE(ev);
    CHECK((ev->path == "/w" && ev->token == "tok"));  // the registration event

    REQUIRE(dom0.write("/w/a", "2"));
    ev = test::next_event(dom0);
    REQUIRE(ev);
    CHECK((ev->path == "/w/a" && ev->token == "tok"));

    REQUIRE(dom0.write("/other", "x"));  // not below /w: no event
    REQUIRE(dom0.remove("/w"));
    ev = test::next_event(dom0);
    REQUIRE(ev);
    CHECK((ev->path == "/w" && ev->token == "tok"));
    CHECK_FALSE(test::next_event(dom0, std::chrono::milliseconds{50}));

    SECTION("removing a parent fires a watch below it with the watched path") {
        REQUIRE(dom0.write("/p/q/r", "1"));
        REQUIRE(dom0.watch("/p/q/r", "deep"));
        REQUIRE(test::next_event(dom0));
        REQUIRE(dom0.remove("/p"));
        ev = test::next_event(dom0);
        REQUIRE(ev);
        CHECK((ev->path == "/p/q/r" && ev->token == "deep"));
    }
    SECTION("a relative watch reports relative paths") {
        REQUIRE(dom1.watch("device", "rel"));
        ev = test::next_event(dom1);
        REQUIRE(ev);
        CHECK(ev->path == "device");
        REQUIRE(dom0.write("/local/domain/1/device/vtpm/0/state", "3"));
        ev = test::next_event(dom1);
        REQUIRE(ev);
        CHECK((ev->path == "device/vtpm/0/state" && ev->token == "rel"));
    }
    SECTION("no event for a node the watcher cannot read") {
        REQUIRE(dom1.watch("/secret", "s"));
        REQUIRE(test::next_event(dom1));
        REQUIRE(dom0.write("/secret/k", "v"));
        CHECK_FALSE(test::next_event(dom1, std::chrono::milliseconds{100}));
    }
    SECTION("unwatch stops events; a duplicate watch is EEXIST") {
        CHECK(dom0.watch("/w", "tok").error() == sys(EEXIST));
        REQUIRE(dom0.unwatch("/w", "tok"));
        CHECK(dom0.unwatch("/w", "tok").error() == sys(ENOENT));
        REQUIRE(dom0.write("/w/z", "1"));
        CHECK_FALSE(test::next_event(dom0, std::chrono::milliseconds{50}));
    }
    SECTION("changes in a transaction fire at commit only") {
        REQUIRE(dom1.watch("t", "tx"));
        REQUIRE(test::next_event(dom1));
        auto tx = dom1.transaction_start();
        REQUIRE(dom1.write("t/k", "1", *tx));
        CHECK_FALSE(test::next_event(dom1, std::chrono::milliseconds{50}));
        REQUIRE(dom1.transaction_end(*tx, true) == result<bool>{true});
        ev = test::next_event(dom1);
        REQUIRE(ev);
        CHECK(ev->path == "t/k");
    }
}

TEST_CASE("xtpm-simhv: INTRODUCE and RELEASE are dom0's, as in xenstored", "[hv][sim][domains]") {
    test::simhv_daemon d{{1}};
    auto dom0 = d.connect(0);
    auto dom1 = d.connect(1);
    CHECK(dom1.introduce_domain(7).error() == sys(EACCES));
    CHECK(dom0.is_domain_introduced(7) == result<bool>{false});
    REQUIRE(dom0.watch("@introduceDomain", "in"));
    REQUIRE(dom0.watch("@releaseDomain", "out"));
    REQUIRE(test::next_event(dom0));
    REQUIRE(test::next_event(dom0));
    REQUIRE(dom0.introduce_domain(7));
    auto ev = test::next_event(dom0);
    REQUIRE(ev);
    CHECK(ev->token == "in");
    CHECK(dom0.is_domain_introduced(7) == result<bool>{true});
    auto dom7 = d.connect(7);  // its socket exists once INTRODUCE is answered
    REQUIRE(dom7.write("home", "yes"));
    CHECK(dom1.release_domain(7).error() == sys(EACCES));
    REQUIRE(dom0.release_domain(7));
    ev = test::next_event(dom0);
    REQUIRE(ev);
    CHECK(ev->token == "out");
    CHECK(dom7.read("home").error() == make_error_code(errc::closed));  // its connection was closed
    CHECK(sim_hv::connect(d.dir(), 7).error() == sys(ENOENT));
    CHECK(dom0.release_domain(0).error() == sys(EINVAL));
}

TEST_CASE("xtpm-simhv: malformed requests get an error or a disconnect, never a crash", "[hv][sim][robust]") {
    test::simhv_daemon d{{1}};
    auto const sock = sim::socket_path(d.dir(), 1);
    SECTION("header shorter than 16 bytes: disconnected") {
        raw_client c{sock};
        c.send(std::vector<std::byte>(5, std::byte{1}));
        CHECK_FALSE(c.reply());
    }
    SECTION("len disagreeing with the packet: disconnected") {
        raw_client c{sock};
        sim::message_builder b;
        b.str("/x");
        auto m = b.finish(sim::msg_type::read, 1, 0);
        m->push_back(std::byte{0});
        c.send(*m);
        CHECK_FALSE(c.reply());
    }
    SECTION("payload over 4096 bytes: disconnected") {
        raw_client c{sock};
        std::vector<std::byte> big(sim::packet_max + 100, std::byte{'a'});
        c.send(big);
        CHECK_FALSE(c.reply());
    }
    SECTION("requests a domain may not make, or that do not parse: error replies") {
        raw_client c{sock};
        struct bad {
            sim::msg_type type;
            std::string_view payload;
            std::uint32_t tx;
            std::string_view err;
        };
        using t = sim::msg_type;
        bad const cases[] = {
            {static_cast<t>(999), "x", 0, "EINVAL"},
            {t::read, "/no-terminator", 0, "EINVAL"},
            {t::read, {"/a\0/b\0", 6}, 0, "EINVAL"},
            {t::watch_event, {"/a\0t\0", 5}, 0, "EINVAL"},
            {t::error, {"EINVAL\0", 7}, 0, "EINVAL"},
            {t::transaction_start, {"\0", 1}, 5, "EINVAL"},
            {t::transaction_end, {"X\0", 2}, 1, "EINVAL"},
            {t::set_perms, {"/x\0q5\0", 6}, 0, "EINVAL"},
            {t::introduce, {"3\0" "0\0" "0\0", 6}, 0, "EACCES"},
            {t::gnt_share, {"0\0" "1\0" "1\0", 6}, 0, "EINVAL"},  // no memfd attached
            {t::gnt_map, {"0\0" "1\0" "8\0", 6}, 0, "EINVAL"},
            {t::gnt_map, {"0\0" "2\0" "8\0", 6}, 0, "EINVAL"},
            {t::gnt_end, {"99999999999\0", 12}, 0, "EINVAL"},
            {t::evt_alloc_unbound, {"0\0", 2}, 9, "EINVAL"},  // tx id on a hypervisor op
            {t::evt_alloc_unbound, {"65535\0", 6}, 0, "EINVAL"},
            {t::evt_alloc_unbound, {"9\0", 2}, 0, "ESRCH"},
            {t::evt_bind, {"0\0" "1\0", 4}, 0, "EINVAL"},
            {t::evt_unbind, {"1\0", 2}, 0, "EINVAL"},
            {t::get_domain_path, {"-1\0", 3}, 0, "EINVAL"},
        };
        for (auto const& b : cases) {
            INFO("type " << static_cast<unsigned>(b.type));
            c.send(b.type, b.payload, b.tx);
            CHECK(c.reply() == std::optional<std::string>{b.err});
        }
        c.send(t::get_domain_path, {"1\0", 2});
        CHECK(c.reply() == std::optional<std::string>{"/local/domain/1"});
    }
    CHECK(d.running());
    auto dom0 = d.connect(0);
    CHECK(dom0.write("/still", "alive").has_value());
}

TEST_CASE("xtpm-simhv: SIGTERM stops it and removes its sockets", "[hv][sim][daemon]") {
    test::simhv_daemon d{{1, 2}};
    CHECK(std::filesystem::exists(d.dir() / "dom2.sock"));
    test::child_process second{[&] {  // a second daemon on the same directory refuses to start
        int const null = ::open("/dev/null", O_WRONLY);
        ::dup2(null, STDERR_FILENO);
        ::execl(simhv_binary, simhv_binary, "--dir", d.dir().c_str(), nullptr);
        return 127;
    }};
    CHECK(second.exit_code() == 2);
    CHECK(d.connect(2).write("after", "1").has_value());  // the first daemon still serves
    auto st = d.stop();
    REQUIRE(st);
    CHECK(WIFEXITED(*st));
    CHECK(WEXITSTATUS(*st) == 0);
    for (auto const* s : {"dom0.sock", "dom1.sock", "dom2.sock"}) CHECK_FALSE(std::filesystem::exists(d.dir() / s));
}
