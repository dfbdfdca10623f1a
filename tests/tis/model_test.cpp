// The register-level chip model on its own, driven register by register as a
// driver would: identification registers, TPM_ACCESS arbitration, the TPM_STS
// state machine and the FIFO.
#include <xtpm/mmio/sim_tis.hpp>

#include "tis/tis_support.hpp"

#include <catch2/catch.hpp>

namespace {
using namespace xtpm;
using namespace xtpm::test;
namespace reg = proto::tis::reg;
namespace acc = proto::tis::access;
namespace sts = proto::tis::sts;
using chip_t = sim_tis<echo_backend>;

static_assert(mmio_window<chip_t>);
static_assert(std::copyable<chip_t>);  // copies are handles on one chip

auto make_chip(sim_tis_options opts = {}) -> chip_t { return chip_t{echo_backend{opts.family}, opts}; }

auto request(chip_t& c, std::uint8_t loc) { c.write8(loc, reg::access, acc::request_use); }
auto has(std::uint32_t v, std::uint32_t bits) -> bool { return (v & bits) == bits; }

// Reads TPM_STS until stsValid (the model drops it for a read after each FIFO write).
auto valid_sts(chip_t& c, std::uint8_t loc) -> std::uint32_t {
    std::uint32_t v = 0;
    REQUIRE(eventually([&] { return has(v = c.read32(loc, reg::sts), sts::sts_valid); }));
    return v;
}

void send(chip_t& c, std::uint8_t loc, bytes const& cmd) {
    c.write8(loc, reg::sts, static_cast<std::uint8_t>(sts::command_ready));
    REQUIRE(has(c.read32(loc, reg::sts), sts::command_ready));
    for (std::size_t i = 0; i < cmd.size(); ++i) {
        c.write8(loc, reg::data_fifo, std::to_integer<std::uint8_t>(cmd[i]));
        CHECK_FALSE(has(c.read32(loc, reg::sts), sts::sts_valid));  // Expect not valid yet
        CHECK(has(valid_sts(c, loc), sts::expect) == (i + 1 < cmd.size()));
    }
    c.write8(loc, reg::sts, static_cast<std::uint8_t>(sts::tpm_go));
}

auto read_response(chip_t& c, std::uint8_t loc) -> bytes {
    REQUIRE(eventually([&] { return has(c.read32(loc, reg::sts), sts::sts_valid | sts::data_avail); }));
    bytes out;
    for (;;) {
        auto const v = valid_sts(c, loc);
        if (!has(v, sts::data_avail)) break;
        auto const burst = sts::burst_count(v);
        REQUIRE(burst >= 1);
        for (unsigned i = 0; i < burst && has(c.read32(loc, reg::sts), sts::data_avail); ++i)
            out.push_back(std::byte{c.read8(loc, reg::data_fifo)});
        REQUIRE(out.size() <= 4096);
    }
    return out;
}
}  // namespace

TEST_CASE("sim_tis: identification registers in every locality window", "[tis][model]") {
    for (auto fam : {wire::family::tpm2, wire::family::tpm12}) {
        sim_tis_options o;
        o.family = fam;
        o.vary_burst = false;
        auto c = make_chip(o);
        for (std::uint8_t loc = 0; loc < proto::tis::localities; ++loc) {
            CHECK(c.read32(loc, reg::did_vid) == o.did_vid);
            CHECK(c.read8(loc, reg::did_vid) == 0x54);  // vendor id, low byte first
            CHECK(c.read8(loc, reg::rid) == o.rid);
            auto const cap = c.read32(loc, reg::intf_capability);
            CHECK((cap & proto::tis::intf::version_mask) ==
                  (fam == wire::family::tpm2 ? proto::tis::intf::version_ptp : proto::tis::intf::version_tis13));
            CHECK(has(cap, proto::tis::intf::burst_count_static));
            CHECK(proto::tis::announced_family(cap) ==
                  (fam == wire::family::tpm2 ? std::optional{wire::family::tpm2} : std::nullopt));
            auto const id = c.read32(loc, reg::interface_id);
            if (fam == wire::family::tpm2) CHECK((id & proto::tis::iface_id::type_mask) == 0);
            else CHECK(id == 0xFFFFFFFF);
            CHECK(c.read32(loc, 0x40) == 0xFFFFFFFF);  // unimplemented: floating bus
            CHECK(c.read8(loc, reg::access) == (acc::reg_valid_sts | acc::tpm_establishment));
        }
    }
}

