// Result sets sqlmux answers itself (the admin console): RowDescription
// and DataRow in text format, every column typed text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sqlmux::pg {

inline constexpr uint32_t kTextOid = 25;

// 'T': one text column per name (no table, format 0).
void put_row_description(std::string& out, const std::vector<std::string_view>& columns);
// 'D': one value per column; nullopt is SQL NULL.
void put_data_row(std::string& out, const std::vector<std::optional<std::string>>& values);

}  // namespace sqlmux::pg
