// Internal to protocol/pg's authentication code (auth.cpp, scram_message.cpp,
// scram_server.cpp, scram_client.cpp): SHA-256 and HMAC over OpenSSL's
// libcrypto, and the syntax of SCRAM messages (RFC 5802 attribute fields).
// Not for use outside protocol/pg: the public API is auth.h.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sqlmux::pg::auth::detail {

inline constexpr size_t kKeyLen = 32;  // SHA-256 output
// PostgreSQL caps a SASLResponse at PG_MAX_AUTH_TOKEN_LENGTH (65535); a SCRAM
// message longer than that is garbage whatever it contains.
inline constexpr size_t kMaxScramMessage = 65535;

using Key = std::array<uint8_t, kKeyLen>;

// A non-null pointer for empty inputs: some OpenSSL entry points dislike
// (nullptr, 0).
inline constexpr uint8_t kEmpty[1] = {0};

inline const uint8_t* bytes(std::string_view s) {
  return s.empty() ? kEmpty : reinterpret_cast<const uint8_t*>(s.data());
}

inline std::string_view as_view(const Key& k) {
  return {reinterpret_cast<const char*>(k.data()), k.size()};
}

// ---------------------------------------------------------------------------
// Crypto (auth.cpp)

bool sha256(const uint8_t* data, size_t len, Key& out);
// HMAC-SHA-256 (RFC 2104) over the shared digest context.
bool hmac_sha256(const uint8_t* key, size_t key_len, std::string_view data, Key& out);
void cleanse(Key& k);
// SaltedPassword = PBKDF2-HMAC-SHA256(SASLprep(password), salt, iterations),
// with the raw bytes where SASLprep does not apply (see saslprep.h).
bool salted_password(std::string_view raw, std::string_view salt, int iterations, Key& out);
// A base64 key of exactly kKeyLen bytes.
bool decode_key(std::string_view b64, Key& out);

// ---------------------------------------------------------------------------
// SCRAM message syntax (scram_message.cpp)

// printable = %x21-2B / %x2D-7E (RFC 5802): printable ASCII except ','.
bool is_scram_printable(std::string_view s);

// Walks the comma-separated fields of a SCRAM message. A message "a,b," has
// three fields, the last one empty, so a trailing comma is caught by the
// attribute check of whoever reads that empty field.
class Fields {
 public:
  explicit Fields(std::string_view s) : s_(s) {}

  // The next field; false when the message is exhausted.
  bool next(std::string_view& field) {
    if (done_) {
      return false;
    }
    size_t comma = s_.find(',', pos_);
    if (comma == std::string_view::npos) {
      field = s_.substr(pos_);
      pos_ = s_.size();
      done_ = true;
    } else {
      field = s_.substr(pos_, comma - pos_);
      pos_ = comma + 1;
    }
    return true;
  }
  [[nodiscard]] bool more() const { return !done_; }
  // Offset of the next field's first byte.
  [[nodiscard]] size_t pos() const { return pos_; }

 private:
  std::string_view s_;
  size_t pos_ = 0;
  bool done_ = false;
};

// attr-val = ALPHA "=" value. `expected` == 0 accepts any attribute name.
bool parse_attr(std::string_view field, char expected, char& name, std::string_view& value,
                std::string& error);
// Reads the next field as attribute `expected`; `what` names the message for
// the error when the field is missing.
bool read_attr(Fields& f, char expected, std::string_view& value, std::string& error,
               const char* what);
// Not empty, not over kMaxScramMessage, no NUL byte; else `error` says which.
bool check_message_basics(std::string_view msg, std::string& error, const char* what);
// Strictly positive decimal int, digits only.
bool parse_iterations(std::string_view s, int& out);

}  // namespace sqlmux::pg::auth::detail
