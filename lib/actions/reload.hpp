#pragma once
// Adopting a new policy through the reload guard (shared/spec/policy.md,
// "Reload guard"). The policy last adopted is kept in the store (meta
// "policy", its canonical JSON), and so is the guard that was in force when
// it was adopted (meta "reload_guard"), so the same comparison serves a
// config.reload, a SIGHUP and a start-up with an edited file.
//
// assess() compares a candidate with the adopted policy: which categories
// changed, which were dropped while still holding records (refused), and how
// many records the candidate makes due at once that the adopted one did not
// (the guard's count). adopt() then reschedules the records of the changed
// categories, records the candidate as adopted and appends one
// `config.reload` audit entry, all in one transaction: a crash leaves either
// the old policy adopted with the old due times, or the new one with the new.
// reload() is the whole sequence: assess, the guard, adopt.
//
// The guard compared with is the one stored with the adopted policy, not
// the candidate's: an edit that shortens retention and raises the guard in
// the same change is still held up by the guard in force (docs/operations.md).
//
// Runs on the writer thread (it reads and writes through the Vault).

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/actions/service.hpp"

namespace retentiond::actions {

// How a changed category's records move under a candidate: their next
// disposal (the due time of the next phase) earlier, later or not at all (a
// record with no due time counts as due never), and how many are due at once.
struct CategoryShift {
  std::string category;
  std::int64_t earlier = 0;
  std::int64_t later = 0;
  std::int64_t unchanged = 0;
  std::int64_t newly_due = 0;
};

struct PolicyAssessment {
  policy::PolicyDiff diff;
  std::int64_t newly_due = 0;    // records due at once under the candidate, not under the adopted policy
  std::int64_t rescheduled = 0;  // records of changed categories whose schedule moves
  std::vector<CategoryShift> shifts;  // one per changed, added and removed category, by name
};

// The canonical JSON of the adopted policy in `store`; null when none was
// ever adopted.
Result<nlohmann::json> adopted_policy(store::StoreReader& store);

// Compares `candidate` with the policy adopted in `reader`'s store, as of
// `now` (PolicyChange::assess; plan with a candidate policy runs it on the
// slow reader, inside one snapshot).
Result<PolicyAssessment> assess_policy(vault::RecordReader& reader, const policy::Policy& candidate, calendar::Instant now);

// What a reload did.
struct ReloadResult {
  std::string hash;
  std::vector<std::string> changed_categories;  // changed, added and removed, sorted
  PolicyAssessment assessment;
  std::int64_t guard = 0;  // the guard it was held to
};

class PolicyChange {
 public:
  // `vault` and `audit` are the writer's, as the service's own.
  PolicyChange(Service& service, vault::Vault& vault, audit::AuditLog& audit)
      : m_service(service), m_vault(vault), m_audit(audit) {}

  // The canonical JSON of the adopted policy; null when none was ever
  // adopted (a new state directory).
  Result<nlohmann::json> adopted();
  // The guard in force: the one stored with the adopted policy, or
  // `fallback` (the file's) when none is stored.
  Result<std::int64_t> guard(std::int64_t fallback);

  // Compares `candidate` with the adopted policy. Fails with invalid_params,
  // reason bad_config, when it drops a category that still holds records
  // (naming it and the count); storage_error otherwise.
  Result<PolicyAssessment> assess(const policy::Policy& candidate);

  // Makes `candidate` the service's policy (see above). `reason` goes into
  // the audit entry after the summary of the change.
  Status adopt(std::shared_ptr<const policy::Policy> candidate, const PolicyAssessment& assessment,
               const Actor& actor, const std::string& reason);

  // The first policy of a new state directory: adopted without an audit
  // entry (nothing changed).
  Status adopt_first(const policy::Policy& policy);

  // assess, then adopt unless the guard trips: confirmation_required (with
  // newly_due, guard and changed_categories in data) when the candidate
  // makes more records due at once than the guard in force and `confirm` is
  // false; nothing is changed then. `reason` goes into the audit entry.
  Result<ReloadResult> reload(std::shared_ptr<const policy::Policy> candidate, bool confirm, const Actor& actor,
                              const std::string& reason);

 private:
  Service& m_service;
  vault::Vault& m_vault;
  audit::AuditLog& m_audit;
};

// The reload guard in force: the one stored with the adopted policy, or
// `fallback` when none is stored (PolicyChange::guard; the clock guard and
// plan read it too).
Result<std::int64_t> guard_in_force(store::StoreReader& store, std::int64_t fallback);

// "changed: a, b; added: c; removed: d" (or "no category changed").
std::string describe(const policy::PolicyDiff& diff);

}  // namespace retentiond::actions
