// Tests for pool/scheduler.cpp: waiter FIFOs, hand-over between workers,
// the slot limit, obsolete backends, timeouts, min_idle and donations.
#include "pool/scheduler.h"

#include <catch2/catch.hpp>

#include <array>

using namespace sqlmux;
using pool::Acquired;
using pool::Backend;
using pool::Close;
using pool::Handout;
using pool::kHandoverAfterMs;
using pool::Role;

namespace {

// A scheduler with `workers` workers and one primary host (id 0), plus
// the shell's side of opening backends.
struct Sched {
  pool::Scheduler s;
  std::array<int, 32> conns{};
  size_t opened = 0;

  Sched(int workers, uint32_t size) : s(workers) {
    pool::Scheduler::Settings st;
    st.size = size;
    st.route = config::Route::Any;
    s.configure(st);
    s.set_hosts({{0, 1}});
    s.observe_host(0, true, Role::Primary);
    s.observe_clients(1);
  }

  void set(void (*change)(pool::Scheduler::Settings&)) {
    pool::Scheduler::Settings st = s.settings();
    change(st);
    s.configure(st);
  }

  // What the shell does for a Connect decision (or a min_idle slot): the
  // connect starts on `worker` to host `pos` (host id == position) and
  // succeeds.
  Backend connect(int worker, uint64_t now, int pos = 0) {
    s.connecting(worker);
    REQUIRE(s.open_on_host(~(uint64_t{1} << pos)) == pos);
    REQUIRE(opened < conns.size());
    return {&conns[opened++], s.generation(), pos, now, now};
  }

  // A client of `worker` gets a new backend (below size).
  Backend open(int worker, uint64_t client, uint64_t now, int pos = 0) {
    Acquired a = s.acquire(worker, client, now);
    REQUIRE(a.kind == Acquired::Kind::Connect);
    return connect(worker, now, pos);
  }

  // A backend back from a transaction at `now`.
  Handout release(int worker, Backend b, uint64_t now) {
    b.idle_since_ms = now;
    return s.release(worker, b, now, false);
  }

  void queue(int worker, uint64_t client, uint64_t now) {
    Acquired a = s.acquire(worker, client, now);
    REQUIRE(a.kind == Acquired::Kind::Queued);
  }
};

void check_local(const Handout& h, uint64_t client) {
  REQUIRE(h.kind == Handout::Kind::Local);
  CHECK(h.waiter.client_id == client);
}

void check_remote(const Handout& h, int worker, uint64_t client) {
  REQUIRE(h.kind == Handout::Kind::Remote);
  CHECK(h.waiter.worker == worker);
  CHECK(h.waiter.client_id == client);
}

}  // namespace

TEST_CASE("pool scheduler: waiters of one worker are served in FIFO order", "[scheduler]") {
  Sched t(1, 1);
  const Backend b = t.open(0, 1, 100);
  t.queue(0, 2, 101);
  t.queue(0, 3, 102);
  t.queue(0, 4, 103);
  CHECK(t.s.waiting() == 3);
  check_local(t.release(0, b, 110), 2);
  check_local(t.release(0, b, 111), 3);
  check_local(t.release(0, b, 112), 4);
  CHECK(t.s.waiting() == 0);
  CHECK(t.release(0, b, 113).kind == Handout::Kind::Idle);
  CHECK(t.s.idle() == 1);
  CHECK(t.s.total() == 1);
}

TEST_CASE("pool scheduler: a waiter that left is skipped", "[scheduler]") {
  Sched t(1, 1);
  const Backend b = t.open(0, 1, 100);
  t.queue(0, 2, 101);
  t.queue(0, 3, 102);
  check_local(t.release(0, b, 110), 2);
  // The shell finds client 2 gone: the next one.
  check_local(t.s.hand_out(0, b, 110), 3);
  CHECK(t.s.hand_out(0, b, 110).kind == Handout::Kind::Idle);
  CHECK(t.s.idle(0) == 1);
}

TEST_CASE("pool scheduler: cancel_wait", "[scheduler]") {
  Sched t(2, 1);
  const Backend b = t.open(0, 1, 100);
  t.queue(0, 2, 101);
  t.queue(0, 3, 102);
  CHECK_FALSE(t.s.cancel_wait(1, 2));  // queued on worker 0, not 1
  CHECK(t.s.cancel_wait(0, 2));
  CHECK_FALSE(t.s.cancel_wait(0, 2));
  CHECK(t.s.waiting() == 1);
  check_local(t.release(0, b, 110), 3);
  CHECK(t.s.waiting() == 0);
}

