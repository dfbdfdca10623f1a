// Xenstore operations that need more than one request, written once for every Hv: the
// xenbus executors (tpmif backend and frontend) and the sim toolstack use them.
#pragma once

#include <xtpm/hv/concepts.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace xtpm::hv {

// Run step(tx) inside a transaction, started again while xenstored answers EAGAIN, at most
// `attempts` times. step returns true to commit, false to abandon (nothing to change), or an
// error (abandoned, passed on). True: committed; false: abandoned, or every attempt met EAGAIN.
template <xenstore H, class Step>
auto in_transaction(H& h, Step step, int attempts) -> result<bool> {
    for (int i = 0; i < attempts; ++i) {
        auto tx = h.transaction_start();
        if (!tx) return std::unexpected{tx.error()};
        result<bool> const go = step(*tx);
        if (!go || !*go) {
            (void)h.transaction_end(*tx, false);
            return go;
        }
        auto done = h.transaction_end(*tx, true);
        if (!done || *done) return done;
    }
    return false;
}

// All entries or none, in one attempt: false when xenstored asks for a restart (EAGAIN), which
// the xenbus machine does itself (on_transaction), as Linux's frontend does.
template <xenstore H>
auto write_all(H& h, std::vector<std::pair<std::string, std::string>> const& entries) -> result<bool> {
    return in_transaction(h, [&](xs_tx_t tx) -> result<bool> {
        for (auto const& [k, v] : entries)
            if (auto r = h.write(k, v, tx); !r) return std::unexpected{r.error()};
        return true;
    }, 1);
}

// Set a device's <dir>/state the way Linux's xenbus_switch_state() does: in a transaction,
// only when the node still exists and holds another value. A device whose directory the
// toolstack has removed stays removed (writing would recreate it under libxl's feet), and
// an unchanged state fires no watch. True when the state was written.
template <xenstore H>
auto switch_state(H& h, std::string_view state_path, std::string_view value) -> result<bool> {
    return in_transaction(h, [&](xs_tx_t tx) -> result<bool> {
        auto const now = h.read(state_path, tx);
        if (!now) return std::unexpected{now.error()};
        if (!*now || **now == value) return false;
        if (auto w = h.write(state_path, value, tx); !w) return std::unexpected{w.error()};
        return true;
    }, 16);
}

}  // namespace xtpm::hv
