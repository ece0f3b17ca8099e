// Named prepared statements in transaction mode.
//
// A client's statement name maps to a server-side name derived from the
// query text and parameter types, so that every client with the same
// statement shares one preparation per backend. Each backend remembers which
// server-side names it holds (LRU, bounded); a statement a backend lacks is
// prepared there just before the client's message that needs it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sqlmux::pool {

// set_config(name, value, is_local) calls in SQL text: session settings a
// SELECT changes, which no command tag reports. `names`: those given as
// string literals (folded to lower case); `unknown`: a call names its
// setting some other way (a parameter, an expression), so it cannot be
// followed and its connection must be reset before another client.
struct SetConfigCalls {
  std::vector<std::string> names;
  bool unknown = false;
  [[nodiscard]] bool empty() const { return names.empty() && !unknown; }
};

struct StatementDef {
  std::string server_name;  // "sqlmux_<32 hex>"
  std::string query;
  std::vector<uint32_t> param_types;
  // A LISTEN or UNLISTEN statement: its op, encoded (pool/pg/listen.h);
  // empty for any other statement.
  std::string listen;
  SetConfigCalls set_config;  // what its execution may set (read back after)
};
using StatementRef = std::shared_ptr<const StatementDef>;

// "sqlmux_" + 128 bits of SHA-256(query, types, generation), in hex (39
// characters, inside PostgreSQL's 63-byte identifier limit). `generation`
// is the pool's schema generation (StaleStatements::generation()): after
// DDL the same text names a new server statement, prepared afresh, while
// clients that prepared it before keep theirs. Generation 0 hashes only
// the query and the types.
[[nodiscard]] std::string server_statement_name(std::string_view query,
                                                const std::vector<uint32_t>& types,
                                                uint64_t generation = 0);
[[nodiscard]] StatementRef make_statement(std::string_view query, std::vector<uint32_t> types,
                                          uint64_t generation = 0);

// Hashes std::string and std::string_view alike, so that lookups by a view
// into a message need no temporary string.
struct NameHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// A client's named statements: its name -> the shared definition, and the
// pool's invalidation epoch when the client prepared it (a statement whose
// plan went stale since fails as it would on PostgreSQL, until the client
// prepares it again).
class ClientStatements {
 public:
  struct Entry {
    StatementRef def;
    uint64_t epoch = 0;
  };
  [[nodiscard]] const Entry* find(std::string_view name) const;
  void add(std::string_view name, StatementRef def, uint64_t epoch);
  bool remove(std::string_view name);
  void clear() { map_.clear(); }
  [[nodiscard]] size_t size() const { return map_.size(); }
  // f(name, entry) for each statement, in no particular order.
  template <typename F>
  void for_each(F&& f) const {
    for (const auto& [name, e] : map_) f(name, e);
  }

 private:
  std::unordered_map<std::string, Entry, NameHash, std::equal_to<>> map_;
};

// The server-side names one backend has prepared, least recently used first.
class BackendStatements {
 public:
  explicit BackendStatements(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}
  // True when present; marks it most recently used.
  bool touch(const std::string& name);
  // When it was prepared here (the pool's invalidation epoch at the time).
  [[nodiscard]] uint64_t epoch(const std::string& name) const;
  void set_epoch(const std::string& name, uint64_t epoch);
  [[nodiscard]] bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // Adds a name; returns the name evicted to make room, if any.
  std::optional<std::string> insert(const std::string& name);
  void erase(const std::string& name);
  void clear();
  [[nodiscard]] size_t size() const { return index_.size(); }
  [[nodiscard]] size_t capacity() const { return capacity_; }

 private:
  size_t capacity_;
  struct Slot {
    std::list<std::string>::iterator it;
    uint64_t epoch = 0;
  };
  std::list<std::string> lru_;  // front = least recently used
  std::unordered_map<std::string, Slot> index_;
};