TEST_CASE("pool scheduler: a freed backend serves its own worker first", "[scheduler]") {
  Sched t(2, 1);
  const Backend b = t.open(0, 1, 100);
  t.queue(1, 10, 100);  // worker 1 owns no backend
  t.queue(0, 2, 103);   // waited less than kHandoverAfterMs less
  check_local(t.release(0, b, 104), 2);
  CHECK(t.s.owned(0) == 1);
  // Nobody waits here now; worker 1 has none that will come free.
  check_remote(t.release(0, b, 104), 1, 10);
  CHECK(t.s.owned(0) == 0);
  CHECK(t.s.owned(1) == 1);
  CHECK(t.s.waiting() == 0);
}

TEST_CASE("pool scheduler: hand-over when the other worker waited kHandoverAfterMs longer",
          "[scheduler]") {
  Sched t(2, 1);
  const Backend b = t.open(0, 1, 100);
  t.queue(1, 10, 100);
  t.queue(0, 2, 100 + kHandoverAfterMs);  // exactly kHandoverAfterMs later: stays here
  t.queue(0, 3, 101 + kHandoverAfterMs);
  check_local(t.release(0, b, 200), 2);
  // Worker 1's first waiter now has waited longer than kHandoverAfterMs
  // more than this worker's.
  check_remote(t.release(0, b, 200), 1, 10);
  CHECK(t.s.waiting(0) == 1);
  CHECK(t.s.owned(0) == 0);
  CHECK(t.s.owned(1) == 1);
}

TEST_CASE("pool scheduler: idle when the other worker's own backends serve it", "[scheduler]") {
  Sched t(2, 2);
  const Backend b1 = t.open(1, 10, 100);
  const Backend b0 = t.open(0, 1, 100);
  // At size: worker 1's client waits; worker 1 owns a busy backend and its
  // queue is fresh, so nobody is asked for a donation.
  Acquired a = t.s.acquire(1, 11, 100);
  CHECK(a.kind == Acquired::Kind::Queued);
  CHECK(a.donor == -1);
  CHECK(t.release(0, b0, 101).kind == Handout::Kind::Idle);
  CHECK(t.s.idle(0) == 1);
  // Worker 1's backend comes free first: its own waiter.
  check_local(t.release(1, b1, 102), 11);
  CHECK(t.s.owned(0) == 1);
  CHECK(t.s.owned(1) == 1);
}

TEST_CASE("pool scheduler: overdue waiters of another worker get idle backends", "[scheduler]") {
  Sched t(2, 2);
  const Backend b1 = t.open(1, 10, 100);
  const Backend b0 = t.open(0, 1, 100);
  static_cast<void>(b1);
  t.queue(1, 11, 100);
  CHECK(t.release(0, b0, 101).kind == Handout::Kind::Idle);
  CHECK_FALSE(t.s.overdue(0, 100 + kHandoverAfterMs - 1));
  CHECK_FALSE(t.s.overdue(1, 200));  // its own waiters do not count
  auto b = t.s.overdue(0, 100 + kHandoverAfterMs);
  REQUIRE(b);
  CHECK(b->conn == b0.conn);
  CHECK(t.s.idle() == 0);
  check_remote(t.s.release(0, *b, 100 + kHandoverAfterMs, false), 1, 11);
  CHECK(t.s.owned(1) == 2);
}

TEST_CASE("pool scheduler: idle backends are reused on their worker", "[scheduler]") {
  Sched t(2, 1);
  const Backend b = t.open(0, 1, 100);
  CHECK(t.release(0, b, 101).kind == Handout::Kind::Idle);
  Acquired a = t.s.acquire(0, 2, 102);
  REQUIRE(a.kind == Acquired::Kind::Linked);
  CHECK(a.backend.conn == b.conn);
  CHECK(a.obsolete.empty());
  CHECK(t.s.idle() == 0);
  CHECK(t.s.total() == 1);
  CHECK(t.s.host_load(0).connections == 1);
  CHECK(t.s.host_load(0).idle == 0);
}

