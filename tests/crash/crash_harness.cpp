// crash_harness: kill -9 crash consistency of the real retentiond (issue 5).
//
// One state directory lives through the whole run. At each kill point the
// harness starts the daemon (its clock one day later than at the point
// before, so records keep falling due), lets worker threads send a random
// mix of work (record.put_many imports, record.put, event.record, holds
// placed and released, subject.erase, explicit sweeps) while the daemon's
// own passes run, and SIGKILLs it after a random delay. Then it checks:
//
//  1. offline, before the daemon reopens the files: retention.db (one file,
//     in WAL mode) through a read-only connection, which reads the last
//     commit in retention.db-wal and ignores the frames of a transaction
//     the kill cut short, as every reader does; recovery of the WAL is the
//     restarted daemon's, the path under test. PRAGMA integrity_check, no
//     key in both the records and the archive table, due_counts and
//     record_counts equal to the rows, no file of the old two-file layout
//     (archive.db, a rollback journal, a super-journal), and a WAL no
//     bigger than 256 MiB (checkpoints keep it bounded). The WAL is parsed
//     as SQLite's recovery does, to tell (and count) the kills that landed
//     inside a commit: frames of a transaction without its commit frame,
//     or a frame cut mid-write;
//  2. after the restart, over the socket: audit.verify;
//  3. after the restart, one read transaction over retention.db (the
//     daemon keeps running its catch-up pass and committing meanwhile; each
//     committed state must pass): the Ledger's invariants (ledger.hpp) —
//     the audit chain, each entry's action really happened and was allowed
//     (due, not held, erasable), each acknowledged put stored or destroyed
//     with exactly one entry, each unanswered put all or nothing, nothing
//     vanished without an entry, holds table = holds placed and not
//     released, schedules agree with dates, each key in one table,
//     due_counts and record_counts equal to the rows, key slots unique, in
//     use and holding a key;
//  4. over the socket: anonymised records read back without their canary
//     values, and a sample of live records read back intact.
// One restart in 20 is also killed during its start-up (while it recovers),
// before the restart that is checked. At the end: a restart 30 days later,
// every hold released, an explicit sweep, nothing left due, every live
// record readable, a clean SIGTERM, the offline check again, and the keys
// the kills left in unused slots counted (reported, not violations: see
// the summary).
//
// --inject puts a known fault into the files after a kill (a deleted
// record, a tampered audit entry, a zeroed key, a due_counts row one off, a
// record in both tables); those runs pass only if the checks report it,
// proving they can fail.
//
// The seed fixes each worker's choices and each kill delay; the threads'
// interleaving (and so exactly where a kill lands) varies between runs. On a
// violation the run stops, keeps its directory and prints the seed: state/
// is the state after the restart that found it, crash-image/ the files as
// the kill left them (retention.db, -wal, -shm, keys...; copy them back
// into state/ to replay), harness.log one line per point.

#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cxxopts.hpp>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <SQLiteCpp/SQLiteCpp.h>
#include <nlohmann/json.hpp>

#include "tests/crash/ledger.hpp"
#include "tests/crash/snapshot.hpp"
#include "tests/crash/workload.hpp"
#include "tests/support/daemon_process.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using retentiond::testing::Client;
using retentiond::testing::DaemonOptions;
using retentiond::testing::DaemonProcess;

