// libFuzzer target: the COM_QUERY texts sqlmux answers itself (MySQL
// KILL, SELECT CONNECTION_ID()). The input is the SQL. parse_kill is
// deterministic and unchanged by leading blanks; a KILL's decimal id is
// in the text; a rewritten SELECT CONNECTION_ID() names the id, is not
// rewritten again and is not a KILL.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/mysql/command.h"

using namespace sqlmux::my;

namespace {

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view sql(reinterpret_cast<const char*>(data), size);

  KillStatement k;
  const KillParse p = parse_kill(sql, k);
  KillStatement k2;
  const std::string padded = " \t\n/* pad */ " + std::string(sql);
  check(parse_kill(padded, k2) == p);
  if (p == KillParse::Kill) {
    check(k2 == k);
    check(!k.own || k.id == 0);
    if (!k.own && k.id != UINT64_MAX)
      check(sql.find(std::to_string(k.id)) != std::string_view::npos);
  }

  const uint32_t id = size > 0 ? static_cast<uint32_t>(data[0]) * 16777619u : 1;
  std::string out;
  if (rewrite_connection_id(sql, id, out)) {
    check(p == KillParse::NotKill);
    check(out.find(std::to_string(id)) != std::string::npos);
    std::string again;
    check(!rewrite_connection_id(out, id, again));
    KillStatement k3;
    check(parse_kill(out, k3) == KillParse::NotKill);
    std::string padded_out;
    check(rewrite_connection_id(padded, id, padded_out));
  }
  return 0;
}
