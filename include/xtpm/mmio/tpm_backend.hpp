// What executes the complete commands a TIS chip model receives: the TPM
// behind the registers. swtpm_backend speaks swtpm's data channel (raw TPM
// bytes, the response framed by its header's size; peers-and-protocols.md 4.2)
// and optionally its control channel for the locality (CMD_SET_LOCALITY, 4.1);
// callable_backend wraps any callable, for scripted tests.
#pragma once

#include <xtpm/io/socket.hpp>
#include <xtpm/proto/swtpm_ctrl.hpp>
#include <xtpm/wire/header.hpp>

#include <chrono>
#include <optional>
#include <vector>

namespace xtpm {

// A tpm_backend turns one complete command into one response.
// Not checked by the compiler:
//  - called from the model's worker thread, one command at a time;
//  - a failure (errc) is answered by the model with a TPM failure response.
template <class B>
concept tpm_backend = requires(B& b, wire::bytes_view cmd, std::uint8_t locality) {
    { b.execute(cmd, locality) } -> std::same_as<result<std::vector<std::byte>>>;
};

// Any callable F(bytes_view cmd, uint8_t locality) -> result<vector<byte>>.
template <class F>
struct callable_backend {
    F f;
    auto execute(wire::bytes_view cmd, std::uint8_t locality) -> result<std::vector<std::byte>> {
        return f(cmd, locality);
    }
};
template <class F>
callable_backend(F) -> callable_backend<F>;

// A response from swtpm is at most this big: swtpm's buffer is at most 4096
// (SET_BUFFERSIZE max), so 64 KiB bounds a confused peer generously.
inline constexpr std::size_t swtpm_max_response = std::size_t{64} << 10;

class swtpm_backend {
public:
    static constexpr std::chrono::seconds io_limit{300};  // proto::tis::max_duration

    // Connects the data channel now and keeps it (swtpm serves one client per port).
    static auto connect(io::endpoint const& data, std::optional<io::endpoint> ctrl = std::nullopt)
        -> result<swtpm_backend> {
        auto fd = io::connect_to(data);
        if (!fd) return std::unexpected{fd.error()};
        limit_io(fd->get());
        return swtpm_backend{std::move(*fd), std::move(ctrl)};
    }

    auto execute(wire::bytes_view cmd, std::uint8_t locality) -> result<std::vector<std::byte>> {
        if (ctrl_ && locality != locality_) {
            if (auto r = set_locality(locality); !r) return std::unexpected{r.error()};
        }
        if (auto r = io::write_all(data_.get(), cmd); !r) return std::unexpected{r.error()};
        std::vector<std::byte> resp(wire::header_size);
        if (auto r = io::read_exact(data_.get(), resp); !r) return std::unexpected{r.error()};
        auto const size = wire::frame_size(resp, swtpm_max_response);
        if (!size) return std::unexpected{size.error()};
        resp.resize(*size);
        if (auto r = io::read_exact(data_.get(), wire::bytes_span{resp}.subspan(wire::header_size)); !r)
            return std::unexpected{r.error()};
        return resp;
    }

private:
    swtpm_backend(io::unique_fd data, std::optional<io::endpoint> ctrl)
        : data_{std::move(data)}, ctrl_{std::move(ctrl)} {}

    // A hung swtpm must not hold the model's worker (and its destructor) forever:
    // no progress within the longest command bound is an I/O error.
    static void limit_io(int fd) {
        timeval const limit{static_cast<time_t>(io_limit.count()), 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    }

    // One control connection per request, as the tpm2-tss swtpm TCTI does.
    auto set_locality(std::uint8_t locality) -> result<void> {
        auto fd = io::connect_to(*ctrl_);
        if (!fd) return std::unexpected{fd.error()};
        limit_io(fd->get());
        std::array<std::byte, 8> buf{};
        auto const req = proto::swtpm::encode_request(proto::swtpm::set_locality_request{locality}, buf);
        if (!req) return std::unexpected{req.error()};
        if (auto r = io::write_all(fd->get(), *req); !r) return r;
        std::array<std::byte, 4> res{};
        if (auto r = io::read_exact(fd->get(), res); !r) return r;
        if (wire::load_be<std::uint32_t>(res) != 0) return fail(errc::bad_locality);
        locality_ = locality;
        return {};
    }

    io::unique_fd data_;
    std::optional<io::endpoint> ctrl_;
    std::uint8_t locality_ = 0;  // swtpm starts at locality 0
};

static_assert(tpm_backend<swtpm_backend>);

}  // namespace xtpm
