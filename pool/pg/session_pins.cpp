#include "pool/pg/session_pins.h"

#include <array>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sqlmux::pool {
namespace {

constexpr std::array<std::string_view, kPgPinKinds> kNames{
    "temp_table", "sql_prepare", "hold_cursor", "advisory_lock", "listen"};

// Identifier characters (as PostgreSQL's lexer has them): letters, digits,
// '_', '$' and every byte of a multibyte character.
constexpr std::array<bool, 256> kIdent = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[static_cast<size_t>(c)] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                (c >= '0' && c <= '9') || c == '_' || c == '$' || c >= 0x80;
  }
  return t;
}();

// Four bytes as one little-endian integer (compilers make it one load).
template <typename Byte>
constexpr uint32_t word4(const Byte* w) {
  return static_cast<uint32_t>(static_cast<unsigned char>(w[0])) |
         static_cast<uint32_t>(static_cast<unsigned char>(w[1])) << 8 |
         static_cast<uint32_t>(static_cast<unsigned char>(w[2])) << 16 |
         static_cast<uint32_t>(static_cast<unsigned char>(w[3])) << 24;
}
constexpr uint32_t kTemp = word4("temp");
constexpr uint32_t kHold = word4("hold");
constexpr uint32_t kList = word4("list");
constexpr uint32_t kUnli = word4("unli");
constexpr uint32_t kSten = word4("sten");
// "set_": '_' | 0x20 is 0x7f, so the word's head is compared as such.
constexpr uint32_t kSet_ = word4("set\x7f");
constexpr uint32_t kConf = word4("conf");
constexpr uint64_t kTemporar = word4("temp") | static_cast<uint64_t>(word4("orar")) << 32;
constexpr uint64_t kAdvisory = word4("advi") | static_cast<uint64_t>(word4("sory")) << 32;
inline uint64_t word8(const unsigned char* w) {
  return word4(w) | static_cast<uint64_t>(word4(w + 4)) << 32;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

}  // namespace

std::string_view to_string(PgPin p) {
  return kNames[static_cast<size_t>(pin_index(p))];
}

int pin_index(PgPin p) {
  int i = 0;
  for (auto v = static_cast<unsigned>(p); v > 1; v >>= 1) ++i;
  return i;
}

std::string pins_to_string(uint8_t pins) {
  std::string out;
  for (int i = 0; i < kPgPinKinds; ++i) {
    if ((pins & (1u << i)) == 0) continue;
    if (!out.empty()) out += ',';
    out += kNames[static_cast<size_t>(i)];
  }
  return out;
}

namespace {

// Whether the word has "advisory_" in it, in any case: only a '_' with
// eight bytes before it can end one, and those eight are compared as one
// integer, folded as in word_bits (scan_words_reference shares this).
inline bool has_advisory(const unsigned char* word, size_t len) {
  const unsigned char* const end = word + len;
  for (const unsigned char* u = word + 8; u < end; ++u) {
    u = static_cast<const unsigned char*>(std::memchr(u, '_', static_cast<size_t>(end - u)));
    if (u == nullptr) return false;
    if ((word8(u - 8) | 0x2020202020202020ull) == kAdvisory) return true;
  }
  return false;
}

// What one word (an identifier run of `len` >= 1 bytes) adds to scan_words'
// bits. c | 0x20 is the lower case of a letter and equals a lower-case
// letter only for that letter in either case ('_' | 0x20 is 0x7f, which no
// letter gives).
inline uint8_t word_bits(const unsigned char* word, size_t len, uint8_t found) {
  if (len < 4) return 0;
  uint8_t bits = 0;
  const uint32_t head = word4(word) | 0x20202020u;
  if (len == 4) {
    if (head == kTemp || head == kHold) bits |= kWordState;
  } else if (len == 6) {
    if (head == kList && (word[4] | 0x20) == 'e' && (word[5] | 0x20) == 'n') bits |= kWordListen;
  } else if (len == 8) {
    if (head == kUnli && (word4(word + 4) | 0x20202020u) == kSten) bits |= kWordListen;
  } else if (len == 9) {
    const uint64_t v = head | static_cast<uint64_t>(word4(word + 4)) << 32;
    if ((v | 0x2020202020202020ull) == kTemporar && (word[8] | 0x20) == 'y') bits |= kWordState;
  } else if (len == 10) {
    if (head == kSet_ && (word4(word + 4) | 0x20202020u) == kConf && (word[8] | 0x20) == 'i' &&
        (word[9] | 0x20) == 'g') {
      bits |= kWordSetConfig;
    }
  }
  // pg_advisory_lock, pg_try_advisory_lock_shared, ... (and wrappers).
  if (len >= 9 && ((found | bits) & kWordState) == 0 && has_advisory(word, len)) {
    bits |= kWordState;
  }
  return bits;
}

#if defined(__SSE2__)
// Bit i set when byte i of the 16 at p is an identifier byte (as kIdent).
// Signed compares: bytes >= 0x80 are negative, so they are neither letters
// nor digits here and count through `high`.
uint32_t ident_bits16(const unsigned char* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i folded = _mm_or_si128(v, _mm_set1_epi8(0x20));
  const __m128i letter = _mm_and_si128(_mm_cmpgt_epi8(folded, _mm_set1_epi8('a' - 1)),
                                       _mm_cmplt_epi8(folded, _mm_set1_epi8('z' + 1)));
  const __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)),
                                      _mm_cmplt_epi8(v, _mm_set1_epi8('9' + 1)));
  const __m128i sign =
      _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('_')), _mm_cmpeq_epi8(v, _mm_set1_epi8('$')));
  const __m128i high = _mm_cmplt_epi8(v, _mm_setzero_si128());
  return static_cast<uint32_t>(
      _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(letter, digit), _mm_or_si128(sign, high))));
}

