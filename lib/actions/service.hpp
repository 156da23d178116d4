#pragma once
// Service: the use cases of retentiond, on typed values (requests.hpp in,
// the result types below out; no JSON): storing records, events, the phases
// a sweep runs, holds, the data subject's rights, the plan, and what status
// shows. Each change is committed in one vault transaction together with
// its audit entries. The implementation is split by concern: records.cpp,
// sweep.cpp, holds.cpp, subject.cpp, plan.cpp.
//
// Threading. Methods marked [writer] change the store and run on the one
// writer thread (they use the Vault and the AuditLog); methods marked
// [reader] only read and run on the thread that owns the RecordReader (the
// daemon's event loop), from a snapshot no write holds up; methods marked
// [slow] read as much as the data holds (plan, dry runs, a whole audit
// chain) and run on the thread that owns the slow RecordReader, so that no
// such read stalls the event loop. All three may run at once. The policy is swapped by a reload on the writer while
// readers use it: each call takes it once (policy()), and it is immutable.
// In tests, the Vault may serve as the reader too (one thread).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "lib/actions/requests.hpp"
#include "lib/audit/audit.hpp"
#include "lib/calendar/clock.hpp"
#include "lib/policy/policy.hpp"
#include "lib/store/store.hpp"
#include "lib/util/result.hpp"
#include "lib/vault/vault.hpp"

namespace retentiond::actions {

using vault::Record;

// A phase's schedule for one record.
struct PhaseSchedule {
  int index = 0;
  policy::Action action = policy::Action::purge;
  std::string at;                          // the expression as written
  std::optional<calendar::Instant> due;    // null: waiting or never reached
  std::vector<std::string> missing;        // dates it waits for (empty when due is set)
  bool done = false;
  std::optional<calendar::Instant> done_at;
  // When it will actually run: a phase never runs before the one before it,
  // so the later of its own due time and that phase's run (or its done_at).
  // Null when done, or when it or a phase before it is waiting.
  std::optional<calendar::Instant> runs_at;
  bool overdue = false;  // not done, and runs_at has passed
};

struct Explanation {
  Record record;  // without its values
  std::vector<PhaseSchedule> phases;
  std::optional<PhaseSchedule> next;  // first phase not done
  std::vector<std::int64_t> holds;    // ids of the holds covering it
};

// Proof of disposal of a destroyed key, from the audit log.
struct Disposal {
  std::string key;
  calendar::Instant purged_at;
  std::int64_t audit_seq = 0;
  // Within the undo window ([daemon] purge_grace): until when
  // record.restore can bring it back.
  std::optional<calendar::Instant> restorable_until;
};

struct SweepCounts {
  std::int64_t archived = 0;
  std::int64_t anonymised = 0;
  std::int64_t purged = 0;
  std::int64_t held = 0;
  std::int64_t stuck = 0;  // due, but the category is not in the policy (cannot happen after a guarded reload)
  std::int64_t due_records = 0;  // count_due only: unheld records with a due phase
  std::int64_t visited = 0;  // sweep_batch only: records the batch got through (held ones included)
  std::int64_t destroyed = 0;  // keys destroyed at the end of the undo window (destroy_batch)

