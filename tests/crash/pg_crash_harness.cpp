// pg_crash_harness: kill -9 consistency of several daemons on one
// PostgreSQL database (issue 13).
//
// A cluster of its own (tests/support/pg_cluster), one database, N daemons
// (3 by default) with one policy file and one secret, each with its own
// state directory and socket, all on the same clock (real time from one
// start instant). Worker threads send a random mix of work to random live
// daemons — record.put_many imports whose records fall due during the run,
// explicit sweeps, subject.erase, key holds placed and released — while the
// daemons' own passes run; from time to time the policy changes (a category
// added or removed) and every live daemon is reloaded in turn, so writes
// race the stale_policy refusal. At each kill point one daemon, chosen at
// random, is SIGKILLed; once the server has dropped its connections the
// harness checks, in one REPEATABLE READ snapshot of the database (the
// other daemons keep working meanwhile; every committed state must pass):
//
//  - the audit chain, incrementally: seq contiguous, each hash the chain
//    hash of its predecessor and its content (lib/audit's chain_hash);
//  - replaying the new entries in order: every phase action (archive,
//    anonymise, purge) names a key the harness put, happened at most once
//    per key and phase (nothing acted twice), not before that phase was due
//    by the key's dates, not while a hold on the key was in force (holds
//    replayed from their own entries), and never after the key's purge or
//    erasure; every erasure at most once per key;
//  - every acknowledged put stored or disposed of with its entry, never
//    both nor neither (nothing lost); every refused put (an error reply:
//    stale_policy, say) left nothing; every unanswered put (its daemon
//    killed) all or nothing;
//  - no key in both the records and the archive; record_counts and
//    due_counts equal to the rows; every stored value's key slot holding a
//    key, no slot used twice.
//
// The puts are checked incrementally, so that a long run's checks cost what
// happened since the last one: each put whole once its outcome is known,
// the keys the new entries name, and 500 older acknowledged keys at random;
// every 20th check, after an injected fault and at the end, everything
// (every put, no key in both places, the kept counts, the key slots).
//
// Then the killed daemon is started again. At the end every daemon is
// reloaded, the holds released, each daemon sweeps, nothing due is left,
// and the checks run once more; each daemon must stop cleanly on SIGTERM.
//
// On a violation the run stops, prints the seed and keeps its directory
// and the cluster's data directory.
//
// --inject puts a known fault into the database after the third kill (an
// acknowledged record deleted without an entry, a record_counts row one
// off, a phase entry appended twice with a valid hash); those runs pass only
// if the checks report it, proving they can fail.

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cxxopts.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/audit/audit.hpp"
#include "lib/calendar/calendar.hpp"
#include "lib/store/postgresql/pg_store.hpp"
#include "lib/store/postgresql/pq.hpp"
#include "tests/support/daemon_process.hpp"
#include "tests/support/pg_cluster.hpp"

