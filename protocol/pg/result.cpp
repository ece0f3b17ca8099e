#include "protocol/pg/result.h"

#include "protocol/pg/codec.h"

namespace sqlmux::pg {

void put_row_description(std::string& out, const std::vector<std::string_view>& columns) {
  std::vector<Column> typed;
  typed.reserve(columns.size());
  for (std::string_view name : columns) typed.push_back({name, kTextOid});
  put_typed_row_description(out, typed);
}

void put_typed_row_description(std::string& out, const std::vector<Column>& columns) {
  Writer w(out);
  w.begin('T');
  w.u16(static_cast<uint16_t>(columns.size()));
  for (const Column& c : columns) {
    w.cstr(c.name);
    w.i32(0);  // table oid
    w.i16(0);  // column number
    w.i32(static_cast<int32_t>(c.type_oid));
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
