#pragma once
// Store: the persistence interface every other module uses (Kea's LeaseMgr).
// A backend persists bytes and answers queries: it sees record keys,
// categories, dates, schedules, the audit log and *sealed* personal values
// (opaque bytes, each with the number of the key slot that opens them), but
// never a secret, a key or a plaintext value. Sealing, key slots and the
// subject HMAC are lib/vault's, shared by every backend.
//
// Two roles, one interface each:
//  - StoreReader: queries. A backend hands out readers on connections of
//    their own, answering from a consistent snapshot (SQLite WAL readers,
//    PostgreSQL MVCC) that no write transaction or commit holds up.
//  - Store: the one writer, a StoreReader whose reads see its own open
//    transaction, plus every change.
//
// Threading: each object is confined to one thread at a time (the writer's
// to the writer thread, a reader to the thread that reads with it); none is
// safe for concurrent use. Different objects of one backend may be used
// from different threads at once.
//
// Every fallible call returns Result/Status; backend exceptions never escape
// (they become ErrorCode::storage_error, "nothing was changed").

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lib/calendar/calendar.hpp"
#include "lib/policy/expr.hpp"
#include "lib/util/result.hpp"

namespace retentiond::store {

enum class RecordState { active, archived, anonymised };
std::string_view to_string(RecordState s);

// Where a record lives: the active data, or the archive, its own table with
// restricted access (intermediate archiving), where an archive phase moves it.
enum class Location { active, archive };

// What a store keeps of a record in clear: its key, category, dates and
// schedule, and the HMAC of its subject (as the audit log has it).
struct Schedule {
  std::string key;
  std::string category;
  RecordState state = RecordState::active;
  Location location = Location::active;
  policy::Dates dates;
  int next_phase = 0;                          // first phase not yet done
  std::optional<calendar::Instant> due;        // that phase's at, if defined and reachable
  std::vector<calendar::Instant> done;         // when each completed phase ran
  calendar::Instant created_at;
  std::optional<std::string> subject_ref;      // null once anonymised
};

// Bytes sealed under the one-time key in key slot `slot` (lib/vault).
struct Sealed {
  std::int64_t slot = -1;  // -1: not read (a query that leaves the values out)
  std::string bytes;
};

// A record as stored: its schedule, and its personal values sealed.
struct StoredRecord : Schedule {
  Sealed sealed;
};

// A record purged within the undo window ([daemon] purge_grace): out of
// every query of records above, kept with its sealed values (its key
// alive) until destroy_at, when the scheduler destroys it, or until it is
// restored. One per key.
struct RetiredRecord {
  StoredRecord record;  // as it was: place, state, schedule, sealed values
  calendar::Instant purged_at;
  calendar::Instant destroy_at;
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

// A legal hold; its target (a subject, a category or a key) is sealed like
// a record's values.
struct StoredHold {
  std::int64_t id = 0;  // assigned by add_hold
  std::string scope;    // subject, category or key
  Sealed target;
  std::string reason;
  calendar::Instant placed_at;
  std::string placed_by;
};

// A connector job (the outbox, docs/connectors.md): one per connector of a
// record's category, committed with the action it carries. Its subject is
// sealed like a record's values; `subject` has slot -1 and no bytes when
// the record had none, or once the job is finished (destroyed).
enum class JobState { pending, in_flight, failed, done, discarded };
std::string_view to_string(JobState s);
std::optional<JobState> job_state_from(std::string_view s);

struct StoredJob {
  std::string id;  // the idempotency key: random, unique, never changes
  std::string connector;
  std::string action;  // archive, anonymise, purge, erase
  std::string key;
  std::string category;
  std::optional<int> phase;  // null for an erasure
  calendar::Instant decided_at;
  std::int64_t audit_seq = 0;
  std::optional<std::string> subject_ref;
  Sealed subject;  // slot -1: none
  JobState state = JobState::pending;
  std::int64_t attempts = 0;  // deliveries made
  std::int64_t failures = 0;  // failed attempts since created or retried (toward max_attempts)
  calendar::Instant next_at;  // pending: next delivery; in_flight: the lease's end
  std::optional<std::string> last_error;
  std::optional<calendar::Instant> finished_at;
};

// What changes when a job moves on (Store::update_job).
struct JobUpdate {
  std::string id;
  JobState state = JobState::pending;
  std::int64_t attempts = 0;
  std::int64_t failures = 0;
  calendar::Instant next_at;
  std::optional<std::string> last_error;
  std::optional<calendar::Instant> finished_at;
  calendar::Instant at;       // when it happened (the connector's latest error is dated by it)
  bool drop_subject = false;  // its sealed subject is deleted (the job is finished)
  bool error_is_new = false;  // last_error is what a delivery just answered: the connector's latest error too
};

// One connector's jobs, from the kept counts (no scan).
struct ConnectorStats {
  std::string connector;
  std::int64_t pending = 0, in_flight = 0, failed = 0, done = 0, discarded = 0;
  std::optional<std::string> last_error;
  std::optional<calendar::Instant> last_error_at;
  std::optional<calendar::Instant> oldest_pending;  // decided_at of the oldest pending or in_flight job
};

// A daemon connected to the store (status: which daemons are active).
struct DaemonSeen {
  std::string host;
  std::int64_t pid = 0;
  std::string address;     // where it connects from: an IP address, or "local" (Unix socket)
  calendar::Instant since;  // its oldest open connection
};

struct RecordCounts {
  std::int64_t active = 0;
  std::int64_t archived = 0;
  std::int64_t anonymised = 0;
};

// How many records of a category have a due time on one UTC day.
struct DueDay {
  calendar::Instant day;  // 00:00:00 UTC
  std::string category;
  std::int64_t n = 0;
};

// Key slot bookkeeping, kept by the store so that it commits with the
// records; what it means is lib/vault's (vault.hpp).
struct SlotList {
  std::int64_t id = 0;
  std::vector<std::int64_t> slots;
};
struct KeySlotState {
  std::int64_t next_slot = 0;       // the first slot never used
  std::vector<SlotList> free;       // zeroed: free for reuse
  std::vector<SlotList> unzeroed;   // released by committed transactions, not known to be zeroed
};
struct KeySlotChanges {
  std::vector<std::int64_t> now_zeroed;    // unzeroed lists since zeroed: free from now on
  std::vector<SlotList> taken_from;        // free lists this transaction took slots from (empty: delete)
  std::optional<std::int64_t> next_slot;   // when it moved
  std::vector<std::int64_t> released;      // slots this transaction released: one new unzeroed list
};

// Personal values kept in clear by databases from before schema 004, to be
// sealed once (by lib/vault, which holds the keys) at the first start.
struct LegacyPlaintext {
  struct Row {
    Location location = Location::active;
    std::string key;
    std::optional<std::string> subject;
    std::string fields_json;
  };
  struct Hold {
    std::int64_t id = 0;
    std::string scope, target, reason;
    calendar::Instant placed_at;
    std::string placed_by;
  };
  std::vector<Row> rows;
  std::vector<Hold> holds;
  bool present = false;  // the clear tables exist (even empty: they are dropped)
};

class StoreReader {
 public:
  virtual ~StoreReader() = default;

