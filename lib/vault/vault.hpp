#pragma once
// The vault: erasure that every backend shares. Personal values (a record's
// subject and fields, a hold's target) are stored only sealed (AES-256-GCM)
// under a key used for that one row, kept in a slot of a KeyStore; the
// subject is findable through its HMAC under the daemon's secret
// (subject_ref, as in the audit log). A Store persists the sealed bytes, the
// slot numbers and the subject_refs, and never sees the secret or a key.
//
// Destroying a row destroys its key: the slot is released by the
// transaction that deletes or rewrites the row, zeroed once that commit is
// durable, and free for reuse only after the next transaction has recorded
// it zeroed. A crash in between leaves the list of released slots unzeroed
// in the store, and open() zeroes it at the next start. New keys are written
// (and synced) before the commit of the rows they seal; a rollback zeroes
// them again. Every write of a row's values seals them under a fresh key in
// a fresh slot: sealed values are never updated in place under one key.
//
// Two classes:
//  - RecordReader answers queries through a StoreReader (a snapshot of its
//    own), opening what it returns. A key may change under its snapshot (its
//    row destroyed, the slot zeroed or reused by a later commit): the sealed
//    bytes then fail to open, and read() runs the work again on a fresh
//    snapshot. Confined to the thread that reads with it.
//  - Vault is the writer's: a RecordReader over the Store, plus every change
//    and the transaction that carries the key bookkeeping. Confined to the
//    writer thread.
// Both may be used at once from their two threads; the KeyStore's read is
// thread-safe and only the Vault writes it.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/store/store.hpp"
#include "lib/util/result.hpp"
#include "lib/vault/key_store.hpp"

namespace retentiond::vault {

// A record with its personal values in clear, or without them.
struct Record : store::Schedule {
  std::optional<std::string> subject;  // null once anonymised
  nlohmann::json fields = nlohmann::json::object();
  // False for records read without their values (due, schedules...): such
  // a record must not be written back with insert or replace.
  bool has_values = true;
};

struct Hold {
  std::int64_t id = 0;  // assigned by add_hold
  std::string scope;    // subject, category or key
  std::string target;
  std::string reason;
  calendar::Instant placed_at;
  std::string placed_by;
};

// A connector job with its subject in clear (null when the record had
// none, or once the job is finished); job.subject (sealed) is left empty.
struct Job {
  store::StoredJob row;
  std::optional<std::string> subject;
};

// The associated data binding sealed bytes to their row: bytes copied to
// another record or hold do not open.
std::string record_aad(std::string_view key);
std::string hold_aad(std::string_view scope);
std::string job_aad(std::string_view id);

class RecordReader {
 public:
  RecordReader(store::StoreReader& store, const KeyStore& keys, std::string secret);
  virtual ~RecordReader() = default;
  RecordReader(const RecordReader&) = delete;
  RecordReader& operator=(const RecordReader&) = delete;

  // HMAC-SHA256 of a subject under the daemon's secret (lowercase hex).
  // Thread-safe.
  std::string subject_ref(std::string_view subject) const { return keyed_hash(subject); }
  // The same keyed hash of any text (the hmac anonymisation strategy).
  std::string keyed_hash(std::string_view data) const;

  // For the queries that open nothing (counts, audit, meta...).
  store::StoreReader& store() const { return m_reader; }

  // Runs `work` on one snapshot (StoreReader::read); when a key changed
  // under it, runs it again on a fresh one (a few times, then the failure
  // is a storage_error: damaged or tampered data). Reentrant: an inner call
  // joins the outer snapshot. Every method below runs inside one.
  Status read(const std::function<Status()>& work);

  // The record with `key`, with its values; nullopt when unknown.
  Result<std::optional<Record>> get(const std::string& key);
  // The same without its values (nothing opened).
  Result<std::optional<Record>> schedule_of(const std::string& key);
  Result<std::vector<Record>> due(calendar::Instant now, std::size_t limit,
                                  const std::optional<store::StoreReader::DueCursor>& after = std::nullopt);
  Result<std::vector<Record>> undue(std::size_t limit, const std::string& after_key);
  Result<std::vector<Record>> schedules(const std::string& category, std::size_t limit, const std::string& after_key);
  // The subject's records (active and archived; anonymised ones have no
  // subject any more), with their values, in key order.
  Result<std::vector<Record>> by_subject(const std::string& subject);
  // The same without their values (nothing opened).
  Result<std::vector<Record>> subject_schedules(const std::string& subject);
  Result<std::vector<Hold>> holds();
  // A record in the undo window (StoreReader::retired), with its values.
  struct Retired {
    Record record;
    calendar::Instant purged_at, destroy_at;
  };
  Result<std::optional<Retired>> retired(const std::string& key);
  // Connector jobs with their subjects opened (StoreReader::job, jobs,
  // jobs_ready).
  Result<std::optional<Job>> job(const std::string& id);
  Result<std::vector<Job>> jobs(const std::string& connector, store::JobState state, std::size_t limit,
                                std::int64_t after_seq = 0);
  Result<std::vector<Job>> jobs_ready(const std::string& connector, store::JobState state, calendar::Instant now,
                                      std::size_t limit);

