// The stage concept: a filter around the device in the pipeline (size limits,
// locality and ordinal policy, persistence, metrics).
#pragma once

#include <xtpm/wire/header.hpp>

namespace xtpm {

// A stage sees every admitted command before the device and every response
// after it. Not checked by the compiler:
//  - on_command() returning an error stops the command: the pipeline answers
//    it with the matching TPM error response and the device never sees it;
//  - on_response() observes only; it runs before the response leaves the pipeline,
//    so a persistence stage makes state durable before the client sees the result;
//  - called with the pipeline's device lock held: keep both cheap.
template <class S>
concept stage = requires(S& s, wire::command_view const& cmd, wire::response_view resp) {
    { s.on_command(cmd) } -> std::same_as<result<void>>;
    { s.on_response(cmd, resp) } -> std::same_as<void>;
};

}  // namespace xtpm
