// SASLprep for SCRAM passwords. See saslprep.h.
#include "protocol/pg/saslprep.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace sqlmux::pg::auth {

namespace {

struct Range {
  uint32_t first;
  uint32_t last;
};
struct CombiningRange {
  uint32_t first;
  uint32_t last;
  uint8_t ccc;
};
struct Composition {
  uint32_t first;
  uint32_t second;
  uint32_t composed;
};

#include "protocol/pg/saslprep_tables.inc"

template <size_t N>
bool in(const Range (&table)[N], uint32_t cp) {
  const auto* it = std::upper_bound(std::begin(table), std::end(table), cp,
                                    [](uint32_t v, const Range& r) { return v < r.first; });
  return it != std::begin(table) && cp <= (it - 1)->last;
}

uint8_t combining_class(uint32_t cp) {
  const auto* it =
      std::upper_bound(std::begin(kCombining), std::end(kCombining), cp,
                       [](uint32_t v, const CombiningRange& r) { return v < r.first; });
  if (it == std::begin(kCombining) || cp > (it - 1)->last) return 0;
  return (it - 1)->ccc;
}

// Hangul syllables (Unicode ch. 3.12), composed and decomposed by rule.
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr uint32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

// Strict UTF-8 (no overlongs, surrogates or values past U+10FFFF).
bool decode_utf8(std::string_view s, std::vector<uint32_t>& out) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const uint8_t b = *p;
    uint32_t cp = 0;
    size_t n = 0;
    uint32_t min = 0;
    if (b < 0x80) {
      cp = b;
    } else if (b >= 0xC2 && b <= 0xDF) {
      cp = b & 0x1F, n = 1, min = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
      cp = b & 0x0F, n = 2, min = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
      cp = b & 0x07, n = 3, min = 0x10000;
    } else {
      return false;
    }
    if (static_cast<size_t>(end - p) < n + 1) return false;
    for (size_t i = 1; i <= n; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    out.push_back(cp);
    p += n + 1;
  }
  return true;
}

void encode_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const auto* it = std::lower_bound(std::begin(kDecompKeys), std::end(kDecompKeys), cp);
  if (it == std::end(kDecompKeys) || *it != cp) {
    out.push_back(cp);
    return;
  }
  const uint32_t ref = kDecompRefs[it - std::begin(kDecompKeys)];
  const uint32_t off = ref & 0xFFFFFF;
  out.insert(out.end(), kDecompData + off, kDecompData + off + (ref >> 24));
}

// The primary composite of (a, b), or 0.
uint32_t compose_pair(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const Composition key{a, b, 0};
  const auto* it =
      std::lower_bound(std::begin(kCompositions), std::end(kCompositions), key,
                       [](const Composition& x, const Composition& y) {
                         return x.first != y.first ? x.first < y.first : x.second < y.second;
                       });
  if (it != std::end(kCompositions) && it->first == a && it->second == b) return it->composed;
  return 0;
}

std::vector<uint32_t> nfkc(const std::vector<uint32_t>& in) {
  std::vector<uint32_t> d;
  d.reserve(in.size());
  for (uint32_t cp : in) decompose(cp, d);
  // Canonical ordering: a stable sort of each run of non-starters.
  for (size_t i = 0; i < d.size();) {
    if (combining_class(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && combining_class(d[j]) != 0) ++j;
    std::stable_sort(
        d.begin() + static_cast<std::ptrdiff_t>(i), d.begin() + static_cast<std::ptrdiff_t>(j),
        [](uint32_t a, uint32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // Canonical composition.
  std::vector<uint32_t> out;
  out.reserve(d.size());
  size_t starter = SIZE_MAX;  // index in `out` of the last starter
  int last_ccc = -1;          // class of the last character after it (-1: none)
  for (uint32_t cp : d) {
    const int ccc = combining_class(cp);
    if (starter != SIZE_MAX && (last_ccc == -1 || (last_ccc != 0 && last_ccc < ccc))) {
      if (const uint32_t c = compose_pair(out[starter], cp); c != 0) {
        out[starter] = c;
        continue;
      }
    }
    if (ccc == 0) {
      starter = out.size();
      last_ccc = -1;
    } else {
      last_ccc = ccc;
    }
    out.push_back(cp);
  }
  return out;
}

}  // namespace

SaslPrep saslprep(std::string_view password, std::string& out) {
  if (std::all_of(password.begin(), password.end(),
                  [](char c) { return (static_cast<uint8_t>(c) & 0x80) == 0; })) {
    out.assign(password);
    return SaslPrep::Success;
  }
  std::vector<uint32_t> chars;
  if (!decode_utf8(password, chars)) return SaslPrep::InvalidUtf8;
  // 1. Map.
  std::vector<uint32_t> mapped;
  mapped.reserve(chars.size());
  for (uint32_t cp : chars) {
    if (in(kNonAsciiSpace, cp)) {
      mapped.push_back(0x20);
    } else if (!in(kMappedToNothing, cp)) {
      mapped.push_back(cp);
    }
  }
  if (mapped.empty()) return SaslPrep::Prohibited;  // no empty password
  // 2. Normalize.
  const std::vector<uint32_t> normal = nfkc(mapped);
  // 3. Prohibit and 4. bidi: PostgreSQL checks the mapped string, not the
  // normalized one; so does this.
  bool rand_al = false;
  for (uint32_t cp : mapped) {
    if (in(kProhibited, cp) || in(kUnassigned, cp)) return SaslPrep::Prohibited;
    rand_al = rand_al || in(kRandAL, cp);
  }
  if (rand_al) {
    if (std::any_of(mapped.begin(), mapped.end(), [](uint32_t cp) { return in(kL, cp); }) ||
        !in(kRandAL, mapped.front()) || !in(kRandAL, mapped.back())) {
      return SaslPrep::Prohibited;
    }
  }
  out.clear();
  for (uint32_t cp : normal) encode_utf8(cp, out);
  return SaslPrep::Success;
}

std::string scram_password(std::string_view password) {
  std::string prepared;
  if (saslprep(password, prepared) == SaslPrep::Success) return prepared;
  return std::string(password);
}

}  // namespace sqlmux::pg::auth
