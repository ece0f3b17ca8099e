// pool/digest on arbitrary text, in both dialects: normalize_sql never
// reads out of bounds, its output is bounded, has no control bytes and no
// leading or trailing blank; the table stays within its capacity.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "pool/digest.h"

using sqlmux::pool::DigestRow;
using sqlmux::pool::DigestTable;
using sqlmux::pool::SqlDialect;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  static DigestTable table(8);
  std::string out;
  for (SqlDialect d : {SqlDialect::PostgreSQL, SqlDialect::MySQL}) {
    sqlmux::pool::normalize_sql(in, d, out);
    if (out.size() > sqlmux::pool::kMaxDigestText + 3) std::abort();
    for (size_t i = 0; i < out.size(); ++i) {
      const auto c = static_cast<unsigned char>(out[i]);
      if (c < 0x20 || c == 0x7f) std::abort();
      // (Doubled blanks may come from inside a quoted identifier, kept as written.)
      if (c == ' ' && (i == 0 || i + 1 == out.size())) std::abort();
    }
    table.record(d == SqlDialect::MySQL ? "mysql" : "postgresql", "p", "u", out, size, 1, false);
    if (table.size() > table.capacity()) std::abort();
  }
  (void)sqlmux::pool::command_tag_rows(in);
  std::vector<DigestRow> rows;
  table.collect(rows);
  if (sqlmux::pool::merge_digests(rows, 4).size() > 4) std::abort();
  return 0;
}
