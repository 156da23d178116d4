#pragma once
// Service: the operations retentiond performs on records: put, explain, and
// the phases (anonymise, purge) run by sweeps, each change committed in one
// store transaction together with its audit entry.
//
// It works against the Store interface only, so any backend serves. Not
// thread-safe: used from the daemon's single io_context thread.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/audit/audit.hpp"
#include "lib/calendar/clock.hpp"
#include "lib/policy/policy.hpp"
#include "lib/store/store.hpp"
#include "lib/util/result.hpp"

namespace retentiond::actions {

// Who asked: "scheduler" or "uid:N" (recorded in the audit log).
struct Actor {
  std::string name;
};

// Documented limits on one record (docs/protocol.md).
inline constexpr std::size_t kMaxKeyBytes = 512;
inline constexpr std::size_t kMaxSubjectBytes = 512;
inline constexpr std::size_t kMaxFieldsBytes = 64 * 1024;
inline constexpr std::size_t kMaxDates = 64;

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
  store::RecordRow record;
  std::vector<PhaseSchedule> phases;
  std::optional<PhaseSchedule> next;  // first phase not done
  std::vector<std::int64_t> holds;    // ids of the holds covering it
};

struct Disposal {
  std::string key;
  calendar::Instant purged_at;
  std::int64_t audit_seq = 0;
};

struct SweepCounts {
  std::int64_t archived = 0;
  std::int64_t anonymised = 0;
  std::int64_t purged = 0;
  std::int64_t held = 0;
  std::int64_t stuck = 0;  // due, but the category is not in the policy (cannot happen after a guarded reload)
  std::int64_t due_records = 0;  // count_due only: unheld records with a due phase
  std::int64_t visited = 0;      // sweep_batch only: records the batch got through (held ones included)

  SweepCounts& operator+=(const SweepCounts& o);
  std::int64_t actions() const { return archived + anonymised + purged; }
};

// The active holds, loaded once per batch or request (holds are few).
struct HoldSet {
  std::vector<store::HoldRow> holds;
  // The subject_ref of each subject hold's target (parallel to holds; empty
  // for other scopes): rows read without values are matched by it.
  std::vector<std::string> subject_refs;
  // Ids of the holds covering `row` (by key, category or subject).
  std::vector<std::int64_t> covering(const store::RecordRow& row) const;
  bool covers(const store::RecordRow& row) const;
};

// subject.erase's answer.
struct Retained {
  std::string key;
  std::string category;
  std::string reason;                     // "legal_obligation" or "hold"
  std::optional<calendar::Instant> until;  // the purge phase's due time
};
struct Erased {
  std::string key;
  std::string category;
};
struct ErasureReport {
  std::vector<Erased> erased;
  std::vector<Retained> retained;
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
};

// Where a sweep has got to in the (due, key) order; `done` once the due
// range is exhausted.
struct SweepCursor {
  std::optional<store::Store::DueCursor> position;
  bool done = false;
};

// Sets row.due to the due time of its next phase under `category` (null
// when a date is missing or no phase is left). A record past the end of a
// category whose phases were shortened by a reload, and which ends with a
// purge, is moved back to that purge.
void reschedule_under(store::RecordRow& row, const policy::Category& category, calendar::MonthDay fiscal_year_end);

class Service {
 public:
  Service(store::Store& store, audit::AuditLog& audit, const calendar::Clock& clock,
          std::shared_ptr<const policy::Policy> policy, std::string secret);

  // Swaps in a new policy (a reload) and recomputes nothing by itself.
  void set_policy(std::shared_ptr<const policy::Policy> policy) { m_policy = std::move(policy); }

  const policy::Policy& policy() const { return *m_policy; }
  std::shared_ptr<const policy::Policy> policy_ptr() const { return m_policy; }
  const calendar::Clock& clock() const { return m_clock; }
  store::Store& store() { return m_store; }
  audit::AuditLog& audit() { return m_audit; }

  // Validates and stores one record (JSON params of record.put). Returns the
  // stored row, or invalid_params (with a finer reason), conflict, storage_error.
  // A replacement that moves the record's next due time later is audited
  // (`extend`, old and new due in the reason), in the same transaction.
  Result<store::RecordRow> put(const nlohmann::json& params, const Actor& actor = Actor{"uid:0"});

