// Service: legal holds.

#include <algorithm>

#include "lib/actions/service.hpp"

namespace retentiond::actions {

std::vector<std::int64_t> HoldSet::covering(const store::Schedule& record) const {
  std::vector<std::int64_t> ids;
  for (std::size_t i = 0; i < holds.size(); ++i) {
    const auto& h = holds[i];
    if ((h.scope == "key" && h.target == record.key) || (h.scope == "category" && h.target == record.category) ||
        (h.scope == "subject" && record.subject_ref && i < subject_refs.size() && subject_refs[i] == *record.subject_ref)) {
      ids.push_back(h.id);
    }
  }
  return ids;
}

bool HoldSet::covers(const store::Schedule& record) const { return !covering(record).empty(); }

Result<HoldSet> Service::load_holds(vault::RecordReader& from) {
  auto holds = from.holds();
  if (!holds) return std::move(holds).error();
  HoldSet set;
  for (const auto& h : *holds) set.subject_refs.push_back(h.scope == "subject" ? from.subject_ref(h.target) : std::string());
  set.holds = std::move(*holds);
  return set;
}

Result<std::vector<vault::Hold>> Service::holds() { return m_reader.holds(); }

namespace {

// The audit entry for placing or releasing `hold`: the target goes in the
// key, category or (as an HMAC) subject field, by the hold's scope.
void target_into(audit::Entry& e, const vault::Hold& hold, const vault::RecordReader& vault) {
  if (hold.scope == "key") e.key = hold.target;
  if (hold.scope == "category") e.category = hold.target;
  if (hold.scope == "subject") e.subject_ref = vault.subject_ref(hold.target);
}

}  // namespace

Result<std::int64_t> Service::place_hold(const HoldRequest& request, const Actor& actor) {
  const auto policy = this->policy();
  if (request.scope == "category" && policy->find(request.target) == nullptr) {
    return Error::invalid_params("unknown_category", "unknown category '" + request.target + "'");
  }
  std::int64_t id = 0;
  Status st = m_vault.transaction([&]() -> Status {
    if (request.scope == "key") {
      auto record = m_vault.schedule_of(request.target);
      if (!record) return std::move(record).error();
      if (!*record) return Error::not_found("no record with key '" + request.target + "'");
    }
    const vault::Hold hold{0, request.scope, request.target, request.reason, m_clock.now(), actor.name};
    auto added = m_vault.add_hold(hold);
    if (!added) return std::move(added).error();
    id = *added;
    audit::Entry e = entry(*policy, "hold.place", actor);
    target_into(e, hold, m_vault);
    e.reason = "hold " + std::to_string(id) + ": " + request.reason;
    if (auto appended = m_audit.append(e); !appended) return std::move(appended).error();
    return {};
  });
  if (!st) return std::move(st).error();
  return id;
}

Status Service::release_hold(const ReleaseRequest& request, const Actor& actor) {
  const auto policy = this->policy();
  return m_vault.transaction([&]() -> Status {
    auto holds = m_vault.holds();
    if (!holds) return std::move(holds).error();
    const auto h = std::find_if(holds->begin(), holds->end(), [&](const vault::Hold& x) { return x.id == request.id; });
    if (h == holds->end()) return Error::not_found("no hold with id " + std::to_string(request.id));
    auto removed = m_vault.remove_hold(request.id);
    if (!removed) return std::move(removed).error();
    audit::Entry e = entry(*policy, "hold.release", actor);
    target_into(e, *h, m_vault);
    e.reason = "hold " + std::to_string(request.id) + (request.reason ? ": " + *request.reason : std::string());
    if (auto appended = m_audit.append(e); !appended) return std::move(appended).error();
    return {};
  });
}

}  // namespace retentiond::actions