namespace retentiond::crash {
namespace {

// 2030-01-01T00:00:00Z: kill point i runs with --now this plus i days.
constexpr std::int64_t kStart = 1893456000;
constexpr int kMaxWorkers = 8;
constexpr std::uint32_t kSubjectsPerWorker = 200;
constexpr std::size_t kMaxOpenHolds = 4;
// The store's journal_size_limit: the most a WAL that checkpoints keep up
// with may hold (see work_and_kill).
constexpr std::uintmax_t kMaxWalBytes = std::uintmax_t{256} << 20;

enum Op : int { idle, put, put_many, event_key, event_subject, hold_place, hold_release, erase, sweep, kOps };
constexpr const char* kOpNames[kOps] = {"idle (between requests)", "record.put", "record.put_many", "event.record (key)",
                                        "event.record (subject)", "hold.place", "hold.release", "subject.erase", "sweep"};

struct Options {
  int points = 200;
  std::uint64_t seed = 0;
  bool keep_dir = false;
  bool verbose = false;
  bool keep_going = false;
  int workers = 2;
  int min_delay_ms = 5;
  int max_delay_ms = 250;
  std::string dir;
  int verify_every = 1;
  int integrity_every = 1;
  bool offline_on_copy = false;  // the offline check on a copy of retention.db and its -wal
  std::string inject;  // a fault to inject after a kill, to prove the checks see it
};

// --inject: a fault the harness puts into the state directory after a kill
// (the daemon stopped), and the violation that must then be reported.
struct Injection {
  const char* name = "";
  const char* expected = "";
};
constexpr Injection kInjections[] = {
    {"delete-record", "vanished from both tables"},     // a record row deleted behind the daemon's back
    {"tamper-audit", "audit.verify"},                     // an audit entry's reason rewritten
    {"zero-key", "holds no key"},                         // a live record's key slot zeroed
    {"skew-due-count", "due_counts holds"},               // a due_counts row one off
    {"key-in-both", "in both the records and the archive table"},  // a live record copied into the archive table
};

std::uint64_t mix(std::uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// ------------------------------------------------------------------ state

// What one worker knows of its own keys and subjects. Touched by its thread
// during a kill point and by the checker between kill points.
struct WorkerBook {
  std::vector<std::uint32_t> subjects;
  std::vector<std::uint32_t> keys;     // may be alive
  std::vector<std::uint32_t> waiting;  // put without their own date
  std::unordered_map<std::uint32_t, std::vector<std::uint32_t>> by_subject;
  std::unordered_map<std::uint32_t, int> category;  // of each key in `keys`
};

struct Stats {
  std::uint64_t kills = 0;
  std::uint64_t start_up_kills = 0;  // restarts killed before or just after READY
  std::uint64_t in_flight[kOps] = {};
  std::uint64_t kills_during_sweep = 0;
  std::uint64_t wal_committed = 0;  // kills leaving commits in retention.db-wal, not yet checkpointed
  std::uint64_t in_commit = 0;      // kills inside a commit: frames without their commit frame, or a torn frame
  std::uint64_t torn_frame = 0;     // of which, a frame cut mid-write
  std::uintmax_t max_wal_bytes = 0;
  std::uint64_t offline_on_copy = 0;    // offline checks run on a copy of the files
  std::uint64_t offline_integrity = 0;  // kill points whose files had integrity_check offline
  std::uint64_t requests = 0;
  std::uint64_t verify_calls = 0;
  std::uint64_t records_read_back = 0;
  std::size_t max_live = 0;
  std::uint64_t violations = 0;
  // Where the time goes, in seconds.
  double t_start = 0, t_verify = 0, t_snapshot = 0, t_read_back = 0, t_work = 0, t_offline = 0;
};

class Timer {
 public:
  explicit Timer(double& total) : m_total(total), m_t0(std::chrono::steady_clock::now()) {}
  ~Timer() { m_total += std::chrono::duration<double>(std::chrono::steady_clock::now() - m_t0).count(); }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

 private:
  double& m_total;
  std::chrono::steady_clock::time_point m_t0;
};

class Rpc;

class Harness {
 public:
  Harness(Options o, fs::path dir) : m_opt(std::move(o)), m_dir(std::move(dir)), m_sample_rng(mix(m_opt.seed)) {
    m_books.resize(static_cast<std::size_t>(m_opt.workers));
    for (int w = 0; w < m_opt.workers; ++w) {
      for (std::uint32_t j = 0; j < kSubjectsPerWorker; ++j) {
        m_books[static_cast<std::size_t>(w)].subjects.push_back(j * static_cast<std::uint32_t>(m_opt.workers) +
                                                                 static_cast<std::uint32_t>(w));
      }
    }
  }

  int run();

 private:
  // One kill point: the daemon is running; send work, kill it, check offline.
  void work_and_kill(DaemonProcess& daemon, int point, std::int64_t now);
  void worker(int w, std::uint64_t seed, std::int64_t now, std::chrono::steady_clock::time_point started);
  // Checks after a (re)start. False when a violation was found.
  bool check_after_start(DaemonProcess& daemon, int point);
  bool finish(int points);
  bool flush_violations();
  void print_summary(double seconds) const;
  std::unique_ptr<DaemonProcess> start(std::int64_t now, int point);
  void kill_during_start_up(int point, std::int64_t now);
  void violation(int point, const std::string& what);
  void log(const std::string& line);
  void copy_crash_image();
  void prune_books();
  bool inject_fault(int point);
  void read_back(Rpc& rpc, const std::vector<std::uint32_t>& ids, int point, bool strict);

  Options m_opt;
  fs::path m_dir;
  fs::path m_state;
  fs::path m_policy;
  std::unique_ptr<Ledger> m_ledger;
  std::string m_secret;
  std::vector<WorkerBook> m_books;
  std::mutex m_holds_mutex;
  std::vector<std::int64_t> m_open_holds;  // ids believed in force, for hold.release
  std::mutex m_violations_mutex;
  std::vector<std::string> m_point_violations;
  std::vector<std::string> m_all_violations;
  bool m_injected = false;
  std::atomic<int> m_in_flight[kMaxWorkers] = {};
  std::atomic<std::uint64_t> m_requests{0};
  std::atomic<std::uint32_t> m_hold_requests{0};
  Stats m_stats;
  std::size_t m_final_live = 0;
  ReceivedLog m_received{fs::path()};  // the connector's received.jsonl, read on at each snapshot
  Ledger::StrayKeys m_stray;
  std::optional<std::uintmax_t> m_final_wal_bytes;  // retention.db-wal after the clean stop, if there is one
  std::ofstream m_log;
  std::mt19937_64 m_sample_rng;
};

// --------------------------------------------------------------- requests

// One JSON-RPC call. nullopt when the daemon is gone (the connection closed
// or nothing came back): the request is unanswered.
class Rpc {
 public:
  explicit Rpc(const fs::path& socket) : m_client(socket) {}
  // A JSON-RPC batch: one line out, one line back, answered in one turn of
  // the daemon's loop (so it waits for at most one sweep batch in all).
  std::optional<json> batch(const std::string& method, const std::vector<json>& params) {
    json reqs = json::array();
    for (const auto& p : params) reqs.push_back({{"jsonrpc", "2.0"}, {"id", m_next++}, {"method", method}, {"params", p}});
    if (!m_client.send_raw(reqs.dump() + "\n")) return std::nullopt;
    const auto line = m_client.read_line(std::chrono::seconds(120));
    if (!line) return std::nullopt;
    json replies = json::parse(*line);
    std::sort(replies.begin(), replies.end(), [](const json& x, const json& y) { return x["id"].get<int>() < y["id"].get<int>(); });
    return replies;
  }

  std::optional<json> call(const std::string& method, const json& params) {
    const json req = {{"jsonrpc", "2.0"}, {"id", m_next++}, {"method", method}, {"params", params}};
    if (!m_client.send_raw(req.dump() + "\n")) return std::nullopt;
    const auto line = m_client.read_line(std::chrono::seconds(120));
    if (!line) return std::nullopt;
    return json::parse(*line);
  }

 private:
  Client m_client;
  int m_next = 1;
};

std::string error_text(const json& reply) {
  if (!reply.contains("error")) return "";
  const auto& e = reply["error"];
  return e.value("message", std::string("?")) + " (" + e.value("data", json::object()).value("reason", std::string("?")) + ")";
}

std::string reason_of(const json& reply) {
  if (!reply.contains("error")) return "";
  return reply["error"].value("data", json::object()).value("reason", std::string());
}

std::int64_t uniform(std::mt19937_64& rng, std::int64_t lo, std::int64_t hi) {
  return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
}

bool chance(std::mt19937_64& rng, double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }

template <typename T>
const T& pick(std::mt19937_64& rng, const std::vector<T>& v) {
  return v[static_cast<std::size_t>(uniform(rng, 0, static_cast<std::int64_t>(v.size()) - 1))];
}

// A new record's dates, around the daemon's `now`. About 8% fall due within
// seconds (the scheduler's timer acts on them during the kill point), some
// are overdue already (the next pass or sweep takes them), some wait for an
// event, the rest fall due at later kill points.
NewRecord new_record(std::mt19937_64& rng, std::uint32_t subject, std::int64_t now) {
  NewRecord r;
  r.subject = subject;
  const int weights[] = {3, 3, 2, 3};
  std::discrete_distribution<int> cat(std::begin(weights), std::end(weights));
  r.category = cat(rng);
  const bool imminent = chance(rng, 0.08);
  const std::int64_t soon = uniform(rng, 1, 5);
  switch (r.category) {
    case 0:  // lead: max(collected, last_contact) + 7 days
      r.collected = imminent ? now - 7 * kDay + soon : now - uniform(rng, 0, 9 * kDay);
      r.own_date = imminent || chance(rng, 0.4) ? kAbsent : now - uniform(rng, 0, 9 * kDay);
      break;
    case 1:  // customer: contract_end + 2 days, + 12 days
      r.collected = now - uniform(rng, 10 * kDay, 40 * kDay);
      r.own_date = imminent ? now - 2 * kDay + soon
                   : chance(rng, 0.15) ? kAbsent
                                       : now + uniform(rng, -14 * kDay, 2 * kDay);
      break;
    case 2:  // invoice: issued + 3 days, + 15 days
      r.collected = now - uniform(rng, 0, 20 * kDay);
      r.own_date = imminent ? now - 3 * kDay + soon : now - uniform(rng, 0, 16 * kDay);
      break;
    default:  // ticket: closed + 1, 4, 10 days
      r.collected = now - uniform(rng, 0, 15 * kDay);
      r.own_date = imminent ? now - kDay + soon : chance(rng, 0.15) ? kAbsent : now - uniform(rng, 0, 11 * kDay);
      break;
  }
  return r;
}

std::int64_t event_value(std::mt19937_64& rng, int category, std::int64_t now) {
  switch (category) {
    case 0: return now - uniform(rng, 0, 2 * kDay);
    case 1: return now + uniform(rng, -5 * kDay, kDay);
    case 2: return now - uniform(rng, 0, 16 * kDay);
    default: return now - uniform(rng, 0, 3 * kDay);
  }
}

json record_json(const NewRecord& r) {
  json dates = {{"collected", format_time(r.collected)}};
  if (r.own_date != kAbsent) dates[categories()[static_cast<std::size_t>(r.category)].date] = format_time(r.own_date);
  return {{"key", key_name(r.id)},
          {"subject", subject_name(r.subject)},
          {"category", categories()[static_cast<std::size_t>(r.category)].name},
          {"fields", fields_for(r.category, r.id)},
          {"dates", dates}};
}

void Harness::violation(int point, const std::string& what) {
  std::lock_guard lock(m_violations_mutex);
  m_point_violations.push_back("kill point " + std::to_string(point) + ": " + what);
}

void Harness::log(const std::string& line) {
  m_log << line << '\n';
  m_log.flush();
  if (m_opt.verbose) std::cout << line << '\n';
}

void Harness::worker(int w, std::uint64_t seed, std::int64_t now_base, std::chrono::steady_clock::time_point started) {
  std::mt19937_64 rng(seed);
  WorkerBook& book = m_books[static_cast<std::size_t>(w)];
  auto& in_flight = m_in_flight[w];
  const auto now = [&] {
    return now_base + std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count();
  };
  std::optional<Rpc> rpc;
  try {
    rpc.emplace(m_dir / "admin.sock");
  } catch (const std::exception&) {
    return;  // killed before this worker connected
  }
  const int point = static_cast<int>((now_base - kStart) / kDay);
  const auto call = [&](Op op, const std::string& method, const json& params) {
    in_flight = op;
    ++m_requests;
    auto reply = rpc->call(method, params);
    in_flight = idle;
    return reply;
  };
  const double weights[] = {0, 4, 3, 3, 1, 1, 1, 1, 1};
  std::discrete_distribution<int> choose(std::begin(weights), std::end(weights));
  for (;;) {
    Op op = static_cast<Op>(choose(rng));
    if ((op == event_key || op == hold_place) && book.keys.empty()) op = put;
    if (op == hold_release) {
      std::lock_guard lock(m_holds_mutex);
      if (m_open_holds.empty()) op = put_many;
    }
    if (op == hold_place) {
      std::lock_guard lock(m_holds_mutex);
      if (m_open_holds.size() >= kMaxOpenHolds) op = put;
    }
    switch (op) {
      case put:
      case put_many: {
        const auto n = op == put ? 1 : uniform(rng, 5, 80);
        std::vector<NewRecord> records;
        for (std::int64_t i = 0; i < n; ++i) records.push_back(new_record(rng, pick(rng, book.subjects), now()));
        const auto group = m_ledger->begin_put(w, records);
        json list = json::array();
        for (const auto& r : records) {
          book.keys.push_back(r.id);
          book.category[r.id] = r.category;
          book.by_subject[r.subject].push_back(r.id);
          if (r.own_date == kAbsent && r.category != 0) book.waiting.push_back(r.id);
          list.push_back(record_json(r));
        }
        const auto reply = op == put ? call(op, "record.put", list[0]) : call(op, "record.put_many", {{"records", list}});
        if (reply && reply->contains("error")) violation(point, std::string(kOpNames[op]) + " refused: " + error_text(*reply));
        m_ledger->end_put(group, reply && reply->contains("result"));
        if (!reply) return;
        break;
      }
      case event_key: {
        std::uint32_t id = 0;
        if (!book.waiting.empty() && chance(rng, 0.5)) {
          const auto i = static_cast<std::size_t>(uniform(rng, 0, static_cast<std::int64_t>(book.waiting.size()) - 1));
          id = book.waiting[i];
          book.waiting.erase(book.waiting.begin() + static_cast<std::ptrdiff_t>(i));
        } else {
          id = pick(rng, book.keys);
        }
        const int cat = book.category[id];
        const std::int64_t value = event_value(rng, cat, now());
        const auto event = m_ledger->begin_event({id}, value, id, std::nullopt);
        const auto reply = call(op, "event.record",
                                {{"name", categories()[static_cast<std::size_t>(cat)].date}, {"at", format_time(value)}, {"key", key_name(id)}});
        if (reply && reply->contains("error") && reason_of(*reply) != "not_found") {
          violation(point, "event.record on " + key_name(id) + " refused: " + error_text(*reply));
        }
        m_ledger->end_event(event, {id}, value, reply && reply->contains("result"));
        if (!reply) return;
        break;
      }
      case event_subject: {
        const std::uint32_t subject = pick(rng, book.subjects);
        const int cat = static_cast<int>(uniform(rng, 0, 3));
        const std::int64_t value = event_value(rng, cat, now());
        std::vector<std::uint32_t> ids;
        for (const auto id : book.by_subject[subject]) {
          if (book.category[id] == cat) ids.push_back(id);
        }
        const auto event = m_ledger->begin_event(ids, value, std::nullopt, subject);
        const auto reply = call(op, "event.record",
                                {{"name", categories()[static_cast<std::size_t>(cat)].date}, {"at", format_time(value)},
                                 {"subject", subject_name(subject)}});
        if (reply && reply->contains("error")) violation(point, "event.record on a subject refused: " + error_text(*reply));
        m_ledger->end_event(event, ids, value, reply && reply->contains("result"));
        if (!reply) return;
        break;
      }
      case hold_place: {
        json params = {{"reason", "crash-hold-" + std::to_string(m_hold_requests++)}};
        const double r = std::uniform_real_distribution<double>(0, 1)(rng);
        if (r < 0.5) params["key"] = key_name(pick(rng, book.keys));
        else if (r < 0.85) params["subject"] = subject_name(pick(rng, book.subjects));
        else params["category"] = categories()[static_cast<std::size_t>(uniform(rng, 0, 3))].name;
        const auto reply = call(op, "hold.place", params);
        if (reply && reply->contains("result")) {
          const std::int64_t id = (*reply)["result"]["id"].get<std::int64_t>();
          m_ledger->hold_acked(id);
          std::lock_guard lock(m_holds_mutex);
          m_open_holds.push_back(id);
        } else if (reply && reason_of(*reply) != "not_found") {
          violation(point, "hold.place refused: " + error_text(*reply));
        }
        if (!reply) return;
        break;
      }
      case hold_release: {
        std::int64_t id = 0;
        {
          std::lock_guard lock(m_holds_mutex);
          const auto i = static_cast<std::size_t>(uniform(rng, 0, static_cast<std::int64_t>(m_open_holds.size()) - 1));
          id = m_open_holds[i];
          m_open_holds.erase(m_open_holds.begin() + static_cast<std::ptrdiff_t>(i));
        }
        const auto reply = call(op, "hold.release", {{"id", id}, {"reason", "crash-release"}});
        if (reply && reply->contains("result")) m_ledger->release_acked(id);
        else if (reply) violation(point, "hold.release of hold " + std::to_string(id) + " refused: " + error_text(*reply));
        if (!reply) return;
        break;
      }
      case erase: {
        const std::uint32_t subject = pick(rng, book.subjects);
        const auto request = m_ledger->begin_erase(subject);
        const auto reply =
            call(op, "subject.erase", {{"subject", subject_name(subject)}, {"reason", erase_reason(request)}});
        std::vector<std::uint32_t> erased;
        if (reply && reply->contains("result")) {
          for (const auto& k : (*reply)["result"]["erased"]) {
            const auto id = key_id(k.get<std::string>());
            if (id) erased.push_back(*id);
          }
        } else if (reply) {
          violation(point, "subject.erase refused: " + error_text(*reply));
        }
        m_ledger->end_erase(request, reply && reply->contains("result"), erased);
        if (!reply) return;
        break;
      }
      case sweep: {
        const auto reply = call(op, "sweep", json::object());
        if (reply && reply->contains("error")) violation(point, "sweep failed: " + error_text(*reply));
        if (!reply) return;
        break;
      }
      default: break;
    }
  }
}

// ------------------------------------------------------------- kill point

std::unique_ptr<DaemonProcess> Harness::start(std::int64_t now, int point) {
  Timer timer(m_stats.t_start);
  try {
    return std::make_unique<DaemonProcess>(
        m_dir, std::vector<std::string>{"--config", m_policy.string(), "--now", format_time(now), "--log-level",
                                        m_opt.verbose ? "info" : "warn"});
  } catch (const std::exception& e) {
    violation(point, std::string("the daemon did not restart: ") + e.what());
    return nullptr;
  }
}

// One point in 20, before the real restart: a restart killed a few
// milliseconds in, while it recovers the WAL, zeroes pending key slots and
// runs its first batches. The recovery must survive being interrupted.
void Harness::kill_during_start_up(int point, std::int64_t now) {
  std::mt19937_64 rng(mix(m_opt.seed ^ mix(static_cast<std::uint64_t>(point) + 0x5eed)));
  if (!chance(rng, 0.05)) return;
  const auto delay = std::chrono::milliseconds(uniform(rng, 0, 40));
  DaemonOptions options;
  options.wait_ready = false;
  DaemonProcess daemon(m_dir,
                       {"--config", m_policy.string(), "--now", format_time(now), "--log-level", m_opt.verbose ? "info" : "warn"},
                       options);
  std::this_thread::sleep_for(delay);  // the kill point: a random moment, not a synchronisation
  const int status = daemon.stop(SIGKILL);
  ++m_stats.start_up_kills;
  if (status != 128 + SIGKILL) violation(point, "a restart ended with status " + std::to_string(status) + " before it was killed");
  log("point " + std::to_string(point) + " start-up killed after " + std::to_string(delay.count()) + "ms");
}

void Harness::work_and_kill(DaemonProcess& daemon, int point, std::int64_t now) {
  const std::uint64_t point_seed = mix(m_opt.seed ^ mix(static_cast<std::uint64_t>(point) + 1));
  std::mt19937_64 rng(point_seed);
  const auto delay = std::chrono::milliseconds(uniform(rng, m_opt.min_delay_ms, m_opt.max_delay_ms));
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int w = 0; w < m_opt.workers; ++w) {
    m_in_flight[w] = idle;
    threads.emplace_back([this, w, point_seed, now, started] { worker(w, mix(point_seed + static_cast<std::uint64_t>(w) + 1), now, started); });
  }
  // The kill point itself: a random moment, not a synchronisation.
  std::this_thread::sleep_for(delay);
  const auto killed = std::chrono::steady_clock::now();
  int ops[kMaxWorkers] = {};
  for (int w = 0; w < m_opt.workers; ++w) ops[w] = m_in_flight[w];
  const int status = daemon.stop(SIGKILL);
  for (auto& t : threads) t.join();
  m_stats.t_work += std::chrono::duration<double>(killed - started).count();
  ++m_stats.kills;
  Timer offline_timer(m_stats.t_offline);
  bool sweeping = false;
  std::string flight;
  for (int w = 0; w < m_opt.workers; ++w) {
    ++m_stats.in_flight[ops[w]];
    sweeping = sweeping || ops[w] == sweep;
    flight += std::string(flight.empty() ? "" : ", ") + kOpNames[ops[w]];
  }
  if (sweeping) ++m_stats.kills_during_sweep;
  if (status != 128 + SIGKILL) {
    violation(point, "the daemon ended with status " + std::to_string(status) + " before it was killed");
  }

  // 1. Offline, the files as the kill left them. integrity_check reads every
  //    page: --integrity-every spaces it out on long runs (damage stays, so
  //    the next check still sees it; the crash image is kept with it).
  const bool integrity_due = point % m_opt.integrity_every == 0 || point + 1 >= m_opt.points;
  OfflineCheck c;
  try {
    c = offline_check(m_state, integrity_due, m_opt.offline_on_copy);
  } catch (const std::exception& e) {
    violation(point, e.what());
  }
  const WalView& wal = c.wal;
  const bool in_commit = wal.uncommitted_frames > 0 || wal.torn_frame;
  if (wal.commits > 0) ++m_stats.wal_committed;
  if (in_commit) ++m_stats.in_commit;
  if (wal.torn_frame) ++m_stats.torn_frame;
  if (c.on_copy) ++m_stats.offline_on_copy;
  m_stats.max_wal_bytes = std::max(m_stats.max_wal_bytes, wal.bytes);
  if (integrity_due) {
    ++m_stats.offline_integrity;
    if (c.integrity != "ok") violation(point, "retention.db integrity_check after the kill: " + c.integrity);
  }
  // Checkpoints keep the WAL bounded: they copy it back into retention.db
  // every ~1000 pages and the next commit then restarts it from the top
  // (the file keeps its size, cut back to the store's journal_size_limit,
  // 64 MiB, when larger). It may outgrow that limit between two
  // checkpoints (a long read holds the restart back), so the bound is four
  // times it: a bigger -wal means checkpoints do not run or fall ever
  // further behind, and every start then recovers (reads) all of it.
  if (wal.bytes > kMaxWalBytes) {
    violation(point, "retention.db-wal holds " + std::to_string(wal.bytes) + " bytes at the kill (" +
                         std::to_string(wal.committed_frames) + " committed frames since it last restarted), more than " +
                         std::to_string(kMaxWalBytes >> 20) + " MiB: checkpoints do not keep it bounded");
  }
  for (const auto& k : c.in_both) violation(point, k + " is in both the records and the archive table after the kill");
  for (const auto& m : c.count_mismatches) violation(point, "after the kill, " + m);
  for (const auto& f : c.legacy_files) violation(point, f + " is in the state directory after the kill (the one-file layout has none)");
  if (integrity_due) copy_crash_image();
  log("point " + std::to_string(point) + " now=" + format_time(now) + " kill_after=" + std::to_string(delay.count()) +
      "ms in_flight=[" + flight + "] wal_bytes=" + std::to_string(wal.bytes) + " wal_commits=" + std::to_string(wal.commits) +
      " wal_frames=" + std::to_string(wal.committed_frames) + "+" + std::to_string(wal.uncommitted_frames) + " uncommitted" +
      (wal.torn_frame ? " torn_frame" : "") + " in_commit=" + (in_commit ? "yes" : "no") + (c.on_copy ? " checked_on_copy" : "") +
      " requests=" + std::to_string(m_requests.load()));
}

// The state as the last kill left it, before the restart recovers it: the
// reproducer of a violation found after that restart (copy it back to
// state/ to replay; the -shm is rebuilt from the -wal by the first opener).
void Harness::copy_crash_image() {
  const fs::path image = m_dir / "crash-image";
  std::error_code ec;
  fs::remove_all(image, ec);
  fs::create_directories(image);
  for (const auto& e : fs::directory_iterator(m_state)) {
    if (e.is_regular_file()) fs::copy_file(e.path(), image / e.path().filename(), fs::copy_options::overwrite_existing, ec);
  }
}

void Harness::prune_books() {
  for (auto& b : m_books) {
    std::erase_if(b.keys, [&](std::uint32_t id) { return !m_ledger->alive(id); });
    std::erase_if(b.waiting, [&](std::uint32_t id) { return !m_ledger->alive(id); });
    std::erase_if(b.category, [&](const auto& kv) { return !m_ledger->alive(kv.first); });
    for (auto it = b.by_subject.begin(); it != b.by_subject.end();) {
      std::erase_if(it->second, [&](std::uint32_t id) { return !m_ledger->alive(id); });
      it = it->second.empty() ? b.by_subject.erase(it) : std::next(it);
    }
  }
}

bool Harness::check_after_start(DaemonProcess& daemon, int point) {
  Rpc rpc(daemon.socket());
  // The restart brings back none of the two-file layout's files.
  try {
    for (const auto& f : legacy_files(m_state)) violation(point, f + " is in the state directory after the restart");
  } catch (const std::exception& e) {
    violation(point, e.what());
  }
  // 2. audit.verify over the socket (it rereads the whole log: --verify-every
  //    spaces it out on long runs; the snapshot checks every new entry's
  //    chaining at every point anyway).
  if (point % m_opt.verify_every == 0 || point + 1 >= m_opt.points) {
    Timer timer(m_stats.t_verify);
    const auto verified = rpc.call("audit.verify", json::object());
    ++m_stats.verify_calls;
    if (!verified || !verified->contains("result") || !(*verified)["result"].value("ok", false)) {
      violation(point, "audit.verify after the restart: " + (verified ? verified->dump() : std::string("no answer")));
    }
  }
  // 3. The snapshot and the ledger's invariants.
  Reconciled rec;
  try {
    Timer timer(m_stats.t_snapshot);
    const Snapshot s = take_snapshot(m_state, m_ledger->last_seq(), false, m_ledger->jobs_scope(&m_received));
    for (const auto& v : m_ledger->reconcile(s, rec)) violation(point, v);
  } catch (const std::exception& e) {
    violation(point, e.what());
  }
  m_stats.max_live = std::max(m_stats.max_live, rec.live_records);
  // 4. Read records back: anonymised ones lost their canaries; others intact.
  Timer read_timer(m_stats.t_read_back);
  std::vector<std::uint32_t> ids = rec.newly_anonymised;
  const auto live = m_ledger->live_ids();
  for (int i = 0; i < 10 && !live.empty(); ++i) ids.push_back(pick(m_sample_rng, live));
  read_back(rpc, ids, point, false);
  prune_books();
  {
    std::lock_guard lock(m_holds_mutex);
    m_open_holds = m_ledger->open_hold_ids();
  }
  return m_point_violations.empty();
}

// Reads `ids` back with record.get: an anonymised record (by the ledger) has
// lost its canaries and reads exactly as the strategies make it; any other
// reads as put (or, if a pass anonymised it since the snapshot, as
// anonymised). A key destroyed since the snapshot is left to the next check,
// unless `strict` (nothing runs any more).
void Harness::read_back(Rpc& rpc, const std::vector<std::uint32_t>& ids, int point, bool strict) {
  constexpr std::size_t kBatch = 500;
  for (std::size_t first = 0; first < ids.size(); first += kBatch) {
    const std::size_t n = std::min(kBatch, ids.size() - first);
    std::vector<json> params;
    for (std::size_t i = 0; i < n; ++i) params.push_back({{"key", key_name(ids[first + i])}, {"include_archived", true}});
    const auto replies = rpc.batch("record.get", params);
    if (!replies || replies->size() != n) {
      violation(point, "no answer to a batch of record.get");
      return;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t id = ids[first + i];
      const json& reply = (*replies)[i];
      ++m_stats.records_read_back;
      if (!strict && reason_of(reply) == "not_found") continue;  // destroyed since the snapshot
      if (!reply.contains("result")) {
        violation(point, "record.get " + key_name(id) + ": " + error_text(reply));
        continue;
      }
      const json& r = reply["result"];
      const json want = m_ledger->expected(id);
      const json anonymised = anonymised_fields(m_ledger->key(id).category, id, m_secret);
      const bool is_anonymised = !anonymised.is_null() && r["subject"].is_null() && r["fields"] == anonymised;
      if (m_ledger->key(id).anonymised) {
        if (!is_anonymised) violation(point, key_name(id) + " is anonymised but record.get returns " + r.dump());
        if (r.dump().find("canary") != std::string::npos) violation(point, key_name(id) + " still holds a canary value");
        ++m_ledger->stats().anonymised_verified;
      } else if ((strict || !is_anonymised) && (r["subject"] != want["subject"] || r["fields"] != want["fields"])) {
        violation(point, "record.get " + key_name(id) + " returns " + r.dump() + ", put with " + want.dump());
      }
    }
  }
}

// Puts the --inject fault into the stopped daemon's files. False when there
// is nothing yet to inject it into (tried again after the next kill).
bool Harness::inject_fault(int point) {
  // A writer on the stopped daemon's files: it recovers the WAL the kill
  // left (the offline check and the crash image are done by now).
  SQLite::Database db((m_state / "retention.db").string(), SQLite::OPEN_READWRITE);
  db.setBusyTimeout(5000);
  std::string done;
  if (m_opt.inject == "tamper-audit") {
    if (m_ledger->last_seq() == 0) return false;
    SQLite::Statement q(db, "UPDATE main.audit SET reason = 'tampered by crash_harness --inject' WHERE seq = ?");
    q.bind(1, m_ledger->last_seq());
    q.exec();
    done = "rewrote the reason of audit entry " + std::to_string(m_ledger->last_seq());
  } else if (m_opt.inject == "skew-due-count") {
    // The latest day: no pass reaches it before the check.
    SQLite::Statement q(db, "UPDATE main.due_counts SET n = n + 1 WHERE (day, category) = "
                            "(SELECT day, category FROM main.due_counts ORDER BY day DESC, category LIMIT 1) "
                            "RETURNING day, category");
    if (!q.executeStep()) return false;
    done = "added 1 to due_counts of " + q.getColumn(1).getString() + " on " + format_time(q.getColumn(0).getInt64() * kDay).substr(0, 10);
    q.reset();
  } else {
    // A record of the ledger's that no phase reaches for days, so that the
    // daemon's catch-up pass does not destroy it before the check.
    const std::int64_t later = kStart + (static_cast<std::int64_t>(point) + 3) * kDay;
    SQLite::Statement q(db, "SELECT key, slot FROM main.records WHERE due IS NULL OR due > ?");
    q.bind(1, later);
    std::optional<std::pair<std::string, std::int64_t>> victim;
    while (!victim && q.executeStep()) {
      const auto id = key_id(q.getColumn(0).getString());
      if (id && m_ledger->alive(*id) && m_ledger->key(*id).exist == Exist::yes) {
        victim.emplace(q.getColumn(0).getString(), q.getColumn(1).getInt64());
      }
    }
    q.reset();
    if (!victim) return false;
    if (m_opt.inject == "delete-record") {
      SQLite::Statement del(db, "DELETE FROM main.records WHERE key = ?");
      del.bind(1, victim->first);
      del.exec();
      done = "deleted the record " + victim->first;
    } else if (m_opt.inject == "key-in-both") {
      SQLite::Statement copy(db, "INSERT INTO main.archive (key, category, state, dates, next_phase, due, done, created_at, "
                                 "slot, subject_ref, sealed) SELECT key, category, 'archived', dates, next_phase, due, done, "
                                 "created_at, slot, subject_ref, sealed FROM main.records WHERE key = ?");
      copy.bind(1, victim->first);
      copy.exec();
      done = "copied the record " + victim->first + " into the archive table";
    } else {
      std::fstream keys(m_state / "keys", std::ios::in | std::ios::out | std::ios::binary);
      keys.seekp(victim->second * 32);
      const char zeros[32] = {};
      keys.write(zeros, sizeof zeros);
      done = "zeroed key slot " + std::to_string(victim->second) + " of " + victim->first;
    }
  }
  log("point " + std::to_string(point) + ": injected fault " + m_opt.inject + ": " + done);
  std::cout << "crash_harness: injected " << m_opt.inject << " after kill point " << point << ": " << done << std::endl;
  return true;
}

// Prints and counts the violations found since the last call.
bool Harness::flush_violations() {
  std::lock_guard lock(m_violations_mutex);
  for (const auto& v : m_point_violations) {
    std::cerr << "VIOLATION " << v << '\n';
    m_log << "VIOLATION " << v << '\n';
  }
  m_log.flush();
  m_stats.violations += m_point_violations.size();
  m_all_violations.insert(m_all_violations.end(), m_point_violations.begin(), m_point_violations.end());
  const bool clean = m_point_violations.empty();
  m_point_violations.clear();
  return clean;
}

// The end: a restart 30 days on (everything dated is then due), every hold
// released, an explicit sweep; nothing may be left due, every live record
// must read back, and a SIGTERM must stop the daemon cleanly.
bool Harness::finish(int points) {
  const int label = points;  // checks after the last kill carry its number
  std::ofstream(steady_file(m_dir)) << "the connector takes every job from now on\n";
  const std::int64_t now = kStart + (static_cast<std::int64_t>(points) + 30) * kDay;
  auto daemon = start(now, label);
  if (!daemon) return false;
  check_after_start(*daemon, label - 1);
  Rpc rpc(daemon->socket());
  for (const auto id : m_ledger->open_hold_ids()) {
    const auto reply = rpc.call("hold.release", {{"id", id}, {"reason", "crash-final"}});
    if (!reply || !reply->contains("result")) violation(label, "final hold.release of " + std::to_string(id) + " failed");
    else m_ledger->release_acked(id);
  }
  const auto status = rpc.call("status", json::object());
  if (!status || !status->contains("result")) {
    violation(label, "status failed");
    return false;
  }
  const std::string sweep_now = (*status)["result"]["now"].get<std::string>();
  const auto swept = rpc.call("sweep", json::object());
  if (!swept || !swept->contains("result")) violation(label, "the final sweep failed: " + (swept ? swept->dump() : "no answer"));
  const auto after = rpc.call("status", json::object());
  if (!after || !after->contains("result") || (*after)["result"]["backlog"] != 0 || !(*after)["result"]["paused"].is_null()) {
    violation(label, "after the final sweep, status is " + (after ? after->dump() : std::string("no answer")));
  }
  // Every connector job delivered: none may stay pending forever. Waits on
  // the audit log (audit.tail's wait_ms), not on a timer.
  const auto jobs_deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  for (;;) {
    const auto list = rpc.call("connector.list", json::object());
    if (!list || !list->contains("result")) {
      violation(label, "connector.list failed: " + (list ? list->dump() : std::string("no answer")));
      break;
    }
    const json& c = (*list)["result"]["connectors"][0];
    if (c["pending"] == 0 && c["in_flight"] == 0) break;
    if (std::chrono::steady_clock::now() >= jobs_deadline) {
      violation(label, "connector jobs still unfinished 5 minutes after the final sweep: " + c.dump());
      break;
    }
    const auto head = rpc.call("audit.tail", {{"limit", 1}});
    const std::int64_t seq = head && head->contains("result") && !(*head)["result"]["entries"].empty()
                                 ? (*head)["result"]["entries"][0]["seq"].get<std::int64_t>()
                                 : 0;
    rpc.call("audit.tail", {{"after", seq}, {"limit", 1}, {"wait_ms", 2000}});
  }
  try {
    const Snapshot s = take_snapshot(m_state, m_ledger->last_seq(), true, m_ledger->jobs_scope(&m_received));
    if (s.integrity != "ok") violation(label, "integrity_check at the end: " + s.integrity);
    Reconciled rec;
    for (const auto& v : m_ledger->reconcile(s, rec)) violation(label, v);
    std::tm tm{};
    std::istringstream in(sweep_now);
    in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
    for (const auto& v : m_ledger->check_finished(s, static_cast<std::int64_t>(::timegm(&tm)))) violation(label, v);
    m_final_live = rec.live_records;
  } catch (const std::exception& e) {
    violation(label, e.what());
  }
  // Every live record reads back whole.
  read_back(rpc, m_ledger->live_ids(), label, true);
  const int status_code = daemon->stop(SIGTERM);
  if (status_code != 0) violation(label, "SIGTERM at the end: exit status " + std::to_string(status_code));
  try {
    const OfflineCheck c = offline_check(m_state, true, m_opt.offline_on_copy);
    if (c.integrity != "ok") violation(label, "after the clean stop: integrity " + c.integrity);
    for (const auto& k : c.in_both) violation(label, k + " is in both the records and the archive table after the clean stop");
    for (const auto& m : c.count_mismatches) violation(label, "after the clean stop, " + m);
    for (const auto& f : c.legacy_files) violation(label, f + " is in the state directory after the clean stop");
    if (c.wal.present) m_final_wal_bytes = c.wal.bytes;
    const Snapshot s = take_snapshot(m_state, m_ledger->last_seq(), false, m_ledger->jobs_scope(&m_received));
    Reconciled rec;
    for (const auto& v : m_ledger->reconcile(s, rec)) violation(label, v);
    m_stray = Ledger::stray_keys(s);
    for (const auto slot : m_stray.lost) {
      violation(label, "after the clean stop, key slot " + std::to_string(slot) +
                           " holds a key but no row uses it and it is neither free nor queued for zeroing");
    }
  } catch (const std::exception& e) {
    violation(label, e.what());
  }
  return flush_violations();
}

void Harness::print_summary(double seconds) const {
  const auto& l = m_ledger ? m_ledger->stats() : LedgerStats{};
  std::ostringstream o;
  o << "crash_harness summary\n"
    << "  seed:                 " << m_opt.seed << "\n"
    << "  kill points:          " << m_stats.kills << " of " << m_opt.points << " (workers: " << m_opt.workers
    << ", kill after " << m_opt.min_delay_ms << ".." << m_opt.max_delay_ms << " ms)\n"
    << "  duration:             " << std::fixed << std::setprecision(1) << seconds << " s ("
    << std::setprecision(0) << (m_stats.kills ? seconds * 1000 / static_cast<double>(m_stats.kills) : 0) << " ms per point)\n"
    << "  requests sent:        " << m_requests.load() << "\n"
    << "  keys sent:            " << l.keys_sent << " (" << l.keys_acked << " acknowledged; " << l.unacked_groups
    << " put requests unanswered, " << l.unacked_groups_committed << " of them found committed)\n"
    << "  events sent:          " << l.events_sent << "; holds placed " << l.holds_acked << ", released "
    << l.releases_acked << " (acknowledged; " << l.hold_ids_reused << " hold ids reused after a release); erasures "
    << l.erasures_acked << " (acknowledged)\n"
    << "  restarts killed during start-up (extra kills): " << m_stats.start_up_kills << "\n"
    << "  kills by request in flight (per worker):\n";
  for (int op = 0; op < kOps; ++op) o << "    " << std::left << std::setw(26) << kOpNames[op] << m_stats.in_flight[op] << "\n";
  o << std::right << "  kills during an explicit sweep: " << m_stats.kills_during_sweep << "\n"
    << "  kills leaving commits in retention.db-wal (not yet checkpointed): " << m_stats.wal_committed
    << "; largest -wal at a kill: " << m_stats.max_wal_bytes << " bytes\n"
    << "  kills inside a commit (frames of an uncommitted transaction in the -wal, or a torn frame): "
    << m_stats.in_commit << " (torn frame: " << m_stats.torn_frame << ")\n"
    << "  integrity_check of retention.db offline after " << m_stats.offline_integrity << " kills (every "
    << m_opt.integrity_every << " points)" << (m_stats.offline_on_copy ? ", on a copy " + std::to_string(m_stats.offline_on_copy) + " times" : "")
    << "\n"
    << "  retention.db-wal after the final clean stop: "
    << (m_final_wal_bytes ? std::to_string(*m_final_wal_bytes) + " bytes" : std::string("none (checkpointed and removed)")) << "\n"
    << "  key slots of a snapshot's rows zeroed by a commit after it (not lost keys): " << l.keys_zeroed_after_snapshot << "\n"
    << "  audit entries:        " << (m_ledger ? m_ledger->last_seq() : 0) << " (";
  bool first = true;
  for (const auto& [action, n] : l.audit_by_action) {
    o << (first ? "" : ", ") << action << " " << n;
    first = false;
  }
  o << "; by the scheduler's own passes " << l.audit_by_scheduler << ")\n"
    << "  audit.verify calls:   " << m_stats.verify_calls << " (every " << m_opt.verify_every << " points)\n"
    << std::setprecision(1) << "  time: starts " << m_stats.t_start << " s, work until the kill " << m_stats.t_work
    << " s, offline checks " << m_stats.t_offline << " s, audit.verify " << m_stats.t_verify << " s, snapshots "
    << m_stats.t_snapshot << " s, read-backs " << m_stats.t_read_back << " s\n"
    << "  live records:         at most " << m_stats.max_live << " at a check, " << m_final_live << " at the end\n"
    << "  records read back:    " << m_stats.records_read_back << " (" << l.anonymised_verified << " anonymised)\n"
    << "  keys left in unused slots after the final clean stop: " << m_stray.past_counter << " past the slot counter, "
    << m_stray.free << " in free slots, " << m_stray.queued << " queued for zeroing, " << m_stray.lost.size()
    << " in lost slots\n"
    << "  violations:           " << m_stats.violations << "\n";
  std::cout << o.str() << std::flush;
}

int Harness::run() {
  m_state = m_dir / "state";
  m_policy = m_dir / "policy.toml";
  std::ofstream(m_policy) << policy_toml(m_dir, fs::read_symlink("/proc/self/exe").parent_path() / "crash_connector");
  m_received = ReceivedLog(received_file(m_dir));
  m_log.open(m_dir / "harness.log", std::ios::app);
  log("crash_harness seed=" + std::to_string(m_opt.seed) + " points=" + std::to_string(m_opt.points) + " dir=" + m_dir.string());
  const auto t0 = std::chrono::steady_clock::now();
  bool clean = true;
  for (int point = 0; point < m_opt.points; ++point) {
    const std::int64_t now = kStart + static_cast<std::int64_t>(point) * kDay;
    if (point > 0) kill_during_start_up(point, now);
    auto daemon = start(now, point);
    if (!daemon) {
      clean = flush_violations();
      break;
    }
    if (!m_ledger) {
      std::ifstream in(m_state / "secret", std::ios::binary);
      m_secret.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      m_ledger = std::make_unique<Ledger>(m_secret);
    }
    if (point > 0) check_after_start(*daemon, point - 1);
    if (!flush_violations()) {
      clean = false;
      if (!m_opt.keep_going) break;
    }
    work_and_kill(*daemon, point, now);
    if (!flush_violations()) {
      clean = false;
      if (!m_opt.keep_going) break;
    }
    if (!m_opt.inject.empty() && !m_injected && point >= 3) m_injected = inject_fault(point);
  }
  if (clean || m_opt.keep_going) clean = finish(m_opt.points) && clean;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  print_summary(seconds);
  log("done violations=" + std::to_string(m_stats.violations));
  if (!m_opt.inject.empty()) {
    // A positive control: success is the injected fault being reported.
    const char* expected = "";
    for (const auto& i : kInjections) {
      if (m_opt.inject == i.name) expected = i.expected;
    }
    const bool seen = m_injected && std::any_of(m_all_violations.begin(), m_all_violations.end(), [&](const std::string& v) {
                        return v.find(expected) != std::string::npos;
                      });
    std::cout << "crash_harness: injected fault " << m_opt.inject << (seen ? " detected" : " NOT detected") << " (expected a violation containing '"
              << expected << "')" << std::endl;
    return seen ? 0 : 1;
  }
  return clean && m_stats.violations == 0 ? 0 : 1;
}

}  // namespace

// --inspect: the offline check of a state directory, printed.
int inspect(const fs::path& state_dir) {
  try {
    const OfflineCheck c = offline_check(state_dir, true, true);
    const WalView& w = c.wal;
    std::cout << "retention.db-wal: " << (w.present ? std::to_string(w.bytes) + " bytes" : std::string("none"))
              << (w.present && !w.header_valid ? ", no valid header" : "") << "; " << w.commits << " commits in "
              << w.committed_frames << " frames, " << w.uncommitted_frames << " frames after the last commit"
              << (w.torn_frame ? ", then a torn frame" : "") << '\n'
              << "integrity_check: " << c.integrity << '\n';
    for (const auto& f : c.legacy_files) std::cout << "file of the two-file layout: " << f << '\n';
    for (const auto& k : c.in_both) std::cout << "in both tables: " << k << '\n';
    for (const auto& m : c.count_mismatches) std::cout << m << '\n';
    return c.integrity == "ok" && c.legacy_files.empty() && c.in_both.empty() && c.count_mismatches.empty() ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "crash_harness: " << e.what() << '\n';
    return 1;
  }
}

}  // namespace retentiond::crash