 protected:
  // The key in `slot`; the Vault also knows its open transaction's keys.
  virtual Result<std::string> key_of(std::int64_t slot) const;
  // True for a reader: a failed open means "changed under the snapshot".
  virtual bool retries_stale_keys() const { return true; }
  Result<std::string> open(const store::Sealed& sealed, std::string_view aad) const;
  Result<Record> open_record(store::StoredRecord&& row) const;
  static Record without_values(store::StoredRecord&& row);

  const KeyStore& m_keys;
  std::string m_secret;

 private:
  Result<std::vector<Record>> schedules_of(Result<std::vector<store::StoredRecord>> rows);
  Result<std::vector<Job>> open_jobs(const std::function<Result<std::vector<store::StoredJob>>()>& query);

  store::StoreReader& m_reader;
  int m_depth = 0;
};

class Vault final : public RecordReader {
 public:
  Vault(store::Store& store, KeyStore& keys, std::string secret);

  // Start-up: loads the key slot bookkeeping, zeroes every list of slots a
  // crash left unzeroed, and seals the values a database from before
  // schema 004 keeps in clear (then has the store scrub them).
  Status open();

  store::Store& store() const { return m_store; }

  // Runs `work` in one store transaction that also carries the key slot
  // bookkeeping; see the header comment. Not reentrant.
  Status transaction(const std::function<Status()>& work);

  // The changes below join the open transaction, or run in one of their own.
  // Stores a new record (record.location), its values sealed under a fresh
  // key. Fails when a record with that key exists anywhere.
  Status insert(const Record& record);
  // The same, but a record with that key anywhere is no error: returns
  // false, and nothing is stored (the fresh key is destroyed again).
  Result<bool> insert_new(const Record& record);
  // Replaces the record with record.key in record.location (its old key is
  // destroyed) or, when there is none, inserts it.
  Status replace(const Record& record);
  Status update_schedule(const Record& record);
  // Deletes a record and destroys its key; false when there was none.
  Result<bool> remove(const std::string& key, store::Location where);
  // The undo window (Store::retire, unretire): a record moved out of every
  // read with its key kept, and back. destroy_retired deletes a retired
  // record and destroys its key; false when there was none.
  Result<bool> retire(const std::string& key, store::Location where, calendar::Instant purged_at,
                      calendar::Instant destroy_at);
  Result<bool> unretire(const std::string& key);
  Result<bool> destroy_retired(const std::string& key);
  // A new hold (hold.id 0: the store assigns one; else it keeps that id,
  // which must be free: a store migrated keeps its hold ids).
  Result<std::int64_t> add_hold(const Hold& hold);
  // Deletes a hold and destroys its key; false when there was none.
  Result<bool> remove_hold(std::int64_t id);
  // A new connector job, its subject sealed under a fresh key.
  Status add_job(const Job& job);
  // Moves a job on; with drop_subject, its subject's key is destroyed.
  Status update_job(const store::JobUpdate& update);

  // For tests and diagnostics: slots whose zeroing failed and is retried
  // after the next commit (and at start-up).
  std::size_t unzeroed_slots() const;

 private:
  struct FreeList {
    std::int64_t id = 0;
    std::vector<std::int64_t> slots;
    bool dirty = false;  // changed by the open transaction
  };

  Result<std::string> key_of(std::int64_t slot) const override;
  bool retries_stale_keys() const override { return false; }
  store::Sealed seal(std::string_view aad, std::string_view plaintext);
  std::int64_t allocate_slot();
  void release(std::int64_t slot) { m_released.push_back(slot); }
  // Runs `work` (which returns a Result<bool>) in a transaction of its own.
  Result<bool> transaction_result(const std::function<Result<bool>()>& work) {
    bool out = false;
    Status st = transaction([&]() -> Status {
      auto r = work();
      if (!r) return std::move(r).error();
      out = *r;
      return {};
    });
    if (!st) return std::move(st).error();
    return out;
  }
  std::string fresh_key();
  store::StoredRecord seal_record(const Record& record);
  void write_new_keys();
  void zero_released();
  void forget_transaction();

  store::Store& m_store;
  KeyStore& m_writable_keys;
  bool m_in_tx = false;
  std::int64_t m_next_slot = 0;                    // first slot never used
  // A shared store (Store::shared): slots come from blocks it reserves, are
  // never reused, and zeroed lists are deleted instead of freed.
  bool m_shared = false;
  std::int64_t m_block_next = 0, m_block_end = 0;
  std::vector<FreeList> m_free;                    // zeroed lists: free for reuse
  std::map<std::int64_t, std::string> m_new_keys;  // allocated by the open transaction: slot -> key
  bool m_keys_written = false;                     // ...and already written to the key store
  std::vector<std::pair<std::size_t, std::int64_t>> m_taken;  // (m_free index, slot) taken by the open transaction
  std::vector<std::int64_t> m_released;            // released by the open transaction
  std::vector<store::SlotList> m_to_zero;          // released by committed transactions, not yet zeroed
  std::vector<store::SlotList> m_zeroed;           // zeroed and synced, not yet recorded as such
  std::string m_key_pool;                          // random bytes for fresh keys, drawn in bulk
  std::size_t m_pool_at = 0;
};

}  // namespace retentiond::vault
