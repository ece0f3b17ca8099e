// MySQL / MariaDB prepared statements in transaction mode.
//
// A client's statement ids are sqlmux's own (MyClientStatements): a client
// keeps its ids whichever backend runs the statement. Each backend
// connection remembers what it has prepared (MyBackendStatements), keyed by
// schema and SQL text, so that every client with the same statement shares
// one preparation per backend; a statement a backend lacks is prepared
// there (COM_STMT_PREPARE) before the command that needs it, and every
// command with a statement id is rewritten to the backend's id
// (my::rewrite_statement_id).
//
// What MariaDB 10.11 does, which this follows (checked against the server):
//   - Unqualified names resolve against the default database at PREPARE
//     time: a statement prepared in schema a and executed after USE b still
//     reads a.t. Hence the schema in the key.
//   - Types sent with new-params-bound=1 stay bound to that statement on
//     that connection (COM_STMT_RESET keeps them); a later EXECUTE may send
//     none. A backend that has not seen the client's types needs an EXECUTE
//     that binds them (my::bind_param_types): must_bind().
//   - The id 0xFFFFFFFF (my::kLastPreparedStatement) in any command with a
//     statement id means the statement of the last successful
//     COM_STMT_PREPARE on the connection; a failed PREPARE, and closing that
//     statement, leave none (ER_UNKNOWN_STMT_HANDLER).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "protocol/mysql/command.h"

namespace sqlmux::pool {

// One statement a client prepared. Not shared between clients:
// param_types is this client's binding.
struct MyStatementDef {
  std::string sql;
  std::optional<std::string> schema;  // the client's default database at PREPARE time
  uint16_t num_params = 0;            // from COM_STMT_PREPARE_OK
  uint16_t num_columns = 0;
  // The types the client bound last (new-params-bound=1); empty until an
  // EXECUTE bound some. An EXECUTE without types means these.
  std::vector<my::ParamType> param_types;
  std::string key;  // statement_key(schema, sql): its name in MyBackendStatements
};

// What a backend's statements are keyed by: the schema, a NUL (which no
// schema name contains), the SQL text.
[[nodiscard]] std::string statement_key(const std::optional<std::string>& schema,
                                        std::string_view sql);
// A definition with its key filled in.
[[nodiscard]] std::shared_ptr<MyStatementDef> make_statement_def(std::string_view sql,
                                                                 std::optional<std::string> schema,
                                                                 uint16_t num_params,
                                                                 uint16_t num_columns);

// A client connection's statements by the ids sqlmux gave it.
//
// kLastPreparedStatement: find() and remove() resolve it as the server does
// (the statement of the last successful add(); none after a
// prepare_failed() or once that statement is removed). The command sent to
// a backend always carries the backend's real id, since that backend's own
// "last prepared" may be another statement (one sqlmux prepared there, or
// none when the PREPARE was answered without it). Exception for pipelining
// (MariaDB's execute-direct sends PREPARE and EXECUTE(-1) together): while
// the client's PREPARE is in flight on a backend, the commands after it
// reach that backend with -1 as is, and mean the right statement there.
class MyClientStatements {
 public:
  // Registers a prepared statement; returns its client id: 1, 2, 3, ...
  // never reused on this connection, never 0 or kLastPreparedStatement.
  // 0 once the ids are used up (2^32 - 2 statements): refuse the PREPARE.
  [[nodiscard]] uint32_t add(std::shared_ptr<MyStatementDef> def);
  // The client's PREPARE failed: kLastPreparedStatement resolves to nothing.
  void prepare_failed() { last_ = 0; }
  // The statement, or null when the id is unknown.
  [[nodiscard]] std::shared_ptr<MyStatementDef> find(uint32_t id) const;
  // COM_STMT_CLOSE; false when the id is unknown.
  bool remove(uint32_t id);
  // COM_RESET_CONNECTION / COM_CHANGE_USER: all closed; ids keep increasing.
  void clear();
  [[nodiscard]] size_t size() const { return map_.size(); }
  // The id kLastPreparedStatement stands for now (0 = none); other ids as is.
  [[nodiscard]] uint32_t resolve(uint32_t id) const;

