#pragma once
// Adopting a new policy through the reload guard (shared/spec/policy.md,
// "Reload guard"). The policy last adopted is kept in the store (meta
// "policy", its canonical JSON), so the same comparison serves a
// config.reload, a SIGHUP and a start-up with an edited file.
//
// assess() compares a candidate with the adopted policy: which categories
// changed, which were dropped while still holding records (refused), and how
// many records the candidate makes due at once that the adopted one did not
// (the guard's count). adopt() then reschedules the records of the changed
// categories, records the candidate as adopted and appends one
// `config.reload` audit entry, all in one transaction: a crash leaves either
// the old policy adopted with the old due times, or the new one with the new.
//
// Not thread-safe; used from the daemon's io_context thread.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/actions/service.hpp"

namespace retentiond::actions {

struct PolicyAssessment {
  policy::PolicyDiff diff;
  std::int64_t newly_due = 0;  // records due at once under the candidate, not under the adopted policy
  std::int64_t rescheduled = 0;  // records of changed categories whose due time moves
};

class PolicyChange {
 public:
  explicit PolicyChange(Service& service) : m_service(service) {}

  // The canonical JSON of the adopted policy; null when none was ever
  // adopted (a new state directory).
  Result<nlohmann::json> adopted();

  // Compares `candidate` with the adopted policy. Fails with invalid_params,
  // reason bad_config, when it drops a category that still holds records
  // (naming it and the count); storage_error otherwise.
  Result<PolicyAssessment> assess(const policy::Policy& candidate);

  // Makes `candidate` the service's policy (see above). `reason` goes into
  // the audit entry after the summary of the change.
  Status adopt(std::shared_ptr<const policy::Policy> candidate, const PolicyAssessment& assessment,
               const Actor& actor, const std::string& reason);

 private:
  // Visits the schedule of every record of `category`, page by page.
  Status for_each_schedule(const std::string& category, const std::function<Status(store::RecordRow&)>& visit);

  Service& m_service;
};

// "changed: a, b; added: c; removed: d" (or "no category changed").
std::string describe(const policy::PolicyDiff& diff);

}  // namespace retentiond::actions
