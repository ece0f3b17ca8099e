// libFuzzer target: MySQL command-phase payloads.
//
// Byte 0 is a configuration: response kind (bits 0-2), backend capability
// variant (bits 3-4), and the number of statement parameters for the
// COM_STMT_EXECUTE parser (bits 5-7). The rest is a sequence of payloads,
// each a 1-byte length and that many bytes.
//
// Each payload goes through the OK / ERR / EOF / column definition /
// PREPARE_OK / session-state decoders (decode -> encode -> decode must be
// stable), column definitions through reshape_column_def (MariaDB's
// extended metadata dropped or added: the same definition) and, in order, through a ResponseReader.
// When the reader accepts a whole response, the same response translated for a client with the
// other CLIENT_DEPRECATE_EOF setting must read as a complete response with
// the same rows, result sets, error and final status. The whole input is
// also parsed as a COM_STMT_EXECUTE.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/mysql/command.h"
#include "protocol/mysql/reader.h"
#include "protocol/mysql/response.h"

using namespace sqlmux::my;

namespace {

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

const uint64_t kCaps[] = {
    cap::kProtocol41,
    cap::kProtocol41 | cap::kDeprecateEof,
    cap::kProtocol41 | cap::kSessionTrack | cap::kMariaProgress,
    cap::kProtocol41 | cap::kSessionTrack | cap::kDeprecateEof | cap::kMariaExtendedMetadata,
};

const ResponseKind kKinds[] = {
    ResponseKind::Query,     ResponseKind::Execute, ResponseKind::Fetch,      ResponseKind::Prepare,
    ResponseKind::FieldList, ResponseKind::Simple,  ResponseKind::Statistics, ResponseKind::Query};

void packet_decoders(std::string_view p, uint64_t caps) {
  OkPacket ok1;
  if (decode_ok(p, caps, ok1)) {
    std::string w1;
    encode_ok(w1, ok1, caps);
    OkPacket ok2;
    check(decode_ok(w1, caps, ok2));
    OkPacket norm = ok1;
    norm.session_state.unknown_entries = 0;  // unknown entries are not re-encoded
    check(ok2 == norm);
    std::string w2;
    encode_ok(w2, ok2, caps);
    check(w2 == w1);
    uint16_t st = 0, warn = 0;
    check(decode_ok_status(p, caps, st, warn) && st == ok1.status && warn == ok1.warnings);
  }
  ErrPacket e1;
  if (decode_err(p, e1)) {
    std::string w;
    encode_err(w, e1);
    ErrPacket e2;
    check(decode_err(w, e2) && e2 == e1);
    check(w == p);
  }
  EofPacket eof;
  if (decode_eof(p, eof)) {
    check(is_eof(p) && is_result_terminator(p, 0));
    std::string w;
    encode_eof(w, eof);
    check(w == p);
    std::string ok;
    check(eof_to_ok_terminator(p, ok));
    std::string back;
    check(ok_terminator_to_eof(ok, caps, back) && back == p);
  }
  ColumnDef c1;
  const bool is_def = decode_column_def(p, caps, c1);
  size_t at = 0;
  size_t len = 0;
  const bool has_span = column_def_extended_span(p, caps, at, len);
  if (is_def) {
    std::string w;
    encode_column_def(w, c1, caps);
    ColumnDef c2;
    check(decode_column_def(w, caps, c2) && c2 == c1);
    // The span is the field as decoded (its length prefix included).
    check(has_span && at + len <= p.size());
    if ((caps & cap::kMariaExtendedMetadata) != 0) {
      check(len == lenenc_size(c1.extended_metadata.size()) + c1.extended_metadata.size());
      check(p.substr(at + len - c1.extended_metadata.size(), c1.extended_metadata.size()) ==
            c1.extended_metadata);
    } else {
      check(len == 0);
    }
  }
  // MariaDB's extended metadata: a definition reshaped for a peer with the
  // other MARIADB_CLIENT_EXTENDED_METADATA setting reads as the same
  // definition (with no extended metadata), and reshaping back drops or
  // adds only that field.
  const uint64_t other = caps ^ cap::kMariaExtendedMetadata;
  std::string reshaped;
  check(!reshape_column_def(p, caps, caps, reshaped));
  if (reshape_column_def(p, caps, other, reshaped)) {
    check(has_span);
    std::string back;
    check(reshape_column_def(reshaped, other, caps, back));
    if ((caps & cap::kMariaExtendedMetadata) == 0) {
      check(back == p && reshaped.size() == p.size() + 1);
    } else {
      check(back.size() <= p.size() && reshaped.size() + 1 == back.size());
    }
    if (is_def) {
      ColumnDef c3;
      check(decode_column_def(reshaped, other, c3));
      c1.extended_metadata.clear();
      check(c3 == c1);
    }
  } else {
    check(!is_def && !has_span);
  }
  PrepareOk po1;
  if (decode_prepare_ok(p, po1)) {
    std::string w;
    encode_prepare_ok(w, po1);
    PrepareOk po2;
    check(decode_prepare_ok(w, po2) && po2 == po1);
  }
  SessionState s1;
  if (decode_session_state(p, s1)) {
    std::string w;
    encode_session_state(w, s1);
    SessionState s2;
    check(decode_session_state(w, s2));
    s1.unknown_entries = 0;
    check(s2 == s1);
  }
}

void stmt_execute(std::string_view in, uint16_t num_params) {
  StmtExecute e;
  if (decode_stmt_execute(in, num_params, e)) {
    check(e.null_bitmap.size() == (num_params + 7u) / 8u);
    check(!e.new_params_bound || e.types.size() == num_params);
    std::string w;
    encode_stmt_execute(w, e);
    check(w == in);
    std::string bound;
    std::vector<ParamType> types(num_params, ParamType{0x08, 0x80});
    check(bind_param_types(in, num_params, types, bound));
    StmtExecute b;
    check(decode_stmt_execute(bound, num_params, b));
    check(b.statement_id == e.statement_id && b.values == e.values &&
          b.null_bitmap == e.null_bitmap);
    if (num_params > 0 && !e.new_params_bound) check(b.new_params_bound && b.types == types);
  }
  uint32_t id = 0;
  if (statement_id_of(in, id)) {
    std::string copy(in);
    uint32_t id2 = 0;
    check(rewrite_statement_id(copy, id ^ 0x5a5a5a5au));
    check(statement_id_of(copy, id2) && id2 == (id ^ 0x5a5a5a5au));
    check(copy.substr(5) == in.substr(5));
  }
}

struct Outcome {
  Step last = Step::More;
  uint64_t rows = 0;
  size_t result_sets = 0;
  uint16_t status = 0;
  bool error = false;
};

Outcome read(ResponseKind kind, uint64_t caps, const std::vector<std::string>& packets,
             std::vector<PacketRole>* roles) {
  ResponseReader r(kind, caps);
  Outcome o;
  for (const auto& p : packets) {
    o.last = r.feed(p);
    if (roles != nullptr) roles->push_back(r.role());
    if (o.last == Step::Malformed) {
      check(r.failed());
      break;
    }
    if (o.last == Step::Done) {
      check(r.done());
      break;
    }
  }
  o.rows = r.rows();
  o.result_sets = r.result_sets();
  o.status = r.status();
  o.error = r.error().has_value();
  return o;
}

void responses(ResponseKind kind, uint64_t caps, const std::vector<std::string>& packets) {
  const bool backend_de = (caps & cap::kDeprecateEof) != 0;
  ResponseReader r(kind, caps);
  std::vector<std::string> translated;
  bool odd_packet = false;  // a non-terminator starting with 0xFE (never valid data)
  size_t fed = 0;
  Step last = Step::More;
  for (const auto& p : packets) {
    last = r.feed(p);
    ++fed;
    if (last == Step::Malformed) {
      check(r.failed());
      check(r.feed(p) == Step::Malformed);
      return;
    }
    const PacketRole role = r.role();
    if (!p.empty() && static_cast<uint8_t>(p[0]) == 0xFE && role != PacketRole::Terminator &&
        role != PacketRole::MetadataEof && role != PacketRole::Eof) {
      odd_packet = true;
    }
    std::vector<std::string> out;
    if (translate_for_client(r, p, !backend_de, out)) {
      translated.insert(translated.end(), out.begin(), out.end());
    } else {
      translated.push_back(p);
    }
    if (last == Step::LocalInfile) return;  // the rest depends on the client
    if (last == Step::Done) break;
  }
  if (last != Step::Done) return;
  check(r.done());
  check(r.feed(packets[0]) == Step::Malformed);
  if (odd_packet) return;
  // The translated response is complete for a client of the other style.
  const uint64_t client_caps = caps ^ cap::kDeprecateEof;
  const Outcome t = read(kind, client_caps, translated, nullptr);
  check(t.last == Step::Done);
  check(t.rows == r.rows());
  check(t.result_sets == r.result_sets());
  check(t.error == r.error().has_value());
  // The final status matches, except where the only status the backend
  // sent was in a packet the translation drops (a PREPARE's metadata EOFs;
  // a metadata EOF followed by ERR, which carries no status).
  if (kind != ResponseKind::Prepare && !r.error().has_value()) check(t.status == r.status());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // An UPDATE's info text as the server might send it (CLIENT_FOUND_ROWS).
  if (auto n = rows_matched(std::string_view(reinterpret_cast<const char*>(data), size))) {
    check(size >= 15);
  }
  const uint8_t config = data[0];
  const ResponseKind kind = kKinds[config & 7];
  const uint64_t caps = kCaps[(config >> 3) & 3];
  // Up to the 16-bit maximum: counts past 32767 are valid (unsigned on the wire).
  static const uint16_t kParams[] = {0, 1, 2, 3, 9, 300, 32768, 65535};
  const uint16_t num_params = kParams[(config >> 5) & 7];

  std::vector<std::string> packets;
  size_t off = 1;
  while (off < size) {
    const size_t len = data[off++];
    const size_t take = len < size - off ? len : size - off;
    packets.emplace_back(reinterpret_cast<const char*>(data + off), take);
    off += take;
  }
  for (const auto& p : packets) packet_decoders(p, caps);
  if (!packets.empty()) responses(kind, caps, packets);
  stmt_execute(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1), num_params);
  return 0;
}
