// The switches of the running process that the admin console (and
// signals) flip. The lifecycle (daemon/server.h) implements it; the
// console sees nothing else of it.
#pragma once

#include <string>
#include <vector>

namespace sqlmux {

class Control {
 public:
  virtual ~Control() = default;

  // Re-reads the configuration file and applies what can change while
  // running. False, with nothing changed, when the file is invalid;
  // `errors` then holds file:line:col messages.
  virtual bool reload(std::vector<std::string>* errors) = 0;
  // As SIGTERM.
  virtual void request_shutdown() = 0;
  [[nodiscard]] virtual bool shutting_down() const = 0;
  // PAUSE / RESUME: `pool` is a qualified name (config::qualified_name,
  // "mysql:appdb"), empty = every pool; applies to pools created later too.
  virtual void set_paused(const std::string& pool, bool paused) = 0;
  // DISABLE / ENABLE host: drains `address` (no new transactions; running
  // ones finish; idle connections close) or puts it back.
  virtual void set_backend_disabled(const std::string& address, bool disabled) = 0;
  // A host changed health or role: every worker re-examines every pool.
  virtual void hosts_changed() = 0;
};

}  // namespace sqlmux
