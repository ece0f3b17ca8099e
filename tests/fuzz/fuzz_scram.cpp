// libFuzzer target: the server side of a SCRAM-SHA-256 exchange
// (protocol/pg_auth.cpp).
//
// Input: byte 0 = length n of part 1 (clamped to what is left); part 1 =
// the next n bytes, fed to ScramServer::handle_client_first; part 2 = the
// rest, fed to handle_client_final when part 1 was accepted. The whole input
// also goes through parse_scram_verifier and base64_decode.
//
// The server uses the RFC 7677 verifier (user/pencil, 4096 iterations) and
// server nonce, so seeds/fuzz_scram/rfc7677 is an exchange that succeeds.
// The verifiers are derived once (PBKDF2 is slow); the servers are per input.
//
// Invariants (a failure traps):
// - an accepted client-first starts with "n,," or "y,," and the reply is
//   "r=<client nonce><server nonce>,s=<salt>,i=<iterations>";
// - a rejected message always comes with an error, an accepted one never
//   leaves authenticated() in the wrong state;
// - for every accepted client-first, the honest client (scram_client_final
//   with the right password) is accepted, one with a wrong password is not;
// - an exchange is single use: nothing is accepted after handle_client_final;
// - base64 and verifiers round-trip through their encoders (base64 decoding
//   is strict, so only the canonical encoding decodes).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/pg/auth.h"

using namespace sqlmux::pg::auth;

namespace {

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

constexpr std::string_view kPassword = "pencil";
constexpr std::string_view kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";  // RFC 7677

// RFC 7677 salt (base64 "W22ZaJ0SNY7soEsUEjb6gQ==").
std::string rfc_salt() {
  return *base64_decode("W22ZaJ0SNY7soEsUEjb6gQ==");
}

// The exchange under test: as PostgreSQL stores it, 4096 iterations.
const ScramVerifier& rfc_verifier() {
  static const ScramVerifier v = make_scram_verifier(kPassword, rfc_salt(), 4096);
  return v;
}

// Same password with one iteration: lets the target run an honest client
// (which also derives SaltedPassword) on every input at no real cost.
const ScramVerifier& cheap_verifier() {
  static const ScramVerifier v = make_scram_verifier(kPassword, rfc_salt(), 1);
  return v;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// The client nonce of an accepted client-first-message-bare: the value of
// its second attribute ("n=...,r=<nonce>[,...]").
std::string_view client_nonce_of(std::string_view bare) {
  size_t r = bare.find(",r=");
  if (r == std::string_view::npos) {
    return {};
  }
  std::string_view rest = bare.substr(r + 3);
  return rest.substr(0, rest.find(','));
}

void fuzz_exchange(std::string_view first, std::string_view final_msg) {
  const ScramVerifier& v = rfc_verifier();
  ScramServer server(v, std::string(kServerNonce));
  std::string server_first, error;
  const bool first_ok = server.handle_client_first(first, server_first, error);
  check(!server.authenticated());
  if (!first_ok) {
    check(!error.empty());
    // A refused client-first does not start an exchange.
    std::string out;
    error.clear();
    check(!server.handle_client_final(final_msg, out, error) && !error.empty());
    check(!server.authenticated());
    return;
  }

  // gs2 header: no channel binding, no authzid.
  check(starts_with(first, "n,,") || starts_with(first, "y,,"));
  const std::string_view bare = first.substr(3);
  const std::string_view cnonce = client_nonce_of(bare);
  check(!cnonce.empty());
  const std::string expected = "r=" + std::string(cnonce) + std::string(kServerNonce) +
                               ",s=" + base64_encode(v.salt) + ",i=4096";
  check(server_first == expected);

  // A second client-first is refused.
  {
    std::string out, err;
    check(!server.handle_client_first(first, out, err) && !err.empty());
  }

  // The fuzzed client-final.
  std::string server_final;
  error.clear();
  const bool final_ok = server.handle_client_final(final_msg, server_final, error);
  check(final_ok == server.authenticated());
  if (final_ok) {
    check(starts_with(server_final, "v=") && server_final.size() == 2 + 44);
  } else {
    check(!error.empty());
  }
  // Single use: a replay of anything is refused, and the state stays.
  {
    std::string out, err;
    check(!server.handle_client_final(final_msg, out, err) && !err.empty());
    check(server.authenticated() == final_ok);
  }

  // The honest client against the same client-first, with a cheap verifier.
  // scram_client_final reads only n= and r= of the bare message.
  ScramServer honest(cheap_verifier(), std::string(kServerNonce));
  std::string honest_first, honest_err;
  check(honest.handle_client_first(first, honest_first, honest_err));
  const std::string gs2(first.substr(0, 3));
  std::optional<std::string> client_final = scram_client_final(kPassword, bare, honest_first, gs2);
  check(client_final.has_value());
  std::string honest_final;
  check(honest.handle_client_final(*client_final, honest_final, honest_err));
  check(honest.authenticated());

  // A wrong password fails against the same messages.
  ScramServer wrong(cheap_verifier(), std::string(kServerNonce));
  std::string wrong_first, wrong_err;
  check(wrong.handle_client_first(first, wrong_first, wrong_err));
  std::optional<std::string> bad_final = scram_client_final("pencil2", bare, wrong_first, gs2);
  check(bad_final.has_value());
  std::string wrong_final;
  check(!wrong.handle_client_final(*bad_final, wrong_final, wrong_err) && !wrong_err.empty());
  check(!wrong.authenticated());
}

void fuzz_decoders(std::string_view text) {
  if (std::optional<std::string> raw = base64_decode(text)) {
    // Strict decoding: only the canonical encoding decodes.
    check(base64_encode(*raw) == text);
  }
  if (std::optional<ScramVerifier> v = parse_scram_verifier(text)) {
    check(v->iterations > 0 && !v->salt.empty());
    // Formatting normalises the iteration count (leading zeros are accepted,
    // as PostgreSQL's strtol does); it must parse back to the same verifier.
    const std::string again = format_scram_verifier(*v);
    check(again.size() <= text.size());
    std::optional<ScramVerifier> v2 = parse_scram_verifier(again);
    check(v2.has_value() && v2->iterations == v->iterations && v2->salt == v->salt &&
          v2->stored_key == v->stored_key && v2->server_key == v->server_key);
  }
  (void)is_md5_hash(text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  fuzz_decoders(all);
  if (size == 0) {
    return 0;
  }
  const size_t n = std::min<size_t>(data[0], size - 1);
  fuzz_exchange(all.substr(1, n), all.substr(1 + n));
  return 0;
}