int main(int argc, char** argv) {
  using retentiond::crash::Options;
  cxxopts::Options options("crash_harness",
                           "kill -9 crash consistency of retentiond: SIGKILL at random moments during mixed work, "
                           "restart, check every invariant.");
  options.add_options()
      ("points", "kill points (default: $RETENTIOND_CRASH_POINTS, else 200)", cxxopts::value<int>())
      ("seed", "random seed (default: from the system, printed)", cxxopts::value<std::uint64_t>())
      ("keep-dir", "keep the run directory even when every check passes")
      ("dir", "run in this directory (created; default: a new one under $TMPDIR)", cxxopts::value<std::string>())
      ("workers", "client threads sending work (1..8)", cxxopts::value<int>()->default_value("2"))
      ("min-delay-ms", "earliest kill after the work starts", cxxopts::value<int>()->default_value("5"))
      ("max-delay-ms", "latest kill after the work starts", cxxopts::value<int>()->default_value("250"))
      ("integrity-every", "run integrity_check on retention.db after every Nth kill point (and the last); "
                          "the crash image is kept at those points", cxxopts::value<int>()->default_value("1"))
      ("offline-on-copy", "run the offline check after each kill on a copy of retention.db and its -wal "
                          "(the originals' -shm untouched too) instead of a read-only connection on them")
      ("verify-every", "call audit.verify after every Nth kill point (and the last)", cxxopts::value<int>()->default_value("1"))
      ("keep-going", "do not stop at the first kill point with a violation")
      ("inject", "positive control: after a kill, put this fault into the files (delete-record, tamper-audit, "
                 "zero-key, skew-due-count, key-in-both); exit 0 only if the checks report it", cxxopts::value<std::string>())
      ("verbose", "daemon logs at info, one line per kill point on stdout")
      ("inspect", "print the offline check of this state directory (a crash image; checked on a copy, left "
                  "untouched) and exit: 0 when it passes", cxxopts::value<std::string>())
      ("h,help", "print this help");
  Options o;
  try {
    const auto r = options.parse(argc, argv);
    if (r.count("help")) {
      std::cout << options.help() << '\n';
      return 0;
    }
    if (r.count("inspect")) return retentiond::crash::inspect(r["inspect"].as<std::string>());
    if (r.count("points")) {
      o.points = r["points"].as<int>();
    } else if (const char* env = std::getenv("RETENTIOND_CRASH_POINTS"); env != nullptr && *env != '\0') {
      o.points = std::stoi(env);
    }
    o.seed = r.count("seed") ? r["seed"].as<std::uint64_t>() : std::random_device{}() * 0x100000001ULL ^ std::random_device{}();
    o.keep_dir = r.count("keep-dir") > 0;
    o.keep_going = r.count("keep-going") > 0;
    o.verbose = r.count("verbose") > 0;
    o.workers = r["workers"].as<int>();
    o.min_delay_ms = r["min-delay-ms"].as<int>();
    o.max_delay_ms = r["max-delay-ms"].as<int>();
    o.verify_every = r["verify-every"].as<int>();
    o.integrity_every = r["integrity-every"].as<int>();
    o.offline_on_copy = r.count("offline-on-copy") > 0;
    if (r.count("dir")) o.dir = r["dir"].as<std::string>();
    if (r.count("inject")) {
      o.inject = r["inject"].as<std::string>();
      if (std::none_of(std::begin(retentiond::crash::kInjections), std::end(retentiond::crash::kInjections),
                       [&](const auto& i) { return o.inject == i.name; })) {
        throw std::invalid_argument("unknown --inject '" + o.inject + "'");
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "crash_harness: " << e.what() << " (see --help)\n";
    return 2;
  }
  if (o.points < 1 || o.workers < 1 || o.workers > retentiond::crash::kMaxWorkers || o.min_delay_ms < 0 || o.verify_every < 1 || o.integrity_every < 1 ||
      o.max_delay_ms < o.min_delay_ms) {
    std::cerr << "crash_harness: bad --points, --workers or delays\n";
    return 2;
  }
  fs::path dir;
  if (!o.dir.empty()) {
    dir = fs::absolute(o.dir);
    fs::create_directories(dir);
  } else {
    std::string tmpl = (fs::temp_directory_path() / "rdcrash.XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::cerr << "crash_harness: mkdtemp failed\n";
      return 2;
    }
    dir = tmpl;
  }
  std::cout << "crash_harness: seed " << o.seed << ", " << o.points << " kill points, run directory " << dir.string()
            << std::endl;
  int rc = 1;
  try {
    retentiond::crash::Harness h(o, dir);
    rc = h.run();
  } catch (const std::exception& e) {
    std::cerr << "crash_harness: fatal: " << e.what() << '\n';
    rc = 1;
  }
  if (rc != 0 || o.keep_dir) {
    std::cout << (rc != 0 ? "FAILED: seed " + std::to_string(o.seed) + "; state kept in " : "state kept in ")
              << (dir / "state").string() << " (the files as the failing kill left them: " << (dir / "crash-image").string()
              << "; log: " << (dir / "harness.log").string() << ")" << std::endl;
  } else {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  return rc;
}