TEST_CASE("pool scheduler: donation requests", "[scheduler]") {
  Sched t(3, 2);
  const Backend b0 = t.open(0, 1, 100);
  const Backend b2 = t.open(2, 2, 100);
  CHECK(t.release(0, b0, 101).kind == Handout::Kind::Idle);
  CHECK(t.release(2, b2, 101).kind == Handout::Kind::Idle);
  // Nobody waits: nothing to donate.
  Acquired linked = t.s.acquire(0, 3, 102);
  REQUIRE(linked.kind == Acquired::Kind::Linked);
  CHECK_FALSE(t.s.donate(2).backend);
  CHECK(t.s.idle(2) == 1);

  // Worker 1 owns no backend and is at size: asks the first worker with an
  // idle one.
  Acquired a = t.s.acquire(1, 10, 103);
  REQUIRE(a.kind == Acquired::Kind::Queued);
  CHECK(a.donor == 2);
  pool::Taken d = t.s.donate(2);
  REQUIRE(d.backend);
  CHECK(d.backend->conn == b2.conn);
  CHECK(d.obsolete.empty());
  check_remote(t.s.release(2, *d.backend, 103, false), 1, 10);
  CHECK(t.s.owned(1) == 1);
  CHECK(t.s.owned(2) == 0);

  // Worker 1 owns one now: a fresh queue does not ask, a queue whose first
  // waiter waited too long does.
  a = t.s.acquire(1, 11, 200);
  CHECK(a.donor == -1);  // nobody idle anyway
  CHECK(t.release(0, b0, 201).kind == Handout::Kind::Idle);
  a = t.s.acquire(1, 12, 200 + kHandoverAfterMs);
  CHECK(a.donor == -1);
  a = t.s.acquire(1, 13, 201 + kHandoverAfterMs);
  CHECK(a.donor == 0);
}

TEST_CASE("pool scheduler: the slot limit", "[scheduler]") {
  Sched t(2, 2);
  const Backend b0 = t.open(0, 1, 100);
  const Backend b1 = t.open(1, 2, 100);
  static_cast<void>(b1);
  CHECK(t.s.total() == 2);
  CHECK(t.s.host_load(0).connections == 2);
  t.queue(1, 10, 101);
  t.queue(0, 3, 103);
  CHECK_FALSE(t.s.grant_slot(1000));  // at size
  // A backend of worker 0 closes: its slot goes to the longest waiter, on
  // worker 1.
  CHECK(t.s.backend_gone(0, b0, false));
  CHECK(t.s.total() == 1);
  CHECK(t.s.host_load(0).connections == 1);
  auto w = t.s.grant_slot(1000);
  REQUIRE(w);
  CHECK(w->worker == 1);
  CHECK(w->client_id == 10);
  CHECK(t.s.total() == 2);
  CHECK_FALSE(t.s.grant_slot(1000));
  // Worker 1 starts it (ConnectFor) but finds no host: the slot goes to
  // the next waiter.
  t.s.connecting(1);
  CHECK(t.s.owned(1) == 2);
  CHECK(t.s.waiting() == 1);
  t.s.slot_failed(1);
  CHECK(t.s.owned(1) == 1);
  CHECK(t.s.total() == 1);
  w = t.s.grant_slot(1000);
  REQUIRE(w);
  CHECK(w->worker == 0);
  CHECK(w->client_id == 3);
}

TEST_CASE("pool scheduler: a connect retry on another host keeps the slot", "[scheduler]") {
  Sched t(1, 1);
  t.s.set_hosts({{0, 1}, {1, 1}});
  t.s.observe_host(1, true, Role::Primary);
  CHECK(t.s.acquire(0, 1, 100).kind == Acquired::Kind::Connect);
  t.s.connecting(0);
  REQUIRE(t.s.open_on_host(0) == 0);
  const Backend failed{&t.conns[0], 0, 0, 100, 100};
  // The retry excludes the host tried: the other one.
  CHECK(t.s.pick_host(0b01) == 1);
  CHECK(t.s.pick_host(0b11) == -1);
  CHECK(t.s.open_on_host(0b01) == 1);
  CHECK_FALSE(t.s.backend_gone(0, failed, true));  // slot moved
  CHECK(t.s.total() == 1);
  CHECK(t.s.owned(0) == 1);
  CHECK(t.s.host_load(0).connections == 0);
  CHECK(t.s.host_load(1).connections == 1);
  t.queue(0, 2, 101);  // still at size
  CHECK_FALSE(t.s.grant_slot(1000));
}

