/*
 * notify_client: the load generator of bench/run's notify scenario (LISTEN
 * and NOTIFY fan-out). Built by bench/lib/notify.py with cc and libpq into
 * the run's temp dir. Two modes:
 *
 *   notify_client listen CONNINFO CHANNEL NCONN
 *     Opens NCONN connections one after the other, runs LISTEN CHANNEL on
 *     each and prints "READY <seconds to connect and listen>". Then reads
 *     commands on stdin:
 *       phase ID EXPECT   start counting phase ID: every connection should
 *                         get EXPECT notifications of that phase
 *       stop              report the current phase now (even incomplete)
 *       quit (or EOF)     close the connections and exit
 *     A phase is reported (one JSON line on stdout) as soon as every
 *     connection has EXPECT distinct notifications of it, or on "stop".
 *     Notifications go through one epoll loop over all sockets
 *     (PQconsumeInput, PQnotifies).
 *
 *   notify_client send CONNINFO CHANNEL NSENDERS COUNT RATE PHASE
 *     NSENDERS threads, one connection each, send COUNT notifications each
 *     (NOTIFY CHANNEL, 'PHASE:SENDER:SEQ:T_NS', autocommit, one round trip
 *     each). RATE > 0: notifications per second in total, each thread on an
 *     absolute schedule (thread i's k-th at t0 + (k * NSENDERS + i) / RATE);
 *     RATE = 0: back to back. Prints one JSON line, then keeps the
 *     connections open until stdin is closed (so their server processes'
 *     CPU can still be read).
 *
 * The payload carries the sender's CLOCK_MONOTONIC time just before the
 * NOTIFY is written; the listener subtracts it from its own CLOCK_MONOTONIC
 * at PQnotifies: latency from NOTIFY to delivery (same machine, same clock).
 * Per connection and sender, sequence numbers must arrive as 0, 1, 2, ...:
 * a number at or below the last one is counted as duplicated (or
 * reordered), a gap as lost when the phase ends.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define MAX_SENDERS 64

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char* what, PGconn* c) {
  fprintf(stderr, "notify_client: %s%s%s\n", what, c ? ": " : "", c ? PQerrorMessage(c) : "");
  exit(1);
}

/* ---- latency histogram: 1 us buckets below 1 ms, 10 us below 100 ms, 1 ms
 * up to 120 s (the last bucket also holds anything slower). ------------- */
#define H1 1000
#define H2 9900
#define H3 119900
#define HN (H1 + H2 + H3)
static uint64_t hist[HN];

static int bucket(uint64_t us) {
  if (us < 1000) return (int)us;
  if (us < 100000) return H1 + (int)((us - 1000) / 10);
  uint64_t b = (us - 100000) / 1000;
  if (b >= H3) b = H3 - 1;
  return H1 + H2 + (int)b;
}

static uint64_t bucket_lower_us(int i) {
  if (i < H1) return (uint64_t)i;
  if (i < H1 + H2) return 1000 + (uint64_t)(i - H1) * 10;
  return 100000 + (uint64_t)(i - H1 - H2) * 1000;
}

/* ---- listen mode ------------------------------------------------------ */
typedef struct {
  PGconn* conn;
  int fd;
  int dead;
  int64_t last[MAX_SENDERS]; /* last sequence number seen per sender */
  uint64_t unique;           /* notifications of the phase in order */
  uint64_t backwards;        /* at or below the last one: duplicated or reordered */
} Listener;

static Listener* L;
static int nconn;
static long phase_id = -1;
static uint64_t expect;
static uint64_t complete; /* connections that have `expect` */
static uint64_t delivered, stray, notices, conn_errors, bad_payload;
static uint64_t first_rx, last_rx, max_lat_us;

static void notice_cb(void* arg, const PGresult* res) {
  (void)arg;
  (void)res;
  notices++;
}

static void reset_phase(long id, uint64_t want) {
  phase_id = id;
  expect = want;
  complete = 0;
  delivered = stray = bad_payload = 0;
  first_rx = last_rx = max_lat_us = 0;
  memset(hist, 0, sizeof hist);
  for (int i = 0; i < nconn; i++) {
    for (int s = 0; s < MAX_SENDERS; s++) L[i].last[s] = -1;
    L[i].unique = L[i].backwards = 0;
  }
}

