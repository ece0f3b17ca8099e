// daemon/net/buffer: capacities and contents as reads and appends grow it.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>

#include "daemon/net/buffer.h"

using sqlmux::Buffer;

TEST_CASE("buffer: reserve grows to the smallest doubling that fits, keeping the bytes") {
  Buffer b;
  REQUIRE(b.capacity() == 0);
  std::memcpy(b.reserve(10), "0123456789", 10);
  b.commit(10);
  REQUIRE(b.capacity() == 4096);  // the smallest block
  b.consume(3);
  (void)b.reserve(64 * 1024);  // a read of 64 KiB with 7 bytes held
  REQUIRE(b.capacity() == 128 * 1024);
  REQUIRE(std::string(reinterpret_cast<const char*>(b.data()), b.size()) == "3456789");
  REQUIRE(b.writable() >= 64 * 1024);
  b.consume(b.size());
  b.shrink_if_empty();
  REQUIRE(b.capacity() == 0);
  (void)b.reserve(64 * 1024);  // exactly a block size
  REQUIRE(b.capacity() == 64 * 1024);
  (void)b.reserve(64 * 1024 + 1);
  REQUIRE(b.capacity() == 128 * 1024);
  b.shrink_if_empty();
  // Appends past a block double it; a block of 1 MiB (past the cached sizes) works alike.
  std::string big(600 * 1024, 'x');
  b.append("ab", 2);
  REQUIRE(b.capacity() == 4096);
  b.append(big.data(), big.size());
  REQUIRE(b.capacity() == 1024 * 1024);
  REQUIRE(b.size() == big.size() + 2);
  REQUIRE(std::memcmp(b.data(), "abxx", 4) == 0);
  b.consume(b.size());
  b.shrink_if_empty();
  REQUIRE(b.capacity() == 0);
}
