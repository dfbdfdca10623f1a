// Per-call timing samples and the summaries the bench prints: percentiles over
// all calls, the median of per-round means, and medians of per-round paired
// differences (toolchain.md 7.12: on a drifting VM compare only within a round).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <optional>
#include <tuple>
#include <vector>

namespace xtpm::bench {

// q in [0, 1]; nearest-rank on a copy. Empty input -> NaN.
inline auto quantile(std::vector<double> v, double q) -> double {
    if (v.empty()) return std::nan("");
    auto const last = static_cast<double>(v.size() - 1);
    auto const k = static_cast<std::size_t>(std::lround(std::clamp(q, 0.0, 1.0) * last));
    std::ranges::nth_element(v, v.begin() + static_cast<std::ptrdiff_t>(k));
    return v[k];
}

inline auto median(std::vector<double> v) -> double { return quantile(std::move(v), 0.5); }

inline auto mean(std::vector<double> const& v) -> double {
    if (v.empty()) return std::nan("");
    double s = 0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
}

// The samples of one contestant running one command: one vector per round, in µs.
class series {
public:
    auto new_round(std::size_t calls) -> std::vector<double>& {
        rounds_.emplace_back();
        rounds_.back().reserve(calls);
        return rounds_.back();
    }
    void drop_last_round() {
        if (!rounds_.empty()) rounds_.pop_back();
    }
    [[nodiscard]] auto rounds() const -> std::size_t { return rounds_.size(); }

    [[nodiscard]] auto all() const -> std::vector<double> {
        std::vector<double> out;
        for (auto const& r : rounds_) out.insert(out.end(), r.begin(), r.end());
        return out;
    }
    [[nodiscard]] auto p50() const -> double { return quantile(all(), 0.50); }
    [[nodiscard]] auto p99() const -> double { return quantile(all(), 0.99); }
    [[nodiscard]] auto count() const -> std::size_t {
        std::size_t n = 0;
        for (auto const& r : rounds_) n += r.size();
        return n;
    }
    // Median over rounds of each round's mean.
    [[nodiscard]] auto mean_of_rounds() const -> double {
        std::vector<double> m;
        for (auto const& r : rounds_) m.push_back(mean(r));
        return median(std::move(m));
    }
    // Each round's median, for pairing with another contestant's same round.
    [[nodiscard]] auto round_p50s() const -> std::vector<double> {
        std::vector<double> m;
        for (auto const& r : rounds_) m.push_back(median(r));
        return m;
    }

private:
    std::vector<std::vector<double>> rounds_;
};

// Median over rounds of f(a_r, b_r, ...), pairing the same round of each series;
// nullopt when a series is missing or the round counts differ.
template <class F, class... S>
auto paired_median(F f, S const*... s) -> std::optional<double> {
    if (((s == nullptr) || ...)) return std::nullopt;
    std::size_t const n = std::min({s->rounds()...});
    if (n == 0 || ((s->rounds() != n) || ...)) return std::nullopt;
    auto const per = std::tuple{s->round_p50s()...};
    std::vector<double> d;
    for (std::size_t r = 0; r < n; ++r)
        d.push_back(std::apply([&](auto const&... v) { return f(v[r]...); }, per));
    return median(std::move(d));
}

}  // namespace xtpm::bench