TEST_CASE("sim_tis: locality arbitration with requestUse, relinquish and Seize", "[tis][model][locality]") {
    auto c = make_chip();
    CHECK_FALSE(c.active_locality());
    request(c, 1);
    CHECK(c.active_locality() == 1);
    CHECK(has(c.read8(1, reg::access), acc::active_locality | acc::reg_valid_sts));

    SECTION("a request while another locality is active stays pending") {
        request(c, 3);
        request(c, 2);
        CHECK(c.active_locality() == 1);
        CHECK(has(c.read8(1, reg::access), acc::pending_request));
        CHECK(has(c.read8(3, reg::access), acc::request_use));
        CHECK_FALSE(has(c.read8(3, reg::access), acc::active_locality));
        SECTION("relinquishing grants the highest requesting locality") {
            c.write8(1, reg::access, acc::active_locality);
            CHECK(c.active_locality() == 3);
            CHECK_FALSE(has(c.read8(3, reg::access), acc::request_use));
            c.write8(3, reg::access, acc::active_locality);
            CHECK(c.active_locality() == 2);
        }
        SECTION("writing activeLocality from a waiting locality withdraws its request") {
            c.write8(3, reg::access, acc::active_locality);
            c.write8(2, reg::access, acc::active_locality);
            CHECK_FALSE(has(c.read8(1, reg::access), acc::pending_request));
            c.write8(1, reg::access, acc::active_locality);
            CHECK_FALSE(c.active_locality());
        }
    }
    SECTION("Seize from a lower locality is ignored, from a higher one wins") {
        c.write8(0, reg::access, acc::seize);
        CHECK(c.active_locality() == 1);
        c.write8(4, reg::access, acc::seize);
        CHECK(c.active_locality() == 4);
        CHECK(has(c.read8(1, reg::access), acc::been_seized));
        CHECK_FALSE(has(c.read8(1, reg::access), acc::active_locality));
        CHECK((c.read8(4, reg::access) & acc::seize) == 0);  // write-only: reads 0
        c.write8(1, reg::access, acc::been_seized);          // write 1 to clear
        CHECK_FALSE(has(c.read8(1, reg::access), acc::been_seized));
    }
    SECTION("a locality that is not active reads all ones and cannot write") {
        CHECK(c.read32(0, reg::sts) == 0xFFFFFFFF);
        CHECK(c.read8(0, reg::data_fifo) == 0xFF);
        c.write8(0, reg::sts, static_cast<std::uint8_t>(sts::command_ready));
        c.write32(0, reg::int_enable, proto::tis::irq::data_avail);
        CHECK_FALSE(has(c.read32(1, reg::sts), sts::command_ready));  // still Idle
        CHECK(c.read32(0, reg::int_enable) == 0);
    }
    SECTION("hostile locality_never: requests and Seize are never granted") {
        c.set_hostile(tis_hostile::locality_never);
        c.write8(1, reg::access, acc::active_locality);
        CHECK_FALSE(c.active_locality());
        request(c, 2);
        c.write8(3, reg::access, acc::seize);
        CHECK_FALSE(c.active_locality());
        CHECK(has(c.read8(2, reg::access), acc::request_use));
    }
}

TEST_CASE("sim_tis: a command through the FIFO, byte by byte", "[tis][model]") {
    for (auto vary : {false, true}) {
        sim_tis_options o;
        o.vary_burst = vary;
        o.max_burst = 7;
        auto c = make_chip(o);
        request(c, 0);
        CHECK_FALSE(has(c.read32(0, reg::sts), sts::command_ready));  // Idle until told
        auto const cmd = sized_command(40);
        send(c, 0, cmd);
        auto const resp = read_response(c, 0);
        CHECK(resp == echoed(cmd));
        CHECK(c.read8(0, reg::data_fifo) == 0xFF);  // empty FIFO

        SECTION("responseRetry replays the response from its first byte") {
            c.write8(0, reg::sts, static_cast<std::uint8_t>(sts::response_retry));
            CHECK(read_response(c, 0) == resp);
        }
        SECTION("commandReady drops the response and makes the chip Ready") {
            c.write8(0, reg::sts, static_cast<std::uint8_t>(sts::command_ready));
            auto const v = valid_sts(c, 0);
            CHECK(has(v, sts::command_ready));
            CHECK_FALSE(has(v, sts::data_avail));
            CHECK(sts::burst_count(v) >= 1);
        }
    }
}

TEST_CASE("sim_tis: burstCount never exceeds what is left, and 32-bit FIFO reads move 4 bytes", "[tis][model]") {
    sim_tis_options o;
    o.vary_burst = false;
    o.max_burst = 64;
    auto c = make_chip(o);
    request(c, 2);
    auto const cmd = sized_command(14);
    send(c, 2, cmd);
    REQUIRE(eventually([&] { return has(c.read32(2, reg::sts), sts::data_avail); }));
    CHECK(sts::burst_count(c.read32(2, reg::sts)) == 14);
    auto const want = echoed(cmd);
    auto const first = c.read32(2, reg::data_fifo);
    CHECK(first == (std::to_integer<std::uint32_t>(want[0]) | std::to_integer<std::uint32_t>(want[1]) << 8 |
                    std::to_integer<std::uint32_t>(want[2]) << 16 | std::to_integer<std::uint32_t>(want[3]) << 24));
    CHECK(sts::burst_count(c.read32(2, reg::sts)) == 10);
    CHECK(c.read8(2, reg::xdata_fifo) == std::to_integer<std::uint8_t>(want[4]));  // PTP alias
    CHECK(sts::burst_count(c.read32(2, reg::sts)) == 9);
}

