// retentiond-bench --backend postgresql: the daemon on PostgreSQL, with one
// and with two daemons on the database, beside bare PostgreSQL doing the
// same INSERTs and DELETEs in the same run (bench/README.md).
//
// Phases, each on a database of its own (of the cluster --pg-url names, or
// of one the bench starts: tests/support/pg_cluster):
//  - raw: a table shaped like retentiond.records (same columns, keys and
//    indexes), one prepared INSERT per record, --batch per transaction; then
//    one prepared DELETE per purged key, in due order, 1,000 per transaction
//    (the daemon's max_batch_records);
//  - one daemon: record.put_many of --batch records, one after the other;
//    then a restart with the clock past the purge due times and an explicit
//    sweep: records purged per second from READY to the sweep's reply (the
//    daemon's own pass runs in between, on the same writer);
//  - two daemons: the same import split between two daemons at once, then
//    both restarted and sweeping at once;
//  - admin latency: status calls every 2 ms on one daemon while it sweeps.

#include "bench/pg_bench.hpp"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "bench/records.hpp"
#include "lib/store/postgresql/pq.hpp"
#include "tests/support/daemon_process.hpp"
#include "tests/support/pg_cluster.hpp"

namespace retentiond::bench {
namespace {

namespace fs = std::filesystem;
namespace pq = store::pq;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
void say(const std::string& s) { std::cerr << "[bench] " << s << std::endl; }

struct Db {
  std::string url;
  std::string name;
};

Db database(const PgBenchOptions& opt, const std::string& name) {
  if (opt.url.empty()) return {test::PgCluster::shared().create_database(name), name};
  // The caller's cluster (--pg-url, key=value form): the databases are made
  // on it, and named by a dbname appended (the last keyword wins).
  pq::Connection admin(opt.url, "retentiond-bench");
  admin.exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
  admin.exec("CREATE DATABASE " + name);
  return {opt.url + " dbname=" + name, name};
}

// The records: even indexes purged at kPurgeNow, odd ones kept until later.
std::vector<BenchRecord> make_records(const PgBenchOptions& opt) {
  RecordGenerator gen(opt.seed);
  std::vector<BenchRecord> out;
  out.reserve(opt.records);
  for (std::uint64_t i = 0; i < opt.records; ++i) out.push_back(gen.make(i));
  return out;
}

std::size_t purged_count(const std::vector<BenchRecord>& records) {
  return static_cast<std::size_t>(std::count_if(records.begin(), records.end(), [](const BenchRecord& r) {
    return std::string(r.category) == kPurgeCategory;
  }));
}

json raw_phase(const PgBenchOptions& opt, const std::vector<BenchRecord>& records) {
  const Db db = database(opt, "bench_raw");
  pq::Connection c(db.url, "retentiond-bench");
  c.exec("SET synchronous_commit = on");
  c.exec(R"(CREATE TABLE raw (key text COLLATE "C" PRIMARY KEY, category text COLLATE "C" NOT NULL,
              state text NOT NULL, dates text NOT NULL, next_phase integer NOT NULL, due bigint,
              done text NOT NULL, created_at bigint NOT NULL, slot bigint, subject_ref text COLLATE "C", sealed bytea);
            CREATE INDEX raw_due ON raw (due, key) WHERE due IS NOT NULL;
            CREATE INDEX raw_undue ON raw (key) WHERE due IS NULL;
            CREATE INDEX raw_category ON raw (category, key);
            CREATE INDEX raw_subject ON raw (subject_ref) WHERE subject_ref IS NOT NULL;)");
  std::mt19937_64 rng(opt.seed);
  auto t0 = Clock::now();
  for (std::size_t at = 0; at < records.size(); at += opt.batch) {
    c.exec("BEGIN");
    for (std::size_t i = at; i < std::min(records.size(), at + opt.batch); ++i) {
      const auto& r = records[i];
      // Sealed bytes of the size the daemon stores: the values' JSON plus
      // the nonce and tag; a subject_ref of an HMAC's length.
      std::string sealed(r.fields_json.size() + r.subject.size() + 40, '\0');
      for (auto& ch : sealed) ch = static_cast<char>(rng());
      c.run("INSERT INTO raw VALUES ($1, $2, 'active', $3, 0, $4, '[]', 0, $5, $6, $7)",
            pq::Params()
                .text(r.key)
                .text(r.category)
                .text(r.dates_json)
                .i64(r.due)
                .i64(static_cast<std::int64_t>(i))
                .text(std::string(64, 'a' + static_cast<char>(i % 26)))
                .bytes(sealed));
    }
    c.exec("COMMIT");
  }
  const double insert_s = since(t0);
  // The purged keys in due order, one DELETE each, 1,000 per transaction.
  std::vector<const BenchRecord*> purge;
  for (const auto& r : records) {
    if (std::string(r.category) == kPurgeCategory) purge.push_back(&r);
  }
  std::sort(purge.begin(), purge.end(), [](auto* a, auto* b) { return a->due != b->due ? a->due < b->due : a->key < b->key; });
  t0 = Clock::now();
  for (std::size_t at = 0; at < purge.size(); at += 1000) {
    c.exec("BEGIN");
    for (std::size_t i = at; i < std::min(purge.size(), at + 1000); ++i) {
      c.run("DELETE FROM raw WHERE key = $1", pq::Params().text(purge[i]->key));
    }
    c.exec("COMMIT");
  }
  const double delete_s = since(t0);
  return {{"insert_per_s", static_cast<double>(records.size()) / insert_s},
          {"delete_per_s", static_cast<double>(purge.size()) / delete_s}};
}

std::string policy(const fs::path& dir, const std::string& url) {
  return policy_toml(dir) + "\n[store]\nbackend = \"postgresql\"\nurl = \"" + url + "\"\n";
}

std::unique_ptr<testing::DaemonProcess> start(const fs::path& dir, const char* now) {
  testing::DaemonOptions o;
  o.launcher = {"sh", "-c", "exec \"$0\" \"$@\" 2>>\"$RD_BENCH_LOG\""};
  o.env = {"RD_BENCH_LOG=" + (dir / "daemon.log").string()};
  return std::make_unique<testing::DaemonProcess>(
      dir, std::vector<std::string>{"--config", (dir / "policy.toml").string(), "--now", now, "--log-level", "warn"}, o);
}

std::string put_line(const std::vector<BenchRecord>& records, std::size_t begin, std::size_t end) {
  std::string line = R"({"jsonrpc":"2.0","id":1,"method":"record.put_many","params":{"records":[)";
  for (std::size_t i = begin; i < end; ++i) {
    if (i != begin) line += ',';
    RecordGenerator::append_json(records[i], line);
  }
  return line + "]}}";
}

// record.put_many of records[i] for i = first, first + step... in batches.
void import(const fs::path& socket, const std::vector<BenchRecord>& records, const PgBenchOptions& opt,
            std::size_t part, std::size_t parts) {
  testing::Client client(socket);
  const std::size_t per = (records.size() + parts - 1) / parts;
  const std::size_t begin = part * per, end = std::min(records.size(), begin + per);
  for (std::size_t at = begin; at < end; at += opt.batch) {
    client.send_line(put_line(records, at, std::min(end, at + opt.batch)));
    const auto reply = client.read_line(std::chrono::minutes(30));
    if (!reply || reply->find("\"error\"") != std::string::npos) throw std::runtime_error("put_many failed: " + reply.value_or("no reply"));
  }
}

json latency(std::vector<double> ms) {
  if (ms.empty()) return nullptr;
  std::sort(ms.begin(), ms.end());
  const auto at = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<std::size_t>(q * static_cast<double>(ms.size())))]; };
  return {{"calls", ms.size()}, {"p50_ms", at(0.5)}, {"p99_ms", at(0.99)}, {"max_ms", ms.back()}};
}

