#include "daemon/ops/upgrade_wire.h"

namespace sqlmux::upgrade {

namespace {

constexpr std::string_view kHeader = "sqlmux-handover 1\n";

bool kind_of(std::string_view s, SocketKind& out) {
  for (SocketKind k :
       {SocketKind::Listener, SocketKind::Admin, SocketKind::Metrics, SocketKind::Upgrade}) {
    if (s == to_string(k)) {
      out = k;
      return true;
    }
  }
  return false;
}

bool writable(const SocketDesc& d) {
  if (d.address.empty() || d.address.size() > kMaxAddress) return false;
  if (d.address.find_first_of(std::string_view("\n\0", 2)) != std::string::npos) return false;
  if (d.kind == SocketKind::Listener) return d.protocol == "postgres" || d.protocol == "mysql";
  return d.protocol == "-";
}

// "<prefix> <pid>\n" with 1 <= pid <= INT32_MAX; else 0.
int32_t decode_pid_line(std::string_view msg, std::string_view prefix) {
  if (msg.size() < prefix.size() + 3 || msg.substr(0, prefix.size()) != prefix ||
      msg[prefix.size()] != ' ' || msg.back() != '\n') {
    return 0;
  }
  std::string_view digits = msg.substr(prefix.size() + 1, msg.size() - prefix.size() - 2);
  // Canonical decimal only: no sign, no leading zero.
  if (digits.empty() || digits.size() > 10 || digits[0] == '0') return 0;
  int64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + (c - '0');
  }
  if (v < 1 || v > INT32_MAX) return 0;
  return static_cast<int32_t>(v);
}

}  // namespace

std::string_view to_string(SocketKind k) {
  switch (k) {
    case SocketKind::Listener:
      return "listener";
    case SocketKind::Admin:
      return "admin";
    case SocketKind::Metrics:
      return "metrics";
    case SocketKind::Upgrade:
      return "upgrade";
  }
  return "?";
}

std::string_view to_string(WireError e) {
  switch (e) {
    case WireError::None:
      return "none";
    case WireError::BadHeader:
      return "bad_header";
    case WireError::BadLine:
      return "bad_line";
    case WireError::BadKind:
      return "bad_kind";
    case WireError::TooMany:
      return "too_many";
    case WireError::CountMismatch:
      return "count_mismatch";
  }
  return "?";
}

std::string encode_offer(const std::vector<SocketDesc>& socks) {
  if (socks.size() > kMaxSockets) return {};
  std::string out(kHeader);
  for (const auto& d : socks) {
    if (!writable(d)) return {};
    out += to_string(d.kind);
    out += ' ';
    out += d.protocol;
    out += ' ';
    out += d.address;
    out += '\n';
  }
  return out;
}

WireError decode_offer(std::string_view msg, size_t fds, std::vector<SocketDesc>& out) {
  out.clear();
  if (msg.size() > kMaxMessage || msg.substr(0, kHeader.size()) != kHeader) {
    return WireError::BadHeader;
  }
  msg.remove_prefix(kHeader.size());
  while (!msg.empty()) {
    const size_t eol = msg.find('\n');
    if (eol == std::string_view::npos) return WireError::BadLine;
    const std::string_view line = msg.substr(0, eol);
    msg.remove_prefix(eol + 1);
    if (out.size() == kMaxSockets) return WireError::TooMany;
    const size_t sp1 = line.find(' ');
    const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) return WireError::BadLine;
    SocketDesc d;
    if (!kind_of(line.substr(0, sp1), d.kind)) return WireError::BadKind;
    d.protocol = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
    d.address = std::string(line.substr(sp2 + 1));
    if (d.address.empty() || d.address.size() > kMaxAddress ||
        d.address.find('\0') != std::string::npos) {
      return WireError::BadLine;
    }
    if (!writable(d)) return WireError::BadKind;
    out.push_back(std::move(d));
  }
  if (out.size() != fds) return WireError::CountMismatch;
  return WireError::None;
}

std::string encode_go(int32_t pid) {
  return "go " + std::to_string(pid) + "\n";
}
std::string encode_done(int32_t pid) {
  return "done " + std::to_string(pid) + "\n";
}
int32_t decode_go(std::string_view msg) {
  return decode_pid_line(msg, "go");
}
int32_t decode_done(std::string_view msg) {
  return decode_pid_line(msg, "done");
}

}  // namespace sqlmux::upgrade
