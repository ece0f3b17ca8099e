// LISTEN and UNLISTEN in transaction mode without pinning (README "LISTEN
// and NOTIFY in transaction mode"): which channels a client's SQL asks
// for, the channels one client listens on, and who listens on what in a
// pool. The server runs each LISTEN/UNLISTEN as usual (its replies are the
// client's); sqlmux notes the ones that completed and, when their
// transaction commits, changes the client's set. Pure: no sockets, clocks
// or threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sqlmux::pool {

struct ListenOp {
  enum class Kind : char { Listen = 'L', Unlisten = 'U', UnlistenAll = '*' };
  Kind kind = Kind::Listen;
  std::string channel;  // as the server names it: folded or quoted, at most 63 bytes
  bool operator==(const ListenOp&) const = default;
};

// PostgreSQL's NAMEDATALEN - 1: longer identifiers are truncated.
inline constexpr size_t kMaxChannelLen = 63;

// A cheap first look: whether `sql` contains "listen" in any case (every
// LISTEN and UNLISTEN statement does).
[[nodiscard]] bool may_listen(std::string_view sql);
// One statement: LISTEN ch, UNLISTEN ch or UNLISTEN * (an optional ';',
// comments anywhere); nullopt for anything else.
[[nodiscard]] std::optional<ListenOp> parse_listen(std::string_view stmt);

// The LISTEN/UNLISTEN statements of a query's text, in order, appended to
// `out` in a compact form (a kind byte, the channel, a NUL each), which a
// request carries until its replies arrive. Returns how many.
size_t encode_listen_ops(std::string_view sql, std::string& out);
// Reads the op at `pos` of an encoded list and moves `pos` past it; false
// at the end (or on a malformed list).
[[nodiscard]] bool next_listen_op(std::string_view encoded, size_t& pos, ListenOp& op);

// The channels one client listens on.
class ListenSet {
 public:
  // Applies the ops of a committed transaction in order; `added` and
  // `removed` receive the channels that entered and left the set.
  void apply(const std::vector<ListenOp>& ops, std::vector<std::string>& added,
             std::vector<std::string>& removed);
  [[nodiscard]] bool empty() const { return channels_.empty(); }
  [[nodiscard]] size_t size() const { return channels_.size(); }
  [[nodiscard]] bool contains(const std::string& ch) const { return channels_.count(ch) != 0; }
  [[nodiscard]] const std::set<std::string>& channels() const { return channels_; }

 private:
  std::set<std::string> channels_;
};

// Who listens on what in one pool; a subscriber is a client on a worker.
class ListenRegistry {
 public:
  struct Subscriber {
    int worker = 0;
    uint64_t client = 0;
  };
  // True when the channel had no subscriber (the pool's listener
  // connection must LISTEN to it). Adding a subscriber twice is a no-op.
  bool add(const std::string& channel, Subscriber s);
  // True when the channel has no subscriber left (it must UNLISTEN).
  bool remove(const std::string& channel, uint64_t client);
  // nullptr when nobody listens on the channel.
  [[nodiscard]] const std::vector<Subscriber>* subscribers(const std::string& channel) const;
  [[nodiscard]] size_t channels() const { return map_.size(); }
  [[nodiscard]] size_t subscriptions() const { return subscriptions_; }
  [[nodiscard]] bool empty() const { return map_.empty(); }
  // Every channel, in no particular order.
  [[nodiscard]] std::vector<std::string> channel_names() const;
  // Every distinct subscriber once.
  [[nodiscard]] std::vector<Subscriber> all_subscribers() const;

 private:
  std::unordered_map<std::string, std::vector<Subscriber>> map_;
  size_t subscriptions_ = 0;
};

// A channel name as a quoted identifier for the listener connection's own
// LISTEN/UNLISTEN ("a""b").
[[nodiscard]] std::string quote_channel(std::string_view channel);

}  // namespace sqlmux::pool