TEST_CASE("pool scheduler: pause queues, resume serves", "[scheduler]") {
  Sched t(2, 2);
  const Backend b = t.open(0, 1, 100);
  CHECK(t.release(0, b, 101).kind == Handout::Kind::Idle);
  t.s.set_paused(true);
  Acquired a = t.s.acquire(0, 2, 102);  // an idle backend, but paused
  CHECK(a.kind == Acquired::Kind::Queued);
  CHECK(a.donor == -1);
  t.queue(1, 10, 103);  // free capacity, but paused
  CHECK(t.s.total() == 1);
  CHECK(t.s.idle(0) == 1);
  CHECK_FALSE(t.s.take_for_waiters(0));
  CHECK_FALSE(t.s.grant_slot(1000));
  CHECK_FALSE(t.s.overdue(0, 1000));
  // A donation takes it, but its release keeps it idle.
  pool::Taken d = t.s.donate(0);
  REQUIRE(d.backend);
  CHECK(t.s.release(0, *d.backend, 104, false).kind == Handout::Kind::Idle);
  CHECK(t.s.idle(0) == 1);

  // RESUME, then kick: idle backends to the waiters, free slots to the rest.
  t.s.set_paused(false);
  auto idle = t.s.take_for_waiters(0);
  REQUIRE(idle);
  check_local(t.s.release(0, *idle, 110, false), 2);
  CHECK_FALSE(t.s.take_for_waiters(0));
  auto w = t.s.grant_slot(1000);
  REQUIRE(w);
  CHECK(w->worker == 1);
  CHECK(w->client_id == 10);
  CHECK(t.s.total() == 2);
  CHECK(t.s.waiting() == 0);
}

TEST_CASE("pool scheduler: a released backend is not handed out while paused", "[scheduler]") {
  Sched t(1, 1);
  const Backend b = t.open(0, 1, 100);
  t.queue(0, 2, 101);
  t.s.set_paused(true);
  CHECK(t.release(0, b, 102).kind == Handout::Kind::Idle);
  CHECK(t.s.waiting() == 1);
  t.s.set_paused(false);
  auto idle = t.s.take_for_waiters(0);
  REQUIRE(idle);
  check_local(t.s.release(0, *idle, 103, false), 2);
}

TEST_CASE("pool scheduler: older generations close instead of being reused", "[scheduler]") {
  Sched t(1, 2);
  const Backend b = t.open(0, 1, 100);
  const Backend c = t.open(0, 2, 100);
  CHECK(t.release(0, b, 101).kind == Handout::Kind::Idle);
  t.s.bump_generation();  // RECONNECT
  Acquired a = t.s.acquire(0, 3, 102);
  // The idle one closes; its slot counts as free already.
  CHECK(a.kind == Acquired::Kind::Connect);
  REQUIRE(a.obsolete.size() == 1);
  CHECK(a.obsolete[0].conn == b.conn);
  CHECK(t.s.idle() == 0);
  CHECK(t.s.host_load(0).idle == 0);
  // A busy one closes when released.
  const Handout h = t.release(0, c, 103);
  CHECK(h.kind == Handout::Kind::Close);
  CHECK(h.why == Close::Obsolete);
  CHECK(t.s.backend_gone(0, b, false));
  CHECK(t.s.backend_gone(0, c, false));
  // The new one is of the new generation.
  const Backend fresh = t.connect(0, 104);
  CHECK(fresh.generation == 1);
  CHECK(t.release(0, fresh, 105).kind == Handout::Kind::Idle);
}

TEST_CASE("pool scheduler: a retired pool closes its backends once no client is left",
          "[scheduler]") {
  Sched t(1, 2);
  const Backend b = t.open(0, 1, 100);
  const Backend c = t.open(0, 2, 100);
  CHECK(t.release(0, c, 101).kind == Handout::Kind::Idle);
  t.s.set_retired(true);
  t.s.observe_clients(1);
  CHECK(t.release(0, b, 102).kind == Handout::Kind::Idle);
  CHECK(t.s.take_obsolete(0).empty());
  t.s.observe_clients(0);
  const std::vector<Backend> closed = t.s.take_obsolete(0);
  CHECK(closed.size() == 2);
  CHECK(t.s.idle() == 0);
  const Handout h = t.release(0, b, 103);
  CHECK(h.kind == Handout::Kind::Close);
  CHECK(h.why == Close::Obsolete);
  // No min_idle upkeep for a retired pool.
  t.set([](pool::Scheduler::Settings& s) { s.min_idle = 2; });
  CHECK(t.s.housekeep(0, 200, false).open == 0);
}

