#include "pool/digest.h"

#include <algorithm>
#include <bit>
#include <functional>
#include <tuple>

namespace sqlmux::pool {
namespace {

// Byte classes, looked up once per byte on the hot path.
enum : uint8_t { kIdentStart = 1, kIdentChar = 2, kBlank = 4 };
constexpr std::array<uint8_t, 256> make_classes() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    const bool start = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
    const bool part = start || (c >= '0' && c <= '9') || c == '$';
    t[static_cast<size_t>(c)] =
        static_cast<uint8_t>((start ? kIdentStart : 0) | (part ? kIdentChar : 0) |
                             (c <= 0x20 || c == 0x7f ? kBlank : 0));
  }
  return t;
}
constexpr std::array<uint8_t, 256> kClass = make_classes();

bool ident_start(unsigned char c) {
  return (kClass[c] & kIdentStart) != 0;
}
bool ident_char(unsigned char c) {
  return (kClass[c] & kIdentChar) != 0;
}
bool digit(unsigned char c) {
  return c >= '0' && c <= '9';
}
bool hexdigit(unsigned char c) {
  return digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool blank(unsigned char c) {
  return (kClass[c] & kBlank) != 0;  // whitespace and control bytes
}

class Normalizer {
 public:
  Normalizer(std::string_view s, SqlDialect d, std::string& out) : s_(s), d_(d), out_(out) {}

  void run() {
    out_.clear();
    out_.reserve(std::min(s_.size(), kMaxDigestText) + 8);
    while (i_ < s_.size() && out_.size() < kMaxDigestText) step();
    while (!out_.empty() && (out_.back() == ' ' || out_.back() == ';')) out_.pop_back();
    if (out_.size() >= kMaxDigestText) {
      out_.resize(kMaxDigestText);
      out_ += "...";
    }
  }

 private:
  void step() {
    const auto c = static_cast<unsigned char>(s_[i_]);
    if (blank(c)) {
      ++i_;
      space_ = true;
      return;
    }
    if (c == '-' && i_ + 1 < s_.size() && s_[i_ + 1] == '-') {
      skip_line();
      return;
    }
    if (c == '#' && d_ == SqlDialect::MySQL) {
      skip_line();
      return;
    }
    if (c == '/' && i_ + 1 < s_.size() && s_[i_ + 1] == '*') {
      skip_block_comment();
      return;
    }
    if (c == '\'') {
      skip_quoted('\'', d_ == SqlDialect::MySQL);
      literal();
      return;
    }
    if (c == '"') {
      if (d_ == SqlDialect::MySQL) {
        skip_quoted('"', true);
        literal();
      } else {
        copy_quoted('"');
      }
      return;
    }
    if (c == '`' && d_ == SqlDialect::MySQL) {
      copy_quoted('`');
      return;
    }
    if (c == '$' && d_ == SqlDialect::PostgreSQL) {
      if (dollar_string()) return;
      // $1: a parameter, kept.
      size_t j = i_ + 1;
      while (j < s_.size() && digit(static_cast<unsigned char>(s_[j]))) ++j;
      emit(s_.substr(i_, j - i_));
      i_ = j;
      return;
    }
    if (digit(c) ||
        (c == '.' && i_ + 1 < s_.size() && digit(static_cast<unsigned char>(s_[i_ + 1])))) {
      skip_number();
      literal();
      return;
    }
    if (ident_start(c)) {
      // X'..', B'..', E'..', N'..', U&'..': one literal.
      const size_t n = s_.size();
      if (i_ + 1 < n && s_[i_ + 1] == '\'' &&
          (c == 'x' || c == 'X' || c == 'b' || c == 'B' || c == 'e' || c == 'E' || c == 'n' ||
           c == 'N')) {
        ++i_;
        skip_quoted('\'', d_ == SqlDialect::MySQL || c == 'e' || c == 'E');
        literal();
        return;
      }
      if ((c == 'u' || c == 'U') && d_ == SqlDialect::PostgreSQL && i_ + 2 < n &&
          s_[i_ + 1] == '&' && s_[i_ + 2] == '\'') {
        i_ += 2;
        skip_quoted('\'', false);
        literal();
        return;
      }
      size_t j = i_ + 1;
      while (j < n && ident_char(static_cast<unsigned char>(s_[j]))) ++j;
      emit_plain(s_.data() + i_, j - i_);  // (no blank in an identifier)
      i_ = j;
      return;
    }
    // Punctuation and operators, one byte at a time.
    emit_plain(s_.data() + i_, 1);
    ++i_;
  }

  bool at(std::string_view w) const { return s_.compare(i_, w.size(), w) == 0; }

  void skip_line() {
    while (i_ < s_.size() && s_[i_] != '\n') ++i_;
    space_ = true;
  }

  void skip_block_comment() {
    int depth = 1;
    const bool nests = d_ == SqlDialect::PostgreSQL;
    for (i_ += 2; i_ < s_.size() && depth > 0;) {
      if (nests && at("/*")) {
        ++depth;
        i_ += 2;
      } else if (at("*/")) {
        --depth;
        i_ += 2;
      } else {
        ++i_;
      }
    }
    space_ = true;
  }

  // From the opening quote at i_ past the closing one ('' doubled inside;
  // with backslashes, \x escapes one byte). Unterminated: to the end.
  void skip_quoted(char q, bool backslash) {
    for (++i_; i_ < s_.size();) {
      const char c = s_[i_];
      if (backslash && c == '\\') {
        i_ += 2;
      } else if (c == q) {
        if (i_ + 1 < s_.size() && s_[i_ + 1] == q) {
          i_ += 2;
        } else {
          ++i_;
          return;
        }
      } else {
        ++i_;
      }
    }
    i_ = s_.size();
  }

  // A quoted identifier, copied as it is (control bytes as blanks).
  void copy_quoted(char q) {
    const size_t start = i_;
    skip_quoted(q, false);
    emit(s_.substr(start, i_ - start));
  }

  // $$...$$ or $tag$...$tag$ at i_; false (nothing consumed) when it is none.
  bool dollar_string() {
    size_t j = i_ + 1;
    while (j < s_.size() && s_[j] != '$') {
      const auto c = static_cast<unsigned char>(s_[j]);
      if (!(ident_char(c) && c != '$') || (j == i_ + 1 && digit(c))) return false;
      ++j;
    }
    if (j >= s_.size()) return false;
    const std::string_view tag = s_.substr(i_, j - i_ + 1);
    const size_t end = s_.find(tag, j + 1);
    i_ = end == std::string_view::npos ? s_.size() : end + tag.size();
    literal();
    return true;
  }

  void skip_number() {
    const size_t n = s_.size();
    if (s_[i_] == '0' && i_ + 1 < n && (s_[i_ + 1] == 'x' || s_[i_ + 1] == 'X')) {
      i_ += 2;
      while (i_ < n && (hexdigit(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_')) ++i_;
      return;
    }
    while (i_ < n && (digit(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_')) ++i_;
    if (i_ < n && s_[i_] == '.') {
      ++i_;
      while (i_ < n && digit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    if (i_ < n && (s_[i_] == 'e' || s_[i_] == 'E')) {
      size_t j = i_ + 1;
      if (j < n && (s_[j] == '+' || s_[j] == '-')) ++j;
      if (j < n && digit(static_cast<unsigned char>(s_[j]))) {
        i_ = j;
        while (i_ < n && digit(static_cast<unsigned char>(s_[i_]))) ++i_;
      }
    }
  }

  // A '?' - unless it continues a list of literals ("?, ?" folds to "?").
  // A sign after an operator, '(' or ',' is the literal's ("+ -5" is "+ ?").
  void literal() {
    size_t k = out_.size();
    while (k > 0 && out_[k - 1] == ' ') --k;
    if (k > 0 && (out_[k - 1] == '-' || out_[k - 1] == '+')) {
      size_t m = k - 1;
      while (m > 0 && out_[m - 1] == ' ') --m;
      if (m > 0 && std::string_view("+-*/%=<>(,^|&").find(out_[m - 1]) != std::string_view::npos) {
        out_.resize(k - 1);
        space_ = k - 1 > m;  // the blank before the sign, if there was one
        while (!out_.empty() && out_.back() == ' ') out_.pop_back();
        if (k - 1 > m) space_ = true;
      }
    }
    k = out_.size();
    while (k > 0 && out_[k - 1] == ' ') --k;
    if (k > 0 && out_[k - 1] == ',') {
      size_t m = k - 1;
      while (m > 0 && out_[m - 1] == ' ') --m;
      if (m > 0 && out_[m - 1] == '?') {
        out_.resize(m);
        space_ = false;
        return;
      }
    }
    emit_plain("?", 1);
  }

  void emit_plain(const char* p, size_t n) {
    if (space_ && !out_.empty()) out_ += ' ';
    space_ = false;
    out_.append(p, n);
  }

  void emit(std::string_view tok) {
    if (space_ && !out_.empty()) out_ += ' ';
    space_ = false;
    for (char c : tok) out_ += blank(static_cast<unsigned char>(c)) ? ' ' : c;
  }

  std::string_view s_;
  SqlDialect d_;
  std::string& out_;
  size_t i_ = 0;
  bool space_ = false;
};

}  // namespace

void normalize_sql(std::string_view sql, SqlDialect dialect, std::string& out) {
  Normalizer(sql, dialect, out).run();
}

uint64_t digest_hash(std::string_view s, uint64_t seed) {
  uint64_t h = seed;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

size_t LatencySketch::bucket_of(uint64_t us) {
  if (us < 8) return static_cast<size_t>(us);
  const int o = 63 - std::countl_zero(us);  // >= 3
  const size_t b = 8 + static_cast<size_t>(o - 3) * 8 + ((us >> (o - 3)) & 7);
  return std::min(b, kBuckets - 1);
}

uint64_t LatencySketch::bucket_middle(size_t b) {
  if (b < 8) return b;
  const size_t o = (b - 8) / 8 + 3;
  const uint64_t sub = (b - 8) % 8;
  const uint64_t width = uint64_t{1} << (o - 3);
  return ((8 + sub) << (o - 3)) + width / 2;
}

void LatencySketch::add(uint64_t us) {
  ++counts_[bucket_of(us)];
  ++total_;
}

void LatencySketch::merge(const LatencySketch& o) {
  for (size_t b = 0; b < kBuckets; ++b) counts_[b] += o.counts_[b];
  total_ += o.total_;
}

uint64_t LatencySketch::quantile(double q) const {
  if (total_ == 0) return 0;
  // The smallest bucket holding the ceil(q * total)-th sample.
  auto rank = static_cast<uint64_t>(q * static_cast<double>(total_));
  if (static_cast<double>(rank) < q * static_cast<double>(total_)) ++rank;
  rank = std::clamp<uint64_t>(rank, 1, total_);
  uint64_t seen = 0;
  for (size_t b = 0; b < kBuckets; ++b) {
    seen += counts_[b];
    if (seen >= rank) return bucket_middle(b);
  }
  return bucket_middle(kBuckets - 1);
}

void DigestStats::add(uint64_t us, uint64_t r, bool error) {
  ++calls;
  if (error) ++errors;
  rows += r;
  total_us += us;
  max_us = std::max(max_us, us);
  latency.add(us);
}

void DigestStats::merge(const DigestStats& o) {
  calls += o.calls;
  errors += o.errors;
  rows += o.rows;
  total_us += o.total_us;
  max_us = std::max(max_us, o.max_us);
  latency.merge(o.latency);
}

namespace {
uint64_t scope_hash(std::string_view protocol, std::string_view pool, std::string_view user,
                    std::string_view text) {
  // (std::hash of a string_view reads 8 bytes at a time.)
  const std::hash<std::string_view> h;
  uint64_t v = h(text);
  for (std::string_view part : {protocol, pool, user}) v = (v ^ h(part)) * 0x9E3779B97F4A7C15ULL;
  return v;
}
}  // namespace

void DigestTable::record(std::string_view protocol, std::string_view pool, std::string_view user,
                         std::string_view text, uint64_t us, uint64_t rows, bool error) {
  uint64_t key = scope_hash(protocol, pool, user, text);
  for (;;) {
    auto it = entries_.find(key);
    if (it == entries_.end()) break;
    DigestRow& r = it->second;
    if (r.text == text && r.user == user && r.pool == pool && r.protocol == protocol) {
      r.stats.add(us, rows, error);
      return;
    }
    ++key;  // a collision: the next slot
  }
  if (entries_.size() >= capacity_) evict();
  DigestRow& r = entries_[key];
  r.protocol = protocol;
  r.pool = pool;
  r.user = user;
  r.text = text;
  r.id = digest_hash(text);
  r.stats.add(us, rows, error);
}

void DigestTable::evict() {
  // The tenth (at least one) with the least total time goes.
  std::vector<std::pair<uint64_t, uint64_t>> by_time;  // (total_us, key)
  by_time.reserve(entries_.size());
  for (const auto& [k, r] : entries_) by_time.emplace_back(r.stats.total_us, k);
  const size_t n = std::max<size_t>(1, entries_.size() / 10);
  std::nth_element(by_time.begin(), by_time.begin() + static_cast<std::ptrdiff_t>(n - 1),
                   by_time.end());
  for (size_t i = 0; i < n; ++i) entries_.erase(by_time[i].second);
  evicted_ += n;
}

void DigestTable::collect(std::vector<DigestRow>& into) const {
  for (const auto& [k, r] : entries_) into.push_back(r);
}

std::vector<DigestRow> merge_digests(std::vector<DigestRow> rows, size_t limit) {
  auto same = [](const DigestRow& a, const DigestRow& b) {
    return a.protocol == b.protocol && a.pool == b.pool && a.user == b.user && a.text == b.text;
  };
  std::sort(rows.begin(), rows.end(), [](const DigestRow& a, const DigestRow& b) {
    return std::tie(a.protocol, a.pool, a.user, a.text) <
           std::tie(b.protocol, b.pool, b.user, b.text);
  });
  std::vector<DigestRow> merged;
  for (auto& r : rows) {
    if (!merged.empty() && same(merged.back(), r)) {
      merged.back().stats.merge(r.stats);
    } else {
      merged.push_back(std::move(r));
    }
  }
  std::stable_sort(merged.begin(), merged.end(), [](const DigestRow& a, const DigestRow& b) {
    return a.stats.total_us > b.stats.total_us;
  });
  if (merged.size() > limit) merged.resize(limit);
  return merged;
}

uint64_t command_tag_rows(std::string_view tag) {
  const size_t sp = tag.rfind(' ');
  if (sp == std::string_view::npos) return 0;
  uint64_t v = 0;
  const std::string_view num = tag.substr(sp + 1);
  if (num.empty() || num.size() > 19) return 0;
  for (char c : num) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

}  // namespace sqlmux::pool