// Whether the text may hold a word scan_words looks for: each has one of
// "tem" (temp, temporary), "hol" (hold), "lis" (listen, unlisten), "_co"
// (set_config) or "ry_" (advisory_), folded with | 0x20 as word_bits folds
// ('_' becomes 0x7f). Most statements (SELECT c FROM t WHERE id = $1) have
// none, and this look costs a third of the word scan. 16 starting positions
// at a time; the last ones from a zero-padded copy (0 folds to ' ', in no
// trigram).
bool may_have_words(const unsigned char* p, size_t n) {
  const __m128i fold = _mm_set1_epi8(0x20);
  auto block = [&](const unsigned char* q) {
    const __m128i a = _mm_or_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)), fold);
    const __m128i b = _mm_or_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 1)), fold);
    const __m128i c = _mm_or_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 2)), fold);
    auto tri = [&](char x, char y, char z) {
      return _mm_and_si128(
          _mm_and_si128(_mm_cmpeq_epi8(a, _mm_set1_epi8(x)), _mm_cmpeq_epi8(b, _mm_set1_epi8(y))),
          _mm_cmpeq_epi8(c, _mm_set1_epi8(z)));
    };
    const __m128i hit = _mm_or_si128(
        _mm_or_si128(_mm_or_si128(tri('t', 'e', 'm'), tri('h', 'o', 'l')), tri('l', 'i', 's')),
        _mm_or_si128(tri('\x7f', 'c', 'o'), tri('r', 'y', '\x7f')));
    return _mm_movemask_epi8(hit) != 0;
  };
  size_t i = 0;
  for (; i + 18 <= n; i += 16) {
    if (block(p + i)) return true;
  }
  if (n - i < 3) return false;
  unsigned char tail[32] = {};
  std::memcpy(tail, p + i, n - i);  // at most 17 bytes: starting positions 0..14
  return block(tail);
}
#endif

}  // namespace

uint8_t scan_words_reference(std::string_view sql) {
  // One byte at a time: the definition scan_words must agree with.
  uint8_t found = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(sql.data());
  const auto* const end = p + sql.size();
  while (p < end) {
    if (!kIdent[*p]) {
      ++p;
      continue;
    }
    const auto* const word = p;
    while (p < end && kIdent[*p]) ++p;
    found |= word_bits(word, static_cast<size_t>(p - word), found);
  }
  return found;
}

uint8_t scan_words(std::string_view sql) {
  // This runs on every simple query and Parse in transaction mode: each
  // block of 16 bytes becomes one bit mask of identifier bytes, words are
  // the runs of ones in it (found with count-trailing-zeros, a word may
  // run on into the next block), and words are compared as integers. The
  // last, short block is read from a zero-padded copy (0 is no identifier
  // byte, so it ends a word there).
#if defined(__SSE2__)
  uint8_t found = 0;
  const auto* const p = reinterpret_cast<const unsigned char*>(sql.data());
  const size_t n = sql.size();
  if (!may_have_words(p, n)) return 0;
  constexpr size_t kNone = static_cast<size_t>(-1);
  size_t word = kNone;  // where the word being read started
  for (size_t b = 0; b < n; b += 16) {
    uint32_t ident = 0;
    if (n - b >= 16) {
      ident = ident_bits16(p + b);
    } else {
      unsigned char tail[16] = {};
      std::memcpy(tail, p + b, n - b);
      ident = ident_bits16(tail);
    }
    const uint32_t gap = ~ident & 0xffffu;
    uint32_t pos = 0;
    while (pos < 16) {
      if (word == kNone) {
        const uint32_t starts = ident >> pos;
        if (starts == 0) break;
        pos += static_cast<uint32_t>(__builtin_ctz(starts));
        word = b + pos;
      }
      const uint32_t ends = gap >> pos;
      if (ends == 0) break;  // the word runs on into the next block
      pos += static_cast<uint32_t>(__builtin_ctz(ends));
      if (b + pos - word >= 4) found |= word_bits(p + word, b + pos - word, found);
      word = kNone;
    }
  }
  if (word != kNone && n - word >= 4) found |= word_bits(p + word, n - word, found);
  return found;
#else
  return scan_words_reference(sql);
#endif
}

bool may_hold_state(std::string_view sql) {
  return (scan_words(sql) & kWordState) != 0;
}

bool tag_may_change_state(std::string_view tag) {
  // Every tag below starts with C, D or P: SELECT, INSERT, UPDATE, ... stop here.
  if (tag.empty() || (tag[0] != 'C' && tag[0] != 'D' && tag[0] != 'P')) return false;
  static constexpr std::string_view kTags[] = {
      "PREPARE",    "DEALLOCATE", "DISCARD",       "CREATE TABLE", "CREATE VIEW", "CREATE SEQUENCE",
      "DROP TABLE", "DROP VIEW",  "DROP SEQUENCE", "CLOSE CURSOR", "DROP SCHEMA", "DROP OWNED"};
  for (std::string_view t : kTags) {
    if (starts_with(tag, t)) return true;
  }
  return false;
}

std::optional<uint8_t> pins_from_row(const std::vector<std::string>& row) {
  if (row.size() != 4) return std::nullopt;
  uint8_t pins = 0;
  for (size_t i = 0; i < row.size(); ++i) {
    if (row[i] == "t") {
      pins |= static_cast<uint8_t>(1u << i);
    } else if (row[i] != "f") {
      return std::nullopt;
    }
  }
  return pins;
}

}  // namespace sqlmux::pool