  SweepCounts& operator+=(const SweepCounts& o);
  std::int64_t actions() const { return archived + anonymised + purged; }
};

// The holds in force, loaded once per batch or request (holds are few).
struct HoldSet {
  std::vector<vault::Hold> holds;
  // The subject_ref of each subject hold's target (parallel to holds; empty
  // for other scopes): records read without values are matched by it.
  std::vector<std::string> subject_refs;
  // Ids of the holds covering `record` (by key, category or subject).
  std::vector<std::int64_t> covering(const store::Schedule& record) const;
  bool covers(const store::Schedule& record) const;
};

// subject.erase's and record.erase's answer.
struct Retained {
  std::string key;
  std::string category;
  std::string reason;                     // "legal_obligation" or "hold"
  std::optional<calendar::Instant> until;  // the purge phase's due time
};
struct Erased {
  std::string key;
  std::string category;
  std::int64_t audit_seq = 0;  // its `erase` entry (0 in a dry run)
};
// What a receipt proves (not in a dry run): when, under which policy, about
// whom (the HMAC of the subject, as the audit log has it; null for
// record.erase of a record without subject), and the audit log's head once
// the erasure committed, which its entries are part of.
struct ErasureReport {
  std::vector<Erased> erased;
  std::vector<Retained> retained;
  calendar::Instant at;
  std::string policy_hash;
  std::optional<std::string> subject_ref;
  std::int64_t head_seq = 0;
  std::string head_hash = audit::kGenesisHash;
};

// plan's answer: counts of phases falling before `until`.
struct PlanEntry {
  std::string month;  // YYYY-MM
  std::string category;
  policy::Action action;
  std::int64_t count = 0;
};
struct Plan {
  calendar::Instant from;
  calendar::Instant until;
  std::vector<PlanEntry> actions;  // by month, category, action
  std::int64_t archive = 0, anonymise = 0, purge = 0;
  std::int64_t waiting = 0;  // unheld records whose next phase has no due time
  std::int64_t held = 0;     // held records with a phase due before until
  // The undo window of the policy planned under, when it has one: purges
  // destroy the data only this long after they run.
  std::optional<calendar::Duration> purge_grace;
  // With a candidate policy (PlanRequest::policy): what adopting it would do.
  struct Candidate {
    std::string hash;
    std::vector<std::string> changed_categories;  // changed, added and removed, sorted
    std::int64_t newly_due = 0;
    std::int64_t guard = 0;    // the reload guard in force
    bool guard_trips = false;  // newly_due > guard: config.reload would need confirm
  };
  std::optional<Candidate> candidate;
  struct Shift {
    std::string category;
    std::int64_t earlier = 0, later = 0, unchanged = 0, newly_due = 0;
  };
  std::vector<Shift> diff;  // per changed category, by name
};

// What status shows of the records, from one snapshot.
struct Overview {
  store::RecordCounts records;
  std::optional<calendar::Instant> next_due;
  std::int64_t backlog = 0;  // unheld records whose next phase is due now
  std::int64_t holds = 0;
  std::vector<store::DaemonSeen> daemons;  // using the store now
};

// What the metrics export of the store, from one snapshot (metrics.cpp).
struct MetricsSnapshot {
  calendar::Instant now;
  std::map<std::string, store::RecordCounts> records;  // by category
  std::map<std::string, std::int64_t> due;              // due now by category, held ones included
  std::int64_t backlog = 0;                             // unheld records due now (as status)
  // The due time of the oldest unheld record due now: deletion lateness is
  // now minus it. `lateness_bounded` when more held records than
  // kLatenessScan came first, and this is the due time of the last one
  // examined (an earlier time: the lateness reported is then too high, never
  // too low).
  std::optional<calendar::Instant> oldest_due;
  bool lateness_bounded = false;
  std::map<std::string, std::int64_t> holds;  // by scope
  std::int64_t audit_seq = 0;                 // the log's last entry
  // Audit entries by (action, category; "" when none) since the daemon
  // started: the actions done, counted incrementally (metrics.cpp).
  std::map<std::pair<std::string, std::string>, std::int64_t> actions;
  // Each connector of the policy (and any other that has jobs), with its
  // kept job counts.
  std::vector<store::ConnectorStats> connectors;
};

// What the clock guard found (Service::check_clock).
struct ClockCheck {
  enum class Verdict {
    first,     // nothing seen before (a new state): now recorded
    steady,    // forward within clock_guard (or not ahead of what was seen)
    backward,  // behind what was seen: logged, nothing recorded, nothing undone
    accepted,  // a jump beyond clock_guard making at most the guard's count newly due
    tripped,   // a jump beyond clock_guard making more: disposal must pause
    confirmed  // a tripping jump accepted by an administrator (audited clock.confirm)
  };
  Verdict verdict = Verdict::steady;
  std::optional<calendar::Instant> last_seen;  // the latest instant seen before this check
  calendar::Instant now;
  std::int64_t newly_due = 0;  // counted for a jump beyond clock_guard only
  std::int64_t guard = 0;      // the reload guard in force
};
std::string_view to_string(ClockCheck::Verdict v);

// One delivery of a connector job, as the connector answered.
enum class Delivery {
  done,            // exec exit 0, http 2xx, ack "done"
  later,           // exec exit 75, http 408/429/5xx, a timeout or no connection: not a failed attempt
  failed_attempt,  // anything else; counts toward max_attempts
};
struct DeliveryOutcome {
  std::string id;
  Delivery outcome = Delivery::done;
  std::string message;  // what the connector said (bounded), for last_error and the log
};

// connector.list: a connector of the policy with its kept counts.
struct ConnectorInfo {
  const policy::Connector* connector = nullptr;  // of the policy the call took
  store::ConnectorStats stats;
};

// Back-off before delivery number `attempts` + 1, after an unsuccessful one:
// min(kMaxBackoff, 2^(attempts-1) s), jittered into [half, full] by
// `unit` (uniform in [0, 1)), and at least 1 s.
inline constexpr std::int64_t kMaxJobBackoffSeconds = 120;
std::int64_t job_backoff_seconds(std::int64_t attempts, double unit);

// A job as the connector receives it (the spec's job JSON), and as
// connector.claim and connector.jobs show it (with `with_state`: attempts,
// state, last_error too).
nlohmann::json job_json(const vault::Job& job, bool with_state = false);

// What an erasure replay did (Service::replay_audit).
struct ReplaySummary {
  std::int64_t base_seq = 0;       // the restored database's head when the replay began
  std::int64_t file_head = 0;      // the copy's last entry
  std::int64_t resumed_after = 0;  // entries of the copy already replayed before this call (a resumed replay)
  std::int64_t replayed = 0;       // actions redone, each with its `replay of seq N` entry
  std::int64_t nothing_to_do = 0;  // actions whose record or hold is not there (never stored, or gone already)
  std::int64_t not_replayed = 0;   // entries that change nothing to redo (reloads, exports, events...)
  std::vector<std::string> manual;  // what an operator must redo by hand (holds on a subject)
};

// Where a sweep has got to in the (due, key) order; `done` once the due
// range is exhausted.
struct SweepCursor {
  std::optional<store::StoreReader::DueCursor> position;
  bool done = false;
};

// One phase a record will run, and when (see walk_phases).
struct PhaseRun {
  int phase = 0;
  policy::Action action = policy::Action::purge;
  calendar::Instant at;
};

// Sets record.due to the due time of its next phase under `category` (null
// when a date is missing or no phase is left). A record past the end of a
// category whose phases were shortened by a reload, and which ends with a
// purge, is moved back to that purge.
void reschedule_under(store::Schedule& record, const policy::Category& category, calendar::MonthDay fiscal_year_end);

// The one phase walker, shared by sweeps, dry runs and plans: the phases of
// `record` from its next one that run before `until` (due < until), each at
// the later of its due time and the run of the phase before it (`start`
// for the first), in order, ending at a purge. `record` is left as it is.
std::vector<PhaseRun> walk_phases(const store::Schedule& record, const policy::Category& category,
                                  calendar::MonthDay fiscal_year_end, calendar::Instant start, calendar::Instant until);

class Service {
 public:
  // `slow` is the reader of the [slow] methods (by default `reader`).
  Service(vault::Vault& vault, vault::RecordReader& reader, audit::AuditLog& audit, const calendar::Clock& clock,
          std::shared_ptr<const policy::Policy> policy, vault::RecordReader* slow = nullptr);

