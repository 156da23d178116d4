#pragma once
// The crash harness's ledger: every key the harness ever sent, which of its
// requests the daemon acknowledged, and what the audit log says happened to
// each record; and reconcile(), which checks the invariants that tie these to
// a snapshot of retention.db taken after a kill and a restart.
//
// Keys are never reused: a purged key is never put again, so "exactly one
// destroying entry per key" is checkable. Each key and each subject belongs
// to one worker thread, the only one that sends requests touching it, so the
// ledger knows the order of the requests on a record.
//
// Thread safety: the request-side methods (begin_*, end_*, hold_*) take an
// internal mutex and may be called from the worker threads at once. Every
// other method is for the checker, called while no worker runs.

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/crash/snapshot.hpp"
#include "tests/crash/workload.hpp"

namespace retentiond::crash {

enum class Exist : std::uint8_t {
  pending,  // sent, not acknowledged: stored or not, decided at the next check
  yes,      // acknowledged, or seen stored or in the audit log
  never,    // not acknowledged and found nowhere after the restart
};

struct KeyInfo {
  std::uint32_t subject = 0;
  std::uint32_t group = 0;         // the put request that carried it
  std::uint32_t erased_by = 0;     // erase request + 1; 0 when not erased
  std::int64_t destroyed_seq = 0;  // seq of its purge or erase entry; 0 while alive
  std::int64_t destroyed_at = 0;   // and its time: the undo window opens then
  std::int64_t destroy_seq = 0;    // seq of its `destroy` entry: the undo window ended
  std::uint8_t category = 0;
  std::uint8_t owner = 0;
  std::uint8_t phases_done = 0;  // phase entries seen, in order
  Exist exist = Exist::pending;
  bool archived = false;
  bool anonymised = false;
  bool audit_seen = false;
  bool live = false;  // in m_live
};

// One date of a record: every value it may have had since a snapshot last
// read it, and the values it may hold now if the record is not anonymised
// (an anonymised record takes no more events). kAbsent: not carried.
struct DateBook {
  std::vector<std::int64_t> possible;
  std::vector<std::int64_t> allowed;
};

struct NewRecord {
  std::uint32_t id = 0;  // assigned by begin_put
  int category = 0;
  std::uint32_t subject = 0;
  std::int64_t collected = 0;
  std::int64_t own_date = kAbsent;
};

struct LedgerStats {
  std::uint64_t keys_sent = 0;
  std::uint64_t keys_acked = 0;
  std::uint64_t unacked_groups = 0;            // put/put_many without an answer
  std::uint64_t unacked_groups_committed = 0;  // of which, found stored after the restart
  std::uint64_t events_sent = 0;
  std::uint64_t holds_acked = 0;
  std::uint64_t releases_acked = 0;
  std::uint64_t erasures_acked = 0;
  std::map<std::string, std::uint64_t> audit_by_action;
  std::uint64_t audit_by_scheduler = 0;  // entries whose actor is "scheduler" (the timer's passes)
  std::uint64_t anonymised_verified = 0;  // anonymised records read back over the socket
  std::uint64_t hold_ids_reused = 0;      // hold.place entries reusing the id of a released hold
  // Slots of a snapshot's rows found zeroed because a commit after the
  // snapshot destroyed the row (Snapshot::released_since).
  std::uint64_t keys_zeroed_after_snapshot = 0;
};

// What reconcile() found, besides violations.
struct Reconciled {
  std::vector<std::uint32_t> newly_anonymised;  // to read back over the socket
  std::size_t live_records = 0;
  std::int64_t last_seq = 0;
};

class Ledger {
 public:
  explicit Ledger(std::string secret) : m_secret(std::move(secret)) {}

  // --- request side (worker threads) ---
  // Assigns ids to `records` and returns the group (request) id.
  std::uint32_t begin_put(int owner, std::vector<NewRecord>& records);
  void end_put(std::uint32_t group, bool acked);
  // An event.record of the category's own date on `ids`, by key (`key` set)
  // or by subject. Returns the event's id.
  std::uint32_t begin_event(const std::vector<std::uint32_t>& ids, std::int64_t value,
                            std::optional<std::uint32_t> key, std::optional<std::uint32_t> subject);
  void end_event(std::uint32_t event, const std::vector<std::uint32_t>& ids, std::int64_t value, bool acked);
  std::uint32_t begin_erase(std::uint32_t subject);
  void end_erase(std::uint32_t request, bool acked, const std::vector<std::uint32_t>& erased);
  void hold_acked(std::int64_t id);
  void release_acked(std::int64_t id);

  // --- checker side ---
  // Checks `s` against the ledger and folds it in. Each violation is one
  // sentence naming the key or entry.
  std::vector<std::string> reconcile(const Snapshot& s, Reconciled& out);
  // With no hold left and the explicit sweep answered: no stored due time
  // at or before `now`.
  std::vector<std::string> check_finished(const Snapshot& s, std::int64_t now) const;
  // Non-zero key slots that no row names; meaningful only with the daemon
  // stopped. Past the slot counter or on the free list: keys a transaction
  // wrote before a kill interrupted its commit (they sealed nothing that was
  // committed, and are overwritten when the slot is used). Queued: released
  // slots whose zeroing is still pending. Anywhere else: a slot the
  // bookkeeping lost, whose key would never be zeroed.
  struct StrayKeys {
    std::size_t past_counter = 0;
    std::size_t free = 0;
    std::size_t queued = 0;
    std::vector<std::int64_t> lost;
  };
  static StrayKeys stray_keys(const Snapshot& s);