  // Runs `work` in one read transaction: every query in it sees the same
  // committed state, and no writer waits for it nor it for a writer. Queries
  // outside `read` each see the latest committed state. On the writer's
  // Store inside a write transaction, simply runs `work`.
  virtual Status read(const std::function<Status()>& work) = 0;

  // The record with `key` in either place, with its sealed values; nullopt
  // for an unknown key.
  virtual Result<std::optional<StoredRecord>> get(const std::string& key) = 0;
  // The same without the sealed values (sealed.slot -1).
  virtual Result<std::optional<StoredRecord>> schedule_of(const std::string& key) = 0;

  // Position in the (due, key) order, for paging through what is due.
  struct DueCursor {
    calendar::Instant due;
    std::string key;
  };
  // At most `limit` records with due <= now, in (due, key) order, after
  // `after` when given, without their values: index ranges, never a sort.
  virtual Result<std::vector<StoredRecord>> due(calendar::Instant now, std::size_t limit,
                                                const std::optional<DueCursor>& after = std::nullopt) = 0;
  // The earliest due time (after `after` when given): an index lookup.
  virtual Result<std::optional<calendar::Instant>> next_due(std::optional<calendar::Instant> after = std::nullopt) = 0;
  // At most `limit` records without a due time, in key order after
  // `after_key`, without their values.
  virtual Result<std::vector<StoredRecord>> undue(std::size_t limit, const std::string& after_key) = 0;
  // The records of `category` in both places, at most `limit` in key order
  // after `after_key`, without their values (rescheduling after a reload).
  virtual Result<std::vector<StoredRecord>> schedules(const std::string& category, std::size_t limit,
                                                      const std::string& after_key) = 0;
  // How many records (active, archived or anonymised) a category holds.
  virtual Result<std::int64_t> count_category(const std::string& category) = 0;
  // The records whose subject_ref is `subject_ref`, with their sealed
  // values, in key order: an index lookup.
  virtual Result<std::vector<StoredRecord>> by_subject_ref(const std::string& subject_ref) = 0;