// `daemons` daemons on one database: the import split between them, then
// all restarted past the purge due times and sweeping at once.
json daemon_phase(const PgBenchOptions& opt, const std::vector<BenchRecord>& records, std::size_t daemons,
                  const fs::path& work) {
  const Db db = database(opt, "bench_" + std::to_string(daemons));
  std::vector<fs::path> dirs;
  for (std::size_t i = 0; i < daemons; ++i) {
    dirs.push_back(work / ("pg-" + std::to_string(daemons) + "-" + std::to_string(i)));
    fs::create_directories(dirs.back() / "state");
    std::ofstream(dirs.back() / "policy.toml") << policy(dirs.back(), db.url);
  }
  // One secret for all.
  std::vector<std::unique_ptr<testing::DaemonProcess>> d;
  d.push_back(start(dirs[0], kIngestNow));
  for (std::size_t i = 1; i < daemons; ++i) {
    fs::copy_file(dirs[0] / "state" / "secret", dirs[i] / "state" / "secret", fs::copy_options::overwrite_existing);
    d.push_back(start(dirs[i], kIngestNow));
  }
  auto t0 = Clock::now();
  {
    std::vector<std::thread> t;
    for (std::size_t i = 0; i < daemons; ++i) t.emplace_back([&, i] { import(d[i]->socket(), records, opt, i, daemons); });
    for (auto& x : t) x.join();
  }
  const double ingest_s = since(t0);
  for (auto& x : d) x->stop(SIGTERM);
  d.clear();
  for (std::size_t i = 0; i < daemons; ++i) d.push_back(start(dirs[i], kPurgeNow));
  t0 = Clock::now();
  std::atomic<bool> done{false};
  std::vector<double> probes;
  std::thread prober([&] {
    testing::Client c(d[0]->socket());
    while (!done) {
      const auto s = Clock::now();
      c.call("status");
      probes.push_back(std::chrono::duration<double, std::milli>(Clock::now() - s).count());
      std::this_thread::sleep_until(s + std::chrono::milliseconds(2));  // pacing: a monitor's poll
    }
  });
  {
    std::vector<std::thread> t;
    for (std::size_t i = 0; i < daemons; ++i) {
      t.emplace_back([&, i] {
        testing::Client c(d[i]->socket());
        c.call("sweep", nullptr, std::chrono::minutes(60));
      });
    }
    for (auto& x : t) x.join();
  }
  const double sweep_s = since(t0);
  done = true;
  prober.join();
  testing::Client c(d[0]->socket());
  const json status = c.call("status")["result"];
  const std::int64_t left = status["records"]["active"].get<std::int64_t>();
  const auto expected = static_cast<std::int64_t>(records.size() - purged_count(records));
  if (left != expected) throw std::runtime_error("after the sweeps " + std::to_string(left) + " records left, not " + std::to_string(expected));
  for (auto& x : d) x->stop(SIGTERM);
  return {{"daemons", daemons},
          {"ingest_per_s", static_cast<double>(records.size()) / ingest_s},
          {"purge_per_s", static_cast<double>(purged_count(records)) / sweep_s},
          {"admin_status_during_sweep", latency(probes)}};
}

