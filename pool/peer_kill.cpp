#include "pool/peer_kill.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstring>

namespace sqlmux::pool {

namespace {

constexpr char kReplyMagic[4] = {'S', 'Q', 'M', 'K'};
constexpr uint8_t kFlagQuery = 0x1;

void put_be(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t load_be(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

// HMAC-SHA256(secret, a || b) into `mac`; false if OpenSSL failed.
bool mac_of(std::string_view secret, const uint8_t* a, size_t an, const uint8_t* b, size_t bn,
            uint8_t mac[kPeerMacLen]) {
  std::string msg(reinterpret_cast<const char*>(a), an);
  if (bn != 0) msg.append(reinterpret_cast<const char*>(b), bn);
  unsigned len = 0;
  static const unsigned char kEmpty = 0;
  const void* key = secret.empty() ? static_cast<const void*>(&kEmpty) : secret.data();
  if (HMAC(EVP_sha256(), key, static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac, &len) == nullptr ||
      len != kPeerMacLen) {
    std::memset(mac, 0, kPeerMacLen);
    return false;
  }
  return true;
}

bool mac_matches(std::string_view secret, const uint8_t* signed_part, size_t n,
                 const uint8_t* extra, size_t extra_n, const uint8_t* given) {
  uint8_t want[kPeerMacLen];
  if (!mac_of(secret, signed_part, n, extra, extra_n, want)) return false;
  return CRYPTO_memcmp(want, given, kPeerMacLen) == 0;
}

}  // namespace

uint32_t peer_thread_id(uint32_t peer_id, uint32_t seq) {
  return ((peer_id & kThreadPeerMax) << kThreadSeqBits) | (seq & kThreadSeqMask);
}

uint32_t thread_peer(uint64_t thread_id) {
  if (thread_id >= (1ull << 31)) return 0;
  return static_cast<uint32_t>(thread_id >> kThreadSeqBits) & kThreadPeerMax;
}

std::string_view to_string(PeerKillResult r) {
  switch (r) {
    case PeerKillResult::Ok:
      return "ok";
    case PeerKillResult::NoSuchThread:
      return "no_such_thread";
    case PeerKillResult::NotOwner:
      return "not_owner";
  }
  return "unknown";
}

std::string_view to_string(PeerKillError e) {
  switch (e) {
    case PeerKillError::None:
      return "none";
    case PeerKillError::BadLength:
      return "bad_length";
    case PeerKillError::BadCode:
      return "bad_code";
    case PeerKillError::BadVersion:
      return "bad_version";
    case PeerKillError::BadFlags:
      return "bad_flags";
    case PeerKillError::BadResult:
      return "bad_result";
    case PeerKillError::BadMac:
      return "bad_mac";
    case PeerKillError::Stale:
      return "stale";
    case PeerKillError::Replayed:
      return "replayed";
    case PeerKillError::Full:
      return "full";
  }
  return "unknown";
}

void put_peer_kill(std::string& out, const PeerKill& k, std::string_view secret) {
  const size_t user_len = k.user.size() > kPeerMaxUser ? kPeerMaxUser : k.user.size();
  const size_t start = out.size();
  put_be(out, kPeerKillMinLen + user_len, 4);
  put_be(out, static_cast<uint32_t>(kPeerKillCode), 4);
  out.push_back(static_cast<char>(kPeerKillVersion));
  out.push_back(static_cast<char>(k.query_only ? kFlagQuery : 0));
  put_be(out, k.thread_id, 4);
  put_be(out, k.unix_time, 8);
  out.append(reinterpret_cast<const char*>(k.nonce.data()), k.nonce.size());
  put_be(out, user_len, 2);
  out.append(k.user.data(), user_len);
  uint8_t mac[kPeerMacLen];
  (void)mac_of(secret, reinterpret_cast<const uint8_t*>(out.data()) + start, out.size() - start,
               nullptr, 0, mac);
  out.append(reinterpret_cast<const char*>(mac), kPeerMacLen);
}

PeerDecode decode_peer_kill(const uint8_t* p, size_t n, std::string_view secret, PeerKill& out,
                            size_t& consumed, PeerKillError& error) {
  consumed = 0;
  error = PeerKillError::None;
  if (n < 8) return PeerDecode::NeedMore;
  const uint64_t len = load_be(p, 4);
  if (static_cast<int32_t>(load_be(p + 4, 4)) != kPeerKillCode) {
    error = PeerKillError::BadCode;
    return PeerDecode::Malformed;
  }
  if (len < kPeerKillMinLen || len > kPeerKillMaxLen) {
    error = PeerKillError::BadLength;
    return PeerDecode::Malformed;
  }
  if (n < len) return PeerDecode::NeedMore;
  size_t at = 8;
  const uint8_t version = p[at++];
  const uint8_t flags = p[at++];
  PeerKill k;
  k.thread_id = static_cast<uint32_t>(load_be(p + at, 4));
  at += 4;
  k.unix_time = load_be(p + at, 8);
  at += 8;
  std::memcpy(k.nonce.data(), p + at, kPeerNonceLen);
  at += kPeerNonceLen;
  const size_t user_len = load_be(p + at, 2);
  at += 2;
  // The fixed part is inside `len` (len >= kPeerKillMinLen); the user must
  // fill exactly what is left before the MAC.
  if (user_len > kPeerMaxUser || at + user_len + kPeerMacLen != len) {
    error = PeerKillError::BadLength;
    return PeerDecode::Malformed;
  }
  k.user.assign(reinterpret_cast<const char*>(p + at), user_len);
  at += user_len;
  // The MAC first: nothing of an unauthenticated request is believed.
  if (!mac_matches(secret, p, at, nullptr, 0, p + at)) {
    error = PeerKillError::BadMac;
    return PeerDecode::Malformed;
  }
  if (version != kPeerKillVersion) {
    error = PeerKillError::BadVersion;
    return PeerDecode::Malformed;
  }
  if ((flags & ~kFlagQuery) != 0) {
    error = PeerKillError::BadFlags;
    return PeerDecode::Malformed;
  }
  k.query_only = (flags & kFlagQuery) != 0;
  out = std::move(k);
  consumed = static_cast<size_t>(len);
  return PeerDecode::Complete;
}

void put_peer_kill_reply(std::string& out, PeerKillResult r, const PeerNonce& nonce,
                         std::string_view secret) {
  const size_t start = out.size();
  out.append(kReplyMagic, 4);
  out.push_back(static_cast<char>(kPeerKillVersion));
  out.push_back(static_cast<char>(r));
  uint8_t mac[kPeerMacLen];
  (void)mac_of(secret, reinterpret_cast<const uint8_t*>(out.data()) + start, 6, nonce.data(),
               nonce.size(), mac);
  out.append(reinterpret_cast<const char*>(mac), kPeerMacLen);
}

PeerDecode decode_peer_kill_reply(const uint8_t* p, size_t n, std::string_view secret,
                                  const PeerNonce& nonce, PeerKillResult& out,
                                  PeerKillError& error) {
  error = PeerKillError::None;
  const size_t have = n < 4 ? n : 4;
  if (std::memcmp(p, kReplyMagic, have) != 0) {
    error = PeerKillError::BadCode;
    return PeerDecode::Malformed;
  }
  if (n < kPeerReplyLen) return PeerDecode::NeedMore;
  if (!mac_matches(secret, p, 6, nonce.data(), nonce.size(), p + 6)) {
    error = PeerKillError::BadMac;
    return PeerDecode::Malformed;
  }
  if (p[4] != kPeerKillVersion) {
    error = PeerKillError::BadVersion;
    return PeerDecode::Malformed;
  }
  if (p[5] > static_cast<uint8_t>(PeerKillResult::NotOwner)) {
    error = PeerKillError::BadResult;
    return PeerDecode::Malformed;
  }
  out = static_cast<PeerKillResult>(p[5]);
  return PeerDecode::Complete;
}

void PeerNonces::prune(uint64_t now) {
  while (!by_expiry_.empty() && by_expiry_.front().first < now) {
    seen_.erase(by_expiry_.front().second);
    by_expiry_.pop_front();
  }
}

PeerKillError PeerNonces::accept(const PeerKill& k, uint64_t now) {
  if (k.unix_time + kPeerKillWindowS < now || k.unix_time > now + kPeerKillWindowS) {
    return PeerKillError::Stale;
  }
  prune(now);
  if (seen_.count(k.nonce) != 0) return PeerKillError::Replayed;
  if (seen_.size() >= max_) return PeerKillError::Full;
  seen_.emplace(k.nonce, k.unix_time);
  // Kept until no request carrying it can be fresh any more: its time is at
  // most now + window, fresh until that + window.
  by_expiry_.emplace_back(now + 2 * kPeerKillWindowS, k.nonce);
  return PeerKillError::None;
}

}  // namespace sqlmux::pool
