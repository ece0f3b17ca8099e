// pool/pg/session_pins on arbitrary text: may_hold_state agrees with a
// plain reference (lower-case the text, look for the words with identifier
// boundaries), tag_may_change_state and pins_from_row never crash, and a
// row read back equals the bits it was written from.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pool/pg/session_pins.h"

namespace {

bool ident(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '$' || c >= 0x80;
}

// Whether `w` occurs in `s` (lower case) as a whole identifier.
bool has_word(const std::string& s, std::string_view w) {
  for (size_t at = s.find(w); at != std::string::npos; at = s.find(w, at + 1)) {
    const bool before = at > 0 && ident(static_cast<unsigned char>(s[at - 1]));
    const bool after =
        at + w.size() < s.size() && ident(static_cast<unsigned char>(s[at + w.size()]));
    if (!before && !after) return true;
  }
  return false;
}

bool reference(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (s.find("advisory_") != std::string::npos) return true;
  return has_word(s, "temp") || has_word(s, "temporary") || has_word(s, "hold");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (sqlmux::pool::may_hold_state(text) != reference(text)) __builtin_trap();
  {
    std::string lower = text;
    for (char& c : lower) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    const uint8_t words = sqlmux::pool::scan_words(text);
    if (words != sqlmux::pool::scan_words_reference(text)) __builtin_trap();
    const bool listen = has_word(lower, "listen") || has_word(lower, "unlisten");
    if (((words & sqlmux::pool::kWordListen) != 0) != listen) __builtin_trap();
    if (((words & sqlmux::pool::kWordSetConfig) != 0) != has_word(lower, "set_config")) {
      __builtin_trap();
    }
  }
  (void)sqlmux::pool::tag_may_change_state(text);

  // The text split at NULs as a row of values.
  std::vector<std::string> row;
  size_t start = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == '\0') {
      row.emplace_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  (void)sqlmux::pool::pins_from_row(row);
  const auto bits = static_cast<uint8_t>(size > 0 ? data[0] & 0x0f : 0);
  std::vector<std::string> back;
  for (int i = 0; i < 4; ++i) back.emplace_back((bits & (1u << i)) != 0 ? "t" : "f");
  if (sqlmux::pool::pins_from_row(back) != bits) __builtin_trap();
  (void)sqlmux::pool::pins_to_string(static_cast<uint8_t>(size > 0 ? data[0] : 0));
  return 0;
}
