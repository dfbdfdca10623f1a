// pipeline<Source, Device, Stages...>: the one loop every role runs
// (architecture.md). The source brings commands; the pipeline admits them
// (header, tag, size field, buffer size), runs the stages and the device, and
// always hands back a well-formed response.
#pragma once

#include <xtpm/device/concepts.hpp>
#include <xtpm/source/concepts.hpp>
#include <xtpm/stage/concepts.hpp>
#include <xtpm/wire/error_response.hpp>

#include <algorithm>
#include <mutex>
#include <tuple>

namespace xtpm {

template <class Source, tpm_device Device, stage... Stages>
    requires request_source<Source>
class pipeline {
public:
    pipeline(Source source, Device device, Stages... stages)
        : source_{std::move(source)}, device_{std::move(device)}, stages_{std::move(stages)...} {}

    // Serve until the source stops.
    auto run() -> result<void> { return source_.serve(*this); }
    void stop() noexcept { source_.stop(); }

    // Admit, filter and execute one command; the response is copied into `out`
    // under the device lock, so concurrent sources never share device storage.
    auto process(wire::bytes_view cmd, std::uint8_t locality, wire::bytes_span out) -> wire::bytes_view {
        std::lock_guard lock{mu_};
        auto const fam = device_.family();
        auto admitted = wire::parse_command(cmd, fam, device_.max_command_size(), locality);
        if (!admitted) return wire::error_response(admitted.error(), fam, out);
        if (auto ok = run_stages(*admitted); !ok) return wire::error_response(ok.error(), fam, out);
        auto resp = device_.execute(*admitted, out);
        if (!resp) return wire::error_response(resp.error(), fam, out);
        if (!well_formed(resp->bytes, fam, out.size()))
            return wire::error_response(errc::device_failure, fam, out);  // never forward a malformed response
        std::apply([&](auto&... s) { (s.on_response(*admitted, *resp), ...); }, stages_);
        if (resp->bytes.data() != out.data()) std::ranges::copy(resp->bytes, out.begin());
        return out.first(resp->bytes.size());
    }

    // Lock-free: may interrupt a process() running on another thread.
    void cancel() noexcept {
        if constexpr (cancellable_device<Device>) device_.cancel();
    }

    // Control operations (INIT, STOP, state blobs) under the device lock.
    template <class F>
    auto with_device(F&& f) -> decltype(auto) {
        std::lock_guard lock{mu_};
        return std::forward<F>(f)(device_);
    }

    [[nodiscard]] auto family() const -> wire::family { return device_.family(); }
    [[nodiscard]] auto max_command_size() const -> std::size_t { return device_.max_command_size(); }
    [[nodiscard]] auto source() -> Source& { return source_; }

private:
    static auto well_formed(wire::bytes_view resp, wire::family fam, std::size_t room) -> bool {
        auto const hdr = wire::parse_response(resp);
        return hdr && wire::response_family(hdr->tag) == fam && resp.size() <= room;
    }

    auto run_stages(wire::command_view const& cmd) -> result<void> {
        result<void> ok;
        std::apply([&](auto&... s) { ((ok = ok ? s.on_command(cmd) : ok), ...); }, stages_);
        return ok;
    }

    Source source_;
    Device device_;
    [[no_unique_address]] std::tuple<Stages...> stages_;
    std::mutex mu_;
};

}  // namespace xtpm