  // All or nothing: validates every element, then stores them in one
  // transaction. An error names the failing element in data["index"].
  Result<std::size_t> put_many(const nlohmann::json& records, const Actor& actor = Actor{"uid:0"});

  // event.record: sets the date `name` on the records of a subject or one key
  // and recomputes their due times, with one `event` audit entry. Returns how
  // many records were updated. A name no category names is unknown_date.
  Result<std::int64_t> record_event(const nlohmann::json& params, const Actor& actor = Actor{"uid:0"});

  // record.get: the record with `key`; not_found when absent.
  Result<store::RecordRow> get(const std::string& key);

  // Every phase of `row` with its due time under the current policy.
  std::vector<PhaseSchedule> schedule(const store::RecordRow& row) const;
  // The first phase not yet done, or nullopt when none remains.
  std::optional<PhaseSchedule> next(const store::RecordRow& row) const;

  // The explanation of a live record, or a proof of disposal for a destroyed
  // one; not_found when the key was never seen.
  Result<std::variant<Explanation, Disposal>> explain(const std::string& key);

  // What a sweep would do now, without doing it (sweep with dry_run).
  Result<SweepCounts> count_due();

  // Runs every due phase of the next `max_records` due records after
  // `cursor`, in one transaction (all of the batch or none of it), and moves
  // the cursor past them. Held records are skipped and counted. With a
  // deadline, the batch ends early (after at least one record) once it has
  // passed.
  Result<SweepCounts> sweep_batch(std::size_t max_records, const Actor& actor, SweepCursor& cursor,
                                  std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);

  // Unheld records whose next phase is due now (status.backlog).
  Result<std::int64_t> backlog();

  // subject.export: the subject's active and archived records, with one
  // `export` audit entry (an access to personal data is accountable).
  Result<std::vector<store::RecordRow>> subject_records(const nlohmann::json& params,
                                                        const Actor& actor = Actor{"uid:0"});
  // subject.erase: destroys what may be destroyed, in one transaction with
  // one audit entry per record; reports what is retained and why. With
  // `categories`, only the records of those categories are considered.
  Result<ErasureReport> erase_subject(const nlohmann::json& params, const Actor& actor);
  // record.erase: the same for one record; not_found for an unknown key.
  Result<ErasureReport> erase_record(const nlohmann::json& params, const Actor& actor);

  // plan: every phase due before `until`, overdue ones in the first month.
  Result<Plan> plan(const nlohmann::json& params);

  // policy.table: the retention table in words ("markdown" or "text").
  Result<std::string> policy_table(const nlohmann::json& params) const;

  // Holds: hold.place / hold.release / hold.list, each audited.
  Result<HoldSet> load_holds();
  Result<std::int64_t> place_hold(const nlohmann::json& params, const Actor& actor);
  Status release_hold(const nlohmann::json& params, const Actor& actor);

 private:
  Status run_phase(store::RecordRow& row, const policy::Category& category, int phase,
                   calendar::Instant now, const Actor& actor, SweepCounts& counts);
  // Rewrites row's fields by the category's strategies and drops its subject.
  void anonymise(store::RecordRow& row, const policy::Category& category) const;
  Result<store::RecordRow> prepare_put(const nlohmann::json& params) const;
  Status store_put(const store::RecordRow& row, const Actor& actor);
  // Erases each row that may be erased (appending its `erase` entry unless
  // dry_run) and reports the others; inside the caller's transaction.
  Status erase_rows(const std::vector<store::RecordRow>& rows, const std::string& reason, bool dry_run,
                    const Actor& actor, ErasureReport& report);
  audit::Entry hold_entry(const store::HoldRow& hold, const char* action, const Actor& actor,
                          std::string reason) const;
  void reschedule(store::RecordRow& row, const policy::Category& category) const;

  store::Store& m_store;
  audit::AuditLog& m_audit;
  const calendar::Clock& m_clock;
  std::shared_ptr<const policy::Policy> m_policy;
  std::string m_secret;
};

// The anonymised value of `value` under `strategy`; nullopt means "drop".
// `secret` keys the hmac strategy.
std::optional<nlohmann::json> anonymise_value(const nlohmann::json& value, policy::Strategy strategy,
                                              const std::string& secret);

}  // namespace retentiond::actions