  // The policy in force (immutable; a reload swaps it). Thread-safe.
  std::shared_ptr<const policy::Policy> policy() const;
  // Swaps in a new policy; recomputes nothing by itself (PolicyChange does).
  void set_policy(std::shared_ptr<const policy::Policy> policy);
  const calendar::Clock& clock() const { return m_clock; }

  // ---- records (records.cpp) ----
  // [writer] Stores one record. Returns it, or invalid_params
  // (unknown_category, unknown_date), conflict (archived or anonymised),
  // storage_error. A replacement that moves the record's next due time
  // later is audited (`extend`, old and new due in the reason).
  Result<Record> put(const PutRequest& request, const Actor& actor);
  // [writer] All or nothing, in one transaction. An error names the failing
  // element in data["index"].
  Result<std::size_t> put_many(const std::vector<PutRequest>& requests, const Actor& actor);
  // [writer] event.record: sets the date on a subject's records or one
  // record and recomputes their due times, with one `event` audit entry.
  // Returns how many records were updated. A name no category names is
  // unknown_date (with a subject), or one the record's category does not
  // declare (with a key).
  Result<std::int64_t> record_event(const EventRequest& request, const Actor& actor);
  // [reader] record.get: not_found when absent, or archived and not asked for.
  Result<Record> get(const std::string& key, bool include_archived);
  // [reader] The explanation of a live record, or a proof of disposal for a
  // destroyed one; not_found when the key was never seen.
  Result<std::variant<Explanation, Disposal>> explain(const std::string& key);
  // Every phase of `record` with its due time under `policy` (pure).
  std::vector<PhaseSchedule> schedule(const store::Schedule& record, const policy::Policy& policy) const;
  // Its first phase not yet done, or nullopt when none remains (pure).
  std::optional<PhaseSchedule> next(const store::Schedule& record, const policy::Policy& policy) const;