namespace {

namespace fs = std::filesystem;
namespace pq = retentiond::store::pq;
using nlohmann::json;
using retentiond::testing::Client;
using retentiond::testing::DaemonProcess;
using retentiond::Error;
using retentiond::Status;

constexpr std::int64_t kDay = 86400;

// The categories, and when each phase falls due after `collected`.
struct CategoryPlan {
  const char* name;
  std::vector<std::pair<const char*, std::int64_t>> phases;  // action, seconds after collected
};
const std::vector<CategoryPlan> kCategories = {
    {"gone", {{"purge", kDay}}},
    {"anon", {{"anonymise", kDay}, {"purge", 2 * kDay}}},
    {"arch", {{"archive", kDay}, {"purge", 2 * kDay}}},
    {"long", {{"purge", 36500 * kDay}}},
};

std::string policy_text(const std::string& url, const fs::path& secret, bool extra) {
  std::string p = "[daemon]\nstate_dir = \"unused\"\nsocket = \"unused.sock\"\nsecret_file = \"" + secret.string() +
                  "\"\nmax_batch_records = 40\nreload_guard = 1000000\n[store]\nbackend = \"postgresql\"\nurl = \"" +
                  url + "\"\nkey_vacuum_interval = \"2 s\"\n";
  for (const auto& c : kCategories) {
    p += std::string("[[categories]]\nname = \"") + c.name + "\"\npurpose = \"p\"\nlegal_basis = \"consent\"\nphases = [";
    for (std::size_t i = 0; i < c.phases.size(); ++i) {
      p += std::string(i ? ", " : " ") + "{ action = \"" + c.phases[i].first + "\", at = \"collected + " +
           std::to_string(c.phases[i].second / kDay) + " days\" }";
    }
    p += " ]\n";
    if (std::string(c.name) == "anon") p += "anonymise = { kept = \"keep\" }\n";
  }
  if (extra) {
    p += "[[categories]]\nname = \"extra\"\npurpose = \"p\"\nlegal_basis = \"consent\"\n"
         "phases = [ { action = \"purge\", at = \"collected + 1 day\" } ]\n";
  }
  return p;
}

struct Batch {
  enum class Outcome { pending, acked, refused, unknown };
  std::vector<std::string> keys;
  Outcome outcome = Outcome::pending;
};

struct KeyInfo {
  std::string category;
  std::int64_t collected = 0;
  std::size_t batch = 0;
};

class Harness {
 public:
  Harness(int points, std::uint64_t seed, int daemons, const fs::path& dir, std::string inject)
      : m_points(points), m_seed(seed), m_rng(seed), m_dir(dir), m_inject(std::move(inject)) {
    m_url = retentiond::test::PgCluster::shared().create_database("crash");
    m_secret = m_dir / "secret";
    write_policy();
    m_n0 = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    m_start = std::chrono::steady_clock::now();
    m_daemons.resize(static_cast<std::size_t>(daemons));
    for (std::size_t i = 0; i < m_daemons.size(); ++i) start(i);
  }

  int run();

 private:
  std::int64_t now() const {
    return m_n0 + std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - m_start).count();
  }
  fs::path daemon_dir(std::size_t i) const { return m_dir / ("d" + std::to_string(i)); }
  void write_policy() { std::ofstream(m_dir / "policy.toml") << policy_text(m_url, m_secret, m_extra); }

  void start(std::size_t i) {
    fs::create_directories(daemon_dir(i));
    auto d = std::make_unique<DaemonProcess>(
        daemon_dir(i), std::vector<std::string>{"--config", (m_dir / "policy.toml").string(), "--now",
                                                retentiond::calendar::format_instant({now()}), "--log-level", "error"});
    std::lock_guard lock(m_mutex);
    m_daemons[i] = std::move(d);
  }

  // The socket of a random live daemon.
  std::optional<fs::path> any_socket(std::mt19937_64& rng) {
    std::lock_guard lock(m_mutex);
    std::vector<fs::path> live;
    for (const auto& d : m_daemons) {
      if (d) live.push_back(d->socket());
    }
    if (live.empty()) return std::nullopt;
    return live[std::uniform_int_distribution<std::size_t>(0, live.size() - 1)(rng)];
  }

  void kill(std::size_t i);
  void inject();
  void worker(int id);
  void reload_all();
  bool check(const char* when);
  bool replay(const retentiond::store::AuditRow& row);
  bool violation(const std::string& what) {
    std::cerr << "VIOLATION (seed " << m_seed << "): " << what << '\n';
    m_failed = true;
    return false;
  }

  int m_points;
  std::uint64_t m_seed;
  std::mt19937_64 m_rng;
  fs::path m_dir, m_secret;
  std::string m_url;
  std::int64_t m_n0 = 0;
  std::chrono::steady_clock::time_point m_start;
  bool m_extra = false;
  std::string m_inject;  // empty: none

  std::mutex m_mutex;  // m_daemons (which are live), m_batches, m_keys, m_hold_ids
  std::vector<std::unique_ptr<DaemonProcess>> m_daemons;
  std::vector<Batch> m_batches;
  std::map<std::string, KeyInfo> m_keys;
  std::vector<std::int64_t> m_hold_ids;
  std::atomic<bool> m_stop{false};
  std::atomic<std::int64_t> m_refusals{0}, m_calls{0}, m_lost_calls{0};

