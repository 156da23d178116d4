// Service: the plan — what falls due before a date, by month, category and
// action, walked with the same phase walker as a sweep.

#include <map>
#include <tuple>

#include "lib/actions/service.hpp"

namespace retentiond::actions {

using calendar::Instant;
using policy::Action;

namespace {
constexpr std::size_t kPage = 1000;
}

Result<Plan> Service::plan(const PlanRequest& request) {
  const auto policy = this->policy();
  Plan plan;
  plan.until = request.until;
  plan.from = request.from ? *request.from : m_clock.now();
  if (plan.until < plan.from) return Error::invalid_params("bad_time", "'until' is before 'from'");
  std::map<std::tuple<std::string, std::string, int>, std::int64_t> counts;
  const auto month_of = [](Instant t) { return calendar::format_instant(t).substr(0, 7); };
  Status st = m_slow.read([&]() -> Status {
    // Run again from the start when a key changed under the snapshot.
    counts.clear();
    plan.archive = plan.anonymise = plan.purge = plan.waiting = plan.held = 0;
    auto holds = load_holds(m_slow);
    if (!holds) return std::move(holds).error();
    std::optional<store::StoreReader::DueCursor> cursor;
    for (;;) {
      // "before until": due <= until - 1 s.
      auto page = m_slow.due(Instant{plan.until.seconds - 1}, kPage, cursor);
      if (!page) return std::move(page).error();
      if (page->empty()) break;
      cursor = store::StoreReader::DueCursor{*page->back().due, page->back().key};
      for (const auto& record : *page) {
        if (holds->covers(record)) {
          ++plan.held;
          continue;
        }
        const policy::Category* category = policy->find(record.category);
        if (category == nullptr) continue;
        for (const auto& run : walk_phases(record, *category, policy->daemon.fiscal_year_end, plan.from, plan.until)) {
          ++counts[{month_of(run.at), record.category, static_cast<int>(run.action)}];
          (run.action == Action::archive ? plan.archive : run.action == Action::anonymise ? plan.anonymise : plan.purge) += 1;
        }
      }
    }
    std::string after;
    for (;;) {
      auto page = m_slow.undue(kPage, after);
      if (!page) return std::move(page).error();
      if (page->empty()) break;
      after = page->back().key;
      for (const auto& record : *page) {
        const policy::Category* category = policy->find(record.category);
        const bool has_next = category != nullptr && static_cast<std::size_t>(record.next_phase) < category->phases.size();
        if (has_next && !holds->covers(record)) ++plan.waiting;
      }
    }
    return {};
  });
  if (!st) return std::move(st).error();
  for (const auto& [k, n] : counts) {
    plan.actions.push_back({std::get<0>(k), std::get<1>(k), static_cast<Action>(std::get<2>(k)), n});
  }
  return plan;
}

}  // namespace retentiond::actions
