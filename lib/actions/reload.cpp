#include "lib/actions/reload.hpp"

#include <algorithm>

namespace retentiond::actions {

namespace {

constexpr const char* kAdoptedPolicy = "policy";
constexpr const char* kAdoptedGuard = "reload_guard";
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

namespace {

// Visits the schedule of every record of `category`, page by page.
Status for_each_schedule(vault::RecordReader& reader, const std::string& category,
                         const std::function<Status(Record&)>& visit) {
  std::string after;
  for (;;) {
    auto page = reader.schedules(category, kPage, after);
    if (!page) return std::move(page).error();
    for (auto& record : *page) {
      if (auto st = visit(record); !st) return st;
    }
    if (page->size() < kPage) return {};
    after = page->back().key;
  }
}

}  // namespace

Result<nlohmann::json> PolicyChange::adopted() { return adopted_policy(m_vault.store()); }

Result<nlohmann::json> adopted_policy(store::StoreReader& store) {
  auto text = store.get_meta(kAdoptedPolicy);
  if (!text) return std::move(text).error();
  if (!*text) return nlohmann::json();
  try {
    return nlohmann::json::parse(**text);
  } catch (const std::exception& e) {
    return Error::storage(std::string("the adopted policy kept in the database is damaged: ") + e.what());
  }
}

Result<std::int64_t> PolicyChange::guard(std::int64_t fallback) { return guard_in_force(m_vault.store(), fallback); }

Result<std::int64_t> guard_in_force(store::StoreReader& store, std::int64_t fallback) {
  auto kept = store.get_meta(kAdoptedGuard);
  if (!kept) return std::move(kept).error();
  if (!*kept) return fallback;
  try {
    return std::stoll(**kept);
  } catch (const std::exception&) {
    return Error::storage("the reload guard kept in the database is damaged: '" + **kept + "'");
  }
}

Result<PolicyAssessment> PolicyChange::assess(const policy::Policy& candidate) {
  return assess_policy(m_vault, candidate, m_service.clock().now());
}

Result<PolicyAssessment> assess_policy(vault::RecordReader& reader, const policy::Policy& candidate, calendar::Instant now) {
  PolicyAssessment a;
  Status st = reader.read([&]() -> Status {
    a = PolicyAssessment{};
    auto before = adopted_policy(reader.store());
    if (!before) return std::move(before).error();
    a.diff = policy::diff_policies(*before, candidate);
    for (const auto& name : a.diff.removed) {
      auto n = reader.store().count_category(name);
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
    // A connector with unfinished jobs cannot go: its jobs (and the
    // subjects they hold) would be out of reach of every method.
    auto stats = reader.store().connector_stats();
    if (!stats) return std::move(stats).error();
    for (const auto& c : *stats) {
      const std::int64_t open = c.pending + c.in_flight + c.failed;
      if (open == 0 || candidate.find_connector(c.connector) != nullptr) continue;
      Error e = Error::invalid_params(
          "bad_config", candidate.source_path + ": connector '" + c.connector + "' was removed but still has " +
                            std::to_string(open) + " unfinished job" + (open == 1 ? "" : "s") +
                            "; keep it until they are done, or discard them first (connector.discard)");
      e.data["connector"] = c.connector;
      e.data["jobs"] = open;
      return e;
    }
    for (const auto& name : a.diff.changed) {
      const policy::Category* category = candidate.find(name);
      CategoryShift shift{name};
      auto visited = for_each_schedule(reader, name, [&](Record& record) -> Status {
        const bool due_before = record.due && *record.due <= now;
        const auto old_due = record.due;
        const auto old_next = record.next_phase;
        reschedule_under(record, *category, candidate.daemon.fiscal_year_end);
        if (record.due != old_due || record.next_phase != old_next) ++a.rescheduled;
        // No due time is "never": later than any time.
        const auto never = calendar::kMaxInstant.seconds + 1;
        const auto before_s = old_due ? old_due->seconds : never;
        const auto after_s = record.due ? record.due->seconds : never;
        ++(after_s < before_s ? shift.earlier : after_s > before_s ? shift.later : shift.unchanged);
        if (record.due && *record.due <= now && !due_before) {
          ++a.newly_due;
          ++shift.newly_due;
        }
        return {};
      });
      if (!visited) return visited;
      a.shifts.push_back(std::move(shift));
    }
    // Added categories hold no record yet; removed ones none any more.
    for (const auto* names : {&a.diff.added, &a.diff.removed}) {
      for (const auto& name : *names) a.shifts.push_back(CategoryShift{name});
    }
    std::sort(a.shifts.begin(), a.shifts.end(),
              [](const CategoryShift& x, const CategoryShift& y) { return x.category < y.category; });
    return {};
  });
  if (!st) return std::move(st).error();
  return a;
}

Status PolicyChange::adopt(std::shared_ptr<const policy::Policy> candidate, const PolicyAssessment& assessment,
                           const Actor& actor, const std::string& reason) {
  vault::Vault& vault = m_vault;
  Status st = vault.transaction([&]() -> Status {
    for (const auto& name : assessment.diff.changed) {
      const policy::Category* category = candidate->find(name);
      auto visited = for_each_schedule(vault, name, [&](Record& record) -> Status {
        const auto old_due = record.due;
        const auto old_next = record.next_phase;
        reschedule_under(record, *category, candidate->daemon.fiscal_year_end);
        // The next phase can move without the due time moving (a record past
        // the end of a shortened category goes back to its purge): both are
        // the schedule.
        return record.due == old_due && record.next_phase == old_next ? Status{} : vault.update_schedule(record);
      });
      if (!visited) return visited;
    }
    if (auto s = vault.store().set_meta(kAdoptedPolicy, policy::canonical_json(*candidate).dump()); !s) return s;
    if (auto s = vault.store().set_meta("policy_hash", candidate->hash); !s) return s;
    // The guard that protects the next change, at start-up too.
    if (auto s = vault.store().set_meta(kAdoptedGuard, std::to_string(candidate->daemon.reload_guard)); !s) return s;
    audit::Entry e;
    e.at = m_service.clock().now();
    e.action = "config.reload";
    e.actor = actor.name;
    e.reason = describe(assessment.diff) + "; newly due: " + std::to_string(assessment.newly_due) +
               (reason.empty() ? "" : "; " + reason);
    e.policy_hash = candidate->hash;
    auto appended = m_audit.append(e);
    if (!appended) return std::move(appended).error();
    return {};
  });
  if (st) m_service.set_policy(std::move(candidate));
  return st;
}

Status PolicyChange::adopt_first(const policy::Policy& policy) {
  vault::Vault& vault = m_vault;
  return vault.transaction([&]() -> Status {
    if (auto st = vault.store().set_meta(kAdoptedPolicy, policy::canonical_json(policy).dump()); !st) return st;
    if (auto st = vault.store().set_meta(kAdoptedGuard, std::to_string(policy.daemon.reload_guard)); !st) return st;
    return vault.store().set_meta("policy_hash", policy.hash);
  });
}

Result<ReloadResult> PolicyChange::reload(std::shared_ptr<const policy::Policy> candidate, bool confirm,
                                          const Actor& actor, const std::string& reason) {
  auto guard = this->guard(m_service.policy()->daemon.reload_guard);
  if (!guard) return std::move(guard).error();
  auto assessment = assess(*candidate);
  if (!assessment) return std::move(assessment).error();
  ReloadResult out;
  out.hash = candidate->hash;
  out.guard = *guard;
  out.assessment = *assessment;
  for (const auto* names : {&assessment->diff.changed, &assessment->diff.added, &assessment->diff.removed}) {
    out.changed_categories.insert(out.changed_categories.end(), names->begin(), names->end());
  }
  std::sort(out.changed_categories.begin(), out.changed_categories.end());
  if (assessment->newly_due > *guard && !confirm) {
    Error e{ErrorCode::confirmation_required, "confirmation_required",
            "the new policy makes " + std::to_string(assessment->newly_due) +
                " records due at once, more than daemon.reload_guard (" + std::to_string(*guard) +
                "); nothing was changed. Call config.reload with confirm to accept it",
            nlohmann::json::object()};
    e.data = {{"newly_due", assessment->newly_due}, {"guard", *guard}, {"changed_categories", out.changed_categories}};
    return e;
  }
  if (auto st = adopt(std::move(candidate), *assessment, actor, reason); !st) {
    return std::move(st).error();
  }
  return out;
}

}  // namespace retentiond::actions
