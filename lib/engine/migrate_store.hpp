#pragma once
// Moving a state from one store to another: `retentiond --migrate-store
// FROM_STATE_DIR`, from an embedded SQLite state to the PostgreSQL database
// of the running configuration (docs/scale-out.md, "Migrating a SQLite
// state"). Everything a daemon keeps goes over, values re-sealed under
// fresh keys in the target, the audit log copied entry by entry (its hashes
// unchanged), in one transaction of the target: a failure leaves it empty.

#include <cstdint>
#include <filesystem>
#include <string>

#include "lib/policy/policy.hpp"
#include "lib/store/store.hpp"
#include "lib/util/result.hpp"

namespace retentiond::engine {

struct MigrateSummary {
  store::RecordCounts records;
  std::int64_t retired = 0;
  std::int64_t holds = 0;
  std::int64_t audit_entries = 0;
  std::string audit_head;  // the last entry's hash, the same on both sides
  std::int64_t jobs = 0;
  std::int64_t meta = 0;
};

// Copies the SQLite state in `from` (a daemon's state_dir, not in use: its
// lock is taken) into the store `to` names, which must be empty. `secret`
// is `from`'s own: subject refs are kept, and checked against it.
Result<MigrateSummary> migrate_store(const std::filesystem::path& from, const policy::DaemonSettings& to,
                                     const std::string& secret);

// Daemons sharing a database must share the secret (subject refs written by
// one are matched by the others): the database keeps an HMAC of a fixed text
// under the secret of the first daemon that opened it, and refuses another.
Status check_shared_secret(store::Store& store, const std::string& secret);

}  // namespace retentiond::engine
