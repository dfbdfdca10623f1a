// multi_source<A, B>: two request sources feeding one pipeline at once, e.g.
// xtpm-vtpmd listening on swtpm and mssim ports together (architecture.md).
// A is served on the calling thread and B on its own; the pipeline serialises
// their commands.
#pragma once

#include <xtpm/source/concepts.hpp>

#include <thread>

namespace xtpm {

template <class A, class B>
    requires request_source<A> && request_source<B>
class multi_source {
public:
    multi_source(A a, B b) : a_{std::move(a)}, b_{std::move(b)} {}

    // Runs both until stop() or until either ends (a SHUTDOWN or TPM_STOP on
    // one stops the whole daemon). The first error wins, A's before B's.
    template <class Handler>
    auto serve(Handler& h) -> result<void> {
        result<void> rb;
        result<void> ra;
        {
            std::jthread tb{[&] {
                rb = b_.serve(h);
                a_.stop();
            }};
            ra = a_.serve(h);
            b_.stop();
        }  // joins B
        return ra ? rb : ra;
    }

    // Async-signal-safe when both sources' stop() are.
    void stop() noexcept {
        a_.stop();
        b_.stop();
    }

    [[nodiscard]] auto first() noexcept -> A& { return a_; }
    [[nodiscard]] auto second() noexcept -> B& { return b_; }

private:
    A a_;
    B b_;
};

}  // namespace xtpm