  // Kept up to date by every transaction: no scan.
  virtual Result<RecordCounts> counts() = 0;
  // The same per category (categories holding no record left out): no scan.
  virtual Result<std::map<std::string, RecordCounts>> counts_by_category() = 0;
  // The days up to `now`'s that hold due times, per category, in (day,
  // category) order: the kept per-day counts, not the records. A day's
  // records may be due later that day than `now`.
  virtual Result<std::vector<DueDay>> due_days(calendar::Instant now) = 0;
  // How many records of each category have due <= now (categories with
  // none left out). Its cost grows with the days that hold due records and
  // with the records due earlier the same day, not with the records stored:
  // due times are counted per UTC day by every transaction.
  virtual Result<std::map<std::string, std::int64_t>> due_by_category(calendar::Instant now) = 0;

  // The audit log's last entry.
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

  // Legal holds in force, by id.
  virtual Result<std::vector<StoredHold>> holds() = 0;

  // The daemons using the store now, by host and pid: those connected to a
  // shared database (PostgreSQL), or this one (SQLite: one daemon per state
  // directory).
  virtual Result<std::vector<DaemonSeen>> daemons() = 0;

  // Small named values the daemon keeps across restarts (last policy...).
  virtual Result<std::optional<std::string>> get_meta(const std::string& name) = 0;

  // The record `key` purged within the undo window, with its sealed values;
  // nullopt when there is none.
  virtual Result<std::optional<RetiredRecord>> retired(const std::string& key) = 0;
  // At most `limit` retired records with destroy_at <= now, in (destroy_at,
  // key) order, without their values: an index range.
  virtual Result<std::vector<RetiredRecord>> retired_due(calendar::Instant now, std::size_t limit) = 0;
  // How many retired records have after < destroy_at <= until: an index
  // range (the clock guard counts the windows a jump would end).
  virtual Result<std::int64_t> count_retired(calendar::Instant after, calendar::Instant until) = 0;

  // Connector jobs. `job`: one by id, with its sealed subject.
  virtual Result<std::optional<StoredJob>> job(const std::string& id) = 0;
  // At most `limit` jobs of `connector` in `state`, in decision order
  // (audit_seq) after `after_seq`, with their sealed subjects: an index range.
  virtual Result<std::vector<StoredJob>> jobs(const std::string& connector, JobState state, std::size_t limit,
                                              std::int64_t after_seq = 0) = 0;
  // At most `limit` jobs of `connector` in `state` with next_at <= now, in
  // (next_at, audit_seq) order, with their sealed subjects: an index range.
  virtual Result<std::vector<StoredJob>> jobs_ready(const std::string& connector, JobState state,
                                                    calendar::Instant now, std::size_t limit) = 0;
  // The earliest next_at of `connector`'s jobs in `state`.
  virtual Result<std::optional<calendar::Instant>> next_job_at(const std::string& connector, JobState state) = 0;
  // Every job of a record key (finished ones too), without subjects, by audit_seq.
  virtual Result<std::vector<StoredJob>> jobs_of_key(const std::string& key) = 0;
  // The kept counts of every connector that has had a job.
  virtual Result<std::vector<ConnectorStats>> connector_stats() = 0;
};

class Store : public StoreReader {
 public:
  // Whether several daemons may write this store at once (PostgreSQL):
  // their write transactions are then serialised among them (one at a time
  // per database, each seeing every commit before it), caches of what
  // another daemon may change are dropped at each transaction, and key
  // slots come from reserve_slot_block instead of the kept counter and free
  // lists (a slot is never reused: no two daemons can take it).
  virtual bool shared() const { return false; }
  // Shared stores: the first of `count` consecutive key slots no other call,
  // from this daemon or another, ever returns again (even when the
  // transaction it ran in rolls back).
  virtual Result<std::int64_t> reserve_slot_block(std::int64_t count) {
    (void)count;
    return Error::internal("this store hands out no slot blocks");
  }
  // Shared stores: the policy hash this daemon runs under. A write
  // transaction that would commit while the database's adopted policy
  // (meta policy_hash) is another one, adopted by another daemon, is rolled
  // back (storage_error, reason stale_policy), unless it sets policy_hash
  // itself (a reload).
  virtual void expect_policy(const std::string& hash) { (void)hash; }

