#include "pool/mysql/statements.h"

#include <algorithm>
#include <utility>

namespace sqlmux::pool {

std::string statement_key(const std::optional<std::string>& schema, std::string_view sql) {
  std::string key;
  key.reserve((schema ? schema->size() : 0) + 1 + sql.size());
  if (schema) key += *schema;
  key += '\0';
  key += sql;
  return key;
}

std::shared_ptr<MyStatementDef> make_statement_def(std::string_view sql,
                                                   std::optional<std::string> schema,
                                                   uint16_t num_params, uint16_t num_columns) {
  auto def = std::make_shared<MyStatementDef>();
  def->key = statement_key(schema, sql);
  def->sql = std::string(sql);
  def->schema = std::move(schema);
  def->num_params = num_params;
  def->num_columns = num_columns;
  return def;
}

// --- MyClientStatements ---------------------------------------------------------

uint32_t MyClientStatements::add(std::shared_ptr<MyStatementDef> def) {
  if (next_ == my::kLastPreparedStatement) return 0;
  const uint32_t id = next_++;
  map_.emplace(id, std::move(def));
  last_ = id;
  return id;
}

uint32_t MyClientStatements::resolve(uint32_t id) const {
  return id == my::kLastPreparedStatement ? last_ : id;
}

std::shared_ptr<MyStatementDef> MyClientStatements::find(uint32_t id) const {
  auto it = map_.find(resolve(id));
  return it == map_.end() ? nullptr : it->second;
}

bool MyClientStatements::remove(uint32_t id) {
  id = resolve(id);
  if (map_.erase(id) == 0) return false;
  if (id == last_) last_ = 0;
  return true;
}

void MyClientStatements::clear() {
  map_.clear();
  last_ = 0;
}

void MyClientStatements::for_each(
    const std::function<void(uint32_t, const MyStatementDef&)>& f) const {
  std::vector<uint32_t> ids;
  ids.reserve(map_.size());
  for (const auto& [id, def] : map_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (uint32_t id : ids) f(id, *map_.at(id));
}

bool MyClientStatements::restore(
    std::vector<std::pair<uint32_t, std::shared_ptr<MyStatementDef>>> defs, uint32_t next,
    uint32_t last) {
  if (!map_.empty() || next == 0) return false;
  std::unordered_map<uint32_t, std::shared_ptr<MyStatementDef>> map;
  for (auto& [id, def] : defs) {
    if (id == 0 || id == my::kLastPreparedStatement || id >= next || def == nullptr ||
        !map.emplace(id, std::move(def)).second) {
      return false;
    }
  }
  if (last != 0 && map.count(last) == 0) return false;
  map_ = std::move(map);
  next_ = next;
  last_ = last;
  return true;
}

// --- MyBackendStatements --------------------------------------------------------

const MyBackendStatements::Entry* MyBackendStatements::find(std::string_view key) {
  auto it = map_.find(key);
  if (it == map_.end()) return nullptr;
  lru_.splice(lru_.end(), lru_, it->second.lru);
  return &it->second.entry;
}

std::vector<uint32_t> MyBackendStatements::add(std::string_view key, uint32_t backend_id,
                                               uint16_t num_params) {
  std::vector<uint32_t> to_close;
  auto it = map_.find(key);
  if (it != map_.end()) {
    if (it->second.entry.backend_id != backend_id) to_close.push_back(it->second.entry.backend_id);
    it->second.entry = Entry{backend_id, num_params, {}};
    lru_.splice(lru_.end(), lru_, it->second.lru);
    return to_close;
  }
  it = map_.emplace(std::string(key), Slot{Entry{backend_id, num_params, {}}, {}}).first;
  it->second.lru = lru_.insert(lru_.end(), &it->first);
  while (map_.size() > limit_) {
    auto victim = map_.find(std::string_view(*lru_.front()));
    to_close.push_back(victim->second.entry.backend_id);
    lru_.pop_front();
    map_.erase(victim);
  }
  return to_close;
}

std::optional<uint32_t> MyBackendStatements::remove(std::string_view key) {
  auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  const uint32_t id = it->second.entry.backend_id;
  lru_.erase(it->second.lru);
  map_.erase(it);
  return id;
}

void MyBackendStatements::clear() {
  lru_.clear();
  map_.clear();
}

const std::vector<my::ParamType>* MyBackendStatements::types_bound(std::string_view key) const {
  auto it = map_.find(key);
  return it == map_.end() ? nullptr : &it->second.entry.bound_types;
}

void MyBackendStatements::set_types_bound(std::string_view key, std::vector<my::ParamType> types) {
  auto it = map_.find(key);
  if (it != map_.end()) it->second.entry.bound_types = std::move(types);
}

bool MyBackendStatements::must_bind(std::string_view key,
                                    const std::vector<my::ParamType>& types) const {
  auto it = map_.find(key);
  return it != map_.end() && must_bind(it->second.entry, types);
}

}  // namespace sqlmux::pool