  // Replay state (check()).
  std::int64_t m_seq = 0;
  std::string m_head = retentiond::audit::kGenesisHash;
  std::set<std::pair<std::string, int>> m_phase_done;
  std::set<std::string> m_disposed;
  std::set<std::string> m_acted;     // keys any phase or disposal entry names
  std::vector<std::string> m_named;  // keys the entries replayed by this check name
  std::size_t m_settled = 0;         // batches before this index were checked with their final outcome
  std::vector<std::size_t> m_pending;  // batches still pending at the last check
  int m_checks = 0;
  bool m_force_full = false;  // the next check is a full one (after an injected fault)
  std::map<std::int64_t, std::string> m_holds;  // hold id -> key
  std::map<std::string, std::int64_t> m_actions;
  bool m_failed = false;
  int m_kills = 0;
};

void Harness::kill(std::size_t i) {
  std::unique_ptr<DaemonProcess> d;
  {
    std::lock_guard lock(m_mutex);
    d = std::move(m_daemons[i]);
  }
  // The server processes of its connections: waited for, so that the check
  // sees the database after the server rolled back what it had open.
  std::vector<pid_t> backends;
  {
    pq::Connection c(m_url, "harness");
    const auto q = c.run("SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1",
                         pq::Params().text("retentiond % pid " + std::to_string(d->pid())));
    for (int r = 0; r < q.size(); ++r) backends.push_back(static_cast<pid_t>(q.i64(r, 0)));
  }
  d->stop(SIGKILL);
  for (const pid_t p : backends) {
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, p, 0));
    if (fd < 0) continue;
    pollfd pfd{fd, POLLIN, 0};
    ::poll(&pfd, 1, 20000);
    ::close(fd);
  }
  ++m_kills;
}

// The known fault of --inject, written while the workers go on (each
// statement its own transaction, as a stray writer's would be).
void Harness::inject() {
  pq::Connection c(m_url, "harness");
  std::string key;
  {
    std::lock_guard lock(m_mutex);
    for (const auto& b : m_batches) {
      if (b.outcome == Batch::Outcome::acked && !b.keys.empty()) key = b.keys.front();
    }
  }
  if (m_inject == "delete-record") {
    // Without its key or its counts: only the ledger can tell.
    c.run("DELETE FROM retentiond.records WHERE key = $1", pq::Params().text(key));
    c.run("DELETE FROM retentiond_archive.records WHERE key = $1", pq::Params().text(key));
  } else if (m_inject == "skew-count") {
    c.exec("UPDATE retentiond.record_counts SET n = n + 1 WHERE ctid = (SELECT min(ctid) FROM retentiond.record_counts)");
  } else if (m_inject == "double-purge") {
    // A purge entry repeated at the head of the chain, its hash valid: only
    // the "acted on twice" rule can tell. Written through a store of the
    // backend (under the writers' lock, like a daemon's append).
    auto store = retentiond::store::open_postgresql_store(m_url);
    if (!store) throw std::runtime_error(store.error().message);
    const Status st = (*store)->transaction([&]() -> Status {
      auto head = (*store)->last_audit();
      auto purge = (*store)->audit_entries({0, std::nullopt, std::nullopt, 1000});
      if (!head || !*head || !purge) return Error::internal("no audit log to repeat an entry of");
      const auto it = std::find_if(purge->begin(), purge->end(), [](const auto& r) { return r.action == "purge"; });
      if (it == purge->end()) return Error::internal("no purge entry to repeat");
      retentiond::store::AuditRow a = *it;
      key = a.key.value_or("");
      a.seq = (*head)->seq + 1;
      a.hash = retentiond::audit::chain_hash((*head)->hash, a);
      return (*store)->append_audit(a);
    });
    if (!st) throw std::runtime_error(st.error().message);
  }
  m_force_full = true;
  std::cout << "injected " << m_inject << (key.empty() ? "" : " (key " + key + ")") << '\n';
}

