#pragma once
// Store: the persistence interface every other module uses (Kea's LeaseMgr).
// SqliteStore is the embedded backend; another backend (PostgreSQL, say)
// implements this interface and nothing above lib/store changes.
//
// Threading: a Store is used from the daemon's single io_context thread; it
// is not safe for concurrent use.
//
// Every fallible call returns Result/Status; backend exceptions never escape
// (they become ErrorCode::storage_error, "nothing was changed").

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/calendar/calendar.hpp"
#include "lib/policy/expr.hpp"
#include "lib/util/result.hpp"

namespace retentiond::store {

enum class RecordState { active, archived, anonymised };
std::string_view to_string(RecordState s);

// Which database holds a record: the active one, or the archive
// (<state_dir>/archive.db), where an archive phase moves it.
enum class Location { active, archive };

struct RecordRow {
  std::string key;
  std::optional<std::string> subject;  // null once anonymised
  // The subject's HMAC (as in the audit log), filled in by the store on
  // every read, including reads that leave subject and fields out.
  std::optional<std::string> subject_ref;
  // False for rows read without their personal values (Store::due): such a
  // row must not be written back with put.
  bool has_values = true;
  std::string category;
  RecordState state = RecordState::active;
  Location location = Location::active;
  nlohmann::json fields = nlohmann::json::object();
  policy::Dates dates;
  int next_phase = 0;                          // first phase not yet done
  std::optional<calendar::Instant> due;        // that phase's at, if defined and reachable
  std::vector<calendar::Instant> done;         // when each completed phase ran
  calendar::Instant created_at;
};

struct AuditRow {
  std::int64_t seq = 0;
  calendar::Instant at;
  std::string action;
  std::optional<std::string> key;
  std::optional<std::string> category;
  std::optional<int> phase;
  std::optional<std::string> subject_ref;
  std::string actor;
  std::optional<std::string> reason;
  std::string policy_hash;
  std::string hash;
};

struct HoldRow {
  std::int64_t id = 0;  // assigned by add_hold
  std::string scope;    // subject, category or key
  std::string target;
  std::string reason;
  calendar::Instant placed_at;
  std::string placed_by;
};

struct RecordCounts {
  std::int64_t active = 0;
  std::int64_t archived = 0;
  std::int64_t anonymised = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // Runs `work` in one transaction: commits when it returns success, rolls
  // back (changing nothing) when it fails or the commit fails. Not reentrant.
  virtual Status transaction(const std::function<Status()>& work) = 0;

  // Records. `get` returns nullopt for an unknown key.
  virtual Result<std::optional<RecordRow>> get(const std::string& key) = 0;
  // Records live in one of two places (Location). `get` and the queries
  // below look in both.
  // Creates or replaces the record with row.key in row.location (fields and
  // subject included).
  virtual Status put(const RecordRow& row) = 0;
  // Updates only the schedule (dates, next_phase, due, done) in row.location.
  virtual Status update_schedule(const RecordRow& row) = 0;
  // Deletes the record from `where`. Destroying values is the backend's
  // duty: once the transaction commits, no deleted or replaced value may be
  // readable from any of its files (SqliteStore: key_file.hpp).
  virtual Status remove(const std::string& key, Location where) = 0;

  // The record with `key` in either database without its values (subject
  // and fields; has_values false), as `due` returns rows; nullopt for an
  // unknown key. Nothing is unsealed.
  virtual Result<std::optional<RecordRow>> schedule_of(const std::string& key) = 0;

  // Position in the (due, key) order, for paging through what is due.
  struct DueCursor {
    calendar::Instant due;
    std::string key;
  };

  // At most `limit` records with due <= now, in (due, key) order, after
  // `after` when given: an index range, never a table scan. The rows carry
  // their schedule and subject_ref but no subject and no fields (nothing is
  // unsealed: a purge needs no plaintext); `get` reads a whole record.
  virtual Result<std::vector<RecordRow>> due(calendar::Instant now, std::size_t limit,
                                             const std::optional<DueCursor>& after = std::nullopt) = 0;
  // The earliest due time (after `after` when given): an index lookup.
  virtual Result<std::optional<calendar::Instant>> next_due(std::optional<calendar::Instant> after = std::nullopt) = 0;
  // At most `limit` records without a due time, in key order after `after_key`.
  virtual Result<std::vector<RecordRow>> undue(std::size_t limit, const std::string& after_key) = 0;
  virtual Result<std::int64_t> count_due(calendar::Instant now) = 0;
  // Kept up to date by every transaction: no scan.
  virtual Result<RecordCounts> counts() = 0;
  // Records of `category` whose due time is <= now (status.backlog, held by category).
  virtual Result<std::int64_t> count_due_in_category(const std::string& category, calendar::Instant now) = 0;

  // Schedules of a category's records in both databases, at most `limit`
  // in key order after `after_key`: the rows without subject and fields
  // (nothing is unsealed), for rescheduling after a policy change.
  virtual Result<std::vector<RecordRow>> schedules(const std::string& category, std::size_t limit,
                                                   const std::string& after_key) = 0;
  // How many records (active, archived or anonymised) a category holds.
  virtual Result<std::int64_t> count_category(const std::string& category) = 0;

  // Records of a subject (an index lookup), in key order.
  virtual Result<std::vector<RecordRow>> by_subject(const std::string& subject) = 0;

  // Audit log rows; `append_audit` stores the row as given (seq included).
  virtual Status append_audit(const AuditRow& row) = 0;
  virtual Result<std::optional<AuditRow>> last_audit() = 0;
  // Entries matching `q`, ascending by seq: the first `limit` after
  // `after_seq` when given, else the last `limit`.
  struct AuditQuery {
    std::optional<std::int64_t> after_seq;
    std::optional<std::string> key;
    std::optional<std::string> subject_ref;
    std::size_t limit = 100;
  };
  virtual Result<std::vector<AuditRow>> audit_entries(const AuditQuery& q) = 0;
  // The latest purge or erase entry for `key`, if any.
  virtual Result<std::optional<AuditRow>> find_disposal(const std::string& key) = 0;

  // Legal holds. add_hold returns the new id; remove_hold false if unknown.
  virtual Result<std::int64_t> add_hold(const HoldRow& hold) = 0;
  virtual Result<bool> remove_hold(std::int64_t id) = 0;
  virtual Result<std::vector<HoldRow>> holds() = 0;

  // Small named values the daemon keeps across restarts (last policy...).
  virtual Result<std::optional<std::string>> get_meta(const std::string& name) = 0;
  virtual Status set_meta(const std::string& name, const std::string& value) = 0;
};

}  // namespace retentiond::store
