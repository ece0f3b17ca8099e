// Tests for daemon/metrics.{h,cpp} (per-worker recording, folding at scrape
// time, names and labels) and the [metrics] configuration section.
#include "daemon/ops/metrics.h"

#include <catch2/catch.hpp>

#include <prometheus/text_serializer.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"

using namespace sqlmux;

namespace {

const prometheus::MetricFamily& fam(const std::vector<prometheus::MetricFamily>& fs,
                                    const std::string& name) {
  for (const auto& f : fs) {
    if (f.name == name) return f;
  }
  FAIL("no metric family " << name);
  return fs.front();
}

std::string label(const prometheus::ClientMetric& m, const std::string& name) {
  for (const auto& l : m.label) {
    if (l.name == name) return l.value;
  }
  return "<none>";
}

// The one metric of `f` whose `key` label is `value`.
const prometheus::ClientMetric& with_label(const prometheus::MetricFamily& f,
                                           const std::string& key, const std::string& value) {
  const prometheus::ClientMetric* found = nullptr;
  for (const auto& m : f.metric) {
    if (label(m, key) == value) {
      REQUIRE(found == nullptr);
      found = &m;
    }
  }
  INFO(f.name << "{" << key << "=" << value << "}");
  REQUIRE(found != nullptr);
  return *found;
}

metrics::PoolLabels labels(const std::string& pool, const std::string& user = "app") {
  return {pool, user, "postgres", "127.0.0.1:5432"};
}

config::LoadResult load(const std::string& extra) {
  return config::load_string(R"(
[[listener]]
protocol = "postgres"
listen = "127.0.0.1:6432"
)" + extra,
                             "test.toml");
}

std::string all_errors(const config::LoadResult& r) {
  std::string out;
  for (const auto& e : r.errors) out += e.to_string() + "\n";
  return out;
}

}  // namespace