void Harness::worker(int id) {
  std::mt19937_64 rng(m_seed * 1000 + static_cast<std::uint64_t>(id));
  std::uint64_t counter = 0;
  while (!m_stop) {
    const auto socket = any_socket(rng);
    if (!socket) continue;
    const int op = std::uniform_int_distribution<int>(0, 99)(rng);
    std::optional<std::size_t> batch;
    json reply;
    try {
      Client client(*socket);
      ++m_calls;
      if (op < 60) {
        json records = json::array();
        Batch b;
        const int n = std::uniform_int_distribution<int>(5, 20)(rng);
        for (int i = 0; i < n; ++i) {
          const auto& c = kCategories[std::uniform_int_distribution<std::size_t>(0, kCategories.size() - 1)(rng)];
          // Due from a minute ago to four minutes ahead: records keep
          // falling due while the kills go on.
          const std::int64_t collected = now() - kDay + std::uniform_int_distribution<std::int64_t>(-60, 240)(rng);
          const std::string key = "w" + std::to_string(id) + "-" + std::to_string(counter++);
          records.push_back({{"key", key}, {"subject", "s" + std::to_string(rng() % 2000)}, {"category", c.name},
                             {"fields", {{"v", key}, {"kept", "k"}}},
                             {"dates", {{"collected", retentiond::calendar::format_instant({collected})}}}});
          b.keys.push_back(key);
          std::lock_guard lock(m_mutex);
          m_keys[key] = KeyInfo{c.name, collected, m_batches.size()};
        }
        {
          std::lock_guard lock(m_mutex);
          batch = m_batches.size();
          m_batches.push_back(std::move(b));
        }
        reply = client.call("record.put_many", {{"records", records}}, std::chrono::seconds(60));
      } else if (op < 80) {
        reply = client.call("sweep", nullptr, std::chrono::seconds(60));
      } else if (op < 83) {
        reply = client.call("subject.erase", {{"subject", "s" + std::to_string(rng() % 2000)}, {"reason", "request"}},
                            std::chrono::seconds(60));
      } else if (op < 92) {
        std::string key;
        {
          std::lock_guard lock(m_mutex);
          if (m_keys.empty()) continue;
          auto it = m_keys.begin();
          std::advance(it, static_cast<long>(rng() % m_keys.size()));
          key = it->first;
        }
        reply = client.call("hold.place", {{"key", key}, {"reason", "harness"}}, std::chrono::seconds(60));
        if (reply.contains("result")) {
          std::lock_guard lock(m_mutex);
          m_hold_ids.push_back(reply["result"]["id"].get<std::int64_t>());
        }
      } else {
        std::optional<std::int64_t> hold;
        {
          std::lock_guard lock(m_mutex);
          if (!m_hold_ids.empty()) {
            const auto at = rng() % m_hold_ids.size();
            hold = m_hold_ids[at];
            m_hold_ids.erase(m_hold_ids.begin() + static_cast<long>(at));
          }
        }
        if (!hold) continue;
        reply = client.call("hold.release", {{"id", *hold}}, std::chrono::seconds(60));
      }
    } catch (const std::exception&) {
      // The daemon was killed (or is starting): the call's outcome is unknown.
      ++m_lost_calls;
      if (batch) {
        std::lock_guard lock(m_mutex);
        m_batches[*batch].outcome = Batch::Outcome::unknown;
      }
      continue;
    }
    if (reply.contains("error")) {
      const auto reason = reply["error"].value("data", json::object()).value("reason", std::string());
      if (reason == "stale_policy") ++m_refusals;
    }
    if (batch) {
      std::lock_guard lock(m_mutex);
      m_batches[*batch].outcome = reply.contains("result") ? Batch::Outcome::acked
                                  : reply.contains("error") ? Batch::Outcome::refused
                                                            : Batch::Outcome::unknown;
    }
  }
}