TEST_CASE("sim_tis: tpmGo is ignored while Expect is set", "[tis][model]") {
    auto c = make_chip();
    request(c, 0);
    c.write8(0, reg::sts, static_cast<std::uint8_t>(sts::command_ready));
    auto const cmd = sized_command(20);
    for (std::size_t i = 0; i < 12; ++i) c.write8(0, reg::data_fifo, std::to_integer<std::uint8_t>(cmd[i]));
    c.write8(0, reg::sts, static_cast<std::uint8_t>(sts::tpm_go));
    CHECK(has(valid_sts(c, 0), sts::expect));
    CHECK(c.commands_executed() == 0);
    CHECK_FALSE(c.executing());
}

TEST_CASE("sim_tis: a size field outside [10, buffer] ends reception with a TPM error", "[tis][model]") {
    for (auto fam : {wire::family::tpm2, wire::family::tpm12}) {
        sim_tis_options o;
        o.family = fam;
        auto c = make_chip(o);
        request(c, 0);
        auto cmd = sized_command(6, fam);  // size field 6
        send(c, 0, cmd);
        auto const resp = read_response(c, 0);
        REQUIRE(resp.size() == 10);
        CHECK(rc_of(resp) == (fam == wire::family::tpm2 ? 0x142U : 0x19U));
    }
}

TEST_CASE("sim_tis: commandCancel aborts a TPM 2.0 command with TPM_RC_CANCELED", "[tis][model]") {
    gated_backend gb;
    sim_tis<gated_backend> c{gb};
    gate_guard guard{gb};  // after the chip: released before the chip joins its worker
    c.write8(0, reg::access, acc::request_use);
    c.write8(0, reg::sts, static_cast<std::uint8_t>(sts::command_ready));
    for (auto b : sized_command(12)) c.write8(0, reg::data_fifo, std::to_integer<std::uint8_t>(b));
    c.write8(0, reg::sts, static_cast<std::uint8_t>(sts::tpm_go));
    REQUIRE(gb.wait_entered());
    CHECK(c.executing());
    c.write8(0, reg::sts_ext, 0x01);  // commandCancel, bit 24
    REQUIRE(eventually([&] { return (c.read32(0, reg::sts) & sts::data_avail) != 0; }));
    bytes resp;
    for (int i = 0; i < 10; ++i) resp.push_back(std::byte{c.read8(0, reg::data_fifo)});
    CHECK(rc_of(resp) == 0x909);
}

TEST_CASE("sim_tis: interrupt status records events that are enabled, write 1 clears", "[tis][model]") {
    auto c = make_chip();
    request(c, 0);
    c.write32(0, reg::int_enable, proto::tis::irq::global_enable | proto::tis::irq::data_avail | 0x4000);
    CHECK(c.read32(0, reg::int_enable) == (proto::tis::irq::global_enable | proto::tis::irq::data_avail));
    send(c, 0, sized_command(12));
    REQUIRE(eventually([&] { return (c.read32(0, reg::int_status) & proto::tis::irq::data_avail) != 0; }));
    c.write32(0, reg::int_status, proto::tis::irq::data_avail);
    CHECK(c.read32(0, reg::int_status) == 0);
}

TEST_CASE("sim_tis: hostile register modes", "[tis][model][hostile]") {
    auto c = make_chip();
    request(c, 0);
    c.write8(0, reg::sts, static_cast<std::uint8_t>(sts::command_ready));
    SECTION("burst_zero") {
        c.set_hostile(tis_hostile::burst_zero);
        CHECK(sts::burst_count(c.read32(0, reg::sts)) == 0);
    }
    SECTION("burst_huge") {
        c.set_hostile(tis_hostile::burst_huge);
        CHECK(sts::burst_count(c.read32(0, reg::sts)) == 0xFFFF);
    }
    SECTION("sts_valid_never") {
        c.set_hostile(tis_hostile::sts_valid_never);
        for (int i = 0; i < 10; ++i) CHECK_FALSE(has(c.read32(0, reg::sts), sts::sts_valid));
    }
    SECTION("garbage differs from read to read") {
        c.set_hostile(tis_hostile::garbage);
        auto const a = c.read32(0, reg::did_vid);
        auto const b = c.read32(0, reg::did_vid);
        CHECK(a != b);
    }
}