  // ---- sweeps (sweep.cpp) ----
  // [writer] Runs every due phase of the next `max_records` due records
  // after `cursor`, in one transaction (all of the batch or none of it),
  // and moves the cursor past them. Held records are skipped and counted.
  // With a deadline, the batch ends early (after at least one record) once
  // it has passed.
  Result<SweepCounts> sweep_batch(std::size_t max_records, const Actor& actor, SweepCursor& cursor,
                                  std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);
  // [slow] What a sweep would do now, without doing it (sweep dry_run).
  Result<SweepCounts> count_due();
  // [reader] status: counts, next due time, backlog and holds, from one
  // snapshot, without scanning the records.
  Result<Overview> overview();
  // [reader] Unheld records whose next phase is due now.
  Result<std::int64_t> backlog();
  // [reader] The earliest due time after `after`.
  Result<std::optional<calendar::Instant>> next_due(std::optional<calendar::Instant> after = std::nullopt);

  // ---- metrics (metrics.cpp) ----
  // [reader] Where the action counts start: the audit log's current head.
  // Called once, before the first `metrics`.
  Status start_action_counts();
  // [slow] The store's part of the metrics. Reads the audit entries
  // appended since the previous call (counted into the totals), the kept
  // counts, and at most kLatenessScan held records: never the records
  // stored.
  static constexpr std::size_t kLatenessScan = 10000;
  Result<MetricsSnapshot> metrics();

  // ---- the undo window (undo.cpp) ----
  // [writer] Destroys, in one transaction, at most `max_records` records
  // purged within the undo window whose window has ended (destroy_at <=
  // now): row deleted, key zeroed after the commit, one `destroy` audit
  // entry each. Returns how many.
  Result<std::int64_t> destroy_batch(std::size_t max_records, const Actor& actor);
  // [writer] record.restore: a record purged (by a phase or an erasure)
  // within the undo window back where and as it was, its next phase
  // rescheduled under the policy in force, with one `restore` audit entry.
  // not_found when there is none or its window has ended; conflict when a
  // record with that key was stored since.
  Result<Record> restore(const RestoreRequest& request, const Actor& actor);

  // ---- erasure replay after a restore (replay.cpp) ----
  // [writer, at start-up, before serving] `file`, a copy of the audit log
  // (in seq order), must be an intact chain of which the restored log is a
  // prefix (else invalid_params, bad_replay, and nothing changes); then
  // every entry past the restored head is redone where it still applies,
  // in order, each in its own transaction with its progress (meta
  // "replay"): a replay cut short resumes after the last entry it did.
  Result<ReplaySummary> replay_audit(const std::vector<store::AuditRow>& file);

  // ---- the clock guard (clock_guard.cpp) ----
  // [writer] Compares the clock with the latest instant it has shown (kept
  // in the store, meta "clock_seen") and records the new one. A forward jump
  // beyond the policy's clock_guard counts the records due now that were not
  // due at the instant last seen; more than the reload guard in force is
  // `tripped` and nothing is recorded, unless `confirm` (clock.confirm,
  // --confirm-clock): then `confirmed`, recorded with one `clock.confirm`
  // audit entry in the same transaction. The store is written at most once
  // a minute while the clock runs steadily.
  Result<ClockCheck> check_clock(bool confirm, const Actor& actor, const std::string& reason = "");
  // [writer] --confirm-clock while the reload guard holds the start-up:
  // the next check confirms (as the scheduler, with `reason`), once.
  void confirm_clock_at_next_check(std::string reason) { m_pending_clock_confirm = std::move(reason); }

  // ---- holds (holds.cpp) ----
  Result<HoldSet> load_holds(vault::RecordReader& from);
  // [reader] hold.list
  Result<std::vector<vault::Hold>> holds();
  // [writer] hold.place / hold.release, each audited.
  Result<std::int64_t> place_hold(const HoldRequest& request, const Actor& actor);
  Status release_hold(const ReleaseRequest& request, const Actor& actor);

