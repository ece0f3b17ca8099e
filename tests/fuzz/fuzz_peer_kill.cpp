// pool/peer_kill on arbitrary bytes, as a peer (or anyone who reaches the
// PostgreSQL listener) can send them: decode_peer_kill never reads past
// its input and never accepts a request the secret did not sign; what it
// accepts re-encodes to the same bytes; decode_peer_kill_reply likewise;
// the nonce table stays within its capacity.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "pool/peer_kill.h"

using namespace sqlmux::pool;

namespace {
const std::string kSecret = "fuzz-fleet-secret-0123";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  PeerKill k;
  size_t used = 0;
  PeerKillError err{};
  const PeerDecode d = decode_peer_kill(data, size, kSecret, k, used, err);
  if (d == PeerDecode::Complete) {
    if (used < kPeerKillMinLen || used > kPeerKillMaxLen || used > size) std::abort();
    if (err != PeerKillError::None || k.user.size() > kPeerMaxUser) std::abort();
    // Only the secret's owner makes a request that decodes: re-signing gives the input.
    std::string again;
    put_peer_kill(again, k, kSecret);
    if (again != std::string_view(reinterpret_cast<const char*>(data), used)) std::abort();
    static PeerNonces nonces(64);
    (void)nonces.accept(k, k.unix_time);
    if (nonces.size() > 64) std::abort();
  } else if (d == PeerDecode::NeedMore) {
    if (used != 0 || size >= kPeerKillMaxLen) std::abort();
  } else if (err == PeerKillError::None) {
    std::abort();  // a refusal always says why
  }
  // The same bytes with a valid MAC appended (as an honest peer would sign
  // whatever it sends) decode exactly when the framing is right.
  if (size >= 8 && size <= kPeerKillMaxLen) {
    PeerKill any;
    any.thread_id = static_cast<uint32_t>(size);
    any.user.assign(reinterpret_cast<const char*>(data), size > kPeerMaxUser ? kPeerMaxUser : size);
    any.query_only = (data[0] & 1) != 0;
    std::string wire;
    put_peer_kill(wire, any, kSecret);
    PeerKill back;
    if (decode_peer_kill(reinterpret_cast<const uint8_t*>(wire.data()), wire.size(), kSecret, back,
                         used, err) != PeerDecode::Complete ||
        back.user != any.user || back.query_only != any.query_only || used != wire.size()) {
      std::abort();
    }
  }
  // The answer decoder on the same bytes, against a nonce from them.
  PeerNonce nonce{};
  for (size_t i = 0; i < nonce.size() && i < size; ++i) nonce[i] = data[size - 1 - i];
  PeerKillResult r{};
  const PeerDecode rd = decode_peer_kill_reply(data, size, kSecret, nonce, r, err);
  if (rd == PeerDecode::Complete) {
    std::string again;
    put_peer_kill_reply(again, r, nonce, kSecret);
    if (again != std::string_view(reinterpret_cast<const char*>(data), kPeerReplyLen)) std::abort();
  } else if (rd == PeerDecode::NeedMore && size >= kPeerReplyLen) {
    std::abort();
  }
  return 0;
}
