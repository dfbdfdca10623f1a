// Property: whatever a TIS chip answers (every register read comes from the
// input, then the bus floats at 0xFF), open + one command end in an errc or a
// well-formed response inside the exact-size buffer: no crash, no overflow, no
// hang (manual_clock: timeouts pass in simulated time), nothing thrown.
#include <xtpm/device/tis.hpp>

namespace {
struct fuzz_mmio {
    std::span<std::uint8_t const> in;
    auto read8(std::uint8_t, std::uint16_t) -> std::uint8_t {
        auto const b = in.empty() ? std::uint8_t{0xFF} : in.front();
        in = in.empty() ? in : in.subspan(1);
        return b;
    }
    auto read32(std::uint8_t l, std::uint16_t o) -> std::uint32_t {
        std::uint32_t v = 0;
        for (unsigned i = 0; i < 4; ++i) v |= std::uint32_t{read8(l, o)} << (8 * i);
        return v;
    }
    void write8(std::uint8_t, std::uint16_t, std::uint8_t) {}
    void write32(std::uint8_t, std::uint16_t, std::uint32_t) {}
};
}  // namespace
extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    using namespace xtpm;
    using ms = std::chrono::milliseconds;
    tis_options opts;  // short bounds: each wait ends after a few simulated 1 ms pauses
    opts.timeouts = {ms{3}, ms{3}, ms{3}, ms{3}, ms{8}, ms{8}};
    auto dev = tis_device<fuzz_mmio, proto::tis::manual_clock>::open(fuzz_mmio{{data, size}}, opts);
    if (!dev) return 0;
    static constexpr std::uint8_t get_random[2][14] = {{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7B, 0, 16},
                                                       {0x00, 0xC1, 0, 0, 0, 14, 0, 0, 0, 0x46, 0, 0, 0, 16}};
    auto const* c = get_random[dev->family() == wire::family::tpm2 ? 0 : 1];  // c[5]: its size
    auto const cmd = wire::parse_command(std::as_bytes(std::span{c, c[5]}), dev->family(), 4096);
    std::vector<std::byte> out(64);  // exact size: ASan sees any write past it
    auto const r = dev->execute(cmd.value(), out);
    XTPM_ASSERT(!r || (r->bytes.data() == out.data() && wire::parse_response(r->bytes).has_value()));
    return 0;
}