// A policy change, then every live daemon reloaded in turn.
void Harness::reload_all() {
  m_extra = !m_extra;
  write_policy();
  std::vector<fs::path> sockets;
  {
    std::lock_guard lock(m_mutex);
    for (const auto& d : m_daemons) {
      if (d) sockets.push_back(d->socket());
    }
  }
  for (const auto& s : sockets) {
    try {
      Client c(s);
      c.call("config.reload", {{"confirm", true}}, std::chrono::seconds(60));
    } catch (const std::exception&) {
    }
  }
}

// One new audit entry, in order.
bool Harness::replay(const retentiond::store::AuditRow& row) {
  const std::string at = "entry " + std::to_string(row.seq) + " (" + row.action + (row.key ? " " + *row.key : "") + ")";
  if (row.seq != m_seq + 1) return violation(at + ": seq does not follow " + std::to_string(m_seq));
  if (retentiond::audit::chain_hash(m_head, row) != row.hash) return violation(at + ": hash does not chain");
  m_seq = row.seq;
  m_head = row.hash;
  ++m_actions[row.action];
  const auto hold_id = [&]() -> std::optional<std::int64_t> {
    if (!row.reason || row.reason->rfind("hold ", 0) != 0) return std::nullopt;
    return std::stoll(row.reason->substr(5));
  };
  if (row.action == "hold.place" && row.key) {
    if (auto id = hold_id()) m_holds[*id] = *row.key;
    return true;
  }
  if (row.action == "hold.release") {
    if (auto id = hold_id()) m_holds.erase(*id);
    return true;
  }
  const bool phase_action = row.action == "archive" || row.action == "anonymise" || row.action == "purge";
  if (!phase_action && row.action != "erase") return true;
  if (!row.key) return violation(at + ": no key");
  KeyInfo info;
  {
    std::lock_guard lock(m_mutex);
    const auto it = m_keys.find(*row.key);
    if (it == m_keys.end()) return violation(at + ": a key the harness never put");
    info = it->second;
  }
  if (m_disposed.contains(*row.key)) return violation(at + ": the key was already purged or erased");
  for (const auto& [id, key] : m_holds) {
    if (key == *row.key) return violation(at + ": acted on while hold " + std::to_string(id) + " was in force");
  }
  if (phase_action) {
    if (!row.phase) return violation(at + ": no phase");
    if (!m_phase_done.insert({*row.key, *row.phase}).second) return violation(at + ": phase acted on twice");
    const auto& plan = *std::find_if(kCategories.begin(), kCategories.end(),
                                     [&](const CategoryPlan& c) { return info.category == c.name; });
    if (*row.phase < 0 || static_cast<std::size_t>(*row.phase) >= plan.phases.size() ||
        plan.phases[static_cast<std::size_t>(*row.phase)].first != row.action) {
      return violation(at + ": not this category's phase");
    }
    const std::int64_t due = info.collected + plan.phases[static_cast<std::size_t>(*row.phase)].second;
    if (row.at.seconds < due) return violation(at + ": acted " + std::to_string(due - row.at.seconds) + " s before due");
  }
  if (row.action == "purge" || row.action == "erase") m_disposed.insert(*row.key);
  m_acted.insert(*row.key);
  m_named.push_back(*row.key);
  return true;
}

