// How the core fails a client, in no protocol's terms: the reason (the
// name that labels metrics and log lines) and the words for the client.
// Each protocol renders it as its own error (a PostgreSQL FATAL with the
// SQLSTATE for the reason, a MySQL ERR packet with its error code).
#pragma once

#include <string>

#include "daemon/core/reason.h"

namespace sqlmux {

struct Failure {
  Reason why = Reason::Internal;
  std::string message;  // empty: the client is closed without a message
  std::string detail;   // optional second line (PostgreSQL's DETAIL)
};

}  // namespace sqlmux
