// daemon/core/directory: MySQL thread ids, and those a client handed over
// at an online upgrade brings (Directory::adopt_thread).
#include <catch2/catch.hpp>

#include <cstdint>
#include <set>

#include "config/config.h"
#include "daemon/core/directory.h"
#include "daemon/core/protocol.h"
#include "pool/peer_kill.h"

using sqlmux::Directory;
using sqlmux::Protocols;

TEST_CASE("directory: an adopted thread id is registered, and not given again", "[upgrade]") {
  Protocols protocols;
  Directory dir(sqlmux::config::Config{}, protocols);
  const uint32_t first = dir.register_thread(0, 1);
  CHECK(first == 1);
  // The previous process's client 5 had id 7; its allocator was at 9.
  REQUIRE(dir.adopt_thread(7, 9, 1, 50));
  Directory::ThreadEntry e;
  REQUIRE(dir.lookup_thread(7, e));
  CHECK(e.worker == 1);
  CHECK(e.client_id == 50);
  CHECK(dir.thread_counter() == 9);
  // Ids in use here are refused, the same one twice too, and 0.
  CHECK_FALSE(dir.adopt_thread(first, 0, 0, 51));
  CHECK_FALSE(dir.adopt_thread(7, 0, 0, 52));
  CHECK_FALSE(dir.adopt_thread(0, 0, 0, 53));
  REQUIRE(dir.lookup_thread(7, e));
  CHECK(e.client_id == 50);
  // New ids continue after the previous process's: none of 1..9.
  CHECK(dir.register_thread(0, 2) == 10);
  // An id above the counter moves it on too.
  REQUIRE(dir.adopt_thread(20, 3, 0, 54));
  CHECK(dir.register_thread(0, 3) == 21);
  dir.unregister_thread(7);
  CHECK_FALSE(dir.lookup_thread(7, e));
}

TEST_CASE("directory: with peer_id an adopted thread id must carry it", "[upgrade]") {
  sqlmux::config::Config cfg;
  cfg.server.peer_id = 9;
  Protocols protocols;
  Directory dir(cfg, protocols);
  const uint32_t mine = sqlmux::pool::peer_thread_id(9, 40);
  CHECK_FALSE(dir.adopt_thread(sqlmux::pool::peer_thread_id(8, 40), 40, 0, 1));
  REQUIRE(dir.adopt_thread(mine, 41, 0, 1));
  std::set<uint32_t> given;
  for (uint64_t c = 2; c < 10; ++c) given.insert(dir.register_thread(0, c));
  CHECK(given.count(mine) == 0);
  CHECK(*given.begin() == sqlmux::pool::peer_thread_id(9, 42));
  for (uint32_t id : given) CHECK(sqlmux::pool::thread_peer(id) == 9);
}