static void report(int finished) {
  uint64_t lost = 0, backwards = 0, dead = 0;
  for (int i = 0; i < nconn; i++) {
    if (L[i].unique < expect) lost += expect - L[i].unique;
    backwards += L[i].backwards;
    dead += L[i].dead ? 1 : 0;
  }
  printf(
      "{\"phase\": %ld, \"complete\": %s, \"conns\": %d, \"expect_per_conn\": %llu, \"delivered\": "
      "%llu, "
      "\"lost\": %llu, \"dup_or_reordered\": %llu, \"stray\": %llu, \"bad_payload\": %llu, "
      "\"notices\": %llu, \"dead_conns\": %llu, \"first_rx_ns\": %llu, \"last_rx_ns\": %llu, "
      "\"max_latency_us\": %llu, \"hist\": [",
      phase_id, finished ? "true" : "false", nconn, (unsigned long long)expect,
      (unsigned long long)delivered, (unsigned long long)lost, (unsigned long long)backwards,
      (unsigned long long)stray, (unsigned long long)bad_payload, (unsigned long long)notices,
      (unsigned long long)dead, (unsigned long long)first_rx, (unsigned long long)last_rx,
      (unsigned long long)max_lat_us);
  int first = 1;
  for (int i = 0; i < HN; i++) {
    if (!hist[i]) continue;
    printf("%s[%llu, %llu]", first ? "" : ", ", (unsigned long long)bucket_lower_us(i),
           (unsigned long long)hist[i]);
    first = 0;
  }
  printf("]}\n");
  fflush(stdout);
}

static void on_notify(Listener* l, const char* payload, uint64_t rx) {
  long ph, snd;
  long long seq;
  unsigned long long t;
  if (sscanf(payload, "%ld:%ld:%lld:%llu", &ph, &snd, &seq, &t) != 4 || snd < 0 ||
      snd >= MAX_SENDERS) {
    bad_payload++;
    return;
  }
  if (ph != phase_id) {
    stray++;
    return;
  }
  delivered++;
  if (!first_rx) first_rx = rx;
  last_rx = rx;
  uint64_t us = rx > t ? (rx - t) / 1000 : 0;
  if (us > max_lat_us) max_lat_us = us;
  hist[bucket(us)]++;
  if (seq <= l->last[snd]) {
    l->backwards++;
    return;
  }
  l->last[snd] = seq;
  if (++l->unique == expect) complete++;
}

static int listen_mode(const char* conninfo, const char* channel, int n) {
  uint64_t t0 = now_ns();
  L = calloc((size_t)n, sizeof *L);
  nconn = n;
  char sql[256];
  snprintf(sql, sizeof sql, "LISTEN %s", channel);
  int ep = epoll_create1(0);
  for (int i = 0; i < n; i++) {
    PGconn* c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) die("connect", c);
    PQsetNoticeReceiver(c, notice_cb, NULL);
    PGresult* r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) die("LISTEN", c);
    PQclear(r);
    if (PQsetnonblocking(c, 1) != 0) die("PQsetnonblocking", c);
    L[i].conn = c;
    L[i].fd = PQsocket(c);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, L[i].fd, &ev) != 0) die("epoll_ctl", NULL);
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) != 0) die("epoll_ctl stdin", NULL);
  printf("READY %.3f\n", (double)(now_ns() - t0) / 1e9);
  fflush(stdout);

  char cmd[4096];
  size_t cmdlen = 0;
  struct epoll_event evs[256];
  int reported = 1;
  for (;;) {
    int k = epoll_wait(ep, evs, 256, 1000);
    if (k < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait", NULL);
    }
    for (int e = 0; e < k; e++) {
      uint32_t i = evs[e].data.u32;
      if (i == UINT32_MAX) {
        ssize_t got = read(0, cmd + cmdlen, sizeof cmd - 1 - cmdlen);
        if (got <= 0) goto quit;
        cmdlen += (size_t)got;
        cmd[cmdlen] = 0;
        char* nl;
        while ((nl = strchr(cmd, '\n')) != NULL) {
          *nl = 0;
          long id;
          unsigned long long want;
          if (sscanf(cmd, "phase %ld %llu", &id, &want) == 2) {
            reset_phase(id, want);
            reported = 0;
          } else if (strcmp(cmd, "stop") == 0) {
            if (!reported) report(0);
            reported = 1;
          } else if (strcmp(cmd, "quit") == 0) {
            goto quit;
          }
          size_t used = (size_t)(nl - cmd) + 1;
          memmove(cmd, nl + 1, cmdlen - used + 1);
          cmdlen -= used;
        }
        continue;
      }
      Listener* l = &L[i];
      if (l->dead) continue;
      if (!PQconsumeInput(l->conn)) {
        conn_errors++;
        l->dead = 1;
        epoll_ctl(ep, EPOLL_CTL_DEL, l->fd, NULL);
        fprintf(stderr, "notify_client: connection %u: %s", i, PQerrorMessage(l->conn));
        continue;
      }
      uint64_t rx = now_ns();
      PGnotify* nf;
      while ((nf = PQnotifies(l->conn)) != NULL) {
        on_notify(l, nf->extra, rx);
        PQfreemem(nf);
      }
    }
    if (!reported && complete == (uint64_t)nconn) {
      report(1);
      reported = 1;
    }
  }