  // ---- the data subject's rights (subject.cpp) ----
  // [writer] subject.export: the subject's active and archived records,
  // with one `export` audit entry (an access to personal data is
  // accountable; when it cannot be recorded, the export is refused).
  Result<std::vector<Record>> export_subject(const std::string& subject, const Actor& actor);
  // [writer] subject.erase (request.subject, optionally some categories)
  // and record.erase (request.key): destroys what may be destroyed, in one
  // transaction with one audit entry per record; reports what is retained
  // and why. not_found for an unknown key; unknown_category.
  Result<ErasureReport> erase(const EraseRequest& request, const Actor& actor);
  // [reader] record.receipt: the proof of disposal of a purged or erased
  // key as an erasure report (one erased record, its disposal entry, the
  // subject_ref and policy hash that entry carries, the head now).
  // not_found when the key was never disposed of, or is still stored.
  Result<ErasureReport> receipt(const std::string& key);

  // ---- connectors (connectors.cpp; docs/connectors.md) ----
  // [reader] connector.list: every connector of the policy, with its counts.
  Result<std::vector<ConnectorInfo>> connectors();
  // [reader] connector.jobs. unknown_connector for a name the policy lacks.
  Result<std::vector<vault::Job>> connector_jobs(const JobsRequest& request);
  // [reader] The jobs of a record key (record.explain), without subjects.
  Result<std::vector<store::StoredJob>> jobs_of_key(const std::string& key);
  // [writer] Leases up to request.max jobs of a connector that are due
  // (pending with next_at passed, or in_flight with an ended lease):
  // in_flight until now + lease_s, one more attempt each. `pull_only`
  // refuses a connector that is not a pull one (connector.claim); the
  // delivery workers claim for exec and http ones.
  Result<std::vector<vault::Job>> claim_jobs(const ClaimRequest& request, bool pull_only);
  // The most jobs one claim looks at (the claimable ones and those held
  // back behind an earlier job of their record).
  static constexpr std::size_t kMaxClaimScan = 2048;
  // [writer] The outcomes of deliveries (connector.ack, and the workers):
  // done (subject destroyed, `connector.done` audited), later (pending
  // again after a back-off), failed attempt (the same, or `failed` with a
  // `connector.failed` entry once max_attempts failed). Jobs not pending
  // or in_flight, of another connector or unknown are skipped. Returns how
  // many were settled, in one transaction.
  Result<std::int64_t> settle_jobs(const std::string& connector, const std::vector<DeliveryOutcome>& outcomes,
                                   const Actor& actor);
  // [writer] connector.retry: failed jobs (request.ids, or all of the
  // connector's) pending again now, their failed attempts forgotten.
  Result<std::int64_t> retry_jobs(const JobIdsRequest& request, const Actor& actor);
  // [writer] connector.discard: unfinished jobs dropped, subject destroyed,
  // one `connector.discard` entry each.
  Result<std::int64_t> discard_jobs(const JobIdsRequest& request, const Actor& actor);
  // [writer, start-up] Every in_flight job of the exec and http connectors
  // back to pending: whoever delivered them is gone (a restart). Pull jobs
  // keep their leases. Returns how many.
  Result<std::int64_t> release_push_jobs();
  // [writer] When `connector` next has a job to deliver (nullopt: none).
  Result<std::optional<calendar::Instant>> next_job_at(const std::string& connector);

  // ---- the plan (plan.cpp) ----
  // [slow] Every phase due before `until`, overdue ones in the first month.
  // With request.policy, under that candidate policy, compared with the
  // adopted one (the counts config.reload would report); a candidate that
  // does not load or validate is invalid_params, bad_config, with its
  // file:line message.
  Result<Plan> plan(const PlanRequest& request);

  // ---- audit ----
  // [reader], or [slow] with `slow` set: a page of up to 10,000 entries
  // costs tens of milliseconds to read and render, too much for the loop.
  Result<std::vector<store::AuditRow>> audit_tail(const AuditTailRequest& request, bool slow = false);
  // audit.verify is incremental: the service keeps the verified prefix (the
  // seq and hash of the last entry it has checked) and a call recomputes
  // what was appended since. [reader] when that is at most
  // kQuickVerifyEntries entries; nullopt when it is more (run
  // verify_audit instead).
  static constexpr std::int64_t kQuickVerifyEntries = 20000;
  // [reader], or [slow] with `slow` set: the log's last entry (nullopt
  // when empty).
  Result<std::optional<store::AuditRow>> audit_head(bool slow = false);
  // [reader], or [slow] with `slow` set: whether the log holds entry `seq`
  // with hash `hash` (seq 0: the genesis hash), i.e. whether the present
  // chain extends a checkpoint taken at that head.
  Result<bool> audit_extends(std::int64_t seq, const std::string& hash, bool slow = false);
  Result<std::optional<audit::VerifyReport>> verify_audit_quick();
  // [slow] From the verified prefix, or with `full` from entry 1 (a prefix
  // rewritten since it was verified is then found too), logging progress.
  Result<audit::VerifyReport> verify_audit(bool full);

