// daemon/ops/upgrade_wire on arbitrary bytes (a packet from another
// process): the first byte is the number of descriptors that came with
// it. Decoding never crashes, and an offer or a client record (PostgreSQL's
// or MySQL's) it accepts encodes back to the same bytes; go/done pids and
// adopted/refused ids are in range and round-trip.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/ops/upgrade_wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  namespace up = sqlmux::upgrade;
  const size_t fds = data[0];
  const std::string_view msg(reinterpret_cast<const char*>(data + 1), size - 1);
  std::vector<up::SocketDesc> out;
  if (up::decode_offer(msg, fds, out) == up::WireError::None) {
    if (out.size() != fds || up::encode_offer(out) != msg) std::abort();
  }
  if (const int32_t pid = up::decode_go(msg); pid != 0) {
    if (pid < 1 || up::encode_go(pid) != msg) std::abort();
  }
  if (const int32_t pid = up::decode_done(msg); pid != 0) {
    if (pid < 1 || up::encode_done(pid) != msg) std::abort();
  }
  up::ClientState c;
  if (up::decode_client(msg, fds, c) == up::ClientWireError::None) {
    if (fds != 1 || up::encode_client(c) != msg) std::abort();
    // A MySQL client's record carries none of PostgreSQL's fields, and
    // only statement ids a client could hold.
    if (c.mysql) {
      if (c.cancel_pid != 0 || c.cancel_key != 0 || !c.params.empty() || !c.statements.empty() ||
          c.mysql->thread_id == 0) {
        std::abort();
      }
      uint32_t prev = 0;
      for (const auto& st : c.mysql->statements) {
        if (st.id <= prev || st.id >= c.mysql->next_statement) std::abort();
        prev = st.id;
      }
    }
  } else if (!(c == up::ClientState{})) {
    std::abort();
  }
  uint64_t id = 0;
  if (up::decode_adopted(msg, id) &&
      (id < 1 || id > up::kMaxClientId || up::encode_adopted(id) != msg)) {
    std::abort();
  }
  if (up::decode_refused(msg, id) &&
      (id < 1 || id > up::kMaxClientId || up::encode_refused(id) != msg)) {
    std::abort();
  }
  if (up::decode_end(msg) && up::encode_end() != msg) std::abort();
  return 0;
}
