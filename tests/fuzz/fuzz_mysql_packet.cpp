// libFuzzer target: MySQL packet framing. The input is a byte stream of
// packets (4-byte headers). decode_packet must agree with peek_packet and
// join_payload, a decoded packet re-framed by put_packet (whole or from two
// pieces) must give back exactly its wire bytes, decoding in two pieces must give the same packets
// as decoding whole, and the length-encoded readers must round-trip through
// the Writer.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/mysql/packet.h"

using namespace sqlmux::my;

namespace {

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

struct Got {
  std::string payload;
  uint8_t seq;
};

// Decodes all whole packets; returns the offset of the first undecoded byte
// and whether the stream was malformed there.
size_t decode_all(const uint8_t* p, size_t n, uint32_t max_len, std::vector<Got>& out,
                  bool& malformed) {
  size_t off = 0;
  malformed = false;
  for (;;) {
    Packet pkt;
    size_t consumed = 0;
    const Decode d = decode_packet(p + off, n - off, max_len, pkt, consumed);
    PacketExtent ext;
    const Decode e = peek_packet(p + off, n - off, max_len, ext);
    check(d == e);
    if (d == Decode::Malformed) {
      check(consumed == 0);
      malformed = true;
      return off;
    }
    if (d == Decode::NeedMore) {
      check(consumed == 0);
      return off;
    }
    check(consumed == ext.wire_len && consumed >= kHeaderLen);
    check(pkt.payload().size() == ext.payload_len && ext.payload_len <= max_len);
    check(pkt.chunks() == ext.chunks && pkt.seq() == ext.first_seq &&
          pkt.last_seq() == ext.last_seq);
    check(pkt.joined() == (ext.chunks > 1));
    std::string joined;
    join_payload(p + off, ext, joined);
    check(joined == pkt.payload());
    // Re-framing gives the same bytes and advances the sequence id.
    std::string wire;
    uint8_t seq = pkt.seq();
    put_packet(wire, seq, pkt.payload());
    check(wire.size() == consumed);
    check(wire == std::string_view(reinterpret_cast<const char*>(p + off), consumed));
    check(seq == static_cast<uint8_t>(pkt.last_seq() + 1));
    check(chunk_count(pkt.payload().size()) == pkt.chunks());
    // ... also from two pieces of the payload, cut anywhere.
    const std::string_view pl = pkt.payload();
    const size_t cut = pl.empty() ? 0 : static_cast<size_t>(pl[0]) % (pl.size() + 1);
    std::string wire2;
    uint8_t seq2 = pkt.seq();
    put_packet(wire2, seq2, pl.substr(0, cut), pl.substr(cut));
    check(wire2 == wire && seq2 == seq);
    PacketHeader h;
    check(peek_header(p + off, n - off, kMaxPacketLimit, h) == Decode::Complete);
    check(h.seq == pkt.seq());
    out.push_back({std::string(pkt.payload()), pkt.seq()});
    off += consumed;
  }
}

// Reads the payload as a run of lenenc values and strings.
void lenenc_round_trips(std::string_view payload) {
  Reader r(payload);
  while (!r.at_end()) {
    const size_t before = r.remaining();
    uint64_t v = 0;
    bool is_null = false;
    Reader probe = r;
    if (!r.lenenc_or_null(v, is_null)) {
      check(!r.ok());
      uint64_t w = 0;
      check(!probe.lenenc(w));
      break;
    }
    const size_t used = before - r.remaining();
    std::string out;
    Writer wr(out);
    if (is_null) {
      wr.lenenc_null();
      check(out.size() == used);
      continue;
    }
    wr.lenenc(v);
    check(out.size() == lenenc_size(v) && out.size() <= used);
    Reader back(out);
    uint64_t v2 = 0;
    check(back.lenenc(v2) && v2 == v && back.at_end());
    std::string_view s;
    Reader strs = probe;
    if (strs.lenenc_str(s)) {
      check(s.size() == v);
    } else {
      check(v > probe.remaining() - used);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // The first byte picks the maximum logical size; the rest is the stream.
  static const uint32_t kMax[] = {0, 1, 16, 255, 4096, kMaxChunk - 1, kMaxChunk, kMaxPacketLimit};
  const uint32_t max_len = kMax[data[0] % (sizeof(kMax) / sizeof(kMax[0]))];
  const uint8_t* p = data + 1;
  const size_t n = size - 1;

  std::vector<Got> whole;
  bool malformed = false;
  const size_t end = decode_all(p, n, max_len, whole, malformed);
  for (const auto& g : whole) lenenc_round_trips(g.payload);

  // Fed in two pieces (as a relay buffer fills), the same packets come out.
  const size_t cut = n == 0 ? 0 : (static_cast<size_t>(data[0]) * 7919u) % (n + 1);
  std::vector<Got> split;
  bool m1 = false;
  const size_t off1 = decode_all(p, cut, max_len, split, m1);
  if (m1) check(malformed);  // malformed is decided from headers alone
  if (!m1) {
    std::string rest(reinterpret_cast<const char*>(p + off1), n - off1);
    bool m2 = false;
    const size_t off2 =
        decode_all(reinterpret_cast<const uint8_t*>(rest.data()), rest.size(), max_len, split, m2);
    check(m2 == malformed);
    check(off1 + off2 == end);
  }
  check(split.size() <= whole.size());
  for (size_t i = 0; i < split.size(); ++i) {
    check(split[i].payload == whole[i].payload && split[i].seq == whole[i].seq);
  }
  if (!m1) check(split.size() == whole.size());
  return 0;
}
