#include "protocol/pg/result.h"

#include "protocol/pg/codec.h"

namespace sqlmux::pg {

void put_row_description(std::string& out, const std::vector<std::string_view>& columns) {
  Writer w(out);
  w.begin('T');
  w.u16(static_cast<uint16_t>(columns.size()));
  for (std::string_view name : columns) {
    w.cstr(name);
    w.i32(0);  // table oid
    w.i16(0);  // column number
    w.i32(static_cast<int32_t>(kTextOid));
    w.i16(-1);  // variable length
    w.i32(-1);  // type modifier
    w.i16(0);   // text format
  }
  w.end();
}

void put_data_row(std::string& out, const std::vector<std::optional<std::string>>& values) {
  Writer w(out);
  w.begin('D');
  w.u16(static_cast<uint16_t>(values.size()));
  for (const auto& v : values) {
    if (!v) {
      w.i32(-1);
      continue;
    }
    w.i32(static_cast<int32_t>(v->size()));
    w.bytes(*v);
  }
  w.end();
}

}  // namespace sqlmux::pg