std::string rate(double v) {
  std::string s = std::to_string(static_cast<long long>(v));
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<std::size_t>(i), ",");
  return s + "/s";
}

}  // namespace

int run_postgresql(const PgBenchOptions& opt) {
  const fs::path work = fs::temp_directory_path() / ("rdbench-pg." + std::to_string(::getpid()));
  fs::create_directories(work);
  say("generating " + std::to_string(opt.records) + " records");
  const auto records = make_records(opt);
  say("bare PostgreSQL: INSERT, then DELETE of the purged keys");
  const json raw = raw_phase(opt, records);
  say("one daemon");
  const json one = daemon_phase(opt, records, 1, work);
  say("two daemons");
  const json two = daemon_phase(opt, records, 2, work);
  const double raw_insert = raw["insert_per_s"], raw_delete = raw["delete_per_s"];
  const auto line = [&](const std::string& what, double v, double base) {
    std::cout << "  " << what << std::string(what.size() < 34 ? 34 - what.size() : 1, ' ') << rate(v) << "  ("
              << std::to_string(v / base).substr(0, 4) << "x bare " << rate(base) << ")\n";
  };
  std::cout << "retentiond on PostgreSQL, " << opt.records << " records (" << purged_count(records) << " purged), "
            << "batch " << opt.batch << ":\n";
  line("ingest, one daemon", one["ingest_per_s"], raw_insert);
  line("ingest, two daemons", two["ingest_per_s"], raw_insert);
  line("purge sweep, one daemon", one["purge_per_s"], raw_delete);
  line("purge sweep, two daemons", two["purge_per_s"], raw_delete);
  for (const auto* p : {&one, &two}) {
    const json& l = (*p)["admin_status_during_sweep"];
    if (l.is_null()) continue;
    std::cout << "  status during the sweep (" << (*p)["daemons"] << " daemon(s)): p50 " << l["p50_ms"].get<double>()
              << " ms, p99 " << l["p99_ms"].get<double>() << " ms over " << l["calls"] << " calls\n";
  }
  std::ofstream(opt.json_out) << json{{"backend", "postgresql"}, {"records", opt.records}, {"batch", opt.batch},
                                      {"raw", raw}, {"one_daemon", one}, {"two_daemons", two}}
                                     .dump(2)
                              << '\n';
  fs::remove_all(work);
  return 0;
}

}  // namespace retentiond::bench
