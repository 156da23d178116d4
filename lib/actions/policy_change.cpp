#include "lib/actions/policy_change.hpp"

namespace retentiond::actions {

namespace {

constexpr const char* kAdoptedPolicy = "policy";
constexpr std::size_t kPage = 1000;

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

std::string describe(const policy::PolicyDiff& diff) {
  std::string out;
  const auto part = [&](const char* what, const std::vector<std::string>& names) {
    if (!names.empty()) out += (out.empty() ? "" : "; ") + std::string(what) + ": " + join(names);
  };
  part("changed", diff.changed);
  part("added", diff.added);
  part("removed", diff.removed);
  return out.empty() ? "no category changed" : out;
}

Result<nlohmann::json> PolicyChange::adopted() {
  auto text = m_service.store().get_meta(kAdoptedPolicy);
  if (!text) return std::move(text).error();
  if (!*text) return nlohmann::json();
  try {
    return nlohmann::json::parse(**text);
  } catch (const std::exception& e) {
    return Error::storage(std::string("the adopted policy kept in the database is damaged: ") + e.what());
  }
}

Status PolicyChange::for_each_schedule(const std::string& category,
                                       const std::function<Status(store::RecordRow&)>& visit) {
  std::string after;
  for (;;) {
    auto page = m_service.store().schedules(category, kPage, after);
    if (!page) return std::move(page).error();
    for (auto& row : *page) {
      if (auto st = visit(row); !st) return st;
    }
    if (page->size() < kPage) return {};
    after = page->back().key;
  }
}

Result<PolicyAssessment> PolicyChange::assess(const policy::Policy& candidate) {
  auto before = adopted();
  if (!before) return std::move(before).error();
  PolicyAssessment a;
  a.diff = policy::diff_policies(*before, candidate);
  for (const auto& name : a.diff.removed) {
    auto n = m_service.store().count_category(name);
    if (!n) return std::move(n).error();
    if (*n > 0) {
      Error e = Error::invalid_params(
          "bad_config", candidate.source_path + ": category '" + name + "' was removed but still holds " +
                            std::to_string(*n) + " record" + (*n == 1 ? "" : "s") +
                            "; keep it (its records are disposed of by its phases) or erase them first");
      e.data["category"] = name;
      e.data["records"] = *n;
      return e;
    }
  }
  const auto now = m_service.clock().now();
  for (const auto& name : a.diff.changed) {
    const policy::Category* category = candidate.find(name);
    auto st = for_each_schedule(name, [&](store::RecordRow& row) -> Status {
      const bool due_before = row.due && *row.due <= now;
      const auto old_due = row.due;
      const auto old_next = row.next_phase;
      reschedule_under(row, *category, candidate.daemon.fiscal_year_end);
      if (row.due != old_due || row.next_phase != old_next) ++a.rescheduled;
      if (row.due && *row.due <= now && !due_before) ++a.newly_due;
      return {};
    });
    if (!st) return std::move(st).error();
  }
  return a;
}

Status PolicyChange::adopt(std::shared_ptr<const policy::Policy> candidate, const PolicyAssessment& assessment,
                           const Actor& actor, const std::string& reason) {
  store::Store& store = m_service.store();
  Status st = store.transaction([&]() -> Status {
    for (const auto& name : assessment.diff.changed) {
      const policy::Category* category = candidate->find(name);
      auto visited = for_each_schedule(name, [&](store::RecordRow& row) -> Status {
        const auto old_due = row.due;
        const auto old_next = row.next_phase;
        reschedule_under(row, *category, candidate->daemon.fiscal_year_end);
        // The next phase can move without the due time moving (a record past
        // the end of a shortened category goes back to its purge): both are
        // the schedule.
        return row.due == old_due && row.next_phase == old_next ? Status{} : store.update_schedule(row);
      });
      if (!visited) return visited;
    }
    if (auto s = store.set_meta(kAdoptedPolicy, policy::canonical_json(*candidate).dump()); !s) return s;
    if (auto s = store.set_meta("policy_hash", candidate->hash); !s) return s;
    // The guard that protects the next change, at start-up too.
    if (auto s = store.set_meta("reload_guard", std::to_string(candidate->daemon.reload_guard)); !s) return s;
    audit::Entry entry;
    entry.at = m_service.clock().now();
    entry.action = "config.reload";
    entry.actor = actor.name;
    entry.reason = describe(assessment.diff) + "; newly due: " + std::to_string(assessment.newly_due) +
                   (reason.empty() ? "" : "; " + reason);
    entry.policy_hash = candidate->hash;
    auto appended = m_service.audit().append(entry);
    if (!appended) return std::move(appended).error();
    return {};
  });
  if (st) m_service.set_policy(std::move(candidate));
  return st;
}

}  // namespace retentiond::actions
