#pragma once
// The hash-chained audit log (shared/spec/admin-protocol.md, "The audit log").
// Each entry's hash is SHA-256 over the previous entry's hash and this
// entry's canonical content; the first entry chains from 64 zeros. Entries
// carry an HMAC of the subject, never the subject or a field value.
//
// AuditLog::append must be called inside the Store transaction that makes
// the change it records, so entry and change commit or fail together. An
// AuditLog belongs to the writer thread; verify() may run on any thread
// with a reader of its own.

#include <functional>
#include <optional>
#include <string>

#include "lib/calendar/calendar.hpp"
#include "lib/store/store.hpp"
#include "lib/util/result.hpp"

namespace retentiond::audit {

inline constexpr const char* kGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

struct Entry {
  calendar::Instant at;
  std::string action;  // archive, anonymise, purge, erase, hold.place, hold.release, config.reload, extend, event, export
  std::optional<std::string> key;
  std::optional<std::string> category;
  std::optional<int> phase;
  std::optional<std::string> subject_ref;  // HMAC of the subject (vault::RecordReader::subject_ref)
  std::string actor;                   // "scheduler" or "uid:N"
  std::optional<std::string> reason;
  std::string policy_hash;
};

// The canonical content hashed for a row (everything but `hash`).
std::string canonical_content(const store::AuditRow& row);
// SHA-256 hex of prev_hash and the row's canonical content.
std::string chain_hash(const std::string& prev_hash, const store::AuditRow& row);

struct VerifyReport {
  bool ok = true;
  std::int64_t entries = 0;               // the last seq of the chain (entries are numbered from 1)
  std::optional<std::int64_t> first_bad;  // the first entry whose hash or seq does not follow
  std::string head;                       // hash of the last entry (genesis when empty)
  std::int64_t checked = 0;               // entries this call recomputed
};

// Recomputes the chain after entry `after_seq`, whose hash must still be
// `after_hash` (the prefix verified before; 0 and the genesis hash: the
// whole chain), page by page, each page its own snapshot (entries are only
// ever appended). A rewritten prefix end is reported as its first bad entry.
// `progress`, if given, is called with the count checked after each page.
// Fails only on a storage error.
Result<VerifyReport> verify(store::StoreReader& store, std::int64_t after_seq = 0,
                            const std::string& after_hash = kGenesisHash,
                            const std::function<void(std::int64_t checked)>& progress = {});

class AuditLog {
 public:
  explicit AuditLog(store::Store& store) : m_store(store) {}

  // Appends `entry` after the current head. Returns the stored row (with seq
  // and hash), or the store's error.
  Result<store::AuditRow> append(const Entry& entry);

 private:
  store::Store& m_store;
};

}  // namespace retentiond::audit
