// What the two tpmif floors (tpmif_page_floor.hpp, tpmif_sim_floor.hpp) do alike: the page
// protocol over one 4 KiB page laid out as struct tpmif_shared_page (xen/io/tpmif.h) - the
// requester copies the command in, sets the length and SUBMIT, and copies the response out
// after FINISH; the responder copies the request out once, as a backend does, writes the
// canned answer for its command (commands.hpp) and FINISH - and the forked responder's life.
// How the two ends wake each other (eventfds, polling, sim_hv event channels) is each floor's.
#pragma once

#include "commands.hpp"
#include "process.hpp"

#include <xtpm/io/socket.hpp>
#include <xtpm/proto/tpmif/page.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace xtpm::bench::tpmif_floor {

namespace tp = proto::tpmif;

// Requester: the command into the page, its length, then SUBMIT. Notifying is the caller's.
inline auto submit(wire::bytes_span page, wire::bytes_view cmd) -> result<void> {
    if (cmd.size() > tp::single_page_capacity) return fail(errc::too_large);
    std::memcpy(page.data() + tp::header_size, cmd.data(), cmd.size());
    tp::detail::store_u32(page, tp::length_offset, static_cast<std::uint32_t>(cmd.size()));
    tp::detail::store_state(page, tp::page_state::submit);
    return {};
}

inline auto holds(wire::bytes_span page, tp::page_state s) -> bool {
    return tp::detail::load_state(page) == static_cast<std::uint8_t>(s);
}

// Requester, once the page holds FINISH: the response, copied into `out`.
inline auto take_response(wire::bytes_span page, std::span<std::byte> out) -> wire::bytes_view {
    auto const n = std::min<std::size_t>(tp::detail::load_u32(page, tp::length_offset), out.size());
    std::memcpy(out.data(), page.data() + tp::header_size, n);
    return wire::bytes_view{out}.first(n);
}

// Responder: if the page holds SUBMIT, the request copied into `req`, the canned answer for
// its command (GetRandom's for anything else) written back, FINISH; false if not SUBMIT.
inline auto answer(wire::bytes_span page, std::span<std::byte, tp::single_page_capacity> req,
                   canned_responses const& canned) -> bool {
    if (!holds(page, tp::page_state::submit)) return false;
    auto const len = std::min<std::size_t>(tp::detail::load_u32(page, tp::length_offset), req.size());
    std::memcpy(req.data(), page.data() + tp::header_size, len);
    auto const which = len >= wire::header_size
                           ? command_for_code(wire::load_be<wire::tpm_cc>(wire::bytes_view{req}.subspan(6, 4)))
                           : std::nullopt;
    auto const& rsp = canned[static_cast<std::size_t>(which.value_or(command_id::get_random))];
    tp::detail::store_u32(page, tp::length_offset, static_cast<std::uint32_t>(rsp.size));
    std::memcpy(page.data() + tp::header_size, rsp.storage.data(), rsp.size);
    tp::detail::store_state(page, tp::page_state::finish);
    return true;
}

// fork() for the responder: in the child (0 returned) it dies with the bench
// (PR_SET_PDEATHSIG, and at once if the bench is already gone). Stdio is flushed
// first so that nothing buffered is written twice.
inline auto fork_responder() -> result<pid_t> {
    std::fflush(nullptr);
    pid_t const parent = ::getpid();
    pid_t const pid = ::fork();
    if (pid < 0) return io::sys_error();
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(0);
    }
    return pid;
}

// The responder has no state worth a graceful stop: SIGKILL and reap it. Idempotent.
inline void kill_responder(pid_t& pid) noexcept {
    if (pid > 0) {
        ::kill(pid, SIGKILL);
        while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {}
    }
    pid = -1;
}

}  // namespace xtpm::bench::tpmif_floor
