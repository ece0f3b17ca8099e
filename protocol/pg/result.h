// Result sets sqlmux answers itself (the admin console): RowDescription
// and DataRow in text format; columns typed text unless given a type oid.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sqlmux::pg {

inline constexpr uint32_t kTextOid = 25;
inline constexpr uint32_t kInt4Oid = 23;
inline constexpr uint32_t kInt8Oid = 20;
inline constexpr uint32_t kNumericOid = 1700;

// A result column: its name and type (values are sent as text either way).
struct Column {
  std::string_view name;
  uint32_t type_oid = kTextOid;
};

// 'T': one text column per name (no table, format 0).
void put_row_description(std::string& out, const std::vector<std::string_view>& columns);
// 'T': one column per entry, typed as given (no table, format 0).
void put_typed_row_description(std::string& out, const std::vector<Column>& columns);
// 'D': one value per column; nullopt is SQL NULL.
void put_data_row(std::string& out, const std::vector<std::optional<std::string>>& values);

}  // namespace sqlmux::pg
