// The request_source concept: where commands come from and where their
// responses go. A source drives its own I/O loop and calls back into the
// pipeline (a command_handler) for each command and each control operation.
#pragma once

#include <xtpm/device/concepts.hpp>

namespace xtpm {

// What a source may call on the pipeline. Not checked by the compiler:
//  - process() never fails: invalid commands and device errors come back as
//    well-formed TPM error responses, written into `out` (>= 4096 bytes is
//    always enough for a 10-byte error; the device's responses need its
//    max_command_size());
//  - process() and with_device() may be called from several threads; the
//    pipeline serialises them; cancel() is lock-free and may interrupt process();
//  - with_device(f) runs f(Device&) under the device lock (control channels).
template <class H>
concept command_handler = requires(H& h, wire::bytes_view cmd, std::uint8_t locality, wire::bytes_span out) {
    { h.process(cmd, locality, out) } -> std::same_as<wire::bytes_view>;
    { h.cancel() } noexcept -> std::same_as<void>;
    { h.family() } -> std::same_as<wire::family>;
    { h.max_command_size() } -> std::same_as<std::size_t>;
};

// A request_source serves commands until stop() or a fatal error.
// Models: swtpm_server, mssim_server, multi_source; later tpmif_backend<Hv>.
// Not checked by the compiler:
//  - serve() returns an error only when it cannot go on (its listeners fail);
//    one client's bad input or disconnect never ends it;
//  - stop() is async-signal-safe and may be called from any thread.
template <class S, class Handler>
concept request_source_for = requires(S& s, Handler& h) {
    { s.serve(h) } -> std::same_as<result<void>>;
    { s.stop() } noexcept -> std::same_as<void>;
};

}  // namespace xtpm

namespace xtpm {

// The smallest command_handler: what request_source is checked against.
struct handler_archetype {
    auto process(wire::bytes_view, std::uint8_t, wire::bytes_span) -> wire::bytes_view { return {}; }
    void cancel() noexcept {}
    auto family() const -> wire::family { return wire::family::tpm2; }
    auto max_command_size() const -> std::size_t { return 4096; }
    template <class F>
    auto with_device(F&&) -> void {}
};

template <class S>
concept request_source = request_source_for<S, handler_archetype>;

}  // namespace xtpm
