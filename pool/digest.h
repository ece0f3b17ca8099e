// Query digests (SHOW QUERIES): a statement's text normalized - literals
// replaced by '?', comments dropped, whitespace collapsed, lists of literals
// folded - and per-digest counters in a bounded table. Pure: no clocks, no
// threads; callers pass times in and lock a table themselves (one per worker).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sqlmux::pool {

enum class SqlDialect : uint8_t {
  // '...' (E'...' with backslash escapes), $$...$$ / $tag$...$tag$, "..." an
  // identifier, nested /* */ comments, $1 parameters kept.
  PostgreSQL,
  // '...' and "..." strings with backslash escapes, `...` identifiers kept,
  // # and -- comments.
  MySQL,
};

// The longest normalized text kept; longer ones end with "...".
constexpr size_t kMaxDigestText = 1024;

// Writes the normalized text of `sql` to `out` (cleared first). Literals
// (numbers, strings, dollar-quoted strings, X'..'/B'..'/E'..' forms) become
// '?'; a run of literals separated by commas becomes one '?' (IN (1, 2, 3)
// -> IN (?)); comments are dropped, whitespace (and control bytes) becomes
// one blank; identifiers and keywords keep their case. Never reads past
// `sql`; any bytes are accepted.
void normalize_sql(std::string_view sql, SqlDialect dialect, std::string& out);

// 64-bit FNV-1a.
[[nodiscard]] uint64_t digest_hash(std::string_view s, uint64_t seed = 14695981039346656037ULL);

// Latency sketch: microseconds in log buckets, 8 per power of two (values
// below 8 exact). A quantile is reported as the middle of its bucket: at
// most 1/16 (6.25%) from the true sample value.
class LatencySketch {
 public:
  static constexpr size_t kBuckets = 8 + 37 * 8;  // up to 2^40 us
  void add(uint64_t us);
  void merge(const LatencySketch& o);
  // The q-quantile (0 < q <= 1) in microseconds; 0 when empty.
  [[nodiscard]] uint64_t quantile(double q) const;
  [[nodiscard]] static size_t bucket_of(uint64_t us);
  [[nodiscard]] static uint64_t bucket_middle(size_t b);

 private:
  std::array<uint32_t, kBuckets> counts_{};
  uint64_t total_ = 0;
};

struct DigestStats {
  uint64_t calls = 0;
  uint64_t errors = 0;
  uint64_t rows = 0;
  uint64_t total_us = 0;
  uint64_t max_us = 0;
  LatencySketch latency;
  void add(uint64_t us, uint64_t rows, bool error);
  void merge(const DigestStats& o);
};

struct DigestRow {
  std::string protocol;  // "postgresql" / "mysql"
  std::string pool;
  std::string user;
  std::string text;  // normalized
  uint64_t id = 0;   // digest_hash(text)
  DigestStats stats;
};

// Digests of one worker (or a merge of several), at most `capacity`: when a
// new one arrives in a full table the tenth with the least total time goes
// (the top `capacity` by total time stay, as near as that allows).
class DigestTable {
 public:
  explicit DigestTable(size_t capacity = 1000) : capacity_(capacity == 0 ? 1 : capacity) {}
  void set_capacity(size_t capacity) { capacity_ = capacity == 0 ? 1 : capacity; }
  [[nodiscard]] size_t capacity() const { return capacity_; }
  // `scope` is protocol, pool and user (see scope_key()); `text` normalized.
  void record(std::string_view protocol, std::string_view pool, std::string_view user,
              std::string_view text, uint64_t us, uint64_t rows, bool error);
  void clear() { entries_.clear(); }
  [[nodiscard]] size_t size() const { return entries_.size(); }
  [[nodiscard]] uint64_t evicted() const { return evicted_; }
  // Adds this table's rows into `into` (merge on read).
  void collect(std::vector<DigestRow>& into) const;

 private:
  void evict();
  size_t capacity_;
  uint64_t evicted_ = 0;
  std::unordered_map<uint64_t, DigestRow> entries_;
};

// Rows merged by (protocol, pool, user, text), ordered by total time
// (highest first), at most `limit`.
[[nodiscard]] std::vector<DigestRow> merge_digests(std::vector<DigestRow> rows, size_t limit);

// The rows count of a PostgreSQL CommandComplete tag ("SELECT 5",
// "INSERT 0 3", "UPDATE 2"): its last number; 0 when it has none.
[[nodiscard]] uint64_t command_tag_rows(std::string_view tag);

}  // namespace sqlmux::pool
