// Service: the undo window ([daemon] purge_grace; docs/operations.md, "Undo
// window"). With a grace period, a purge by a phase or an erasure takes
// effect at once for every reader (the record leaves the records), but its
// row and key are kept, retired, until purged_at + purge_grace: until then
// record.restore brings it back as it was; then the scheduler destroys it
// (row deleted, key zeroed) with a `destroy` audit entry. Without one (the
// default), a purge destroys the key in its own transaction, as before.

#include "lib/actions/service.hpp"

namespace retentiond::actions {

using calendar::Instant;

namespace {

// The `destroy` entry of a retired record.
audit::Entry destroy_entry(audit::Entry e, const store::RetiredRecord& r, const std::string& why) {
  e.key = r.record.key;
  e.category = r.record.category;
  e.subject_ref = r.record.subject_ref;
  e.reason = why + " (purged " + calendar::format_instant(r.purged_at) + ", restorable until " +
             calendar::format_instant(r.destroy_at) + ")";
  return e;
}

}  // namespace

Status Service::dispose(const Record& record, const policy::Policy& policy, Instant now, const Actor& actor) {
  const Instant destroy_at = calendar::add(now, policy.daemon.purge_grace);
  // A record of the same key purged earlier and still in its window (the
  // key was stored again since): one retired record per key, and none
  // older than the last purge, so the earlier one is destroyed now.
  auto earlier = m_vault.store().retired(record.key);
  if (!earlier) return std::move(earlier).error();
  if (*earlier) {
    auto destroyed = m_vault.destroy_retired(record.key);
    if (!destroyed) return std::move(destroyed).error();
    audit::Entry e = destroy_entry(entry(policy, "destroy", actor), **earlier,
                                   "undo window cut short: a later record of the same key was purged");
    e.at = now;
    if (auto appended = m_audit.append(e); !appended) return std::move(appended).error();
  }
  if (destroy_at <= now) {
    auto removed = m_vault.remove(record.key, record.location);
    if (!removed) return std::move(removed).error();
    return {};
  }
  auto retired = m_vault.retire(record.key, record.location, now, destroy_at);
  if (!retired) return std::move(retired).error();
  if (!*retired) return Error::internal("record '" + record.key + "' vanished before its purge");
  return {};
}

Result<std::int64_t> Service::destroy_batch(std::size_t max_records, const Actor& actor) {
  const auto policy = this->policy();
  const Instant now = m_clock.now();
  std::int64_t destroyed = 0;
  Status st = m_vault.transaction([&]() -> Status {
    destroyed = 0;
    auto due = m_vault.store().retired_due(now, max_records);
    if (!due) return std::move(due).error();
    for (const auto& r : *due) {
      auto gone = m_vault.destroy_retired(r.record.key);
      if (!gone) return std::move(gone).error();
      audit::Entry e = destroy_entry(entry(*policy, "destroy", actor), r, "undo window ended");
      e.at = now;
      if (auto appended = m_audit.append(e); !appended) return std::move(appended).error();
      ++destroyed;
    }
    return {};
  });
  if (!st) return std::move(st).error();
  return destroyed;
}

Result<Record> Service::restore(const RestoreRequest& request, const Actor& actor) {
  const auto policy = this->policy();
  const Instant now = m_clock.now();
  Record restored;
  Status st = m_vault.transaction([&]() -> Status {
    auto retired = m_vault.store().retired(request.key);
    if (!retired) return std::move(retired).error();
    if (!*retired || now >= (*retired)->destroy_at) {
      return Error::not_found("no purged record with key '" + request.key +
                              "' within the undo window (daemon.purge_grace); nothing was changed");
    }
    const policy::Category* category = policy->find((*retired)->record.category);
    if (category == nullptr) {
      // Back, it would never be disposed of (a stuck record).
      return Error::invalid_params("unknown_category", "the category '" + (*retired)->record.category +
                                                           "' of record '" + request.key +
                                                           "' is no longer in the policy; nothing was changed");
    }
    auto back = m_vault.unretire(request.key);
    if (!back) return std::move(back).error();
    auto record = m_vault.schedule_of(request.key);
    if (!record) return std::move(record).error();
    if (!*record) return Error::internal("record '" + request.key + "' vanished during its restore");
    restored = std::move(**record);
    // Its next phase under the policy in force (a corrected policy moves it
    // later); one that is due again waits for the next check, as any
    // overdue record stored.
    const auto due = restored.due;
    const auto next = restored.next_phase;
    reschedule_under(restored, *category, policy->daemon.fiscal_year_end);
    if (restored.due != due || restored.next_phase != next) {
      if (auto s = m_vault.update_schedule(restored); !s) return s;
    }
    audit::Entry e = entry(*policy, "restore", actor);
    e.key = restored.key;
    e.category = restored.category;
    e.subject_ref = restored.subject_ref;
    e.reason = request.reason + " (purged " + calendar::format_instant((*retired)->purged_at) + ")";
    if (auto appended = m_audit.append(e); !appended) return std::move(appended).error();
    return {};
  });
  if (!st) return std::move(st).error();
  return restored;
}

}  // namespace retentiond::actions
