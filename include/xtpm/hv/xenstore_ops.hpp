// Xenstore operations that need more than one request, written once for every Hv: the
// xenbus executors (tpmif backend and frontend) and the sim toolstack use them.
#pragma once

#include <xtpm/hv/concepts.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace xtpm::hv {

// All entries or none, in one transaction; false when xenstored asks for a restart (EAGAIN).
template <xenstore H>
auto write_all(H& h, std::vector<std::pair<std::string, std::string>> const& entries) -> result<bool> {
    auto tx = h.transaction_start();
    if (!tx) return std::unexpected{tx.error()};
    for (auto const& [k, v] : entries) {
        if (auto r = h.write(k, v, *tx); !r) {
            (void)h.transaction_end(*tx, false);
            return std::unexpected{r.error()};
        }
    }
    return h.transaction_end(*tx, true);
}

// Set a device's <dir>/state the way Linux's xenbus_switch_state() does: in a transaction,
// only when the node still exists and holds another value. A device whose directory the
// toolstack has removed stays removed (writing would recreate it under libxl's feet), and
// an unchanged state fires no watch. True when the state was written.
template <xenstore H>
auto switch_state(H& h, std::string_view state_path, std::string_view value) -> result<bool> {
    for (int attempt = 0; attempt < 16; ++attempt) {
        auto tx = h.transaction_start();
        if (!tx) return std::unexpected{tx.error()};
        auto const now = h.read(state_path, *tx);
        if (!now || !*now || **now == value) {
            (void)h.transaction_end(*tx, false);
            if (!now) return std::unexpected{now.error()};
            return false;
        }
        if (auto w = h.write(state_path, value, *tx); !w) {
            (void)h.transaction_end(*tx, false);
            return std::unexpected{w.error()};
        }
        auto done = h.transaction_end(*tx, true);
        if (!done) return std::unexpected{done.error()};
        if (*done) return true;
    }
    return fail(errc::busy);
}

}  // namespace xtpm::hv