  // Online upgrade: every statement by id (ascending), the id add() gives
  // next, and the last prepared one (0 = none)...
  void for_each(const std::function<void(uint32_t, const MyStatementDef&)>& f) const;
  [[nodiscard]] uint32_t next_id() const { return next_; }
  [[nodiscard]] uint32_t last_id() const { return last_; }
  // ...and the same state again on an empty set. False (nothing changed)
  // when it is not one add() could have made: an id 0, kLastPrepared-
  // Statement or not below `next`, a duplicate, `last` not among them.
  [[nodiscard]] bool restore(std::vector<std::pair<uint32_t, std::shared_ptr<MyStatementDef>>> defs,
                             uint32_t next, uint32_t last);

 private:
  std::unordered_map<uint32_t, std::shared_ptr<MyStatementDef>> map_;
  uint32_t next_ = 1;
  uint32_t last_ = 0;
};

// The statements one backend connection has prepared, by key
// (statement_key), least recently used first, at most `limit` of them
// (the pool's max_prepared_statements; 0 counts as 1).
class MyBackendStatements {
 public:
  struct Entry {
    uint32_t backend_id = 0;
    uint16_t num_params = 0;
    // The types last sent for it on this backend (new-params-bound=1, by
    // the client or by sqlmux); empty when none were sent yet.
    std::vector<my::ParamType> bound_types;
  };

  explicit MyBackendStatements(size_t limit) : limit_(limit == 0 ? 1 : limit) {}

  // The entry, or null; marks it most recently used. The pointer is valid
  // until the next add(), remove() or clear().
  [[nodiscard]] const Entry* find(std::string_view key);
  // Records a statement just prepared here (most recently used). Returns
  // the backend ids to close with COM_STMT_CLOSE: those of the least
  // recently used statements past the limit, and the previous id when the
  // key was already here (prepared twice).
  [[nodiscard]] std::vector<uint32_t> add(std::string_view key, uint32_t backend_id,
                                          uint16_t num_params);
  // Forgets one (its backend id, to close, or nullopt when absent).
  std::optional<uint32_t> remove(std::string_view key);
  // After COM_RESET_CONNECTION (which closes them all on the server).
  void clear();
  [[nodiscard]] size_t size() const { return map_.size(); }
  [[nodiscard]] size_t limit() const { return limit_; }

  // The types last bound here (empty: none yet), or null when the
  // statement is not prepared here. Does not touch the LRU order.
  [[nodiscard]] const std::vector<my::ParamType>* types_bound(std::string_view key) const;
  // Records the types an EXECUTE with new-params-bound=1 sent here.
  void set_types_bound(std::string_view key, std::vector<my::ParamType> types);
  // Whether an EXECUTE without types (new-params-bound=0) that means
  // `types` must be rewritten with my::bind_param_types before it goes to
  // this backend: the statement is here, has parameters, `types` is known
  // and differs from what was bound here last.
  [[nodiscard]] bool must_bind(std::string_view key, const std::vector<my::ParamType>& types) const;
  // The same for the entry find() returned (no second lookup).
  [[nodiscard]] static bool must_bind(const Entry& e, const std::vector<my::ParamType>& types) {
    return e.num_params != 0 && !types.empty() && e.bound_types != types;
  }

 private:
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Slot {
    Entry entry;
    std::list<const std::string*>::iterator lru;
  };
  using Map = std::unordered_map<std::string, Slot, KeyHash, std::equal_to<>>;

  size_t limit_;
  Map map_;
  std::list<const std::string*> lru_;  // front = least recently used; points at map_ keys
};

}  // namespace sqlmux::pool