TEST_CASE("pool scheduler: a shrink closes backends over the new size", "[scheduler]") {
  Sched t(1, 3);
  std::array<Backend, 3> b;
  for (uint64_t i = 0; i < 3; ++i) b[i] = t.open(0, i + 1, 100);
  for (const Backend& x : b) CHECK(t.release(0, x, 101).kind == Handout::Kind::Idle);
  t.set([](pool::Scheduler::Settings& s) { s.size = 1; });
  // Closing two of three leaves one within size.
  const std::vector<Backend> closed = t.s.take_obsolete(0);
  CHECK(closed.size() == 2);
  CHECK(t.s.idle(0) == 1);
  CHECK(t.s.backend_gone(0, closed[0], false));
  CHECK(t.s.backend_gone(0, closed[1], false));
  CHECK(t.s.total() == 1);
  Acquired a = t.s.acquire(0, 9, 102);
  CHECK(a.kind == Acquired::Kind::Linked);
}

TEST_CASE("pool scheduler: a host that no longer serves", "[scheduler]") {
  Sched t(1, 4);
  const Backend b = t.open(0, 1, 100);
  t.s.observe_host(0, false, Role::Primary);  // down or disabled
  Handout h = t.release(0, b, 101);
  CHECK(h.kind == Handout::Kind::Close);
  CHECK(h.why == Close::Obsolete);
  t.s.observe_host(0, true, Role::Primary);
  CHECK(t.release(0, b, 102).kind == Handout::Kind::Idle);

  // A reload unlists it.
  t.s.set_hosts({{1, 1}});
  t.s.observe_host(1, true, Role::Primary);
  CHECK(t.s.take_obsolete(0).size() == 1);
  CHECK(t.s.host_load(0).idle == 0);

  // Route replica: a primary serves only while no replica is usable.
  t.set([](pool::Scheduler::Settings& s) { s.route = config::Route::Replica; });
  t.s.set_hosts({{0, 1}, {1, 1}});
  t.s.observe_host(0, true, Role::Primary);
  t.s.observe_host(1, false, Role::Replica);
  CHECK(t.release(0, b, 103).kind == Handout::Kind::Idle);
  t.s.observe_host(1, true, Role::Replica);
  CHECK(t.s.take_obsolete(0).size() == 1);
  // A failover: the primary is now a replica and serves.
  t.s.observe_host(0, true, Role::Replica);
  CHECK(t.release(0, b, 104).kind == Handout::Kind::Idle);
}

TEST_CASE("pool scheduler: idle backends of the least busy host go first", "[scheduler]") {
  Sched t(1, 4);
  t.s.set_hosts({{0, 1}, {1, 1}});
  t.s.observe_host(1, true, Role::Primary);
  const Backend a0 = t.open(0, 1, 100, 0);
  const Backend a1 = t.open(0, 2, 100, 0);
  const Backend b0 = t.open(0, 3, 100, 1);
  // The most recently idle one is on host 0, which has one active
  // transaction (a1); host 1 has none.
  CHECK(t.release(0, b0, 101).kind == Handout::Kind::Idle);
  CHECK(t.release(0, a0, 102).kind == Handout::Kind::Idle);
  static_cast<void>(a1);
  Acquired a = t.s.acquire(0, 5, 103);
  REQUIRE(a.kind == Acquired::Kind::Linked);
  CHECK(a.backend.conn == b0.conn);
  a = t.s.acquire(0, 6, 103);
  REQUIRE(a.kind == Acquired::Kind::Linked);
  CHECK(a.backend.conn == a0.conn);
}

TEST_CASE("pool scheduler: server_lifetime", "[scheduler]") {
  Sched t(1, 2);
  t.set([](pool::Scheduler::Settings& s) { s.server_lifetime_ms = 1000; });
  const Backend b = t.open(0, 1, 100);
  const Backend c = t.open(0, 2, 500);
  CHECK(t.release(0, b, 1099).kind == Handout::Kind::Idle);
  CHECK(t.release(0, c, 1099).kind == Handout::Kind::Idle);
  pool::Upkeep up = t.s.housekeep(0, 1100, false);
  REQUIRE(up.close.size() == 1);
  CHECK(up.close[0].first.conn == b.conn);
  CHECK(up.close[0].second == Close::Lifetime);
  CHECK(t.s.idle(0) == 1);
  // On release too, before any waiter gets it.
  CHECK(t.s.backend_gone(0, b, false));
  static_cast<void>(t.s.take_all_idle(0));  // c serves a client again
  const Backend d = t.open(0, 3, 1200);
  t.queue(0, 4, 1200);
  const Handout h = t.release(0, c, 1500);
  CHECK(h.kind == Handout::Kind::Close);
  CHECK(h.why == Close::Lifetime);
  CHECK(t.s.waiting() == 1);
  // A worker that shuts down closes them.
  const Handout s = t.s.release(0, d, 1501, true);
  CHECK(s.kind == Handout::Kind::Close);
  CHECK(s.why == Close::Shutdown);
}

