// Service: the plan — what falls due before a date, by month, category and
// action, walked with the same phase walker as a sweep.

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <tuple>

#include "lib/actions/reload.hpp"
#include "lib/actions/service.hpp"

namespace retentiond::actions {

using calendar::Instant;
using policy::Action;

namespace {
constexpr std::size_t kPage = 1000;
}

namespace {

// The candidate policy file, loaded and validated as config.reload would.
// A policy file is small; anything else at that path (a FIFO, a device, a
// huge file) is refused before it is opened.
constexpr std::uintmax_t kMaxCandidateBytes = 16 * 1024 * 1024;

Result<std::shared_ptr<const policy::Policy>> load_candidate(const std::string& path) {
  const auto refuse = [&](const std::string& why) {
    Error e = Error::invalid_params("bad_config", path + ": " + why);
    e.data["policy"] = path;
    return e;
  };
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) return refuse("cannot read the candidate policy: no such file");
  if (!std::filesystem::is_regular_file(status)) return refuse("the candidate policy is not a regular file");
  if (std::filesystem::file_size(path, ec) > kMaxCandidateBytes || ec) {
    return refuse("the candidate policy is larger than 16 MiB");
  }
  auto loaded = policy::load_policy_file(path);
  if (!loaded.ok()) {
    std::string message = loaded.first_error();
    const auto errors = std::count_if(loaded.diagnostics.begin(), loaded.diagnostics.end(), [](const auto& d) {
      return d.severity == policy::Diagnostic::Severity::error;
    });
    if (errors > 1) message += " (and " + std::to_string(errors - 1) + " more; run retentiond --check on it)";
    Error e = Error::invalid_params("bad_config", message);
    e.data["policy"] = path;
    return e;
  }
  return std::shared_ptr<const policy::Policy>(std::make_shared<policy::Policy>(*loaded.policy));
}

}  // namespace

Result<Plan> Service::plan(const PlanRequest& request) {
  Plan plan;
  plan.until = request.until;
  plan.from = request.from ? *request.from : m_clock.now();
  if (plan.until < plan.from) return Error::invalid_params("bad_time", "'until' is before 'from'");
  auto policy = this->policy();
  if (request.policy) {
    auto candidate = load_candidate(*request.policy);
    if (!candidate) return std::move(candidate).error();
    // The candidate's dates are those it would adopt: its own fiscal year end.
    policy = *candidate;
    Status st = m_slow.read([&]() -> Status {
      auto assessment = assess_policy(m_slow, *policy, m_clock.now());
      if (!assessment) return std::move(assessment).error();
      auto guard = guard_in_force(m_slow.store(), this->policy()->daemon.reload_guard);
      if (!guard) return std::move(guard).error();
      Plan::Candidate c;
      c.hash = policy->hash;
      for (const auto* names : {&assessment->diff.changed, &assessment->diff.added, &assessment->diff.removed}) {
        c.changed_categories.insert(c.changed_categories.end(), names->begin(), names->end());
      }
      std::sort(c.changed_categories.begin(), c.changed_categories.end());
      c.newly_due = assessment->newly_due;
      c.guard = *guard;
      c.guard_trips = assessment->newly_due > *guard;
      plan.candidate = std::move(c);
      plan.diff.clear();
      for (const auto& s : assessment->shifts) {
        plan.diff.push_back(Plan::Shift{s.category, s.earlier, s.later, s.unchanged, s.newly_due});
      }
      // The candidate's actions, from the same snapshot, its changed
      // categories rescheduled under it.
      return plan_under(*policy, {assessment->diff.changed.begin(), assessment->diff.changed.end()}, plan);
    });
    if (!st) return std::move(st).error();
    return plan;
  }
  if (auto st = plan_under(*policy, {}, plan); !st) return std::move(st).error();
  return plan;
}

Status Service::plan_under(const policy::Policy& policy, const std::set<std::string>& rescheduled, Plan& plan) {
  plan.purge_grace.reset();
  if (calendar::add(Instant{0}, policy.daemon.purge_grace).seconds > 0) plan.purge_grace = policy.daemon.purge_grace;
  std::map<std::tuple<std::string, std::string, int>, std::int64_t> counts;
  const auto month_of = [](Instant t) { return calendar::format_instant(t).substr(0, 7); };
  Status st = m_slow.read([&]() -> Status {
    // Run again from the start when a key changed under the snapshot.
    counts.clear();
    plan.archive = plan.anonymise = plan.purge = plan.waiting = plan.held = 0;
    auto holds = load_holds(m_slow);
    if (!holds) return std::move(holds).error();
    // A record with a phase due before `until`, and one without a due time.
    const auto due = [&](const store::Schedule& record, const std::string& category_name) {
      if (holds->covers(record)) {
        ++plan.held;
        return;
      }
      const policy::Category* category = policy.find(category_name);
      if (category == nullptr) return;
      for (const auto& run : walk_phases(record, *category, policy.daemon.fiscal_year_end, plan.from, plan.until)) {
        ++counts[{month_of(run.at), category_name, static_cast<int>(run.action)}];
        (run.action == Action::archive ? plan.archive : run.action == Action::anonymise ? plan.anonymise : plan.purge) += 1;
      }
    };
    const auto undue = [&](const store::Schedule& record, const std::string& category_name) {
      const policy::Category* category = policy.find(category_name);
      const bool has_next = category != nullptr && static_cast<std::size_t>(record.next_phase) < category->phases.size();
      if (has_next && !holds->covers(record)) ++plan.waiting;
    };
    // The stored due times: an index range, never a scan...
    std::optional<store::StoreReader::DueCursor> cursor;
    for (;;) {
      // "before until": due <= until - 1 s.
      auto page = m_slow.due(Instant{plan.until.seconds - 1}, kPage, cursor);
      if (!page) return std::move(page).error();
      if (page->empty()) break;
      cursor = store::StoreReader::DueCursor{*page->back().due, page->back().key};
      for (const auto& record : *page) {
        if (!rescheduled.contains(record.category)) due(record, record.category);
      }
    }
    std::string after;
    for (;;) {
      auto page = m_slow.undue(kPage, after);
      if (!page) return std::move(page).error();
      if (page->empty()) break;
      after = page->back().key;
      for (const auto& record : *page) {
        if (!rescheduled.contains(record.category)) undue(record, record.category);
      }
    }
    // ...except for the categories whose stored schedules are not this
    // policy's (a candidate's changed categories): each record rescheduled
    // under it, as adopting it would.
    for (const auto& name : rescheduled) {
      const policy::Category* category = policy.find(name);
      if (category == nullptr) continue;  // removed: it holds no record
      std::string from;
      for (;;) {
        auto page = m_slow.schedules(name, kPage, from);
        if (!page) return std::move(page).error();
        for (auto& record : *page) {
          reschedule_under(record, *category, policy.daemon.fiscal_year_end);
          if (record.due && *record.due < plan.until) due(record, name);
          else if (!record.due) undue(record, name);
        }
        if (page->size() < kPage) break;
        from = page->back().key;
      }
    }
    return {};
  });
  if (!st) return st;
  plan.actions.clear();
  for (const auto& [k, n] : counts) {
    plan.actions.push_back({std::get<0>(k), std::get<1>(k), static_cast<Action>(std::get<2>(k)), n});
  }
  return {};
}

}  // namespace retentiond::actions
