// One client stream of a socket source: a growable input buffer that a protocol
// service consumes request by request, an output queue flushed without ever
// blocking, and the file descriptors a unix peer passed with SCM_RIGHTS.
// Shared by swtpm_server and mssim_server (architecture.md, sources).
#pragma once

#include <xtpm/io/fd.hpp>
#include <xtpm/wire/reader.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <optional>
#include <vector>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace xtpm::detail {

using clock = std::chrono::steady_clock;

// Outcome of one non-blocking read or flush.
enum class io_status : std::uint8_t { progress, would_block, eof, failed };

class connection {
public:
    connection(io::unique_fd fd, bool accepts_fds, bool adopted) noexcept
        : fd_{std::move(fd)}, accepts_fds_{accepts_fds}, adopted_{adopted} {}

    // --- for protocol services ---
    [[nodiscard]] auto input() const noexcept -> wire::bytes_view {
        return wire::bytes_view{in_}.subspan(begin_, end_ - begin_);
    }
    void consume(std::size_t n) noexcept {
        XTPM_ASSERT(n <= end_ - begin_);
        begin_ += n;
        if (begin_ == end_) begin_ = end_ = 0;
    }
    void discard_input() noexcept { begin_ = end_ = 0; }
    void send(wire::bytes_view b) { out_.insert(out_.end(), b.begin(), b.end()); }
    // Queued output is still flushed; then the connection closes.
    void close_after_flush() noexcept { closing_ = true; }
    // A descriptor the peer passed (SET_DATAFD); empty if none.
    [[nodiscard]] auto take_fd() noexcept -> io::unique_fd {
        io::unique_fd fd;
        if (!fds_.empty()) {
            fd = std::move(fds_.front());
            fds_.erase(fds_.begin());
        }
        return fd;
    }

    // --- for the loop ---
    [[nodiscard]] auto fd() const noexcept -> int { return fd_.get(); }
    [[nodiscard]] auto closing() const noexcept -> bool { return closing_; }
    [[nodiscard]] auto adopted() const noexcept -> bool { return adopted_; }
    [[nodiscard]] auto output_pending() const noexcept -> bool { return out_off_ < out_.size(); }

    // Read what is available into free space, growing the buffer to `want`
    // bytes of input first (the service bounds `want` by its protocol's limits).
    auto read_some(std::size_t want) -> io_status {
        if (begin_ > 0) {  // compact: the current request starts at the front
            std::memmove(in_.data(), in_.data() + begin_, end_ - begin_);
            end_ -= begin_;
            begin_ = 0;
        }
        if (in_.size() < want) in_.resize(want);
        if (end_ == in_.size()) in_.resize(in_.size() + min_read);
        auto const room = wire::bytes_span{in_}.subspan(end_);
        for (;;) {
            auto const n = accepts_fds_ ? recv_with_fds(room) : ::recv(fd_.get(), room.data(), room.size(), 0);
            if (n > 0) {
                end_ += static_cast<std::size_t>(n);
                last_input_ = clock::now();
                return io_status::progress;
            }
            if (n == 0) return io_status::eof;
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return io_status::would_block;
            return io_status::failed;
        }
    }

    // Send a pending delayed ACK at once (TCP_QUICKACK re-armed; Linux flushes the
    // scheduled ACK when it is set). A no-op error on unix sockets.
    void ack_now() const noexcept {
        int one = 1;
        ::setsockopt(fd_.get(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }

    // Write queued output until done or the socket is full. MSG_NOSIGNAL: a peer
    // that went away is an error here, never a SIGPIPE for the daemon.
    auto flush() -> io_status {
        while (out_off_ < out_.size()) {
            auto const n = ::send(fd_.get(), out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
            if (n >= 0) {
                out_off_ += static_cast<std::size_t>(n);
                blocked_since_.reset();
                continue;
            }
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!blocked_since_) blocked_since_ = clock::now();
                return io_status::would_block;
            }
            return io_status::failed;
        }
        out_.clear();
        out_off_ = 0;
        return io_status::progress;
    }

    // Timers: when the last byte arrived, and since when output has been stuck.
    [[nodiscard]] auto last_input() const noexcept -> clock::time_point { return last_input_; }
    [[nodiscard]] auto blocked_since() const noexcept -> std::optional<clock::time_point> { return blocked_since_; }

    // Set by the loop from the service's last answer: a request is half in.
    bool partial = false;
    bool eof = false;  // the peer half-closed
    bool ready = false;       // on the loop's ready list
    bool stops_loop = false;  // its reply ends the loop once flushed (SHUTDOWN, TPM_STOP)
    bool lingering = false;   // replied and half-closed: discarding input until EOF
    clock::time_point linger_since{};

private:
    static constexpr std::size_t min_read = 4096;
    static constexpr std::size_t max_passed_fds = 4;  // per message; extras are closed by the kernel

    auto recv_with_fds(wire::bytes_span room) -> ssize_t {
        iovec iov{room.data(), room.size()};
        alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * max_passed_fds)> control{};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        auto const n = ::recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC);
        if (n < 0) return n;
        for (auto* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            auto const count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < count; ++i) {
                int passed = -1;
                // CMSG_DATA is not aligned for int in general: copy, never cast.
                std::memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
                io::unique_fd owned{passed};
                if (fds_.size() < max_passed_fds) fds_.push_back(std::move(owned));
            }
        }
        return n;
    }

    io::unique_fd fd_;
    bool accepts_fds_;
    bool adopted_;
    bool closing_ = false;
    std::vector<std::byte> in_;
    std::size_t begin_ = 0, end_ = 0;
    std::vector<std::byte> out_;
    std::size_t out_off_ = 0;
    std::vector<io::unique_fd> fds_;
    clock::time_point last_input_ = clock::now();
    std::optional<clock::time_point> blocked_since_;
};

}  // namespace xtpm::detail