TEST_CASE("pool scheduler: server_idle_timeout keeps min_idle", "[scheduler]") {
  Sched t(2, 4);
  t.set([](pool::Scheduler::Settings& s) {
    s.server_idle_timeout_ms = 100;
    s.min_idle = 2;
  });
  const Backend b0 = t.open(0, 1, 0);
  const Backend b1 = t.open(0, 2, 0);
  const Backend b2 = t.open(1, 3, 0);
  CHECK(t.release(0, b0, 10).kind == Handout::Kind::Idle);
  CHECK(t.release(0, b1, 50).kind == Handout::Kind::Idle);
  CHECK(t.release(1, b2, 10).kind == Handout::Kind::Idle);
  CHECK(t.s.housekeep(0, 109, false).close.empty());
  // Three idle across workers, two kept: one of worker 0's closes.
  pool::Upkeep up = t.s.housekeep(0, 200, false);
  REQUIRE(up.close.size() == 1);
  CHECK(up.close[0].first.conn == b0.conn);
  CHECK(up.close[0].second == Close::IdleTimeout);
  CHECK(up.open == 0);
  CHECK(t.s.housekeep(1, 200, false).close.empty());
  CHECK(t.s.idle() == 2);
}

TEST_CASE("pool scheduler: min_idle upkeep", "[scheduler]") {
  Sched t(2, 3);
  t.set([](pool::Scheduler::Settings& s) { s.min_idle = 2; });
  // Worker 0 only, one batch at a time.
  CHECK(t.s.housekeep(1, 100, false).open == 0);
  CHECK(t.s.housekeep(0, 100, true).open == 0);
  pool::Upkeep up = t.s.housekeep(0, 100, false);
  CHECK(up.open == 2);
  CHECK(t.s.total() == 2);
  // Never above size.
  t.set([](pool::Scheduler::Settings& s) { s.min_idle = 5; });
  CHECK(t.s.housekeep(0, 101, false).open == 1);
  CHECK(t.s.total() == 3);
  // Not while clients wait, nor without a usable host.
  Sched q(1, 2);
  q.set([](pool::Scheduler::Settings& s) { s.min_idle = 2; });
  static_cast<void>(q.open(0, 1, 100));
  static_cast<void>(q.open(0, 2, 100));
  q.set([](pool::Scheduler::Settings& s) { s.size = 4; });
  q.s.set_paused(true);
  q.queue(0, 3, 100);
  q.s.set_paused(false);
  CHECK(q.s.housekeep(0, 101, false).open == 0);
  CHECK(q.s.cancel_wait(0, 3));
  q.s.observe_host(0, false, Role::Primary);
  CHECK(q.s.housekeep(0, 102, false).open == 0);
  q.s.observe_host(0, true, Role::Primary);
  CHECK(q.s.housekeep(0, 103, false).open == 2);
}

TEST_CASE("pool scheduler: shutdown takes the idle lists", "[scheduler]") {
  Sched t(2, 2);
  const Backend b0 = t.open(0, 1, 100);
  const Backend b1 = t.open(1, 2, 100);
  CHECK(t.release(0, b0, 101).kind == Handout::Kind::Idle);
  CHECK(t.release(1, b1, 101).kind == Handout::Kind::Idle);
  const std::vector<Backend> idle = t.s.take_all_idle(0);
  REQUIRE(idle.size() == 1);
  CHECK(idle[0].conn == b0.conn);
  CHECK(t.s.idle() == 1);
  CHECK(t.s.host_load(0).idle == 1);
  CHECK(t.s.backend_gone(0, b0, false));
  CHECK(t.s.backend_gone(1, b1, false));  // an idle one gone leaves the list
  CHECK(t.s.idle() == 0);
  CHECK(t.s.total() == 0);
  CHECK(t.s.host_load(0).connections == 0);
}
