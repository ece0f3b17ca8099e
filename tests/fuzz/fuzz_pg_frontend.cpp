// libFuzzer target: client -> sqlmux byte stream. Runs the StreamDecoder
// over the input (whole, and again in pieces whose sizes come from the input)
// and every frontend body parser on each message. A parser that accepts a
// body must agree with the builder for the same message.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/pg/codec.h"

using namespace sqlmux::pg;

namespace {

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

// The whole message as it was on the wire (type, length, body).
std::string wire_of(const Message& m) {
  std::string s;
  Writer w(s);
  w.begin(m.type);
  w.bytes(m.body);
  w.end();
  return s;
}

struct Frontend : MessageCallbacks {
  size_t malformed = 0;

  void on_message(const Message& m) override {
    (void)frontend_message_name(m.type);
    const std::string wire = wire_of(m);
    std::string_view a, b;
    char kind = 0;
    int32_t i = 0;
    std::vector<uint32_t> types;

    if (parse_query(m.body, a)) {
      std::string again;
      put_query(again, a);
      if (m.type == 'Q') {
        check(again == wire);
      }
    }
    if (parse_password(m.body, a)) {
      std::string again;
      put_password(again, a);
      if (m.type == 'p') {
        check(again == wire);
      }
    }
    if (parse_sasl_initial_response(m.body, a, b)) {
      std::string again;
      put_sasl_initial_response(again, a, b);
      Message m2;
      size_t consumed = 0;
      const auto* p = reinterpret_cast<const uint8_t*>(again.data());
      check(decode_message(p, again.size(), kMaxMessageLen, m2, consumed) == Decode::Complete);
      std::string_view a2, b2;
      check(parse_sasl_initial_response(m2.body, a2, b2));
      check(a2 == a && b2 == b);
    }
    if (parse_parse(m.body, a, b, types)) {
      check(types.size() * 4 + a.size() + b.size() + 4 == m.body.size());
    }
    if (parse_bind_names(m.body, a, b)) {
      check(a.size() + b.size() + 2 <= m.body.size());
    }
    if (parse_close_or_describe(m.body, kind, a)) {
      check(kind == 'S' || kind == 'P');
    }
    // Backend parsers too: a confused peer may send anything.
    ErrorFields ef;
    (void)parse_error_fields(m.body, ef);
    (void)parse_authentication(m.body, i, a);
  }
  void on_malformed(std::string_view reason) override {
    check(!reason.empty());
    ++malformed;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  {
    Frontend cb;
    StreamDecoder dec(cb);
    const Decode d = dec.feed(data, size);
    check(cb.malformed == (d == Decode::Malformed ? 1u : 0u));
    check(d != Decode::Complete || dec.buffered() == 0);
  }
  if (size > 0) {
    // Same bytes in pieces of 1..16 bytes, with a small maximum length.
    Frontend cb;
    StreamDecoder dec(cb, 64 + data[0]);
    size_t off = 1;
    size_t step = 0;
    while (off < size) {
      const size_t n = std::min<size_t>(size - off, 1 + (data[step++ % size] & 15));
      if (dec.feed(data + off, n) == Decode::Malformed) {
        break;
      }
      off += n;
    }
    check(cb.malformed <= 1);
  }
  return 0;
}
