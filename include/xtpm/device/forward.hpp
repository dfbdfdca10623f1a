// forward<Client>: a tpm_device that runs each command on another TPM through a client
// (architecture.md: how vtpmd reaches the manager and how a guest-side frontend reaches its
// vTPM). Models of tpm_client: tpmif_frontend<Hv> (device/tpmif_frontend.hpp).
#pragma once

#include <xtpm/device/concepts.hpp>

namespace xtpm {

// A tpm_client carries one command to a remote TPM and back. Not checked by the compiler:
//  - transact() blocks, returns the response in `out` (or an errc if none came back);
//  - cancel() may be called from any thread while transact() runs.
template <class C>
concept tpm_client = requires(C& c, C const& cc, wire::bytes_view cmd, std::uint8_t loc, wire::bytes_span out) {
    { c.transact(cmd, loc, out) } -> std::same_as<result<wire::bytes_view>>;
    { c.cancel() } noexcept -> std::same_as<void>;
    { cc.family() } -> std::same_as<wire::family>;
    { cc.max_command_size() } -> std::same_as<std::size_t>;
};

template <tpm_client Client>
class forward {
public:
    explicit forward(Client c) : client_{std::move(c)} {}

    // The pipeline admitted the command (header, size, family); the remote end checks it again.
    auto execute(wire::command_view cmd, wire::bytes_span scratch) -> result<wire::response_view> {
        auto r = client_.transact(cmd.bytes, cmd.locality, scratch);
        if (!r) return std::unexpected{r.error()};
        return wire::response_view{*r};
    }
    void cancel() noexcept { client_.cancel(); }
    [[nodiscard]] auto family() const -> wire::family { return client_.family(); }
    [[nodiscard]] auto max_command_size() const -> std::size_t { return client_.max_command_size(); }
    [[nodiscard]] auto client() -> Client& { return client_; }

    // evented_device when the client has events of its own (tpmif_frontend: xenstore).
    [[nodiscard]] auto event_fd() const -> int
        requires requires(Client const& c) { c.event_fd(); }
    {
        return client_.event_fd();
    }
    auto service() -> result<void>
        requires requires(Client& c) { c.service(); }
    {
        return client_.service();
    }

private:
    Client client_;
};

}  // namespace xtpm
