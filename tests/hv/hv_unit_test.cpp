#include <xtpm/hv/xen.hpp>

#include <xtpm/hv/sim.hpp>
#include <xtpm/hv/sim/core.hpp>

#include <catch2/catch.hpp>

#include <filesystem>

namespace {
using namespace xtpm;
using namespace xtpm::hv;

static_assert(hypervisor<xen_hv>);
static_assert(hypervisor<sim_hv>);
static_assert(page_mapping<sim_hv::mapping> && page_share<sim_hv::share>);
static_assert(page_mapping<xen_hv::mapping> && page_share<xen_hv::share>);
static_assert(!page_share<sim_hv::mapping>);  // a foreign mapping has no refs of its own
static_assert(!std::copyable<sim_hv::share> && !std::copyable<xen_hv::mapping>);

auto sys(int e) -> std::error_code { return {e, std::system_category()}; }

auto bytes_of(std::string_view s) -> std::vector<std::byte> {
    auto const b = std::as_bytes(std::span{s.data(), s.size()});
    return {b.begin(), b.end()};
}

// A core with one connection per domain, for requests without sockets.
struct core_harness {
    sim::core c;
    std::map<domid_t, sim::conn_id> conn;
    core_harness() {
        REQUIRE(c.introduce(1));
        for (domid_t const d : {domid_t{0}, domid_t{1}}) conn[d] = *c.attach(d);
        c.outbox().clear();
    }
    // The last reply's payload up to its first NUL, "ERR:<name>" for an error.
    auto ask(domid_t d, sim::msg_type t, std::string_view payload, std::uint32_t tx = 0) -> std::string {
        sim::message_builder b;
        b.raw(payload);
        auto m = b.finish(t, 1, tx);
        c.handle(conn[d], *m, {});
        auto& box = c.outbox();
        REQUIRE_FALSE(box.empty());
        auto const reply = sim::parse_message(box.front().bytes);
        REQUIRE(reply.has_value());
        auto p = std::string{sim::as_view(reply->payload)};
        bool const err = reply->type() == static_cast<std::uint32_t>(sim::msg_type::error);
        box.clear();
        p = p.substr(0, p.find('\0'));
        return err ? std::string{"ERR:"}.append(p) : p;
    }
};
}  // namespace

TEST_CASE("xen_hv: open fails with ENOENT where /dev/xen is missing", "[hv][xen]") {
    if (std::filesystem::exists("/dev/xen")) {
        WARN("running under Xen: the ENOENT case does not apply");
        return;
    }
    auto h = xen_hv::open();
    REQUIRE_FALSE(h.has_value());
    CHECK(h.error() == sys(ENOENT));
    CHECK(to_errc(h.error()) == errc::io_error);
}

TEST_CASE("sim wire: a message parses only with a consistent length", "[hv][sim][wire]") {
    sim::message_builder b;
    b.str("/a").raw("value");
    auto m = b.finish(sim::msg_type::write, 9, 3);
    REQUIRE(m.has_value());
    REQUIRE(m->size() == 16 + 3 + 5);
    auto p = sim::parse_message(*m);
    REQUIRE(p.has_value());
    CHECK((p->header.type == XS_WRITE && p->header.req_id == 9 && p->header.tx_id == 3 && p->header.len == 8));
    for (std::size_t n = 0; n < m->size(); ++n) CHECK_FALSE(sim::parse_message(std::span{*m}.first(n)));
    m->push_back(std::byte{0});
    CHECK(sim::parse_message(*m).error() == make_error_code(errc::size_mismatch));
    sim::message_builder big;
    big.raw(std::string(sim::payload_max + 1, 'x'));
    CHECK(big.finish(sim::msg_type::write, 0, 0).error() == make_error_code(errc::too_large));
}

