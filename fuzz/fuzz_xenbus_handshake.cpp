// Property: under any watch events, read values (any arity) and I/O outcomes, neither handshake machine
// crashes, both always hold a XenbusState (0..6), and map_ring only answers canonical decimal ring-ref and
// non-zero event-channel values with feature-protocol-v2 "1". Lines "<op><arg>": v/w values a|b|~ (~ missing)
// to backend/frontend; s/S b/B state or gone; m/M map ok/fails; r ring; t/T commit/EAGAIN; c/x/o close/close/reopen.
#include <xtpm/config.hpp>
#include <xtpm/proto/xenbus.hpp>

#include <sstream>

namespace xb = xtpm::proto::xenbus;
extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    xb::backend_handshake be{"/local/domain/0/backend/vtpm/5/0", 5, {size % 2 == 1}};
    xb::frontend_handshake fe{"/local/domain/5/device/vtpm/0", {xb::frontend_variant(size % 3 == 0), size % 5 > 0}};
    std::vector<std::optional<std::string>> v;  // the values of the current call only
    auto run = [&](xb::actions const& acts) {
        for (auto const& a : acts)
            if (auto const* m = std::get_if<xb::map_ring>(&a))
                XTPM_ASSERT(v.size() >= 3 && v[0] == std::to_string(m->ring_ref) && v[1] == std::to_string(m->port) &&
                            m->port != 0 && v[2] == "1");
        XTPM_ASSERT(be.state() <= xb::device_state::closed && fe.state() <= xb::device_state::closed);
        v.clear();
    };
    run(be.start()), run(fe.start());
    std::istringstream lines{std::string{reinterpret_cast<char const*>(data), size}};
    for (std::string line; std::getline(lines, line);) {
        char const op = line.empty() ? ' ' : line[0], lo = static_cast<char>(op | 32);  // lo: either case
        std::string const arg = line.substr(line.empty() ? 0 : 1);
        std::istringstream vs{arg};
        for (std::string t; (op == 'v' || op == 'w') && std::getline(vs, t, '|');)
            v.push_back(t == "~" ? std::nullopt : std::optional{t});
        if (op == 'v' || op == 'w') run(op == 'v' ? be.on_values(v) : fe.on_values(v));
        std::optional<std::string_view> st;  // S, B: the node is gone
        if (op == 's' || op == 'b') st.emplace(arg);
        if (lo == 's' || lo == 'b') run(lo == 's' ? be.on_frontend_state(st) : fe.on_backend_state(st));
        if (lo == 'm') run(be.on_mapped(op == 'm' ? xtpm::result<void>{} : xtpm::fail(xtpm::errc::closed)));
        if (op == 'r' || lo == 't') run(op == 'r' ? fe.on_ring_ready(7, 9) : fe.on_transaction(op == 't'));
        if (op == 'c' || op == 'x' || op == 'o') run(op == 'c' ? be.close() : op == 'x' ? fe.close() : fe.reopen());
    }
    return 0;
}
