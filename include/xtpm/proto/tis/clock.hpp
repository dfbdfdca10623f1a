// The time policy of the TIS driver: a monotonic now() and a pause between two
// polls of a register. Keeping time behind a policy keeps the driver sans-I/O:
// a fuzz target or a unit test runs it on manual_clock and never waits in real
// time. The real policy, steady_tis_clock, lives with the device (device/tis.hpp).
#pragma once

#include <chrono>
#include <concepts>

namespace xtpm::proto::tis {

// now(): monotonic, from any fixed origin. pause(d): let about `d` pass before
// the next poll (0 = only yield the CPU). A model must make now() grow across
// pause() calls, or a poll loop would never reach its deadline.
template <class C>
concept tis_clock = requires(C& c, std::chrono::microseconds d) {
    { c.now() } -> std::same_as<std::chrono::nanoseconds>;
    { c.pause(d) } -> std::same_as<void>;
};

// Time that moves only when the driver pauses, by at least `step`: every poll
// loop ends after at most timeout / step polls, whatever the registers say.
class manual_clock {
public:
    constexpr manual_clock() noexcept = default;
    constexpr explicit manual_clock(std::chrono::microseconds step) noexcept
        : step_{step.count() > 0 ? step : std::chrono::microseconds{1}} {}
    [[nodiscard]] constexpr auto now() const noexcept -> std::chrono::nanoseconds { return now_; }
    constexpr void pause(std::chrono::microseconds d) noexcept { now_ += d > step_ ? d : step_; }
    constexpr void advance(std::chrono::nanoseconds d) noexcept { now_ += d; }

private:
    std::chrono::microseconds step_{1000};
    std::chrono::nanoseconds now_{0};
};

static_assert(tis_clock<manual_clock>);

}  // namespace xtpm::proto::tis