TEST_CASE("sim wire: arguments, numbers, permissions and errno names", "[hv][sim][wire]") {
    CHECK(sim::split_strings(bytes_of({"a\0bc\0\0", 6})) == std::vector<std::string_view>{"a", "bc", ""});
    CHECK(sim::split_strings({}) == std::vector<std::string_view>{});
    CHECK_FALSE(sim::split_strings(bytes_of({"a\0b", 3})));
    CHECK(sim::parse_decimal<std::uint16_t>("65535") == std::optional<std::uint16_t>{65535});
    for (auto const* bad : {"", "65536", "-1", "+1", "01", "1a", " 1", "99999999999999999999999"})
        CHECK_FALSE(sim::parse_decimal<std::uint16_t>(bad));
    CHECK(sim::perm_string({5, true, true}) == "b5");
    CHECK(sim::perm_string({0, false, false}) == "n0");
    auto p = sim::parse_perm("r12");
    REQUIRE(p);
    CHECK((p->domain == 12 && p->read && !p->write));
    CHECK_FALSE(sim::parse_perm("x1"));
    CHECK_FALSE(sim::parse_perm("r"));
    CHECK(sim::errno_name(EACCES) == "EACCES");
    CHECK(sim::errno_from_name("EAGAIN") == EAGAIN);
    CHECK(sim::errno_from_name("ESRCH") == ESRCH);
    CHECK(sim::errno_from_name("EWHATEVER") == EIO);
}

TEST_CASE("sim xs_tree: paths resolve and validate as xenstore.txt says", "[hv][sim][xenstore]") {
    CHECK(sim::resolve_path(3, "device/vtpm") == result<std::string>{"/local/domain/3/device/vtpm"});
    CHECK(sim::resolve_path(3, "/abs") == result<std::string>{"/abs"});
    CHECK(sim::resolve_path(0, "/") == result<std::string>{"/"});
    for (auto const* bad : {"", "a//b", "/a/", "@x", "/a.b", "/a b"}) CHECK(sim::resolve_path(0, bad).error() == sys(EINVAL));
    CHECK(sim::resolve_path(0, std::string(sim::rel_path_max + 1, 'a')).error() == sys(EINVAL));
    CHECK(sim::is_child("/a/b", "/a"));
    CHECK(sim::is_child("/a", "/a"));
    CHECK(sim::is_child("/a", "/"));
    CHECK_FALSE(sim::is_child("/ab", "/a"));
}

TEST_CASE("sim core: requests without sockets", "[hv][sim][core]") {
    core_harness k;
    using t = sim::msg_type;
    CHECK(k.ask(1, t::write, {"x\0v", 3}) == "OK");
    CHECK(k.ask(0, t::read, {"/local/domain/1/x\0", 18}) == "v");
    CHECK(k.ask(1, t::get_perms, {"x\0", 2}) == "n1");
    CHECK(k.ask(1, t::read, {"/local/domain/0\0", 16}) == "ERR:EACCES");
    CHECK(k.ask(1, t::transaction_start, {"\0", 1}) != "");
    CHECK(k.ask(0, t::get_domain_path, {"4\0", 2}) == "/local/domain/4");
    CHECK(k.ask(0, t::is_domain_introduced, {"1\0", 2}) == "T");
    CHECK(k.ask(1, t::gnt_map, {"0\0" "0\0" "8\0", 6}) == "ERR:EINVAL");
    CHECK(k.ask(1, t::evt_alloc_unbound, {"0\0", 2}) == "1");
    CHECK(k.ask(0, t::evt_bind, {"1\0" "1\0", 4}) == "1");
    CHECK(k.c.ports().count(0) == 1);
    k.c.detach(k.conn[1]);  // dom1's port closes; dom0's returns to unbound
    CHECK(k.c.ports().count(1) == 0);
    SECTION("a bad header ends the connection") {
        k.c.handle(k.conn[0], std::vector<std::byte>(3), {});
        CHECK(k.c.take_dropped() == std::vector<sim::conn_id>{k.conn[0]});
    }
}