bool Harness::check(const char* when) {
  // The puts' outcomes as known *before* the snapshot: a put acknowledged
  // now committed before it (one acknowledged later may or may not be in it).
  std::vector<Batch> batches;
  {
    std::lock_guard lock(m_mutex);
    batches = m_batches;
  }
  pq::Connection c(m_url, "harness");
  c.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  // The new audit entries, replayed.
  const auto rows = c.run("SELECT seq, at, action, key, category, phase, subject_ref, actor, reason, policy_hash, hash "
                          "FROM retentiond.audit WHERE seq > $1 ORDER BY seq",
                          pq::Params().i64(m_seq));
  for (int r = 0; r < rows.size(); ++r) {
    retentiond::store::AuditRow a;
    a.seq = rows.i64(r, 0);
    a.at = {rows.i64(r, 1)};
    a.action = rows.text(r, 2);
    a.key = rows.opt_text(r, 3);
    a.category = rows.opt_text(r, 4);
    if (auto p = rows.opt_i64(r, 5)) a.phase = static_cast<int>(*p);
    a.subject_ref = rows.opt_text(r, 6);
    a.actor = rows.text(r, 7);
    a.reason = rows.opt_text(r, 8);
    a.policy_hash = rows.text(r, 9);
    a.hash = rows.text(r, 10);
    if (!replay(a)) return false;
  }
  // Which puts to check: those whose outcome is known since the last check
  // (each checked whole, once), the keys the new entries name, and a sample
  // of the older ones; every 20th check (and the last) all of them. The
  // cost of a check so grows with the work since the last one, not with
  // everything stored.
  const bool full = ++m_checks % 20 == 0 || std::string(when) == "at the end" || std::exchange(m_force_full, false);
  std::vector<std::size_t> whole;  // batch indexes checked whole now
  std::vector<std::size_t> still_pending;
  const auto consider = [&](std::size_t i) {
    if (batches[i].outcome == Batch::Outcome::pending) still_pending.push_back(i);
    else whole.push_back(i);
  };
  if (full) {
    for (std::size_t i = 0; i < batches.size(); ++i) consider(i);
  } else {
    for (const std::size_t i : m_pending) consider(i);
    for (std::size_t i = m_settled; i < batches.size(); ++i) consider(i);
  }
  std::set<std::string> single;  // keys checked alone: named by new entries, and the sample
  single.insert(m_named.begin(), m_named.end());
  m_named.clear();
  if (!full && m_settled > 0) {
    for (int n = 0; n < 500; ++n) {
      const auto& b = batches[std::uniform_int_distribution<std::size_t>(0, m_settled - 1)(m_rng)];
      if (b.outcome == Batch::Outcome::acked && !b.keys.empty()) single.insert(b.keys[m_rng() % b.keys.size()]);
    }
  }
  std::vector<std::string> wanted(single.begin(), single.end());
  for (const std::size_t i : whole) wanted.insert(wanted.end(), batches[i].keys.begin(), batches[i].keys.end());
  std::string array = "{";
  for (std::size_t i = 0; i < wanted.size(); ++i) array += (i ? "," : "") + wanted[i];  // keys: letters, digits, '-'
  array += "}";
  // Stored keys among them, in either place.
  std::set<std::string> stored;
  const auto keys = c.run("SELECT key FROM retentiond.records WHERE key = ANY($1::text[]) UNION ALL "
                          "SELECT key FROM retentiond_archive.records WHERE key = ANY($1::text[])",
                          pq::Params().text(array));
  for (int r = 0; r < keys.size(); ++r) {
    if (!stored.insert(keys.text(r, 0)).second) return violation(std::string(when) + ": key " + keys.text(r, 0) + " in both places");
  }
  std::map<std::string, Batch::Outcome> outcome_of;
  {
    std::lock_guard lock(m_mutex);
    for (const auto& k : single) {
      const auto it = m_keys.find(k);
      // (A put registered after the copy above is pending here.)
      if (it != m_keys.end() && it->second.batch < batches.size()) outcome_of[k] = batches[it->second.batch].outcome;
    }
  }
  for (const auto& [k, outcome] : outcome_of) {
    const bool is_stored = stored.contains(k), disposed = m_disposed.contains(k);
    if (is_stored && disposed) return violation(std::string(when) + ": " + k + " stored after its disposal entry");
    if (outcome == Batch::Outcome::acked && !is_stored && !disposed) {
      return violation(std::string(when) + ": acknowledged " + k + " neither stored nor disposed of (lost)");
    }
  }
  for (const std::size_t i : whole) {
    const auto& b = batches[i];
    std::size_t exist = 0;
    for (const auto& k : b.keys) {
      const bool is_stored = stored.contains(k), disposed = m_disposed.contains(k);
      if (is_stored && disposed) return violation(std::string(when) + ": " + k + " stored after its disposal entry");
      if (is_stored || m_acted.contains(k)) ++exist;
      if (b.outcome == Batch::Outcome::acked && !is_stored && !disposed) {
        return violation(std::string(when) + ": acknowledged " + k + " neither stored nor disposed of (lost)");
      }
    }
    if (b.outcome == Batch::Outcome::refused && exist > 0) {
      return violation(std::string(when) + ": a refused put left " + std::to_string(exist) + " records");
    }
    if (b.outcome == Batch::Outcome::unknown && exist != 0 && exist != b.keys.size()) {
      return violation(std::string(when) + ": an unanswered put half there (" + std::to_string(exist) + " of " +
                       std::to_string(b.keys.size()) + ")");
    }
  }
  m_pending = std::move(still_pending);
  m_settled = batches.size();
  if (!full) {
    c.exec("COMMIT");
    return true;
  }
  // All of it, every 20th check: no key in both places, the kept counts
  // against the rows, the key slots.
  if (c.run("SELECT count(*) FROM retentiond.records r JOIN retentiond_archive.records a USING (key)").i64(0, 0) != 0) {
    return violation(std::string(when) + ": a key in both places");
  }
  // Kept counts against the rows.
  const auto counts = c.run(
      "SELECT coalesce(sum(abs(d)), 0) FROM (SELECT location, category, state, sum(n) AS d FROM ("
      "SELECT location, category, state, n FROM retentiond.record_counts UNION ALL "
      "SELECT 'active', category, state, -count(*) FROM retentiond.records GROUP BY category, state UNION ALL "
      "SELECT 'archive', category, state, -count(*) FROM retentiond_archive.records GROUP BY category, state) x "
      "GROUP BY location, category, state) y");
  if (counts.i64(0, 0) != 0) return violation(std::string(when) + ": record_counts differ from the rows");
  const auto due = c.run(
      "SELECT coalesce(sum(abs(d)), 0) FROM (SELECT day, category, sum(n) AS d FROM ("
      "SELECT day, category, n FROM retentiond.due_counts UNION ALL "
      "SELECT floor(due / 86400.0)::bigint, category, -count(*) FROM (SELECT due, category FROM retentiond.records "
      "UNION ALL SELECT due, category FROM retentiond_archive.records) r WHERE due IS NOT NULL GROUP BY 1, 2) x "
      "GROUP BY day, category) y");
  if (due.i64(0, 0) != 0) return violation(std::string(when) + ": due_counts differ from the rows");
  // Key slots: each stored value's holds a key; none used twice.
  const auto slots = c.run(
      "WITH s AS (SELECT slot FROM retentiond.records UNION ALL SELECT slot FROM retentiond_archive.records "
      "UNION ALL SELECT slot FROM retentiond.holds UNION ALL SELECT slot FROM retentiond.retired WHERE slot IS NOT NULL "
      "UNION ALL SELECT slot FROM retentiond.connector_jobs WHERE slot IS NOT NULL) "
      "SELECT count(*) - count(DISTINCT slot), count(*) FILTER (WHERE NOT EXISTS "
      "(SELECT 1 FROM retentiond.keys k WHERE k.slot = s.slot)) FROM s");
  if (slots.i64(0, 0) != 0) return violation(std::string(when) + ": a key slot used twice");
  if (slots.i64(0, 1) != 0) return violation(std::string(when) + ": " + std::to_string(slots.i64(0, 1)) + " stored values without their key");
  c.exec("COMMIT");
  return true;
}