// Server-side statements whose preparation went stale: DDL changed a
// result type (0A000) or made the statement fail analysis (an error of
// class 42 when the server revalidated it at a Bind or Describe). Each
// backend that prepared one before its invalidation closes and prepares it
// again on next use, and a Parse of its text is sent to the server again
// rather than answered from the old preparation. Shared by all workers of
// a pool.
class StaleStatements {
 public:
  // The schema generation that names statements prepared now (see
  // server_statement_name): bumped when a transaction that ran DDL
  // (ALTER, CREATE, DROP, ...) ends on one of the pool's connections.
  [[nodiscard]] uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  void schema_changed() { generation_.fetch_add(1, std::memory_order_acq_rel); }
  // The epoch a statement prepared now is stamped with.
  [[nodiscard]] uint64_t current() const { return epoch_.load(std::memory_order_acquire); }
  // True when `name`, prepared at `prepared_epoch`, was invalidated since.
  [[nodiscard]] bool stale(const std::string& name, uint64_t prepared_epoch) const;
  // A backend's copy of `name`, prepared there at `copy_epoch`, failed with
  // a stale plan. Starts a new epoch unless an invalidation after
  // `copy_epoch` already covers that copy (a late report of the same schema
  // change, from a backend that had not run it since: bumping again would
  // fail statements prepared after the change). True when it started one.
  bool invalidate(const std::string& name, uint64_t copy_epoch);

 private:
  std::atomic<uint64_t> epoch_{0};
  std::atomic<uint64_t> generation_{0};
  mutable std::mutex mu_;
  std::unordered_map<std::string, uint64_t> invalidated_at_;
};

// What the backend owes the client, one entry per request message, in
// order. Lets sqlmux drop replies to messages it injected (a Parse the
// client did not send) and add replies to messages it answered itself (a
// Parse the backend already had), each at its place in the stream.
class ResponseTracker {
 public:
  enum class Kind : uint8_t {
    Parse,     // ParseComplete
    Bind,      // BindComplete
    Describe,  // [ParameterDescription] RowDescription | NoData
    Execute,   // ... CommandComplete | EmptyQueryResponse | PortalSuspended
    Close,     // CloseComplete
    Sync,      // ReadyForQuery
    Query,     // a simple-query cycle, up to ReadyForQuery
    Function,  // FunctionCallResponse, ReadyForQuery
  };
  enum class Action : uint8_t {
    Forward,    // the client asked; relay the reply
    Swallow,    // sqlmux injected the request; drop the reply
    Synthetic,  // sqlmux answers: send `reply` when its turn comes
  };
  struct Entry {
    Kind kind;
    Action action;
    std::string reply;          // Synthetic: the bytes to send
    std::string stmt;           // Parse: the server-side name it creates
    std::string client_stmt;    // Parse: the client's name for it
    bool append_ready = false;  // Synthetic: ReadyForQuery follows, with the status of its turn
    // Query, Execute: the LISTEN/UNLISTEN statements it runs, encoded
    // (pool/pg/listen.h); noted as they complete (LISTEN fan-out).
    std::string listen;
  };

  // What to do with one message from the backend.
  struct Verdict {
    bool forward = true;      // relay it to the client
    bool completes = false;   // it ends the head request
    bool error_skip = false;  // an error in the extended protocol: skip to Sync
  };

  // Queues what a request owes. While the server skips messages after an
  // error (until the next Sync), requests other than Sync owe nothing:
  // push() then drops them and returns false.
  bool push(Entry e);
  // The same for a request whose reply is relayed as it is (Action::Forward,
  // nothing else set): the common case, which moves no strings.
  bool push_plain(Kind k);
  // A Bind relayed as it is, remembering the server-side statement it names.
  bool push_bind(std::string_view stmt);
  [[nodiscard]] bool skipping() const { return skipping_; }

