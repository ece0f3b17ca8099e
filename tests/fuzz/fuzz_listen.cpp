// pool/pg/listen on arbitrary text: may_listen agrees with a plain
// reference, every LISTEN/UNLISTEN found is one the cheap look admits,
// encoded ops read back whole, and channels respect the server's length.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "pool/pg/listen.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::string lower = text;
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  const bool maybe = sqlmux::pool::may_listen(text);
  if (maybe != (lower.find("listen") != std::string::npos)) __builtin_trap();
  std::string enc;
  const size_t n = sqlmux::pool::encode_listen_ops(text, enc);
  if (n > 0 && !maybe) __builtin_trap();
  size_t pos = 0;
  size_t read = 0;
  sqlmux::pool::ListenOp op;
  while (sqlmux::pool::next_listen_op(enc, pos, op)) {
    if (op.channel.size() > sqlmux::pool::kMaxChannelLen) __builtin_trap();
    if (op.kind != sqlmux::pool::ListenOp::Kind::UnlistenAll && op.channel.empty()) {
      __builtin_trap();
    }
    ++read;
  }
  if (read != n || pos != enc.size()) __builtin_trap();
  // The text as an encoded list: never read past its end.
  pos = 0;
  while (sqlmux::pool::next_listen_op(text, pos, op)) {
    if (pos > text.size()) __builtin_trap();
  }
  return 0;
}
