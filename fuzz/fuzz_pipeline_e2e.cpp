// Property: whatever the client sends and whatever the device answers, the
// pipeline hands back exactly one well-formed TPM response (header parses, size
// field = length, tag of the device's family) and never crashes.
// Input: u8 flags (bit0 family, bits1-3 locality), records {u16 n, cmd, u16 m, resp}.
#include <xtpm/pipeline.hpp>

#include <array>

namespace {
using namespace xtpm;
struct scripted_device {
    wire::family fam;
    wire::bytes_view answer;
    auto execute(wire::command_view, wire::bytes_span) -> result<wire::response_view> { return wire::response_view{answer}; }
    auto family() const -> wire::family { return fam; }
    auto max_command_size() const -> std::size_t { return 4096; }
};
struct no_source { template <class H> auto serve(H&) -> result<void> { return {}; } void stop() noexcept {} };
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    wire::reader r{std::as_bytes(std::span{data, size})};
    auto flags = r.read_be<std::uint8_t>();
    if (!flags) return 0;
    auto const fam = (*flags & 1) ? wire::family::tpm12 : wire::family::tpm2;
    pipeline p{no_source{}, scripted_device{fam, {}}};
    std::array<std::byte, 4096> out{};
    while (r.remaining() > 0) {
        auto chunk = [&]() -> result<wire::bytes_view> {
            auto n = r.read_be<std::uint16_t>();
            return n ? r.bytes(*n) : std::unexpected{n.error()};
        };
        auto cmd = chunk();
        auto resp = chunk();
        if (!cmd || !resp) break;
        p.with_device([&](scripted_device& d) { d.answer = *resp; });
        auto const got = p.process(*cmd, static_cast<std::uint8_t>((*flags >> 1) & 7), out);
        auto const hdr = wire::parse_response(got);
        XTPM_ASSERT(hdr && wire::response_family(hdr->tag) == fam);
    }
    return 0;
}
