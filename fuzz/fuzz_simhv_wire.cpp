// Property: sim::core (the xtpm-simhv daemon minus its sockets) survives any packets from
// domains 0-2: no crash, no leak, nothing thrown, and each request gets exactly one
// well-formed reply unless its connection is dropped. Input: [sender][length][packet]...;
// sender bit 7 attaches a sealed memfd of 1-4 pages (bits 4-5), read-only if bit 6 is set.
#include <xtpm/config.hpp>
#include <xtpm/hv/sim/core.hpp>
#include <xtpm/hv/sim/pages.hpp>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    using namespace xtpm::hv;
    auto in = std::as_bytes(std::span{data, size});
    sim::core core;
    std::array<sim::conn_id, 3> conn{};
    for (domid_t d = 0; d < 3; ++d) conn[d] = core.introduce(d) ? core.attach(d).value_or(0) : 0;
    while (in.size() >= 2) {
        auto const who = std::to_integer<unsigned>(in[0]);
        auto const len = std::min<std::size_t>(std::to_integer<unsigned>(in[1]), in.size() - 2);
        std::vector<xtpm::io::unique_fd> fds;
        if (who & 0x80)
            if (auto made = sim::shared_pages::create(((who >> 4) & 3) + 1, (who & 0x40) == 0))
                fds.push_back(std::move(made->first));
        auto const c = conn[who % 3];
        core.handle(c, in.subspan(2, len), std::move(fds));
        in = in.subspan(2 + len);
        auto const gone = core.take_dropped();  // a bad header, or a released domain's connections
        auto const dropped = [&](sim::conn_id id) { return std::ranges::count(gone, id) != 0; };
        std::size_t replies = 0;
        for (auto const& o : core.outbox()) {
            auto m = sim::parse_message(o.bytes);
            XTPM_ASSERT(m.has_value());
            replies += o.to == c && m->type() != static_cast<std::uint32_t>(sim::msg_type::watch_event);
        }
        XTPM_ASSERT(replies == (dropped(c) ? 0U : 1U));  // a dropped connection gets none
        core.outbox().clear();
        for (domid_t d = 0; d < 3; ++d)  // reconnect, as a restarted process would
            if (dropped(conn[d])) conn[d] = core.introduce(d) ? core.attach(d).value_or(0) : 0;
    }
    return 0;
}