  const KeyInfo& key(std::uint32_t id) const { return m_keys[id]; }
  bool alive(std::uint32_t id) const {
    const auto& k = m_keys[id];
    return k.exist != Exist::never && k.destroyed_seq == 0;
  }
  std::vector<std::uint32_t> live_ids() const { return m_live; }
  // What record.get must return for a live record: {subject, fields}.
  nlohmann::json expected(std::uint32_t id) const;
  std::vector<std::int64_t> open_hold_ids() const;
  std::int64_t last_seq() const { return m_last_seq; }
  const LedgerStats& stats() const { return m_stats; }
  LedgerStats& stats() { return m_stats; }
  const std::string& subject_ref(std::uint32_t subject);
  // The jobs the next snapshot must read (see JobsScope).
  JobsScope jobs_scope(ReceivedLog* received) const {
    return JobsScope{m_last_seq, std::vector<std::string>(m_unfinished.begin(), m_unfinished.end()), received};
  }

 private:
  struct HoldBook {
    std::string scope;
    std::string target;  // key, category name or subject_ref
    std::int64_t placed_seq = 0;
    std::int64_t released_seq = 0;
  };
  struct Group {
    std::vector<std::uint32_t> ids;
    bool acked = false;
  };
  // An event.record sent since the last check: each has at most one `event`
  // entry, and an answered one has exactly one.
  struct EventBook {
    std::optional<std::string> key;
    std::optional<std::uint32_t> subject;
    std::int64_t value = 0;
    bool acked = false;
    bool seen = false;
  };
  struct Erase {
    std::uint32_t subject = 0;
    bool acked = false;
    bool checked = false;
    std::vector<std::uint32_t> erased;
  };

  void apply(const store::AuditRow& a, std::vector<std::string>& v);
  void apply_record_action(const store::AuditRow& a, std::vector<std::string>& v);
  void apply_destroy(const store::AuditRow& a, std::vector<std::string>& v);
  void apply_event(const store::AuditRow& a, std::vector<std::string>& v);
  void apply_connector(const store::AuditRow& a, std::vector<std::string>& v);
  // Connector jobs (issue 14): each job belongs to a decided action of a
  // category with connectors, each such action has one job per connector,
  // each done job has one connector.done entry and reached the connector,
  // and the connector received no job that is not in the table.
  // Incremental: each job is checked in full when it first shows and
  // until it is seen finished (final), each decision once.
  void check_jobs(const Snapshot& s, std::vector<std::string>& v);
  bool covered_by_hold(const store::AuditRow& a, const KeyInfo& k, std::int64_t* which) const;
  void check_row(const RecordView& r, std::uint32_t id, std::vector<std::string>& v);
  void make_live(std::uint32_t id);

  mutable std::mutex m_mutex;
  std::string m_secret;
  std::vector<KeyInfo> m_keys;
  std::unordered_map<std::uint32_t, std::array<DateBook, 2>> m_dates;  // [0] collected, [1] own date
  std::vector<Group> m_groups;
  std::vector<std::uint32_t> m_pending_groups;  // unanswered puts, decided at the next check
  std::vector<Erase> m_erasures;
  std::vector<EventBook> m_events;  // sent since the last check
  std::vector<std::int64_t> m_acked_holds, m_acked_releases;
  std::map<std::int64_t, HoldBook> m_open_holds;  // placed and not released, by id
  std::unordered_map<std::int64_t, std::uint32_t> m_places, m_releases;  // entries per id (ids are reused)
  std::vector<std::uint32_t> m_new_anonymised;
  std::vector<std::uint32_t> m_live;
  std::vector<std::uint32_t> m_seen;  // generation a snapshot last showed the key in
  std::uint32_t m_generation = 0;
  std::unordered_map<std::uint32_t, std::string> m_subject_refs;
  // Actions of the connector's category, by seq: what their jobs must say.
  struct Decision {
    std::string key, action;
    std::optional<int> phase;
  };
  std::unordered_map<std::int64_t, Decision> m_decisions;
  // connector.* entries by job id: action -> count, and the key they name.
  std::unordered_map<std::string, std::map<std::string, int>> m_job_entries;
  std::unordered_map<std::string, std::string> m_job_entry_keys;
  // Every job seen, and how many each decision has.
  struct JobBook {
    std::int64_t audit_seq = 0;
    bool finished = false;
  };
  std::unordered_map<std::string, JobBook> m_jobs;
  std::unordered_set<std::string> m_unfinished;
  std::unordered_map<std::int64_t, int> m_decision_jobs;
  std::vector<std::int64_t> m_new_decisions;  // applied by the reconcile under way
  std::vector<std::string> m_new_entry_ids;   // connector.* entries applied by it
  std::int64_t m_seq_before = 0;              // the last seq checked before it
  std::size_t m_received_checked = 0;
  std::int64_t m_last_seq = 0;
  std::string m_last_hash = std::string(64, '0');
  std::int64_t m_last_at = 0;
  LedgerStats m_stats;
};

}  // namespace retentiond::crash
