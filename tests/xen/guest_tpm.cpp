// guest_tpm: the domU's TPM test program for the real-Xen end-to-end test (tests/xen).
// Sends a few TPM commands to /dev/tpm0 (Linux xen-tpmfront) or to a unix socket speaking the
// swtpm data protocol (xtpm-front), and prints every command and response as one line
//   XTPM-GUEST <scenario> <step>.cmd <hex>      XTPM-GUEST <scenario> <step> <hex>
// so that the host checker (check.py) can verify the TPM arithmetic from the log alone.
// It checks nothing itself beyond transport errors: the verdict is the checker's.
// Usage: guest_tpm <scenario> </dev/tpmN | unix:PATH> <tpm12|tpm2> <extend|read>
//   extend: [tpm2: Startup(CLEAR)] GetRandom, PCR read, PCR extend with the random bytes, PCR read
//   read:   PCR read only (the vTPM kept its state across detach/attach or a guest reboot)
// Built static (g++-12 -static), it runs in a busybox initramfs. Every command is bounded by alarm().
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

using bytes = std::vector<std::uint8_t>;
constexpr unsigned pcr = 16;               // the debug PCR: extendable at locality 0 in both families
constexpr unsigned command_seconds = 60;  // kernel TPM 1.2 default durations reach 2 min; ours are fast

std::string scenario;
std::string target;

[[noreturn]] void die(std::string const& what, bool sys = false) {
    std::printf("XTPM-GUEST %s error %s%s%s\n", scenario.c_str(), what.c_str(), sys ? ": " : "",
                sys ? std::strerror(errno) : "");
    std::fflush(stdout);
    std::exit(1);
}

void put32(bytes& b, std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(v >> s));
}
void put16(bytes& b, std::uint16_t v) {
    b.push_back(static_cast<std::uint8_t>(v >> 8));
    b.push_back(static_cast<std::uint8_t>(v));
}
auto get32(bytes const& b, std::size_t at) -> std::uint32_t {
    if (b.size() < at + 4) die("short response");
    return std::uint32_t{b[at]} << 24 | std::uint32_t{b[at + 1]} << 16 | std::uint32_t{b[at + 2]} << 8 | b[at + 3];
}

// A command: tag, size (patched), ordinal/command code, body.
auto command(std::uint16_t tag, std::uint32_t code, bytes const& body) -> bytes {
    bytes b;
    put16(b, tag);
    put32(b, static_cast<std::uint32_t>(10 + body.size()));
    put32(b, code);
    b.insert(b.end(), body.begin(), body.end());
    return b;
}

void print(std::string_view step, bytes const& b) {
    std::printf("XTPM-GUEST %s %.*s ", scenario.c_str(), static_cast<int>(step.size()), step.data());
    for (auto x : b) std::printf("%02x", x);
    std::printf("\n");
    std::fflush(stdout);
}

auto write_all(int fd, bytes const& b) -> bool {
    for (std::size_t done = 0; done < b.size();) {
        auto const n = ::write(fd, b.data() + done, b.size() - done);
        if (n <= 0) return false;
        done += static_cast<std::size_t>(n);
    }
    return true;
}

// One round trip on a fresh descriptor: /dev/tpm0 returns the whole response in one read;
// a stream socket is read until the header's size is complete.
auto transact(std::string_view step, bytes const& cmd) -> bytes {
    print(std::string{step} + ".cmd", cmd);
    alarm(command_seconds);
    int fd = -1;
    bool const unix_socket = target.starts_with("unix:");
    if (unix_socket) {
        fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        auto const path = target.substr(5);
        if (fd < 0 || path.size() >= sizeof a.sun_path) die("socket", true);
        std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("connect " + path, true);
    } else {
        fd = ::open(target.c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0) die("open " + target, true);
    }
    if (!write_all(fd, cmd)) die("write", true);
    bytes r(4096);
    std::size_t got = 0;
    while (got < 10 || got < get32(r, 2)) {
        auto const n = ::read(fd, r.data() + got, r.size() - got);
        if (n <= 0) die(n == 0 ? "connection closed" : "read", n < 0);
        got += static_cast<std::size_t>(n);
        if (!unix_socket) break;
    }
    ::close(fd);
    alarm(0);
    r.resize(got);
    if (got < 10 || get32(r, 2) != got) die("response size mismatch");
    print(step, r);
    return r;
}

void tpm12(bool extend) {
    bytes body;
    if (extend) {
        put32(body, 20);
        auto const rnd = transact("getrandom", command(0x00c1, 0x46, body));  // TPM_ORD_GetRandom(20)
        if (get32(rnd, 6) != 0 || rnd.size() != 14 + 20) die("GetRandom failed");
        body.clear();
        put32(body, pcr);
        transact("pcrread0", command(0x00c1, 0x15, body));                  // TPM_ORD_PcrRead
        body.insert(body.end(), rnd.begin() + 14, rnd.end());
        transact("extend", command(0x00c1, 0x14, body));                    // TPM_ORD_Extend
        body.resize(4);
        transact("pcrread1", command(0x00c1, 0x15, body));
    } else {
        put32(body, pcr);
        transact("pcrread", command(0x00c1, 0x15, body));
    }
}

auto pcr_selection() -> bytes {
    bytes b;
    put32(b, 1);       // count
    put16(b, 0x000b);  // TPM_ALG_SHA256
    b.push_back(3);    // sizeofSelect
    for (unsigned i = 0; i < 3; ++i) b.push_back(i == pcr / 8 ? static_cast<std::uint8_t>(1u << (pcr % 8)) : 0);
    return b;
}

void tpm2(bool extend) {
    if (extend) {
        transact("startup", command(0x8001, 0x144, {0x00, 0x00}));  // TPM2_Startup(CLEAR)
        auto const rnd = transact("getrandom", command(0x8001, 0x17b, {0x00, 0x20}));  // TPM2_GetRandom(32)
        if (get32(rnd, 6) != 0 || rnd.size() != 12 + 32) die("GetRandom failed");
        transact("pcrread0", command(0x8001, 0x17e, pcr_selection()));  // TPM2_PCR_Read
        bytes body;
        put32(body, pcr);                     // pcrHandle
        put32(body, 9);                       // authorizationSize
        put32(body, 0x40000009);              // TPM_RS_PW, empty nonce, attributes 0, empty password
        body.insert(body.end(), {0, 0, 0, 0, 0});
        put32(body, 1);                       // TPML_DIGEST_VALUES.count
        put16(body, 0x000b);                  // sha256
        body.insert(body.end(), rnd.begin() + 12, rnd.end());
        transact("extend", command(0x8002, 0x182, body));  // TPM2_PCR_Extend
        transact("pcrread1", command(0x8001, 0x17e, pcr_selection()));
    } else {
        transact("pcrread", command(0x8001, 0x17e, pcr_selection()));
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: guest_tpm <scenario> </dev/tpmN|unix:PATH> <tpm12|tpm2> <extend|read>\n");
        return 2;
    }
    scenario = argv[1];
    target = argv[2];
    std::string_view const family = argv[3], action = argv[4];
    std::signal(SIGALRM, [](int) {
        static char const msg[] = "XTPM-GUEST timeout: a TPM command took too long\n";
        [[maybe_unused]] auto n = ::write(1, msg, sizeof msg - 1);
        std::_Exit(3);
    });
    if (family == "tpm12") tpm12(action == "extend");
    else tpm2(action == "extend");
    std::printf("XTPM-GUEST %s ok\n", scenario.c_str());
    return 0;
}
