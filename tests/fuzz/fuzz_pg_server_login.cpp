// libFuzzer target: sqlmux's own login to a server (protocol/pg/
// server_login.cpp, with the SCRAM client side from a ClientKey in
// auth.cpp), fed arbitrary backend messages.
//
// Input: byte 0 picks the secret (even: a SCRAM ClientKey of a one-iteration
// verifier; odd: an md5 hash); the rest is a stream of backend messages
// (type, int32 length, body) decoded with decode_message and fed in order
// until the login ends or the bytes do.
//
// Invariants (a failure traps): Failed always comes with an error and a
// text; Ready only after AuthenticationOk with no error; nothing is
// accepted after the login ended; the StartupMessage decodes as a startup
// packet and what the login sends later as whole frontend messages.
#include <cstddef>
#include <cstdint>
#include <string>

#include "protocol/pg/auth.h"
#include "protocol/pg/codec.h"
#include "protocol/pg/server_login.h"

using namespace sqlmux::pg;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

const auth::ScramVerifier& verifier() {
  static const auth::ScramVerifier v = auth::make_scram_verifier("pencil", "saltsalt", 1);
  return v;
}

void check_frontend(const std::string& out) {
  size_t off = 0;
  while (off < out.size()) {
    Message m;
    size_t used = 0;
    check(decode_message(reinterpret_cast<const uint8_t*>(out.data()) + off, out.size() - off,
                         kMaxMessageLen, m, used) == Decode::Complete);
    off += used;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  LoginSecret s;
  if ((data[0] & 1) == 0) {
    s.kind = LoginSecret::Kind::ScramKey;
    s.verifier = verifier();
    // Any key: a wrong one must fail cleanly too (data[0] & 2 picks).
    s.client_key.fill(static_cast<uint8_t>(data[0]));
  } else {
    s.kind = LoginSecret::Kind::Md5Hash;
    s.md5 = auth::md5_password_hash("pw", "u");
  }
  ServerLogin login("u", "db", s, "fixednonce");
  std::string out;
  login.start(out);
  {
    // The StartupMessage (untyped) decodes as sqlmux's own front end reads it.
    StartupPacket pkt;
    size_t used = 0;
    std::string err;
    check(decode_startup(reinterpret_cast<const uint8_t*>(out.data()), out.size(), pkt, used,
                         err) == Decode::Complete &&
          used == out.size() && pkt.kind == StartupKind::Startup);
  }
  size_t off = 1;
  bool ended = false;
  while (off < size) {
    Message m;
    size_t used = 0;
    if (decode_message(data + off, size - off, 1u << 20, m, used) != Decode::Complete) break;
    off += used;
    out.clear();
    const ServerLogin::Step st = login.on_message(m.type, m.body, out);
    check_frontend(out);
    if (ended) {
      check(st == ServerLogin::Step::Failed);
      continue;
    }
    if (st == ServerLogin::Step::Failed) {
      check(login.error() != LoginError::None && !login.error_text().empty());
      check(!to_string(login.error()).empty());
      ended = true;
    } else if (st == ServerLogin::Step::Ready) {
      check(login.error() == LoginError::None && m.type == 'Z');
      ended = true;
    }
  }
  return 0;
}
