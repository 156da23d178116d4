#include "lib/engine/migrate_store.hpp"

#include <algorithm>
#include <limits>
#include <set>

#include <spdlog/spdlog.h>

#include "lib/crypto/crypto.hpp"
#include "lib/store/postgresql/pg_store.hpp"
#include "lib/store/sqlite/sqlite_store.hpp"
#include "lib/util/state_lock.hpp"
#include "lib/vault/key_file.hpp"
#include "lib/vault/vault.hpp"

namespace retentiond::engine {

using calendar::Instant;

Status check_shared_secret(store::Store& store, const std::string& secret) {
  const std::string check = crypto::hmac_sha256_hex(secret, "retentiond: the secret of this database");
  auto kept = store.get_meta("secret_check");
  if (!kept) return std::move(kept).error();
  if (!*kept) return store.set_meta("secret_check", check);
  if (**kept == check) return {};
  return Error::storage("the database was written by daemons with another secret: give this daemon the same "
                        "secret as the others (the same secret_file contents); nothing was changed");
}

namespace {

// What a daemon keeps in meta besides the key bookkeeping.
constexpr const char* kCopiedMeta[] = {"policy", "policy_hash", "reload_guard", "clock_seen", "replay"};
constexpr std::size_t kPage = 1000;

#define RD_TRY(expr)                                     \
  do {                                                   \
    if (auto st_ = (expr); !st_) return std::move(st_).error(); \
  } while (false)

// The source's values open, and its subject refs are those of `secret`.
Status check_source_secret(vault::RecordReader& reader, const std::vector<vault::Record>& sample) {
  for (const auto& r : sample) {
    if (!r.subject || !r.subject_ref) continue;
    if (reader.subject_ref(*r.subject) != *r.subject_ref) {
      return Error::invalid_params("bad_secret", "the secret given is not the one the state in the source was "
                                                 "written with (record '" + r.key + "' does not match); nothing was "
                                                 "changed");
    }
    return {};
  }
  return {};
}

}  // namespace

Result<MigrateSummary> migrate_store(const std::filesystem::path& from, const policy::DaemonSettings& to,
                                     const std::string& secret) {
  if (to.store_backend != policy::StoreBackend::postgresql) {
    return Error::invalid_params("bad_config", "--migrate-store copies a SQLite state into the PostgreSQL database of "
                                               "the configuration: its [store] backend must be \"postgresql\"");
  }
  if (!std::filesystem::exists(from / "retention.db")) {
    return Error::not_found("no SQLite state in " + from.string() + " (no retention.db)");
  }
  auto lock = StateLock::acquire(from);  // no daemon runs on the source meanwhile
  if (!lock) return std::move(lock).error();

  // The source, opened as a daemon opens it (migrations, leftover zeroing).
  auto source_keys = vault::KeyFile::open(from / "keys");
  if (!source_keys) return std::move(source_keys).error();
  auto source_store = store::open_sqlite_store(from / "retention.db");
  if (!source_store) return std::move(source_store).error();
  vault::Vault source(**source_store, *source_keys, secret);
  RD_TRY(source.open());

  // The target: empty.
  auto target_store = store::open_postgresql_store(to.store_url);
  if (!target_store) return std::move(target_store).error();
  auto target_keys = store::open_postgresql_key_store(to.store_url, std::chrono::seconds(to.store_key_vacuum_interval_s));
  if (!target_keys) return std::move(target_keys).error();
  store::Store& target_db = **target_store;
  vault::Vault target(target_db, **target_keys, secret);
  RD_TRY(target.open());
  {
    auto counts = target_db.counts();
    if (!counts) return std::move(counts).error();
    auto head = target_db.last_audit();
    if (!head) return std::move(head).error();
    auto holds = target_db.holds();
    if (!holds) return std::move(holds).error();
    auto retired = target_db.count_retired(Instant{std::numeric_limits<std::int64_t>::min()},
                                           Instant{std::numeric_limits<std::int64_t>::max()});
    if (!retired) return std::move(retired).error();
    if (counts->active + counts->archived + counts->anonymised > 0 || *head || !holds->empty() || *retired > 0) {
      return Error::conflict("the target database already holds a state (records, holds or an audit log): "
                             "--migrate-store fills an empty one only; nothing was changed");
    }
  }

  MigrateSummary out;
  std::set<std::string> audited_keys;
  Status st = target.transaction([&]() -> Status {
    out = MigrateSummary{};
    audited_keys.clear();
    // The undo window first (a key purged, then stored again, is in both):
    // stored, then retired again as it was.
    auto retired = source.store().retired_due(Instant{std::numeric_limits<std::int64_t>::max()},
                                              std::numeric_limits<std::size_t>::max());
    if (!retired) return std::move(retired).error();
    for (const auto& row : *retired) {
      auto r = source.retired(row.record.key);
      if (!r) return std::move(r).error();
      if (!*r) continue;
      RD_TRY(target.insert((*r)->record));
      auto moved = target.retire((*r)->record.key, (*r)->record.location, (*r)->purged_at, (*r)->destroy_at);
      if (!moved) return std::move(moved).error();
      ++out.retired;
    }
    // Records, category by category, in both places.
    auto categories = source.store().counts_by_category();
    if (!categories) return std::move(categories).error();
    bool secret_checked = false;
    for (const auto& [category, counts] : *categories) {
      (void)counts;
      for (std::string after;;) {
        auto page = source.schedules(category, kPage, after);
        if (!page) return std::move(page).error();
        std::vector<vault::Record> full;
        for (const auto& r : *page) {
          auto record = source.get(r.key);
          if (!record) return std::move(record).error();
          if (!*record) continue;
          full.push_back(std::move(**record));
        }
        if (!secret_checked) {
          RD_TRY(check_source_secret(source, full));
          secret_checked = std::any_of(full.begin(), full.end(), [](const auto& r) { return r.subject.has_value(); });
        }
        for (const auto& r : full) {
          RD_TRY(target.insert(r));
          (r.state == store::RecordState::anonymised ? out.records.anonymised
           : r.state == store::RecordState::archived ? out.records.archived
                                                      : out.records.active) += 1;
        }
        if (page->size() < kPage) break;
        after = page->back().key;
      }
    }
    // Holds, with their ids (audit entries name them).
    auto holds = source.holds();
    if (!holds) return std::move(holds).error();
    for (const auto& h : *holds) {
      auto added = target.add_hold(h);
      if (!added) return std::move(added).error();
      ++out.holds;
    }
    // The audit log, entry by entry: the same seq, hashes and chain.
    for (store::StoreReader::AuditQuery q{0, std::nullopt, std::nullopt, kPage};;) {
      auto page = source.store().audit_entries(q);
      if (!page) return std::move(page).error();
      for (const auto& row : *page) {
        RD_TRY(target_db.append_audit(row));
        if (row.key) audited_keys.insert(*row.key);
        ++out.audit_entries;
        out.audit_head = row.hash;
      }
      if (page->size() < kPage) break;
      q.after_seq = page->back().seq;
    }
    // Connector jobs: the unfinished ones with their subjects, the finished
    // ones (no subject any more) for record.explain.
    std::set<std::string> copied;
    auto stats = source.store().connector_stats();
    if (!stats) return std::move(stats).error();
    for (const auto& c : *stats) {
      for (const auto state : {store::JobState::pending, store::JobState::in_flight, store::JobState::failed}) {
        for (std::int64_t after = 0;;) {
          auto page = source.jobs(c.connector, state, kPage, after);
          if (!page) return std::move(page).error();
          for (const auto& job : *page) {
            RD_TRY(target.add_job(job));
            copied.insert(job.row.id);
            ++out.jobs;
          }
          if (page->size() < kPage) break;
          after = page->back().row.audit_seq;
        }
      }
    }
    for (const auto& key : audited_keys) {
      auto jobs = source.store().jobs_of_key(key);
      if (!jobs) return std::move(jobs).error();
      for (const auto& job : *jobs) {
        if (copied.contains(job.id)) continue;
        RD_TRY(target_db.insert_job(job));
        copied.insert(job.id);
        ++out.jobs;
      }
    }
    for (const char* name : kCopiedMeta) {
      auto value = source.store().get_meta(name);
      if (!value) return std::move(value).error();
      if (!*value) continue;
      RD_TRY(target_db.set_meta(name, **value));
      ++out.meta;
    }
    return check_shared_secret(target_db, secret);
  });
  if (!st) return std::move(st).error();
  return out;
}

}  // namespace retentiond::engine
