// libFuzzer target: the first packet of a client connection (StartupMessage,
// SSLRequest, GSSENCRequest, CancelRequest, other protocol versions). A
// packet that decodes must come back the same through the builders.
#include <cstddef>
#include <cstdint>
#include <string>

#include "protocol/pg/codec.h"

using namespace sqlmux::pg;

namespace {

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  StartupPacket pkt;
  size_t consumed = 0;
  std::string error;
  const Decode d = decode_startup(data, size, pkt, consumed, error);
  if (d == Decode::Malformed) {
    check(!error.empty());
    return 0;
  }
  if (d == Decode::NeedMore) {
    check(consumed == 0);
    return 0;
  }
  check(consumed >= 8 && consumed <= size && consumed <= kMaxStartupLen);
  const std::string original(reinterpret_cast<const char*>(data), consumed);
  std::string again;
  switch (pkt.kind) {
    case StartupKind::SslRequest:
      put_ssl_request(again);
      check(again == original);
      break;
    case StartupKind::GssEncRequest:
      check(consumed == 8);
      break;
    case StartupKind::Cancel:
      put_cancel_request(again, pkt.cancel_pid, pkt.cancel_key);
      check(again == original);
      break;
    case StartupKind::PeerKill:
      check(pkt.peer_request == original);  // framed only; pool/peer_kill decodes it
      break;
    case StartupKind::Startup:
      if (pkt.protocol == kProtocolV3) {
        // Rebuilt from the (deduplicated) parameters, it decodes to the same.
        put_startup(again, pkt.params);
        StartupPacket pkt2;
        size_t consumed2 = 0;
        const auto* p = reinterpret_cast<const uint8_t*>(again.data());
        check(decode_startup(p, again.size(), pkt2, consumed2, error) == Decode::Complete);
        check(consumed2 == again.size() && pkt2.params == pkt.params);
        check(again.size() <= consumed);
        // Names are unique and non-empty after decoding.
        for (const auto& [k, v] : pkt.params) {
          check(!k.empty() && pkt.param(k) == &v);
        }
      } else if ((static_cast<uint32_t>(pkt.protocol) >> 16) != 3) {
        check(pkt.params.empty());
      }
      break;
  }
  return 0;
}
