// Shared helpers for the MySQL codec unit tests; the captured packets are
// in test_mysql_fixtures_real.h.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/mysql/packet.h"
#include "tests/unit/test_mysql_fixtures_real.h"

namespace sqlmux::my::testing {

// Bytes from a list of byte values (hand-written fixtures).
inline std::string bytes(std::initializer_list<int> v) {
  std::string s;
  s.reserve(v.size());
  for (int b : v) s.push_back(static_cast<char>(b));
  return s;
}

// A heap buffer of exactly n bytes, so that ASan reports any read past it.
class ExactBuf {
 public:
  explicit ExactBuf(std::string_view s) : n_(s.size()), p_(new uint8_t[s.size()]) {
    if (n_ > 0) std::memcpy(p_.get(), s.data(), n_);
  }
  [[nodiscard]] const uint8_t* data() const { return p_.get(); }
  [[nodiscard]] size_t size() const { return n_; }
  // The payload as an exactly-sized view.
  [[nodiscard]] std::string_view view() const {
    return {reinterpret_cast<const char*>(p_.get()), n_};
  }

 private:
  size_t n_;
  std::unique_ptr<uint8_t[]> p_;
};

// One physical packet: 3-byte length, sequence id, payload (< 16 MiB).
inline std::string frame(uint8_t seq, std::string_view payload) {
  std::string s;
  const auto n = static_cast<uint32_t>(payload.size());
  s.push_back(static_cast<char>(n & 0xff));
  s.push_back(static_cast<char>((n >> 8) & 0xff));
  s.push_back(static_cast<char>((n >> 16) & 0xff));
  s.push_back(static_cast<char>(seq));
  s.append(payload);
  return s;
}

// The payload of a captured packet (header stripped).
inline std::string_view payload_of(const RealPacket& p) {
  return p.wire.substr(4);
}

// Captured packets of one session, optionally one label and direction.
inline std::vector<const RealPacket*> real(std::string_view session, std::string_view label = {},
                                           char dir = 0) {
  std::vector<const RealPacket*> out;
  for (const auto& p : kRealPackets) {
    if (!session.empty() && session != p.session) continue;
    if (!label.empty() && label != p.label) continue;
    if (dir != 0 && dir != p.dir) continue;
    out.push_back(&p);
  }
  return out;
}

// The one captured packet with this session, label and direction.
inline std::string_view real_one(std::string_view session, std::string_view label, char dir) {
  const auto v = real(session, label, dir);
  return v.size() == 1 ? payload_of(*v[0]) : std::string_view();
}

}  // namespace sqlmux::my::testing
