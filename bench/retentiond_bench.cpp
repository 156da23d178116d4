// retentiond-bench: runs the real retentiond binary and measures, in one run
// on one machine, ingest, purge and anonymise sweeps, admin latency during
// the import and the sweeps, and start-up with many records stored, each
// beside the same work done with bare SQLite: with the daemon's pragmas, and
// as a cron job would (WAL, synchronous = NORMAL, one statement per sweep).
// bench/README.md says exactly what each figure times.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <SQLiteCpp/SQLiteCpp.h>
#include <cxxopts.hpp>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>

#include "bench/pg_bench.hpp"
#include "bench/records.hpp"
#include "bench/sysinfo.hpp"
#include "tests/support/daemon_process.hpp"

namespace {

namespace fs = std::filesystem;
namespace rb = retentiond::bench;
namespace rdt = retentiond::testing;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

// The daemon's defaults (docs/configuration.md): a sweep batch takes at most
// this many records, so the raw DELETE and UPDATE commit as often.
constexpr std::size_t kDaemonMaxBatchRecords = 1000;
constexpr std::size_t kDaemonMaxPutMany = 10000;
constexpr double kMiB = 1024.0 * 1024.0;

struct Options {
  std::uint64_t records = 1000000;
  std::size_t batch = kDaemonMaxPutMany;
  std::size_t delete_batch = kDaemonMaxBatchRecords;
  std::uint64_t startup_records = 10000000;
  int startup_runs = 3;
  std::uint64_t seed = 20240301;
  // One admin call every 2 ms (start to start) while a phase runs: a phase
  // of 2 s or more gets the 1,000 calls a p99 needs, and at N = 1,000,000 a
  // phase that meets its rate target lasts a few seconds. The load this
  // puts on the daemon is reported (share of the phase with a call open).
  int probe_period_ms = 2;
  std::string json_out = "retentiond-bench.json";
  std::string work_dir;
  bool keep = false;
  bool connector = false;  // the purge category runs on a pull connector too
};

double seconds_since(SteadyClock::time_point t0) {
  return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

double ms_between(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

void say(const std::string& line) { std::cerr << "[bench] " << line << std::endl; }

std::string with_commas(std::uint64_t v) {
  const std::string digits = std::to_string(v);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// JSON-RPC over a test-support Client, with our own ids and timeouts (a
// sweep or a 10,000-record put_many can take longer than Client::call's).
class Rpc {
 public:
  explicit Rpc(const fs::path& socket) : m_client(socket) {}

  // The result, or throws with the error object.
  json call(const std::string& method, const json& params = nullptr,
            std::chrono::milliseconds timeout = std::chrono::minutes(30)) {
    json request = {{"jsonrpc", "2.0"}, {"id", m_next_id++}, {"method", method}};
    if (!params.is_null()) request["params"] = params;
    m_client.send_line(request.dump());
    const auto line = m_client.read_line(timeout);
    if (!line) throw std::runtime_error("no reply to " + method);
    json reply = json::parse(*line);
    if (reply.contains("error")) throw std::runtime_error(method + ": " + reply["error"].dump());
    return reply["result"];
  }

  rdt::Client& client() { return m_client; }

 private:
  rdt::Client m_client;
  std::int64_t m_next_id = 1;
};

// ---------------------------------------------------------------------------
// The daemon

struct Daemon {
  std::unique_ptr<rdt::DaemonProcess> process;
  double startup_s = 0;  // spawn to READY=1
  fs::path log;
};

// Starts retentiond on `dir`/policy.toml with its clock at `now`, its stderr
// appended to `log`, and waits for READY=1 (no time limit: start-up with
// millions of records is one of the things measured).
Daemon start_daemon(const fs::path& dir, const std::string& now, const fs::path& log) {
  rdt::DaemonOptions options;
  // sh execs the daemon in place (same pid) with its log redirected.
  options.launcher = {"sh", "-c", "exec \"$0\" \"$@\" 2>>\"$RD_BENCH_LOG\""};
  options.env = {"RD_BENCH_LOG=" + log.string()};
  options.wait_ready = false;
  options.record_notify = true;
  const std::vector<std::string> args = {"--config", (dir / "policy.toml").string(), "--now", now};
  Daemon d;
  d.log = log;
  const auto t0 = SteadyClock::now();
  d.process = std::make_unique<rdt::DaemonProcess>(dir, args, options);
  if (!d.process->wait_notify("READY=1", std::chrono::hours(6))) {
    throw std::runtime_error("retentiond did not become ready; see " + log.string());
  }
  d.startup_s = seconds_since(t0);
  return d;
}

void stop_daemon(Daemon& d) {
  const int rc = d.process->stop(SIGTERM);
  if (rc != 0)
    throw std::runtime_error("retentiond exited with " + std::to_string(rc) + "; see " +
                             d.log.string());
}

std::uint64_t vm_kib(const Daemon& d, const char* field) {
  return rb::proc_status_kib(d.process->pid(), field).value_or(0);
}

// The last "sweep.done" line of a log: its batches= and ms=, when present.
json last_sweep_log(const fs::path& log) {
  std::ifstream in(log);
  std::string line;
  std::string last;
  while (std::getline(in, line)) {
    if (line.find("sweep.done") != std::string::npos) last = line;
  }
  json out = {{"line", last.empty() ? json(nullptr) : json(last)}};
  for (const char* name : {"batches", "ms"}) {
    const std::string needle = std::string(" ") + name + "=";
    if (const auto at = last.find(needle); at != std::string::npos) {
      out[name] = std::stoull(last.substr(at + needle.size()));
    } else {
      out[name] = nullptr;
    }
  }
  return out;
}

void write_policy(const fs::path& dir, bool connector = false) {
  fs::create_directories(dir);
  std::ofstream(dir / "policy.toml") << rb::policy_toml(dir, connector);
}

// ---------------------------------------------------------------------------
// Admin probes

struct Probe {
  SteadyClock::time_point started;
  double ms = 0;
  bool status = false;
};

// Admin calls on a connection of its own while a phase runs: status and
// record.explain alternately, one call started every `period_ms` (start to
// start, as a monitor polls; a slower call is followed at once), each round
// trip (write the request, read the reply) timed. `pick_key` gives the key of
// the next record.explain, or nullopt when there is none to explain yet (the
// first batch of an import): status is called in its place.
class Prober {
 public:
  using PickKey = std::function<std::optional<std::string>(std::mt19937_64&)>;

  Prober(const fs::path& socket, int period_ms, std::uint64_t seed, PickKey pick_key)
      : m_thread([this, socket, period_ms, seed, pick = std::move(pick_key)] {
          try {
            Rpc rpc(socket);
            std::mt19937_64 rng(seed);
            for (bool status = true; !m_stop.load(); status = !status) {
              const std::optional<std::string> key = status ? std::nullopt : pick(rng);
              const auto start = SteadyClock::now();
              if (key) {
                rpc.call("record.explain", {{"key", *key}});
              } else {
                rpc.call("status");
              }
              m_probes.push_back({start, ms_between(start, SteadyClock::now()), !key.has_value()});
              // Pacing, not synchronisation: the probe period.
              std::this_thread::sleep_until(start + std::chrono::milliseconds(period_ms));
            }
          } catch (const std::exception& e) {
            m_error = e.what();
          }
        }) {}
  ~Prober() {
    m_stop = true;
    if (m_thread.joinable()) m_thread.join();
  }
  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;

  // Stops the calls (the one under way is finished) and returns them all;
  // throws when one failed.
  std::vector<Probe> stop(const std::string& label) {
    m_stop = true;
    m_thread.join();
    if (!m_error.empty()) throw std::runtime_error(label + ": probe: " + m_error);
    return std::move(m_probes);
  }

 private:
  std::atomic<bool> m_stop{false};
  std::vector<Probe> m_probes;  // written by the thread only, read after join
  std::string m_error;
  std::thread m_thread;  // last: starts once the members above exist
};

json latency_summary(std::vector<double> v) {
  if (v.empty())
    return {{"count", 0}, {"p50_ms", nullptr}, {"p99_ms", nullptr}, {"max_ms", nullptr}};
  std::sort(v.begin(), v.end());
  const auto pct = [&](double p) {
    const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
    return v[std::clamp<std::size_t>(rank, 1, v.size()) - 1];
  };
  return {{"count", v.size()}, {"p50_ms", pct(0.50)}, {"p99_ms", pct(0.99)}, {"max_ms", v.back()}};
}

// The latency figures of the calls started in [t0, t1), the timed phase:
// per method, together ("admin"), and the share of the phase during which a
// call was open (waiting or being answered).
json probe_figures(const std::vector<Probe>& probes, SteadyClock::time_point t0,
                   SteadyClock::time_point t1) {
  std::vector<double> status_ms;
  std::vector<double> explain_ms;
  std::vector<double> admin_ms;
  std::vector<const Probe*> slowest;
  double busy_ms = 0;
  for (const auto& p : probes) {
    if (p.started < t0 || p.started >= t1) continue;
    (p.status ? status_ms : explain_ms).push_back(p.ms);
    admin_ms.push_back(p.ms);
    slowest.push_back(&p);
    // Only the part of the call that falls inside the phase.
    const auto end = p.started + std::chrono::duration_cast<SteadyClock::duration>(
                                     std::chrono::duration<double, std::milli>(p.ms));
    busy_ms += std::max(0.0, ms_between(p.started, std::min(end, t1)));
  }
  // The slowest calls, with when they started in the phase: a tail made of
  // the first call after start-up differs from one spread over the phase.
  const std::size_t keep = std::min<std::size_t>(5, slowest.size());
  std::partial_sort(slowest.begin(), slowest.begin() + static_cast<std::ptrdiff_t>(keep),
                    slowest.end(), [](const Probe* a, const Probe* b) { return a->ms > b->ms; });
  json slow = json::array();
  for (std::size_t i = 0; i < keep; ++i) {
    slow.push_back({{"method", slowest[i]->status ? "status" : "record.explain"},
                    {"at_ms", ms_between(t0, slowest[i]->started)},
                    {"ms", slowest[i]->ms}});
  }
  const double phase_ms = ms_between(t0, t1);
  return {{"status", latency_summary(status_ms)},
          {"explain", latency_summary(explain_ms)},
          {"admin", latency_summary(admin_ms)},
          {"slowest", slow},
          {"probe_busy_fraction", phase_ms > 0 ? busy_ms / phase_ms : 0.0}};
}

std::string p99_text(const json& latency) {
  return latency["count"].get<std::size_t>() == 0
             ? std::string("n/a")
             : fixed(latency["p99_ms"].get<double>(), 1) + " ms";
}

std::string probe_text(const json& figures) {
  const std::size_t calls = figures["admin"]["count"];
  if (calls == 0) return "no admin calls";
  return "p99 status " + p99_text(figures["status"]) + ", explain " +
         p99_text(figures["explain"]) + " over " + with_commas(calls) + " calls";
}

// ---------------------------------------------------------------------------
// Ingest through the socket

struct IngestStats {
  std::uint64_t records = 0;
  std::size_t requests = 0;
  double seconds = 0;
  SteadyClock::time_point started;  // the first line is written
  SteadyClock::time_point ended;    // the last reply is read
};

// A record.put_many request line for records [begin, end) of `records`.
std::string put_many_line(std::size_t id, const std::vector<rb::BenchRecord>& records,
                          std::size_t begin, std::size_t end) {
  std::string line = "{\"jsonrpc\":\"2.0\",\"id\":" + std::to_string(id) +
                     ",\"method\":\"record.put_many\",\"params\":{\"records\":[";
  line.reserve(line.size() + (end - begin) * 300);
  for (std::size_t i = begin; i < end; ++i) {
    if (i != begin) line += ',';
    rb::RecordGenerator::append_json(records[i], line);
  }
  line += "]}}";
  return line;
}

// Sends `requests` record.put_many lines on one connection, pipelined: line
// k+1 is written before the reply to line k is read, so the daemon always
// has the next request waiting while at most two are outstanding (replies
// are a few bytes, so neither side can block the other). `render(k)` gives
// line k (with id k) and its record count; it runs while the daemon works
// on line k-1. `acked`, when given, counts the records of the replies read
// so far: they are stored, and the probe may explain them.
IngestStats put_pipelined(
    rdt::Client& client, std::size_t requests,
    const std::function<std::pair<std::string, std::size_t>(std::size_t)>& render,
    const std::string& label, std::atomic<std::uint64_t>* acked = nullptr) {
  IngestStats stats;
  stats.started = SteadyClock::now();
  const auto t0 = stats.started;
  std::deque<std::pair<std::size_t, std::size_t>> outstanding;  // (id, count)
  auto send = [&](std::size_t k) {
    auto [line, count] = render(k);
    client.send_line(line);
    outstanding.emplace_back(k, count);
  };
  if (requests > 0) send(0);
  std::size_t next_report = requests / 10;
  for (std::size_t k = 1; k <= requests; ++k) {
    if (k < requests) send(k);
    const auto line = client.read_line(std::chrono::minutes(30));
    if (!line) throw std::runtime_error(label + ": no reply to record.put_many");
    const json reply = json::parse(*line);
    const auto [id, count] = outstanding.front();
    outstanding.pop_front();
    if (reply.contains("error"))
      throw std::runtime_error(label + ": record.put_many: " + reply["error"].dump());
    if (reply.value("id", json(nullptr)) != json(id) ||
        reply["result"].value("count", std::size_t{0}) != count) {
      throw std::runtime_error(label + ": unexpected reply " + *line);
    }
    stats.records += count;
    ++stats.requests;
    if (acked != nullptr) acked->store(stats.records);
    if (requests >= 20 && k == next_report) {
      const double s = seconds_since(t0);
      say(label + ": " + with_commas(stats.records) + " records in " + fixed(s, 1) + " s (" +
          with_commas(static_cast<std::uint64_t>(static_cast<double>(stats.records) / s)) + "/s)");
      next_report += requests / 10;
    }
  }
  stats.ended = SteadyClock::now();
  stats.seconds = std::chrono::duration<double>(stats.ended - t0).count();
  return stats;
}

// ---------------------------------------------------------------------------
// Bare SQLite: the same rows, in two settings

// The two bare-SQLite databases. Both hold the same table (kRawSchema); they
// differ in their connection settings only (open_raw).
enum class RawSetting {
  // raw.db: the daemon's own settings, the physical floor of its work.
  daemon,
  // cron.db: what a cron job would get, the honest baseline of issue 11.
  cron,
};

// The records as the daemon receives them, plus the due time it computes
// (the same for every phase of the bench: each category has one phase), and
// an index on it, so that what is due is found as a cron job would find it.
// The per-key statements below use the primary key.
constexpr const char* kRawSchema =
    "CREATE TABLE records (key TEXT PRIMARY KEY, subject TEXT, category TEXT NOT NULL, "
    "fields TEXT NOT NULL, dates TEXT NOT NULL, due INTEGER);"
    "CREATE INDEX records_due ON records (due)";

SQLite::Database open_raw(const fs::path& path, RawSetting setting) {
  SQLite::Database db(path.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  if (setting == RawSetting::daemon) {
    // As lib/store/sqlite/sqlite_store.cpp sets them for retention.db
    // (SqliteStore::open, and SqliteQueries for every connection with the
    // default SqliteOptions::cache_kib). The daemon checkpoints the WAL on a
    // thread of its own; here SQLite's automatic checkpoint runs inside the
    // commit that finds 1000 pages in the WAL, as in any program that does
    // nothing about it.
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = FULL");
    db.exec("PRAGMA secure_delete = ON");
    db.exec("PRAGMA journal_size_limit = 67108864");
    db.exec("PRAGMA temp_store = MEMORY");
    db.exec("PRAGMA cache_size = -32768");
  } else {
    // The cron job: WAL with synchronous = NORMAL (a commit is not synced,
    // only the checkpoint is: a power cut may lose the last commits). Its
    // page cache is the daemon's: SQLite's default of 2 MiB halves the rate
    // of these INSERTs and DELETEs at 100,000 rows (random keys), and a
    // floor slowed by one missing pragma would flatter the daemon. Deleted
    // rows are overwritten as the daemon's are (secure_delete, also the
    // default of Debian's libsqlite3): a cron job erasing personal data in
    // clear must not leave it in free pages.
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    db.exec("PRAGMA cache_size = -32768");
    db.exec("PRAGMA secure_delete = ON");
  }
  return db;
}

// The settings in effect on `db`, for the report.
json raw_pragmas(SQLite::Database& db) {
  json out;
  for (const char* name : {"journal_mode", "synchronous", "secure_delete", "temp_store",
                           "cache_size", "journal_size_limit", "wal_autocheckpoint", "page_size"}) {
    const SQLite::Column v = db.execAndGet(std::string("PRAGMA ") + name);
    out[name] = v.isInteger() ? json(v.getInt64()) : json(v.getString());
  }
  out["sqlite_version"] = SQLite::getLibVersion();
  return out;
}

json rate_phase(std::size_t records, double seconds) {
  return {{"records", records},
          {"seconds", seconds},
          {"records_per_s", static_cast<double>(records) / seconds}};
}

// One prepared INSERT, in transactions of `batch` rows. Timed: the first
// BEGIN to the last COMMIT.
json raw_insert(const fs::path& path, RawSetting setting,
                const std::vector<rb::BenchRecord>& records, std::size_t batch) {
  SQLite::Database db = open_raw(path, setting);
  db.exec(kRawSchema);
  SQLite::Statement insert(db,
                           "INSERT INTO records (key, subject, category, fields, dates, due) "
                           "VALUES (?, ?, ?, ?, ?, ?)");
  const auto t0 = SteadyClock::now();
  for (std::size_t begin = 0; begin < records.size(); begin += batch) {
    SQLite::Transaction tx(db);
    for (std::size_t i = begin; i < std::min(records.size(), begin + batch); ++i) {
      const auto& r = records[i];
      insert.bindNoCopy(1, r.key);
      insert.bindNoCopy(2, r.subject);
      insert.bindNoCopy(3, r.category);
      insert.bindNoCopy(4, r.fields_json);
      insert.bindNoCopy(5, r.dates_json);
      insert.bind(6, r.due);
      insert.exec();
      insert.reset();
    }
    tx.commit();
  }
  json out = rate_phase(records.size(), seconds_since(t0));
  out["batch"] = batch;
  out["pragmas"] = raw_pragmas(db);
  return out;
}

// One statement per key (`sql` binds the key last), in transactions of
// `batch` keys; each must change exactly one row. Timed: the first BEGIN to
// the last COMMIT.
json raw_per_key(const fs::path& path, const std::vector<std::string>& keys,
                 const std::string& sql, const std::vector<std::string>* first_values,
                 std::size_t batch) {
  SQLite::Database db = open_raw(path, RawSetting::daemon);
  SQLite::Statement stmt(db, sql);
  const int key_index = first_values != nullptr ? 2 : 1;
  const auto t0 = SteadyClock::now();
  for (std::size_t begin = 0; begin < keys.size(); begin += batch) {
    SQLite::Transaction tx(db);
    for (std::size_t i = begin; i < std::min(keys.size(), begin + batch); ++i) {
      if (first_values != nullptr) stmt.bindNoCopy(1, (*first_values)[i]);
      stmt.bindNoCopy(key_index, keys[i]);
      if (stmt.exec() != 1) throw std::runtime_error("raw SQLite: no row for key " + keys[i]);
      stmt.reset();
    }
    tx.commit();
  }
  json out = rate_phase(keys.size(), seconds_since(t0));
  out["batch"] = batch;
  out["sql"] = sql;
  return out;
}

// What the anonymise strategies leave of a record's fields, as an SQL
// function: the cron job's one-statement UPDATE computes it per row.
void sql_anonymised_fields(sqlite3_context* ctx, int, sqlite3_value** argv) {
  const auto* text = reinterpret_cast<const char*>(sqlite3_value_text(argv[0]));
  const std::string out =
      rb::RecordGenerator::anonymised_fields(text != nullptr ? std::string(text) : std::string());
  sqlite3_result_text(ctx, out.data(), static_cast<int>(out.size()), SQLITE_TRANSIENT);
}

// The cron job's one statement over what is due at `now` (`sql` binds it),
// in its own transaction (autocommit), on a connection opened for it as a
// cron run would. It must change exactly `expected` rows. Timed: the
// statement, its commit and the automatic checkpoint that commit runs.
json cron_statement(const fs::path& path, const std::string& sql, const std::string& now,
                    std::size_t expected) {
  SQLite::Database db = open_raw(path, RawSetting::cron);
  db.createFunction("anonymised_fields", 1, true, nullptr, &sql_anonymised_fields);
  SQLite::Statement stmt(db, sql);
  stmt.bind(1, rb::instant_seconds(now));
  const auto t0 = SteadyClock::now();
  const int changed = stmt.exec();
  const double s = seconds_since(t0);
  if (changed < 0 || static_cast<std::size_t>(changed) != expected) {
    throw std::runtime_error("raw SQLite: `" + sql + "` changed " + std::to_string(changed) +
                             " rows, expected " + std::to_string(expected));
  }
  json out = rate_phase(expected, s);
  out["sql"] = sql;
  out["now"] = now;
  out["pragmas"] = raw_pragmas(db);
  return out;
}

// Removes an SQLite database and the files SQLite keeps beside it.
void remove_db(const fs::path& path) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    fs::remove(path.string() + suffix);
  }
}

// ---------------------------------------------------------------------------
// Sweeps, probed

// Restarts the daemon on `dir` with its clock at `now`, where `expected`
// records of one category are overdue: the catch-up pass queued at start-up
// is the sweep. Timed from READY=1 to the STATUS= notification the daemon
// sends when that pass ends. Meanwhile a Prober calls status and
// record.explain (a key of `probe_keys`, the category being swept).
json run_sweep(const fs::path& dir, const std::string& now, const std::string& counter,
               std::uint64_t expected, const std::vector<std::string>& probe_keys,
               const Options& opt, const std::string& name) {
  say(name + ": restarting with --now " + now + " (" + with_commas(expected) + " records due)");
  Daemon d = start_daemon(dir, now, dir / (name + ".log"));
  const auto t0 = SteadyClock::now();
  Prober prober(d.process->socket(), opt.probe_period_ms, opt.seed,
                [&](std::mt19937_64& rng) { return probe_keys[rng() % probe_keys.size()]; });
  const auto done = d.process->wait_notify(
      [](const std::string& n) {
        return n.find("STATUS=") != std::string::npos && n.find("last sweep") != std::string::npos;
      },
      std::chrono::hours(12));
  const auto t1 = SteadyClock::now();
  const std::vector<Probe> probes = prober.stop(name);
  if (!done) throw std::runtime_error(name + ": the pass did not end; see " + d.log.string());

  Rpc rpc(d.process->socket());
  const json status = rpc.call("status");
  const json last = status["last_sweep"];
  if (last.is_null() || last.value(counter, std::uint64_t{0}) != expected) {
    throw std::runtime_error(name + ": expected " + std::to_string(expected) + " " + counter +
                             ", status.last_sweep is " + last.dump());
  }
  const std::uint64_t hwm = vm_kib(d, "VmHWM");
  stop_daemon(d);

  const double wall = ms_between(t0, t1) / 1000.0;
  json out = {{"records", expected},
              {"now", now},
              {"seconds", wall},
              {"records_per_s", static_cast<double>(expected) / wall},
              {"daemon_duration_ms", last["duration_ms"]},
              {"startup_s", d.startup_s},
              {"log", last_sweep_log(d.log)},
              {"vm_hwm_kib", hwm},
              {"records_after", status["records"]}};
  out.update(probe_figures(probes, t0, t1));
  say(name + ": " + with_commas(expected) + " records in " + fixed(wall, 2) + " s (" +
      with_commas(static_cast<std::uint64_t>(out["records_per_s"].get<double>())) + "/s), " +
      probe_text(out));
  return out;
}

// ---------------------------------------------------------------------------
// Admin latency while a reader loops on the most expensive reads (issue 19)

// The reads whose cost grows with what is stored, as one reader would loop
// on them: the full re-verification of the chain (admin-only, in slices off
// the event loop), the largest audit.tail page, a plan to the end of time,
// and the incremental verify. Each in turn, back to back, on one connection.
const std::vector<std::pair<std::string, json>>& heavy_reads() {
  static const std::vector<std::pair<std::string, json>> reads = {
      {"audit.verify full", {{"full", true}}},
      {"audit.tail 10000", {{"limit", 10000}}},
      {"plan to 9999", {{"until", "9999-12-31T00:00:00Z"}}},
      {"audit.verify", json::object()},
  };
  return reads;
}

// Restarts the daemon on `dir` at `now` (nothing due: the sweeps are done,
// so the audit chain holds an entry per record) and runs the Prober while a
// second connection loops on heavy_reads(), for at least `min_seconds` and
// at least two whole loops.
json run_heavy_reads(const fs::path& dir, const std::string& now, const std::vector<std::string>& probe_keys,
                     const Options& opt, double min_seconds) {
  const std::string name = "heavy-reads";
  say(name + ": restarting with --now " + now + ", a reader looping on audit.verify full, audit.tail, plan");
  Daemon d = start_daemon(dir, now, dir / (name + ".log"));
  std::mutex mutex;
  std::condition_variable cv;
  std::size_t loops = 0;
  bool stop = false;
  std::string error;
  std::map<std::string, std::vector<double>> heavy_ms;
  json entries_verified = nullptr;
  const auto t0 = SteadyClock::now();
  Prober prober(d.process->socket(), opt.probe_period_ms, opt.seed,
                [&](std::mt19937_64& rng) { return probe_keys[rng() % probe_keys.size()]; });
  std::thread reader([&] {
    try {
      Rpc rpc(d.process->socket());
      for (;;) {
        for (const auto& [label, params] : heavy_reads()) {
          const auto start = SteadyClock::now();
          const json result = rpc.call(label.substr(0, label.find(' ')), params);
          const double ms = ms_between(start, SteadyClock::now());
          const std::lock_guard lock(mutex);
          if (label == "audit.verify full") entries_verified = result["entries"];
          heavy_ms[label].push_back(ms);
          if (stop) return;
        }
        const std::lock_guard lock(mutex);
        ++loops;
        cv.notify_all();
      }
    } catch (const std::exception& e) {
      const std::lock_guard lock(mutex);
      error = e.what();
      cv.notify_all();
    }
  });
  {
    std::unique_lock lock(mutex);
    const auto deadline = t0 + std::chrono::duration_cast<SteadyClock::duration>(
                                   std::chrono::duration<double>(min_seconds));
    cv.wait_until(lock, deadline, [&] { return !error.empty(); });
    cv.wait(lock, [&] { return loops >= 2 || !error.empty(); });
    stop = true;
  }
  const auto t1 = SteadyClock::now();
  reader.join();
  const std::vector<Probe> probes = prober.stop(name);
  if (!error.empty()) throw std::runtime_error(name + ": reader: " + error);
  stop_daemon(d);

  json reads = json::object();
  for (auto& [label, ms] : heavy_ms) reads[label] = latency_summary(ms);
  json out = {{"seconds", ms_between(t0, t1) / 1000.0},
              {"loops", loops},
              {"audit_entries", entries_verified},
              {"reads", reads}};
  out.update(probe_figures(probes, t0, t1));
  say(name + ": " + std::to_string(loops) + " loops over " + with_commas(entries_verified.get<std::uint64_t>()) +
      " audit entries in " + fixed(out["seconds"].get<double>(), 2) + " s, " + probe_text(out));
  return out;
}

// ---------------------------------------------------------------------------
// Start-up with M records stored

json run_startup(const Options& opt, const fs::path& work, const rb::RecordGenerator& gen) {
  const fs::path dir = work / "startup";
  const json marker = {{"records", opt.startup_records}, {"seed", opt.seed}, {"generator", 1}};
  json out;
  bool reuse = false;
  if (std::ifstream in(dir / "filled.json"); in) {
    json found;
    in >> found;
    reuse = found == marker && fs::exists(dir / "state");
  }
  if (reuse) {
    say("start-up: reusing " + dir.string() + " (" + with_commas(opt.startup_records) +
        " records)");
    out["fill"] = {{"reused", true}};
  } else {
    fs::remove_all(dir);
    write_policy(dir);
    Daemon d = start_daemon(dir, rb::kIngestNow, dir / "fill.log");
    say("start-up: filling " + with_commas(opt.startup_records) + " records through the socket");
    const std::size_t requests =
        static_cast<std::size_t>((opt.startup_records + opt.batch - 1) / opt.batch);
    std::vector<rb::BenchRecord> chunk;
    rdt::Client client(d.process->socket());
    const auto stats = put_pipelined(
        client, requests,
        [&](std::size_t k) {
          const std::uint64_t begin = k * opt.batch;
          const std::uint64_t end = std::min<std::uint64_t>(opt.startup_records, begin + opt.batch);
          chunk.clear();
          for (std::uint64_t i = begin; i < end; ++i) chunk.push_back(gen.make(i));
          return std::make_pair(put_many_line(k, chunk, 0, chunk.size()), chunk.size());
        },
        "start-up fill");
    Rpc rpc(d.process->socket());
    const json records = rpc.call("status")["records"];
    if (records.value("active", std::uint64_t{0}) != opt.startup_records) {
      throw std::runtime_error("start-up fill: status.records is " + records.dump());
    }
    out["fill"] = {{"reused", false},
                   {"records", stats.records},
                   {"seconds", stats.seconds},
                   {"records_per_s", static_cast<double>(stats.records) / stats.seconds},
                   {"vm_hwm_kib", vm_kib(d, "VmHWM")}};
    stop_daemon(d);
    std::ofstream(dir / "filled.json") << marker.dump() << "\n";
  }
  out["disk_bytes"] = rb::disk_bytes(dir / "state");

  json runs = json::array();
  for (int run = 0; run < opt.startup_runs; ++run) {
    Daemon d = start_daemon(dir, rb::kIngestNow, dir / "startup.log");
    const std::uint64_t hwm_ready = vm_kib(d, "VmHWM");
    Rpc rpc(d.process->socket());
    auto t = SteadyClock::now();
    const json status = rpc.call("status");
    const double status_ms = ms_between(t, SteadyClock::now());
    const std::uint64_t hwm_status = vm_kib(d, "VmHWM");
    t = SteadyClock::now();
    rpc.call("record.explain", {{"key", gen.make(opt.startup_records / 2).key}});
    const double explain_ms = ms_between(t, SteadyClock::now());
    const std::uint64_t hwm_explain = vm_kib(d, "VmHWM");
    stop_daemon(d);
    if (status["records"].value("active", std::uint64_t{0}) != opt.startup_records) {
      throw std::runtime_error("start-up: status.records is " + status["records"].dump());
    }
    runs.push_back({{"startup_s", d.startup_s},
                    {"vm_hwm_kib_after_ready", hwm_ready},
                    {"status_ms", status_ms},
                    {"vm_hwm_kib_after_status", hwm_status},
                    {"explain_ms", explain_ms},
                    {"vm_hwm_kib_after_explain", hwm_explain}});
    say("start-up: run " + std::to_string(run + 1) + ": READY after " + fixed(d.startup_s, 3) +
        " s, VmHWM " + fixed(static_cast<double>(hwm_ready) / 1024.0, 1) + " MiB, after status (" +
        fixed(status_ms, 1) + " ms) " + fixed(static_cast<double>(hwm_status) / 1024.0, 1) +
        " MiB");
  }
  std::vector<double> startup;
  std::uint64_t peak = 0;
  for (const auto& r : runs) {
    startup.push_back(r["startup_s"].get<double>());
    peak = std::max({peak, r["vm_hwm_kib_after_ready"].get<std::uint64_t>(),
                     r["vm_hwm_kib_after_status"].get<std::uint64_t>(),
                     r["vm_hwm_kib_after_explain"].get<std::uint64_t>()});
  }
  std::sort(startup.begin(), startup.end());
  out["records"] = opt.startup_records;
  out["runs"] = runs;
  out["startup_s_median"] = startup[startup.size() / 2];
  out["startup_s_max"] = startup.back();
  out["vm_hwm_kib_max"] = peak;
  return out;
}

// ---------------------------------------------------------------------------
// The table

struct Row {
  std::string measure;
  std::string retentiond;
  std::string raw = "-";
  std::string ratio = "-";
  std::string target = "-";
  std::optional<bool> met;
  json values;  // the same figures as numbers, for the JSON
};

std::string met_text(const std::optional<bool>& met) { return met ? (*met ? "yes" : "NO") : "-"; }

void print_table(const std::vector<Row>& rows) {
  const std::vector<std::string> head = {"measure", "retentiond", "raw SQLite",
                                         "ratio",   "target",     "met?"};
  std::vector<std::size_t> width(head.size());
  for (std::size_t c = 0; c < head.size(); ++c) width[c] = head[c].size();
  auto cells = [](const Row& r) {
    return std::vector<std::string>{r.measure, r.retentiond, r.raw,
                                    r.ratio,   r.target,     met_text(r.met)};
  };
  for (const auto& r : rows) {
    const auto c = cells(r);
    for (std::size_t i = 0; i < c.size(); ++i) width[i] = std::max(width[i], c[i].size());
  }
  auto line = [&](const std::vector<std::string>& c) {
    std::string s = "|";
    for (std::size_t i = 0; i < c.size(); ++i)
      s += " " + c[i] + std::string(width[i] - c[i].size(), ' ') + " |";
    std::cout << s << "\n";
  };
  line(head);
  std::string sep = "|";
  for (const auto w : width) sep += std::string(w + 2, '-') + "|";
  std::cout << sep << "\n";
  for (const auto& r : rows) line(cells(r));
  std::cout.flush();
}

std::string rate_text(double v) { return with_commas(static_cast<std::uint64_t>(v)) + "/s"; }
std::string mib_text(std::uint64_t kib) {
  return fixed(static_cast<double>(kib) / 1024.0, 1) + " MiB";
}

std::string latency_text(const json& l) {
  if (l["count"].get<std::size_t>() == 0) return "no calls";
  return fixed(l["p50_ms"].get<double>(), 1) + " / " + fixed(l["p99_ms"].get<double>(), 1) + " / " +
         fixed(l["max_ms"].get<double>(), 1) + " ms (" +
         with_commas(l["count"].get<std::size_t>()) + ")";
}

// A latency target is judged on at least this many calls in the phase (both
// methods together): a p99 over fewer says little.
constexpr std::size_t kMinProbeCalls = 1000;
constexpr double kLatencyTargetMs = 20.0;

std::vector<Row> build_rows(const json& phases, const Options& opt) {
  std::vector<Row> rows;
  const auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  const auto rate_of = [&](const char* phase) { return phases[phase]["records_per_s"].get<double>(); };
  // A daemon rate against a bare-SQLite one, with a ratio target or none.
  const auto compare = [&](const std::string& measure, double daemon, double raw,
                           const std::string& target, std::optional<double> min_ratio) {
    json values = {{"retentiond", daemon}, {"raw", raw}, {"ratio", ratio(daemon, raw)}};
    if (min_ratio) values["target_ratio"] = *min_ratio;
    rows.push_back({measure, rate_text(daemon), rate_text(raw), fixed(ratio(daemon, raw), 2) + "x",
                    target,
                    min_ratio ? std::optional<bool>(ratio(daemon, raw) >= *min_ratio) : std::nullopt,
                    values});
  };

  const double ingest = rate_of("ingest");
  const double insert = rate_of("raw_insert");
  rows.push_back({"ingest, record.put_many x" + std::to_string(opt.batch) + " (records/s)",
                  rate_text(ingest),
                  rate_text(insert),
                  fixed(ratio(ingest, insert), 2) + "x",
                  ">= 100,000/s",
                  ingest >= 100000,
                  {{"retentiond", ingest},
                   {"raw", insert},
                   {"ratio", ratio(ingest, insert)},
                   {"target", 100000}}});
  compare("  vs cron floor: one prepared INSERT, x" + std::to_string(opt.batch) + " per transaction",
          ingest, rate_of("wal_insert"), ">= 1.0x WAL INSERT", 1.0);

  const double purge = rate_of("purge_sweep");
  compare("purge sweep with audit (records/s)", purge, rate_of("raw_delete"), ">= 0.5x raw", 0.5);
  compare("  vs cron floor: one DELETE ... WHERE due <= ?", purge, rate_of("wal_delete"),
          ">= 0.5x one-statement WAL DELETE", 0.5);
  rows.push_back({"  raw DELETE per key in one transaction (records/s)",
                  "-",
                  rate_text(rate_of("raw_delete_one_transaction")),
                  "-",
                  "-",
                  std::nullopt,
                  {{"raw", rate_of("raw_delete_one_transaction")}}});

  const double anon = rate_of("anonymise_sweep");
  compare("anonymise sweep with audit (records/s)", anon, rate_of("raw_update"), "-", std::nullopt);
  compare("  vs cron floor: one UPDATE ... WHERE due <= ?", anon, rate_of("wal_update"), "-",
          std::nullopt);

  for (const auto& [phase, label] : {std::pair<const char*, const char*>{"ingest", "the import"},
                                     {"purge_sweep", "the purge sweep"},
                                     {"anonymise_sweep", "the anonymise sweep"},
                                     {"heavy_reads", "a reader's audit.verify full / tail / plan loop"}}) {
    const json& s = phases[phase];
    const std::size_t calls = s["admin"]["count"];
    const json& st = s["status"];
    const json& ex = s["explain"];
    const auto p99 = [](const json& l) {
      return l["count"].get<std::size_t>() > 0 ? fixed(l["p99_ms"].get<double>(), 1) : "-";
    };
    // Both methods within the target, over enough calls to tell.
    const bool met = calls >= kMinProbeCalls && st["count"].get<std::size_t>() > 0 &&
                     ex["count"].get<std::size_t>() > 0 &&
                     st["p99_ms"].get<double>() <= kLatencyTargetMs &&
                     ex["p99_ms"].get<double>() <= kLatencyTargetMs;
    rows.push_back({std::string("status / record.explain p99 during ") + label,
                    calls == 0 ? "no calls"
                               : p99(st) + " / " + p99(ex) + " ms (" + with_commas(calls) + " calls)",
                    "-",
                    "-",
                    "<= 20 ms, >= " + with_commas(kMinProbeCalls) + " calls",
                    met,
                    {{"status_p99_ms", st["p99_ms"]},
                     {"explain_p99_ms", ex["p99_ms"]},
                     {"count", calls},
                     {"target_ms", kLatencyTargetMs},
                     {"min_calls", kMinProbeCalls}}});
    rows.push_back({"  status p50 / p99 / max (calls)", latency_text(st), "-", "-", "-",
                    std::nullopt, st});
    rows.push_back({"  record.explain p50 / p99 / max (calls)", latency_text(ex), "-", "-", "-",
                    std::nullopt, ex});
    rows.push_back({"  share of the phase with a probe call open",
                    fixed(s["probe_busy_fraction"].get<double>() * 100, 1) + " %",
                    "-",
                    "-",
                    "-",
                    std::nullopt,
                    {{"fraction", s["probe_busy_fraction"]}}});
  }
  // What the heavy reads themselves took (the reader's side of that phase).
  const json& heavy = phases["heavy_reads"];
  for (const auto& [label, params] : heavy_reads()) {
    const json& l = heavy["reads"].value(label, json());
    if (l.is_null()) continue;
    rows.push_back({"  " + label + " over " + with_commas(heavy["audit_entries"].get<std::uint64_t>()) +
                        " entries, p50 / p99 / max (calls)",
                    latency_text(l), "-", "-", "-", std::nullopt, l});
  }

  const std::uint64_t hwm_n =
      std::max({phases["ingest"]["vm_hwm_kib"].get<std::uint64_t>(),
                phases["purge_sweep"]["vm_hwm_kib"].get<std::uint64_t>(),
                phases["anonymise_sweep"]["vm_hwm_kib"].get<std::uint64_t>()});
  rows.push_back({"peak RSS, " + with_commas(opt.records) + " records (ingest, sweeps)",
                  mib_text(hwm_n),
                  "-",
                  "-",
                  "-",
                  std::nullopt,
                  {{"vm_hwm_kib", hwm_n}}});
  const std::uint64_t disk = phases["ingest"]["disk_bytes"];
  const std::uint64_t raw_disk = phases["raw_insert"]["disk_bytes"];
  rows.push_back({"disk after ingest",
                  fixed(static_cast<double>(disk) / kMiB, 1) + " MiB",
                  fixed(static_cast<double>(raw_disk) / kMiB, 1) + " MiB",
                  fixed(ratio(static_cast<double>(disk), static_cast<double>(raw_disk)), 2) + "x",
                  "-",
                  std::nullopt,
                  {{"retentiond", disk}, {"raw", raw_disk}}});

  const json& st = phases["startup"];
  const std::string m = with_commas(opt.startup_records);
  if (st.is_null()) {
    rows.push_back({"start-up (skipped: --startup-records 0)", "-", "-", "-", "<= 1 s",
                    std::nullopt, nullptr});
    return rows;
  }
  const double median = st["startup_s_median"];
  rows.push_back({"start-up to READY=1, " + m + " records (median of " +
                      std::to_string(st["runs"].size()) + ")",
                  fixed(median, 3) + " s",
                  "-",
                  "-",
                  "<= 1 s",
                  median <= 1.0,
                  {{"median_s", median}, {"max_s", st["startup_s_max"]}, {"target_s", 1}}});
  const std::uint64_t peak = st["vm_hwm_kib_max"];
  rows.push_back({"peak RSS, " + m + " records (READY, status, explain)",
                  mib_text(peak),
                  "-",
                  "-",
                  "<= 100 MiB",
                  peak <= 100 * 1024,
                  {{"vm_hwm_kib", peak}, {"target_kib", 100 * 1024}}});
  const double status_ms = st["runs"][0]["status_ms"];
  rows.push_back({"first status after start-up, " + m + " records",
                  fixed(status_ms, 1) + " ms",
                  "-",
                  "-",
                  "-",
                  std::nullopt,
                  {{"ms", status_ms}}});
  if (st["fill"].value("reused", false) == false) {
    const double fill = st["fill"]["records_per_s"];
    rows.push_back({"fill to " + m + " records (records/s)",
                    rate_text(fill),
                    "-",
                    "-",
                    "-",
                    std::nullopt,
                    {{"retentiond", fill}}});
  }
  return rows;
}

// ---------------------------------------------------------------------------

int run(const Options& opt) {
  if (opt.records < 2) throw std::invalid_argument("--records must be at least 2");
  if (opt.batch < 1 || opt.batch > kDaemonMaxPutMany) {
    throw std::invalid_argument("--batch must be 1.." + std::to_string(kDaemonMaxPutMany) +
                                " (the daemon's default max_put_many)");
  }
  if (opt.delete_batch < 1) throw std::invalid_argument("--delete-batch must be at least 1");
  if (opt.startup_runs < 1) throw std::invalid_argument("--startup-runs must be at least 1");
  if (opt.probe_period_ms < 0) throw std::invalid_argument("--probe-period-ms must be at least 0");

  // The work directory.
  const bool temp = opt.work_dir.empty();
  fs::path work;
  if (temp) {
    std::string tmpl = (fs::temp_directory_path() / "retentiond-bench.XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    work = tmpl;
  } else {
    work = fs::absolute(opt.work_dir);
    fs::create_directories(work);
  }
  const fs::path ndir = work / "n";
  const fs::path raw_db = work / "raw.db";
  const fs::path raw_copy = work / "raw-one-transaction.db";
  const fs::path cron_db = work / "cron.db";
  fs::remove_all(ndir);
  for (const auto& db : {raw_db, raw_copy, cron_db}) remove_db(db);
  write_policy(ndir, opt.connector);
  say("work directory " + work.string());

  json report = {{"bench", "retentiond-bench"}, {"format", 2}, {"started_at", utc_now()}};
  report["machine"] = rb::machine_info(work);
  report["build"] =
      rb::build_info(RETENTIOND_SOURCE_DIR, RETENTIOND_BENCH_BUILD_TYPE, rdt::retentiond_binary());
  report["config"] = {{"records", opt.records},
                      {"batch", opt.batch},
                      {"delete_batch", opt.delete_batch},
                      {"startup_records", opt.startup_records},
                      {"startup_runs", opt.startup_runs},
                      {"seed", opt.seed},
                      {"probe_period_ms", opt.probe_period_ms},
                      {"connector", opt.connector},
                      {"work_dir", work.string()},
                      {"daemon",
                       "the bench policy with the daemon's default limits (max_batch_records 1000, "
                       "max_batch_ms 50, max_put_many 10000)"},
                      {"raw_sqlite",
                       "raw.db: the daemon's pragmas (WAL, synchronous FULL, secure_delete ON, "
                       "temp_store MEMORY, cache_size -32768); cron.db, the cron-job floor: WAL, "
                       "synchronous NORMAL, secure_delete ON, cache_size -32768"}};
  json phases;

  // The records, generated before anything is timed.
  const rb::RecordGenerator gen(opt.seed);
  say("generating " + with_commas(opt.records) + " records");
  std::vector<rb::BenchRecord> records;
  records.reserve(opt.records);
  for (std::uint64_t i = 0; i < opt.records; ++i) records.push_back(gen.make(i));
  // The keys of each category in the order a pass visits them: due time,
  // then key.
  std::vector<std::size_t> order(records.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::tie(records[a].due, records[a].key) < std::tie(records[b].due, records[b].key);
  });
  std::vector<std::string> purge_keys;
  std::vector<std::string> anon_keys;
  std::vector<std::string> anon_fields;
  for (const std::size_t i : order) {
    if (records[i].category == std::string(rb::kPurgeCategory)) {
      purge_keys.push_back(records[i].key);
    } else {
      anon_keys.push_back(records[i].key);
      anon_fields.push_back(rb::RecordGenerator::anonymised_fields(records[i]));
    }
  }

  // (1) Ingest through the socket, probed from its first request to its
  // last reply.
  {
    const std::size_t requests = (records.size() + opt.batch - 1) / opt.batch;
    std::vector<std::string> lines;
    lines.reserve(requests);
    for (std::size_t k = 0; k < requests; ++k) {
      lines.push_back(
          put_many_line(k, records, k * opt.batch, std::min(records.size(), (k + 1) * opt.batch)));
    }
    Daemon d = start_daemon(ndir, rb::kIngestNow, ndir / "ingest.log");
    say("ingest: " + with_commas(opt.records) + " records in " + std::to_string(requests) +
        " record.put_many");
    rdt::Client client(d.process->socket());
    // Records 0..acked-1 are stored: the probe explains one of them.
    std::atomic<std::uint64_t> acked{0};
    Prober prober(d.process->socket(), opt.probe_period_ms, opt.seed,
                  [&](std::mt19937_64& rng) -> std::optional<std::string> {
                    const std::uint64_t n = acked.load();
                    if (n == 0) return std::nullopt;
                    return records[rng() % n].key;
                  });
    const auto stats = put_pipelined(
        client, requests,
        [&](std::size_t k) {
          const std::size_t count = std::min(records.size(), (k + 1) * opt.batch) - k * opt.batch;
          return std::make_pair(std::move(lines[k]), count);
        },
        "ingest", &acked);
    const std::vector<Probe> probes = prober.stop("ingest");
    lines.clear();
    lines.shrink_to_fit();
    Rpc rpc(d.process->socket());
    const json status = rpc.call("status");
    if (status["records"].value("active", std::uint64_t{0}) != opt.records ||
        status["backlog"] != 0) {
      throw std::runtime_error("ingest: unexpected status " + status.dump());
    }
    // The raw tables' due column must be the daemon's own due time: checked
    // on records spread over the run, and on the first one whose
    // last_contact is 29 February (clamped to 28 February).
    std::vector<std::size_t> checked;
    for (std::size_t i = 0; i < records.size(); i += std::max<std::size_t>(1, records.size() / 50)) {
      checked.push_back(i);
    }
    for (std::size_t i = 0; i < records.size(); ++i) {
      if (records[i].last_contact.substr(5) == "02-29") {
        checked.push_back(i);
        break;
      }
    }
    for (const std::size_t i : checked) {
      const json next = rpc.call("record.explain", {{"key", records[i].key}})["next"];
      if (!next.is_object() || !next["due"].is_string() ||
          rb::instant_seconds(next["due"].get<std::string>()) != records[i].due) {
        throw std::runtime_error("ingest: the daemon's due time for " + records[i].key + " is " +
                                 next.dump() + ", the bench computed " +
                                 std::to_string(records[i].due));
      }
    }
    const std::uint64_t hwm = vm_kib(d, "VmHWM");
    stop_daemon(d);
    phases["ingest"] = {{"records", stats.records},
                        {"requests", stats.requests},
                        {"seconds", stats.seconds},
                        {"records_per_s", static_cast<double>(stats.records) / stats.seconds},
                        {"startup_s", d.startup_s},
                        {"vm_hwm_kib", hwm},
                        {"disk_bytes", rb::disk_bytes(ndir / "state")}};
    phases["ingest"].update(probe_figures(probes, stats.started, stats.ended));
    say("ingest: " + fixed(stats.seconds, 2) + " s, " +
        rate_text(phases["ingest"]["records_per_s"]) + ", " + probe_text(phases["ingest"]));
  }

  // (2) The same rows INSERTed with bare SQLite: with the daemon's pragmas,
  // then as a cron job would.
  {
    phases["raw_insert"] = raw_insert(raw_db, RawSetting::daemon, records, opt.batch);
    phases["raw_insert"]["disk_bytes"] = rb::disk_bytes(raw_db);
    say("raw insert: " + fixed(phases["raw_insert"]["seconds"], 2) + " s, " +
        rate_text(phases["raw_insert"]["records_per_s"]));
    phases["wal_insert"] = raw_insert(cron_db, RawSetting::cron, records, opt.batch);
    phases["wal_insert"]["disk_bytes"] = rb::disk_bytes(cron_db);
    say("cron floor, WAL insert: " + fixed(phases["wal_insert"]["seconds"], 2) + " s, " +
        rate_text(phases["wal_insert"]["records_per_s"]));
  }

  // (3) The purge sweep, probed throughout: the readers answer from a WAL
  // snapshot on the event loop while the writer thread sweeps, so probing
  // no longer sets the pace of the pass.
  phases["purge_sweep"] = run_sweep(ndir, rb::kPurgeNow, "purged", purge_keys.size(), purge_keys,
                                    opt, "purge-sweep");

  // (4) The same rows DELETEd with bare SQLite: per key, as the daemon
  // commits them; on a copy, per key in a single transaction, which shows
  // what the commits cost; and as a cron job would, in one statement.
  {
    // The INSERT's connection is closed, so its WAL is checkpointed and
    // gone: raw.db alone is the database.
    if (fs::exists(raw_db.string() + "-wal")) {
      throw std::runtime_error("raw SQLite: " + raw_db.string() + "-wal is still there");
    }
    fs::copy_file(raw_db, raw_copy, fs::copy_options::overwrite_existing);
    phases["raw_delete"] = raw_per_key(raw_db, purge_keys, "DELETE FROM records WHERE key = ?",
                                       nullptr, opt.delete_batch);
    say("raw delete: " + fixed(phases["raw_delete"]["seconds"], 2) + " s, " +
        rate_text(phases["raw_delete"]["records_per_s"]));
    phases["raw_delete_one_transaction"] = raw_per_key(
        raw_copy, purge_keys, "DELETE FROM records WHERE key = ?", nullptr, purge_keys.size());
    remove_db(raw_copy);
    say("raw delete, one transaction: " +
        fixed(phases["raw_delete_one_transaction"]["seconds"], 2) + " s, " +
        rate_text(phases["raw_delete_one_transaction"]["records_per_s"]));
    // Due at kPurgeNow: every bench.purge record, no bench.anonymise one.
    phases["wal_delete"] = cron_statement(cron_db, "DELETE FROM records WHERE due <= ?",
                                          rb::kPurgeNow, purge_keys.size());
    say("cron floor, one WAL DELETE: " + fixed(phases["wal_delete"]["seconds"], 2) + " s, " +
        rate_text(phases["wal_delete"]["records_per_s"]));
  }

  // (5) The anonymise sweep, and its bare-SQLite counterparts: an UPDATE of
  // subject and fields that also takes the record off the schedule (due =
  // NULL: it has no later phase), per key and in one statement.
  phases["anonymise_sweep"] = run_sweep(ndir, rb::kAnonymiseNow, "anonymised", anon_keys.size(),
                                        anon_keys, opt, "anonymise-sweep");
  {
    phases["raw_update"] =
        raw_per_key(raw_db, anon_keys,
                    "UPDATE records SET subject = NULL, fields = ?, due = NULL WHERE key = ?",
                    &anon_fields, opt.delete_batch);
    say("raw update: " + fixed(phases["raw_update"]["seconds"], 2) + " s, " +
        rate_text(phases["raw_update"]["records_per_s"]));
    phases["wal_update"] = cron_statement(
        cron_db,
        "UPDATE records SET subject = NULL, fields = anonymised_fields(fields), due = NULL "
        "WHERE due <= ?",
        rb::kAnonymiseNow, anon_keys.size());
    say("cron floor, one WAL UPDATE: " + fixed(phases["wal_update"]["seconds"], 2) + " s, " +
        rate_text(phases["wal_update"]["records_per_s"]));
  }
  records.clear();
  records.shrink_to_fit();

  // (6) Admin latency while a reader loops on the reads that grow with the
  // data, over the audit chain the sweeps wrote (one entry per record).
  phases["heavy_reads"] = run_heavy_reads(ndir, rb::kAnonymiseNow, anon_keys, opt, 5.0);

  // (7) Start-up with M records stored.
  phases["startup"] = opt.startup_records > 0 ? run_startup(opt, work, gen) : json(nullptr);

  report["phases"] = phases;
  report["finished_at"] = utc_now();
  report["machine"]["load_average_at_end"] = rb::load_average();
  const std::vector<Row> rows = build_rows(phases, opt);
  json table = json::array();
  int met = 0;
  int targets = 0;
  for (const auto& r : rows) {
    table.push_back({{"measure", r.measure},
                     {"retentiond", r.retentiond},
                     {"raw_sqlite", r.raw},
                     {"ratio", r.ratio},
                     {"target", r.target},
                     {"met", r.met ? json(*r.met) : json(nullptr)},
                     {"values", r.values}});
    if (r.met) {
      ++targets;
      if (*r.met) ++met;
    }
  }
  report["table"] = table;
  report["targets"] = {{"met", met}, {"of", targets}};

  std::cout << "\nretentiond-bench: " << with_commas(opt.records) << " records, batch " << opt.batch
            << ", start-up with " << with_commas(opt.startup_records) << " records\n"
            << report["machine"].value("cpu_model", std::string("?")) << ", "
            << report["machine"]["cores"].get<unsigned>() << " cores, "
            << report["machine"]["work_dir_filesystem"]["type"].get<std::string>() << ", "
            << report["build"]["build_type"].get<std::string>() << " "
            << report["build"]["git_commit"].dump()
            << (report["build"]["git_dirty"].get<bool>() ? " (dirty)" : "")
            << "\nload average at start "
            << report["machine"]["load_average_at_start"].get<std::string>() << ", at end "
            << report["machine"]["load_average_at_end"].get<std::string>() << "\n"
            << "raw SQLite: the daemon's pragmas (WAL, synchronous = FULL), per key in "
               "transactions of the daemon's size;\n"
            << "cron floor: WAL, synchronous = NORMAL, one statement per sweep; "
               "admin probes: one call every "
            << opt.probe_period_ms << " ms\n\n";
  print_table(rows);
  std::cout << "\ntargets met: " << met << " of " << targets << "\n";

  {
    std::ofstream out(opt.json_out);
    out << report.dump(2) << "\n";
    if (!out) throw std::runtime_error("cannot write " + opt.json_out);
  }
  std::cout << "JSON: " << opt.json_out << "\n";

  if (!opt.keep) {
    if (temp) {
      fs::remove_all(work);
    } else {
      fs::remove_all(ndir);
      remove_db(raw_db);
      remove_db(cron_db);
      fs::remove_all(work / "startup");
    }
  } else {
    std::cout << "kept: " << work.string() << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options(
      "retentiond-bench",
      "Benchmarks the retentiond binary against bare SQLite; see bench/README.md");
  // clang-format off
  options.add_options()
      ("records", "records ingested and swept", cxxopts::value<std::uint64_t>()->default_value("1000000"))
      ("batch", "records per record.put_many (and per raw INSERT transaction), 1..10000",
       cxxopts::value<std::size_t>()->default_value(std::to_string(kDaemonMaxPutMany)))
      ("delete-batch", "rows per raw DELETE/UPDATE transaction (the daemon's max_batch_records)",
       cxxopts::value<std::size_t>()->default_value(std::to_string(kDaemonMaxBatchRecords)))
      ("startup-records", "records stored for the start-up measure (0: skip it)",
       cxxopts::value<std::uint64_t>()->default_value("10000000"))
      ("startup-runs", "restarts timed with them (the median is reported)",
       cxxopts::value<int>()->default_value("3"))
      ("seed", "seed of the generated records", cxxopts::value<std::uint64_t>()->default_value("20240301"))
      ("probe-period-ms", "one admin call every this many ms during the import and the sweeps (start to start)",
       cxxopts::value<int>()->default_value("2"))
      ("json-out", "where to write the JSON report",
       cxxopts::value<std::string>()->default_value("retentiond-bench.json"))
      ("work-dir", "directory for the state (default: a new temporary directory); large runs need disk",
       cxxopts::value<std::string>())
      ("keep", "keep the state directories afterwards (a kept start-up fill is reused by the next run "
               "with the same --work-dir, --startup-records and --seed)")
      ("connector", "the purge category also runs on a pull connector: each purge commits a connector job "
                    "(the outbox's cost)")
      ("backend", "sqlite (the default), or postgresql: one and two daemons on a PostgreSQL database beside bare "
                  "PostgreSQL (--records, --batch, --seed, --json-out, --pg-url apply)",
       cxxopts::value<std::string>()->default_value("sqlite"))
      ("pg-url", "with --backend postgresql: a cluster to use (libpq key=value form; the bench creates its "
                 "databases there); default: a cluster of its own in a temporary directory",
       cxxopts::value<std::string>())
      ("h,help", "show this help");
  // clang-format on
  try {
    const auto parsed = options.parse(argc, argv);
    if (parsed.count("help")) {
      std::cout << options.help() << "\n";
      return 0;
    }
    if (const auto backend = parsed["backend"].as<std::string>(); backend == "postgresql") {
      rb::PgBenchOptions pg;
      pg.records = parsed["records"].as<std::uint64_t>();
      pg.batch = std::min<std::size_t>(parsed["batch"].as<std::size_t>(), kDaemonMaxPutMany);
      pg.seed = parsed["seed"].as<std::uint64_t>();
      if (parsed.count("pg-url")) pg.url = parsed["pg-url"].as<std::string>();
      if (parsed.count("json-out")) pg.json_out = parsed["json-out"].as<std::string>();
      return rb::run_postgresql(pg);
    } else if (backend != "sqlite") {
      std::cerr << "retentiond-bench: --backend is sqlite or postgresql\n";
      return 2;
    }
    Options opt;
    opt.records = parsed["records"].as<std::uint64_t>();
    opt.batch = parsed["batch"].as<std::size_t>();
    opt.delete_batch = parsed["delete-batch"].as<std::size_t>();
    opt.startup_records = parsed["startup-records"].as<std::uint64_t>();
    opt.startup_runs = parsed["startup-runs"].as<int>();
    opt.seed = parsed["seed"].as<std::uint64_t>();
    opt.probe_period_ms = parsed["probe-period-ms"].as<int>();
    opt.json_out = parsed["json-out"].as<std::string>();
    if (parsed.count("work-dir")) opt.work_dir = parsed["work-dir"].as<std::string>();
    opt.keep = parsed.count("keep") > 0;
    opt.connector = parsed.count("connector") > 0;
    return run(opt);
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << "retentiond-bench: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "retentiond-bench: " << e.what() << "\n";
    return 1;
  }
}