 private:
  // A purge or an erasure of `record`: destroyed at once, or with an undo
  // window moved out of every read, its key kept until then (undo.cpp).
  Status dispose(const Record& record, const policy::Policy& policy, calendar::Instant now, const Actor& actor);
  Status run_phase(Record& record, const policy::Policy& policy, const policy::Category& category, const PhaseRun& run,
                   calendar::Instant now, const Actor& actor, SweepCounts& counts);
  // Rewrites record's fields by the category's strategies and drops its subject.
  void anonymise(Record& record, const policy::Category& category) const;
  Result<Record> prepare_put(const PutRequest& request, const policy::Policy& policy) const;
  Status store_put(const Record& record, const policy::Policy& policy, const Actor& actor);
  Status erase_records(const std::vector<Record>& records, const EraseRequest& request, const policy::Policy& policy,
                       const Actor& actor, ErasureReport& report);
  audit::Entry entry(const policy::Policy& policy, std::string action, const Actor& actor) const;
  // The outbox: one job per connector of `category` for the action that
  // audit entry `audit_seq` records, in the caller's transaction. `subject`
  // is the record's (null when it has none).
  Status enqueue_jobs(const policy::Category& category, const std::string& action, const Record& record,
                      const std::optional<std::string>& subject, std::optional<int> phase, calendar::Instant now,
                      std::int64_t audit_seq);
  Result<const policy::Connector*> find_connector(const policy::Policy& policy, const std::string& name) const;
  // The first unfinished job of the same record and connector decided
  // before `job`, if any (jobs reach a connector in decision order).
  Result<std::optional<store::StoredJob>> earlier_open_job(const store::StoredJob& job);
  // After `job` finished: the record's later jobs on its connector, held
  // back behind it, are due now.
  Status wake_later_jobs(const store::StoredJob& job, calendar::Instant now);

  // Records a verified chain as the prefix to continue from.
  void verified(const audit::VerifyReport& report);

  Result<std::int64_t> backlog(vault::RecordReader& reader, calendar::Instant now);
  // The plan under `policy`, from the stored due times, except for the
  // `rescheduled` categories: their records are rescheduled under it.
  Status plan_under(const policy::Policy& policy, const std::set<std::string>& rescheduled, Plan& plan);
  Result<std::optional<calendar::Instant>> oldest_unheld_due(vault::RecordReader& reader, const HoldSet& holds,
                                                             calendar::Instant now, bool& bounded);

  vault::Vault& m_vault;
  vault::RecordReader& m_reader;
  vault::RecordReader& m_slow;
  audit::AuditLog& m_audit;
  const calendar::Clock& m_clock;
  mutable std::mutex m_policy_mutex;
  std::shared_ptr<const policy::Policy> m_policy;
  mutable std::mutex m_verify_mutex;  // the verified prefix is shared by the loop and the slow thread
  std::int64_t m_verified_seq = 0;
  std::string m_verified_hash = audit::kGenesisHash;
  // [writer] The latest instant the clock has shown, as kept in the store
  // (loaded by the first check_clock), and whether a backward step was logged.
  std::optional<std::optional<calendar::Instant>> m_clock_seen;
  bool m_backward_logged = false;
  std::optional<std::string> m_pending_clock_confirm;
  // [slow] The action counts of `metrics` and the last entry counted.
  std::int64_t m_counted_seq = 0;
  std::map<std::pair<std::string, std::string>, std::int64_t> m_action_counts;
};

// The anonymised value of `value` under `strategy`; nullopt means "drop".
// `keyed_hash` is the hmac strategy's HMAC under the daemon's secret.
std::optional<nlohmann::json> anonymise_value(const nlohmann::json& value, policy::Strategy strategy,
                                              const std::function<std::string(std::string_view)>& keyed_hash);
// The same with the secret itself.
std::optional<nlohmann::json> anonymise_value(const nlohmann::json& value, policy::Strategy strategy,
                                              const std::string& secret);

}  // namespace retentiond::actions
