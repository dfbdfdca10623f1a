// Bounded spin-then-block for a peer that shares memory with us (the tpmif page).
// Blocking hands the CPU over through the event channel's wake-up path: two context
// switches plus eventfd/epoll work, ~2.6 us per round trip on our 2-vCPU VM, more than
// the TPM itself needs for most commands (docs/benchmarks.md, "tpmif"). Looking at the
// page first, with sched_yield() between looks, lets a peer on the same CPU run at once
// (sched_yield(2)) and costs a peer on another CPU nothing. The window bounds the CPU
// burnt when the peer is slow or idle: afterwards the caller blocks as before.
#pragma once

#include <chrono>

#include <sched.h>

namespace xtpm::io {

// True as soon as ready() is; false when `window` passed without it (ready() is looked at
// once more at the end). A zero window looks once and never yields.
template <class Ready>
auto spin_until(Ready&& ready, std::chrono::nanoseconds window) -> bool {
    if (ready()) return true;
    if (window <= std::chrono::nanoseconds::zero()) return false;
    auto const end = std::chrono::steady_clock::now() + window;
    do {
        ::sched_yield();
        if (ready()) return true;
    } while (std::chrono::steady_clock::now() < end);
    return false;
}

}  // namespace xtpm::io