TEST_CASE("metrics: histogram buckets are upper-inclusive and fold cumulatively", "[metrics]") {
  metrics::Histogram a;
  metrics::Histogram b;
  a.observe_ns(0);               // first bucket (le 0.0001)
  a.observe_ns(100'000);         // exactly the first bound: still the first bucket
  a.observe_ns(100'001);         // second bucket (le 0.00025)
  b.observe_ns(3'000'000);       // le 0.005
  b.observe_ns(61'000'000'000);  // beyond 60 s: only +Inf
  const auto h = metrics::fold({&a, &b});
  REQUIRE(h.bucket.size() == metrics::kLatencyBoundsNs.size() + 1);
  CHECK(h.bucket[0].upper_bound == Approx(0.0001));
  CHECK(h.bucket[0].cumulative_count == 2);
  CHECK(h.bucket[1].upper_bound == Approx(0.00025));
  CHECK(h.bucket[1].cumulative_count == 3);
  // le 0.0005, 0.001, 0.0025 add nothing; le 0.005 adds b's 3 ms.
  CHECK(h.bucket[4].cumulative_count == 3);
  CHECK(h.bucket[5].upper_bound == Approx(0.005));
  CHECK(h.bucket[5].cumulative_count == 4);
  CHECK(h.bucket[metrics::kLatencyBoundsNs.size() - 1].upper_bound == Approx(60.0));
  CHECK(h.bucket[metrics::kLatencyBoundsNs.size() - 1].cumulative_count == 4);
  CHECK(std::isinf(h.bucket.back().upper_bound));
  CHECK(h.bucket.back().cumulative_count == 5);
  CHECK(h.sample_count == 5);
  CHECK(h.sample_sum == Approx((0 + 100'000 + 100'001 + 3'000'000 + 61'000'000'000.0) / 1e9));
  for (size_t i = 1; i < h.bucket.size(); ++i) {
    CHECK(h.bucket[i].cumulative_count >= h.bucket[i - 1].cumulative_count);
    CHECK(h.bucket[i].upper_bound > h.bucket[i - 1].upper_bound);
  }
}

TEST_CASE("metrics: an empty histogram folds to zeros", "[metrics]") {
  const auto h = metrics::fold({});
  CHECK(h.sample_count == 0);
  CHECK(h.sample_sum == 0);
  REQUIRE(h.bucket.size() == metrics::kLatencyBoundsNs.size() + 1);
  CHECK(h.bucket.back().cumulative_count == 0);
}

TEST_CASE("metrics: counters and gauges add up over workers", "[metrics]") {
  auto m = std::make_shared<Metrics>();
  metrics::PoolStats w0, w1, other;
  metrics::WorkerStats ws0, ws1;
  m->add_pool(labels("appdb"), {&w0, &w1});
  m->add_pool(labels("other", "bob"), {&other});
  m->add_worker(&ws0);
  m->add_worker(&ws1);

  w0.client_received_bytes.add(100);
  w1.client_received_bytes.add(23);
  w0.server_sent_bytes.add(7);
  w0.clients[1].inc();  // idle
  w0.clients[1].inc();
  w1.clients[1].inc();
  w1.clients[3].inc();  // active
  // A backend that moved from worker 0 to worker 1: one share each.
  w0.servers[1].inc();
  w0.servers[1].dec();
  w1.servers[1].inc();
  w0.query.observe_ns(1'000'000);
  w1.query.observe_ns(2'000'000);
  w1.transaction.observe_ns(3'000'000);
  w0.prepared_hits.add(5);
  w1.prepared_misses.add(2);
  w1.prepared_evictions.add();
  w0.connect_attempts.add(3);
  w1.connect_failures.add();
  w1.server_errors[static_cast<int>(Reason::BackendDied)].add();
  ws0.clients[0].inc();  // login
  ws1.client_errors[static_cast<int>(Reason::AuthFailed)].add();
  ws0.client_errors[static_cast<int>(Reason::AuthFailed)].add();
  ws0.client_errors[static_cast<int>(Reason::UnknownDatabase)].add();
  ws0.client_errors[static_cast<int>(Reason::ClientClosed)].add();  // not exported: not an error
  m->config_reload(true);
  m->config_reload(false);
  m->config_reload(false);

  const auto fs = m->Collect();
  CHECK(with_label(fam(fs, "sqlmux_client_received_bytes_total"), "pool", "appdb").counter.value ==
        123);
  CHECK(with_label(fam(fs, "sqlmux_client_received_bytes_total"), "pool", "other").counter.value ==
        0);
  CHECK(with_label(fam(fs, "sqlmux_server_sent_bytes_total"), "pool", "appdb").counter.value == 7);
  CHECK(with_label(fam(fs, "sqlmux_client_received_bytes_total"), "pool", "other")
            .label.at(1)
            .value == "bob");

  const auto& clients = fam(fs, "sqlmux_client_connections");
  CHECK(clients.metric.size() == 6);  // idle, waiting, active for 2 pools
  for (const auto& c : clients.metric) {
    if (label(c, "pool") != "appdb") continue;
    const std::string st = label(c, "state");
    CHECK(c.gauge.value == (st == "idle" ? 3 : st == "active" ? 1 : 0));
  }
  for (const auto& c : fam(fs, "sqlmux_server_connections").metric) {
    if (label(c, "pool") == "appdb" && label(c, "state") == "idle") CHECK(c.gauge.value == 1);
  }
  CHECK(fam(fs, "sqlmux_client_login_connections").metric.at(0).gauge.value == 1);

  const auto& q = with_label(fam(fs, "sqlmux_query_duration_seconds"), "pool", "appdb");
  CHECK(q.histogram.sample_count == 2);
  CHECK(q.histogram.sample_sum == Approx(0.003));
  CHECK(with_label(fam(fs, "sqlmux_queries_total"), "pool", "appdb").counter.value == 2);
  CHECK(with_label(fam(fs, "sqlmux_transactions_total"), "pool", "appdb").counter.value == 1);
  CHECK(with_label(fam(fs, "sqlmux_prepared_statement_cache_hits_total"), "pool", "appdb")
            .counter.value == 5);
  CHECK(with_label(fam(fs, "sqlmux_prepared_statement_cache_misses_total"), "pool", "appdb")
            .counter.value == 2);
  CHECK(with_label(fam(fs, "sqlmux_prepared_statement_cache_evictions_total"), "pool", "appdb")
            .counter.value == 1);
  const auto& att = with_label(fam(fs, "sqlmux_server_connect_attempts_total"), "pool", "appdb");
  CHECK(att.counter.value == 3);
  CHECK(label(att, "backend") == "127.0.0.1:5432");
  CHECK(
      with_label(fam(fs, "sqlmux_server_connect_failures_total"), "pool", "appdb").counter.value ==
      1);

  const auto& serr = fam(fs, "sqlmux_server_errors_total");
  for (const auto& e : serr.metric) {
    const bool died = label(e, "pool") == "appdb" && label(e, "reason") == "backend_died";
    CHECK(e.counter.value == (died ? 1 : 0));
    CHECK(metrics::is_server_error(Reason::BackendDied));
  }
  const auto& cerr = fam(fs, "sqlmux_client_errors_total");
  CHECK(with_label(cerr, "reason", "auth_failed").counter.value == 2);
  CHECK(with_label(cerr, "reason", "unknown_database").counter.value == 1);
  CHECK(with_label(cerr, "reason", "query_wait_timeout").counter.value == 0);
  for (const auto& e : cerr.metric) {
    CHECK(label(e, "reason") != "client_closed");
    CHECK(label(e, "reason") != "cancel_request");
  }
  const auto& reloads = fam(fs, "sqlmux_config_reloads_total");
  CHECK(with_label(reloads, "result", "success").counter.value == 1);
  CHECK(with_label(reloads, "result", "failure").counter.value == 2);
}

TEST_CASE("metrics: backend_up follows the latest connect outcome of any worker", "[metrics]") {
  auto m = std::make_shared<Metrics>();
  metrics::PoolStats w0, w1, per_user;
  m->add_pool(labels("appdb"), {&w0, &w1});
  auto up = [&](const std::string& pool) {
    return with_label(fam(m->Collect(), "sqlmux_backend_up"), "pool", pool).gauge.value;
  };
  CHECK(up("appdb") == 1);  // no attempt yet
  w0.connect_outcome(1000, true);
  CHECK(up("appdb") == 1);
  w1.connect_outcome(2000, false);
  CHECK(up("appdb") == 0);
  w0.connect_outcome(3000, true);
  CHECK(up("appdb") == 1);
  // A second pool object of the same configured pool (a per-user pool)
  // shares the series: one series per pool and backend.
  m->add_pool(labels("appdb", "bob"), {&per_user});
  per_user.connect_outcome(4000, false);
  CHECK(fam(m->Collect(), "sqlmux_backend_up").metric.size() == 1);
  CHECK(up("appdb") == 0);
}

TEST_CASE("metrics: names and labels follow the Prometheus rules", "[metrics]") {
  auto m = std::make_shared<Metrics>();
  metrics::PoolStats w0;
  metrics::WorkerStats ws;
  m->add_pool(labels("appdb"), {&w0});
  m->add_worker(&ws);
  const auto fs = m->Collect();
  // sqlmux's own, and the process collector's standard process_* series.
  const std::regex name_re("^(sqlmux|process)_[a-z0-9_]+$");
  const std::regex label_re("^[a-z_][a-z0-9_]*$");
  CHECK(fs.size() >= 20);
  for (const auto& f : fs) {
    INFO(f.name);
    CHECK(std::regex_match(f.name, name_re));
    CHECK_FALSE(f.help.empty());
    const bool total = f.name.size() > 6 && f.name.substr(f.name.size() - 6) == "_total";
    CHECK(total == (f.type == prometheus::MetricType::Counter));
    if (f.type == prometheus::MetricType::Histogram) {
      CHECK(f.name.substr(f.name.size() - 8) == "_seconds");
    }
    CHECK_FALSE(f.metric.empty());
    for (const auto& mm : f.metric) {
      for (const auto& l : mm.label) CHECK(std::regex_match(l.name, label_re));
    }
  }
  // The text format carries histogram series as _bucket{le=...}, _sum, _count.
  const std::string text = prometheus::TextSerializer().Serialize(fs);
  CHECK(text.find("sqlmux_query_duration_seconds_bucket{pool=\"appdb\",user=\"app\","
                  "protocol=\"postgres\",le=\"+Inf\"} 0") != std::string::npos);
  CHECK(text.find("sqlmux_query_duration_seconds_sum{") != std::string::npos);
  CHECK(text.find("sqlmux_query_duration_seconds_count{") != std::string::npos);
  CHECK(text.find("# TYPE sqlmux_transactions_total counter") != std::string::npos);
}

TEST_CASE("metrics: scraping while a worker records sees monotonic values", "[metrics]") {
  // One writer, one reader, as between a worker and the exposer's thread
  // (the ASan/TSan builds check the accesses).
  auto m = std::make_shared<Metrics>();
  metrics::PoolStats w0;
  m->add_pool(labels("appdb"), {&w0});
  std::atomic<bool> done{false};
  constexpr uint64_t kN = 200'000;
  std::thread writer([&] {
    for (uint64_t i = 0; i < kN; ++i) {
      w0.client_sent_bytes.add(2);
      w0.query.observe_ns(i % 3'000'000);
      w0.clients[3].inc();
      w0.clients[3].dec();
    }
    done = true;
  });
  double last_bytes = 0;
  uint64_t last_count = 0;
  int scrapes = 0;
  while (!done.load() || scrapes == 0) {
    const auto fs = m->Collect();
    const double bytes = fam(fs, "sqlmux_client_sent_bytes_total").metric.at(0).counter.value;
    const auto& h = fam(fs, "sqlmux_query_duration_seconds").metric.at(0).histogram;
    CHECK(bytes >= last_bytes);
    CHECK(h.sample_count >= last_count);
    last_bytes = bytes;
    last_count = h.sample_count;
    ++scrapes;
  }
  writer.join();
  const auto fs = m->Collect();
  CHECK(fam(fs, "sqlmux_client_sent_bytes_total").metric.at(0).counter.value == 2.0 * kN);
  CHECK(fam(fs, "sqlmux_query_duration_seconds").metric.at(0).histogram.sample_count == kN);
  CHECK(fam(fs, "sqlmux_queries_total").metric.at(0).counter.value == kN);
}

TEST_CASE("config: [metrics] listen", "[config][metrics]") {
  SECTION("absent: no endpoint") {
    auto r = load("");
    REQUIRE(r.config.has_value());
    CHECK_FALSE(r.config->metrics.has_value());
  }
  SECTION("ipv4") {
    auto r = load("[metrics]\nlisten = \"127.0.0.1:9930\"\n");
    INFO(all_errors(r));
    REQUIRE(r.config.has_value());
    REQUIRE(r.config->metrics.has_value());
    CHECK(r.config->metrics->listen.host == "127.0.0.1");
    CHECK(r.config->metrics->listen.port == 9930);
    CHECK(r.config->metrics->listen.text == "127.0.0.1:9930");
  }
  SECTION("ipv6") {
    auto r = load("[metrics]\nlisten = \"[::1]:9930\"\n");
    REQUIRE(r.config.has_value());
    CHECK(r.config->metrics->listen.host == "::1");
  }
  struct Bad {
    std::string text;
    std::string key;
    int line;
    int column;
    std::string message_part;
  };
  // The listener takes lines 1-4; [metrics] is line 5, its key line 6.
  const std::vector<Bad> bad = {
      {"[metrics]\nlisten = \"127.0.0.1\"\n", "metrics.listen", 6, 10, "expected ip:port"},
      {"[metrics]\nlisten = \"127.0.0.1:0\"\n", "metrics.listen", 6, 10, "port 1-65535"},
      {"[metrics]\nlisten = \"localhost:9930\"\n", "metrics.listen", 6, 10, "expected ip:port"},
      {"[metrics]\nlisten = \"unix:/tmp/m.sock\"\n", "metrics.listen", 6, 10, "expected ip:port"},
      {"[metrics]\nlisten = 9930\n", "metrics.listen", 6, 10, "expected a string, got an integer"},
      {"[metrics]\n", "metrics.listen", 5, 1, "required key is missing"},
      {"[metrics]\nlisten = \"127.0.0.1:6432\"\n", "metrics.listen", 6, 10,
       "same address as listener[0]"},
      {"[metrics]\nlisten = \"127.0.0.1:9930\"\nlisen = \"x\"\n", "metrics.lisen", 7, 9,
       "did you mean \"listen\"?"},
      {"[metric]\nlisten = \"127.0.0.1:9930\"\n", "metric", 5, 1, "did you mean \"metrics\"?"},
  };
  for (const auto& b : bad) {
    auto r = load(b.text);
    INFO(b.text << "\n" << all_errors(r));
    REQUIRE(r.errors.size() == 1);
    CHECK_FALSE(r.config.has_value());
    CHECK(r.errors[0].key == b.key);
    CHECK(r.errors[0].line == b.line);
    CHECK(r.errors[0].column == b.column);
    CHECK(r.errors[0].message.find(b.message_part) != std::string::npos);
    CHECK(r.errors[0].to_string().rfind("test.toml:", 0) == 0);
  }
}