  // Recording: a copy of every entry pushed from start_recording() until a
  // Sync is pushed (then complete) or the recording is abandoned (a
  // request that cannot be replayed: Parse, Query, synthetic replies...).
  // Lets sqlmux replay a failed segment once, owing the same replies.
  void start_recording();
  void stop_recording() { recording_ = false; }
  [[nodiscard]] bool recording() const { return recording_; }
  [[nodiscard]] bool recorded_complete() const { return recorded_complete_; }
  // The segment describes its portal before executing it, so the client
  // learns the row shape from the replay itself.
  [[nodiscard]] bool recorded_describes() const { return recorded_describes_; }
  [[nodiscard]] std::span<const Entry> recorded() const { return {recorded_.data(), recorded_n_}; }
  void clear_recording();
  [[nodiscard]] bool empty() const { return count_ == 0; }
  [[nodiscard]] size_t size() const { return count_; }
  [[nodiscard]] const Entry* head() const { return count_ == 0 ? nullptr : &slots_[head_]; }
  void clear() {
    while (count_ > 0) pop_front();
    skipping_ = false;
    clear_recording();
  }

  // Classifies a backend message by its type byte (no state change).
  [[nodiscard]] Verdict classify(char type) const;
  // True when a message of this type ends the head request; the caller
  // waits for such a message to arrive whole before completing it.
  [[nodiscard]] bool would_complete(char type) const { return classify(type).completes; }

  // Pops the head after its reply (or an error) arrived. With error_skip,
  // also drops the requests the server skips up to the next Sync (and, when
  // no Sync is queued yet, those pushed until one is). The failed head and
  // every dropped Parse or Close are reported through `dropped`, so that
  // the caller can undo its bookkeeping for them.
  void complete(bool error_skip, std::vector<Entry>* dropped);
  // Pops and returns the synthetic replies now at the head, in order;
  // `tx_status` is the transaction status the server reported last.
  void take_synthetic(std::string& out, char tx_status);

 private:
  // The queue: a ring of reused slots (capacity a power of two), so that a
  // request's entry is neither allocated nor freed, and a popped slot's
  // strings keep their (small) storage for the next one.
  [[nodiscard]] Entry& front() { return slots_[head_]; }
  [[nodiscard]] const Entry& front() const { return slots_[head_]; }
  Entry& push_slot();
  void pop_front();
  bool may_push(Kind k);  // skipping and recording, before a push
  void record(const Entry& e);  // recording: note e, or stop recording
  std::vector<Entry> slots_;
  size_t head_ = 0;
  size_t count_ = 0;
  bool skipping_ = false;
  bool recording_ = false;
  bool recorded_complete_ = false;
  bool recorded_describes_ = false;
  bool recorded_executed_ = false;
  // The recorded entries are recorded_[0, recorded_n_); the slots past it
  // keep their strings' storage for the next recording.
  std::vector<Entry> recorded_;
  size_t recorded_n_ = 0;
};

// SQL the client sends that changes its prepared statements:
// "DEALLOCATE [PREPARE] name" / "DEALLOCATE [PREPARE] ALL" / "DISCARD ALL".
struct DeallocateCommand {
  enum class Kind { None, One, All, DiscardAll } kind = Kind::None;
  std::string name;
};
[[nodiscard]] DeallocateCommand parse_deallocate(std::string_view sql);

// "SET [SESSION] name ..." / "RESET name" / "RESET ALL" at the start of a
// simple query: which session setting it changes. SET/RESET ROLE is the
// setting "role", SET/RESET SESSION AUTHORIZATION "session_authorization".
// SET SESSION CHARACTERISTICS AS TRANSACTION is default_transaction_isolation
// (with `characteristics`). LOCAL settings and SET TRANSACTION / CONSTRAINTS
// are not reported (kind None).
struct SetCommand {
  enum class Kind { None, Set, Reset, ResetAll } kind = Kind::None;
  std::string name;
  // SET SESSION CHARACTERISTICS AS TRANSACTION ...: `name` is
  // default_transaction_isolation, and default_transaction_read_only and
  // default_transaction_deferrable may change too.
  bool characteristics = false;
};
[[nodiscard]] SetCommand parse_set(std::string_view sql);

// The set_config() calls in `sql` (see SetConfigCalls).
[[nodiscard]] SetConfigCalls find_set_config(std::string_view sql);

// The statements of a simple query, split at semicolons outside quotes,
// dollar quotes and comments.
[[nodiscard]] std::vector<std::string_view> split_statements(std::string_view sql);

}  // namespace sqlmux::pool