  // Runs `work` in one write transaction: commits when it returns success,
  // rolls back (changing nothing) when it fails or the commit fails. An
  // acknowledged commit is durable (it survives a power cut). Not reentrant.
  virtual Status transaction(const std::function<Status()>& work) = 0;

  // The changes below join the open transaction, or run in one of their own.
  // Stores a new record in row.location. Fails (storage_error) when a
  // record with that key exists in either place. (insert_new, and the
  // failure when it wrote nothing.)
  virtual Status insert(const StoredRecord& row);
  // The same, but a key that exists in either place is no error: returns
  // false and writes nothing (the common case of an import costs one
  // lookup fewer than asking first).
  virtual Result<bool> insert_new(const StoredRecord& row) = 0;
  // Updates only the schedule (dates, next_phase, due, done) of the record
  // row.key in row.location.
  virtual Status update_schedule(const Schedule& row) = 0;
  // Deletes the record `key` from `where`. Returns the key slot its sealed
  // values were under (for the vault to destroy), nullopt when there was no
  // such record.
  virtual Result<std::optional<std::int64_t>> remove(const std::string& key, Location where) = 0;

  // Audit log rows, stored as given (seq and hash included).
  virtual Status append_audit(const AuditRow& row) = 0;

  // Legal holds. add_hold returns the new id (hold.id 0: a new one; else
  // that id, which must be free, and later ids come after it); remove_hold
  // the key slot of its sealed target, nullopt if there is no such hold.
  virtual Result<std::int64_t> add_hold(const StoredHold& hold) = 0;
  virtual Result<std::optional<std::int64_t>> remove_hold(std::int64_t id) = 0;

  virtual Status set_meta(const std::string& name, const std::string& value) = 0;

  // The undo window. retire moves the record `key` out of `where` into the
  // retired records, its sealed values and key slot kept (false when there
  // is no such record; storage_error when a retired record with that key
  // exists). unretire moves a retired record back where it was, as it was
  // (false when there is none; storage_error when a record with that key
  // exists again). drop_retired deletes one and returns its key slot, for
  // the vault to destroy (nullopt when there is none). Counts follow.
  virtual Result<bool> retire(const std::string& key, Location where, calendar::Instant purged_at,
                              calendar::Instant destroy_at) = 0;
  virtual Result<bool> unretire(const std::string& key) = 0;
  virtual Result<std::optional<std::int64_t>> drop_retired(const std::string& key) = 0;

  // Connector jobs. insert_job stores a new one (storage_error when the id
  // exists); update_job moves one on and returns the key slot of its sealed
  // subject when drop_subject deleted it (nullopt otherwise, or when there
  // is no such job: check with job() first). Counts follow.
  virtual Status insert_job(const StoredJob& job) = 0;
  virtual Result<std::optional<std::int64_t>> update_job(const JobUpdate& update) = 0;

  // Key slot bookkeeping (lib/vault). save_key_slots joins the open
  // transaction; it returns the id of the list of released slots, if any.
  virtual Result<KeySlotState> key_slots() = 0;
  virtual Result<std::optional<std::int64_t>> save_key_slots(const KeySlotChanges& changes) = 0;

  // One-time upgrade of databases from before schema 004: the values they
  // keep in clear, and (inside a transaction) their sealed replacement,
  // which drops the clear tables; the backend then scrubs its files (SQLite:
  // one VACUUM) at scrub_after_upgrade.
  virtual Result<LegacyPlaintext> legacy_plaintext() = 0;
  // `rows`: key, location, subject_ref and sealed of each plaintext row;
  // `holds`: each plaintext hold sealed, with its id.
  virtual Status replace_legacy_plaintext(const std::vector<StoredRecord>& rows,
                                          const std::vector<StoredHold>& holds) = 0;
  virtual Status scrub_after_upgrade() = 0;
};

}  // namespace retentiond::store