quit:
  for (int i = 0; i < n; i++) PQfinish(L[i].conn);
  return 0;
}

/* ---- send mode --------------------------------------------------------- */
typedef struct {
  int id;
  PGconn* conn;
  const char* channel;
  long count, phase;
  int nsenders;
  double rate;
  uint64_t t0;
  long sent, errors;
  uint64_t first_ns, last_ns, max_behind_ns;
  char err[256];
} Sender;

static pthread_barrier_t barrier;
static uint64_t start_ns;

static void* sender_main(void* arg) {
  Sender* s = arg;
  char sql[512];
  pthread_barrier_wait(&barrier);
  uint64_t t0 = start_ns;
  for (long k = 0; k < s->count; k++) {
    if (s->rate > 0) {
      uint64_t due = t0 + (uint64_t)(((double)k * s->nsenders + s->id) / s->rate * 1e9);
      uint64_t now = now_ns();
      if (now < due) {
        struct timespec ts = {.tv_sec = (time_t)(due / 1000000000ull),
                              .tv_nsec = (long)(due % 1000000000ull)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
      } else if (now - due > s->max_behind_ns) {
        s->max_behind_ns = now - due;
      }
    }
    uint64_t t = now_ns();
    snprintf(sql, sizeof sql, "NOTIFY %s, '%ld:%d:%ld:%llu'", s->channel, s->phase, s->id, k,
             (unsigned long long)t);
    PGresult* r = PQexec(s->conn, sql);
    if (PQresultStatus(r) == PGRES_COMMAND_OK) {
      s->sent++;
      if (!s->first_ns) s->first_ns = t;
      s->last_ns = t;
    } else {
      s->errors++;
      snprintf(s->err, sizeof s->err, "%s", PQerrorMessage(s->conn));
      if (PQstatus(s->conn) != CONNECTION_OK) {
        PQclear(r);
        break;
      }
    }
    PQclear(r);
  }
  return NULL;
}

static int send_mode(const char* conninfo, const char* channel, int n, long count, double rate,
                     long phase) {
  if (n < 1 || n > MAX_SENDERS) die("NSENDERS must be 1..64", NULL);
  Sender* S = calloc((size_t)n, sizeof *S);
  pthread_t* th = calloc((size_t)n, sizeof *th);
  for (int i = 0; i < n; i++) {
    S[i] = (Sender){
        .id = i, .channel = channel, .count = count, .phase = phase, .nsenders = n, .rate = rate};
    S[i].conn = PQconnectdb(conninfo);
    if (PQstatus(S[i].conn) != CONNECTION_OK) die("sender connect", S[i].conn);
  }
  pthread_barrier_init(&barrier, NULL, (unsigned)n + 1);
  for (int i = 0; i < n; i++) pthread_create(&th[i], NULL, sender_main, &S[i]);
  start_ns = now_ns() + 20000000ull; /* 20 ms: every thread is waiting by then */
  pthread_barrier_wait(&barrier);
  for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
  uint64_t end = now_ns();
  long sent = 0, errors = 0;
  uint64_t first = 0, last = 0, behind = 0;
  const char* err = "";
  for (int i = 0; i < n; i++) {
    sent += S[i].sent;
    errors += S[i].errors;
    if (S[i].first_ns && (!first || S[i].first_ns < first)) first = S[i].first_ns;
    if (S[i].last_ns > last) last = S[i].last_ns;
    if (S[i].max_behind_ns > behind) behind = S[i].max_behind_ns;
    if (S[i].err[0]) err = S[i].err;
  }
  printf(
      "{\"sent\": %ld, \"errors\": %ld, \"first_tx_ns\": %llu, \"last_tx_ns\": %llu, \"end_ns\": "
      "%llu, "
      "\"max_behind_schedule_ms\": %.3f, \"error\": \"",
      sent, errors, (unsigned long long)first, (unsigned long long)last, (unsigned long long)end,
      (double)behind / 1e6);
  for (const char* p = err; *p; p++) {
    if (*p == '"' || *p == '\\') putchar('\\');
    putchar(*p == '\n' ? ' ' : *p);
  }
  printf("\"}\n");
  fflush(stdout);
  char buf[64];
  while (read(0, buf, sizeof buf) > 0) {
  }
  for (int i = 0; i < n; i++) PQfinish(S[i].conn);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 5 && strcmp(argv[1], "listen") == 0)
    return listen_mode(argv[2], argv[3], atoi(argv[4]));
  if (argc == 8 && strcmp(argv[1], "send") == 0)
    return send_mode(argv[2], argv[3], atoi(argv[4]), atol(argv[5]), atof(argv[6]), atol(argv[7]));
  fprintf(stderr,
          "usage: notify_client listen CONNINFO CHANNEL NCONN\n"
          "       notify_client send CONNINFO CHANNEL NSENDERS COUNT RATE PHASE\n");
  return 2;
}