int Harness::run() {
  std::vector<std::thread> workers;
  for (int i = 0; i < 2; ++i) workers.emplace_back([this, i] { worker(i); });
  const auto started = std::chrono::steady_clock::now();
  for (int point = 1; point <= m_points && !m_failed; ++point) {
    // Work goes on for a while (the kill lands wherever it lands).
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(50, 700)(m_rng)));
    if (point % 15 == 0) reload_all();
    const auto victim = std::uniform_int_distribution<std::size_t>(0, m_daemons.size() - 1)(m_rng);
    kill(victim);
    if (point == 3 && !m_inject.empty()) inject();
    if (!check(("after kill point " + std::to_string(point)).c_str())) break;
    start(victim);
    if (point % 25 == 0) {
      std::cout << "point " << point << "/" << m_points << ": " << m_seq << " audit entries checked, " << m_disposed.size()
                << " disposed, " << m_refusals << " stale_policy refusals\n"
                << std::flush;
    }
  }
  m_stop = true;
  for (auto& t : workers) t.join();
  if (!m_inject.empty()) {
    // A positive control passes only when the checks named the fault.
    std::cout << "inject " << m_inject << ": " << (m_failed ? "reported" : "NOT reported") << '\n';
    return m_failed ? 0 : 1;
  }
  if (m_failed) {
    std::cerr << "kept: " << m_dir << " and the cluster's data directory\n";
    return 1;
  }
  // The end: every daemon on the same policy, holds released, swept.
  reload_all();
  std::vector<fs::path> sockets;
  for (const auto& d : m_daemons) sockets.push_back(d->socket());
  Client first(sockets[0]);
  const json holds = first.call("hold.list");
  for (const auto& h : holds["result"]["holds"]) first.call("hold.release", {{"id", h["id"]}});
  const std::int64_t swept_until = now() - 2;  // (the daemons' clocks may be a second apart)
  for (const auto& s : sockets) {
    Client c(s);
    const json r = c.call("sweep");
    if (!r.contains("result")) return violation("the final sweep failed: " + r.dump()), 1;
  }
  if (!check("at the end")) return 1;
  pq::Connection c(m_url, "harness");
  const auto left = c.run("SELECT count(*) FROM (SELECT due FROM retentiond.records UNION ALL "
                          "SELECT due FROM retentiond_archive.records) r WHERE due <= $1",
                          pq::Params().i64(swept_until));
  if (left.i64(0, 0) != 0) return violation(std::to_string(left.i64(0, 0)) + " records due left after the final sweeps"), 1;
  for (auto& d : m_daemons) {
    if (const int rc = d->stop(SIGTERM); rc != 0) return violation("a daemon did not stop cleanly: " + std::to_string(rc)), 1;
  }
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count();
  std::cout << "pg_crash_harness: " << m_points << " kill points over " << m_daemons.size() << " daemons, 0 violations, "
            << secs << " s; " << m_seq << " audit entries checked (";
  for (const auto& [action, n] : m_actions) std::cout << action << " " << n << ", ";
  std::cout << "), " << m_keys.size() << " records put, " << m_calls << " calls (" << m_lost_calls
            << " cut by a kill), " << m_refusals << " stale_policy refusals\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options("pg_crash_harness", "kill -9 consistency of several daemons on one PostgreSQL database");
  options.add_options()("points", "kill points", cxxopts::value<int>()->default_value("200"))(
      "seed", "seed of the choices", cxxopts::value<std::uint64_t>()->default_value("1"))(
      "daemons", "daemons on the database", cxxopts::value<int>()->default_value("3"))(
      "inject", "a fault after the third kill: delete-record, skew-count or double-purge",
      cxxopts::value<std::string>()->default_value(""))("h,help", "help");
  const auto opts = options.parse(argc, argv);
  if (opts.count("help")) {
    std::cout << options.help() << '\n';
    return 0;
  }
  std::string tmpl = (fs::temp_directory_path() / "rd-pgcrash-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) return 2;
  int rc = 1;
  try {
    Harness h(opts["points"].as<int>(), opts["seed"].as<std::uint64_t>(), opts["daemons"].as<int>(), tmpl,
              opts["inject"].as<std::string>());
    rc = h.run();
  } catch (const std::exception& e) {
    std::cerr << "pg_crash_harness: " << e.what() << '\n';
    rc = 2;
  }
  if (rc == 0 || !opts["inject"].as<std::string>().empty()) fs::remove_all(tmpl);
  return rc;
}
