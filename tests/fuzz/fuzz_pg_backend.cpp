// libFuzzer target: server -> sqlmux byte stream. Runs the StreamDecoder
// over the input and the backend body parsers on each message; a parser
// that accepts a body must reproduce it through the matching builder.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/pg/codec.h"

using namespace sqlmux::pg;

namespace {

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

std::string wire_of(const Message& m) {
  std::string s;
  Writer w(s);
  w.begin(m.type);
  w.bytes(m.body);
  w.end();
  return s;
}

struct Backend : MessageCallbacks {
  size_t malformed = 0;

  void on_message(const Message& m) override {
    (void)backend_message_name(m.type);
    const std::string wire = wire_of(m);
    std::string again;
    std::string_view a, b;
    char status = 0;
    int32_t code = 0, pid = 0, key = 0;

    switch (m.type) {
      case 'R':
        if (parse_authentication(m.body, code, a)) {
          if (code == 0 && a.empty()) {
            put_auth_ok(again);
          }
          if (code == 3 && a.empty()) {
            put_auth_cleartext(again);
          }
          if (code == 5 && a.size() == 4) {
            put_auth_md5(again, reinterpret_cast<const uint8_t*>(a.data()));
          }
          if (code == 11) {
            put_auth_sasl_continue(again, a);
          }
          if (code == 12) {
            put_auth_sasl_final(again, a);
          }
          if (code == 10) {  // mechanism list: C strings up to an empty one
            Reader r(a);
            std::string_view mech;
            while (r.cstr(mech) && !mech.empty()) {
            }
          }
          if (!again.empty()) {
            check(again == wire);
          }
        }
        break;
      case 'S':
        if (parse_parameter_status(m.body, a, b)) {
          put_parameter_status(again, a, b);
          check(again == wire);
        }
        break;
      case 'Z':
        if (parse_ready_for_query(m.body, status)) {
          put_ready_for_query(again, status);
          check(again == wire);
        }
        break;
      case 'K':
        if (parse_backend_key_data(m.body, pid, key)) {
          put_backend_key_data(again, pid, key);
          check(again == wire);
        }
        break;
      case 'C':
        if (parse_command_complete(m.body, a)) {
          put_command_complete(again, a);
          check(again == wire);
        }
        break;
      case 'E':
      case 'N': {
        ErrorFields ef;
        if (parse_error_fields(m.body, ef)) {
          // Rebuilding normalises the fields; parsing that gives them back.
          m.type == 'E' ? put_error(again, ef) : put_notice(again, ef);
          Message m2;
          size_t consumed = 0;
          const auto* p = reinterpret_cast<const uint8_t*>(again.data());
          check(decode_message(p, again.size(), kMaxMessageLen, m2, consumed) == Decode::Complete);
          ErrorFields ef2;
          check(parse_error_fields(m2.body, ef2));
          check(ef2.severity == ef.severity && ef2.sqlstate == ef.sqlstate &&
                ef2.message == ef.message && ef2.detail == ef.detail && ef2.hint == ef.hint);
        }
        break;
      }
      default: {
        // Unknown or relayed-only types: the parsers must still be safe.
        ErrorFields ef;
        (void)parse_error_fields(m.body, ef);
        (void)parse_parameter_status(m.body, a, b);
        (void)parse_ready_for_query(m.body, status);
        (void)parse_backend_key_data(m.body, pid, key);
        (void)parse_authentication(m.body, code, a);
        (void)parse_command_complete(m.body, a);
        break;
      }
    }
  }
  void on_malformed(std::string_view reason) override {
    check(!reason.empty());
    ++malformed;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Backend cb;
  StreamDecoder dec(cb);
  const Decode d = dec.feed(data, size);
  check(cb.malformed == (d == Decode::Malformed ? 1u : 0u));
  // Once failed, stays failed and silent.
  if (d == Decode::Malformed) {
    check(dec.feed(data, size) == Decode::Malformed);
    check(cb.malformed == 1);
  }
  // Whatever is buffered must be a proper prefix of an acceptable message.
  if (d == Decode::NeedMore) {
    check(dec.buffered() > 0 && dec.buffered() <= size);
  }
  return 0;
}
