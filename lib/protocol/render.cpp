#include "lib/protocol/render.hpp"

#include <algorithm>

namespace retentiond::protocol::render {

using nlohmann::json;

namespace {

template <typename T>
json opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

}  // namespace

json instant_or_null(const std::optional<calendar::Instant>& t) {
  return t ? json(calendar::format_instant(*t)) : json(nullptr);
}

json next(const std::optional<actions::PhaseSchedule>& next) {
  if (!next) return nullptr;
  return {{"phase", next->index},
          {"action", policy::to_string(next->action)},
          {"due", instant_or_null(next->due)},
          {"waiting_for", next->missing}};
}

json record(const vault::Record& r, const std::optional<actions::PhaseSchedule>& next_phase) {
  json dates = json::object();
  for (const auto& [name, t] : r.dates) dates[name] = calendar::format_instant(t);
  return {{"key", r.key}, {"subject", opt(r.subject)}, {"category", r.category}, {"state", store::to_string(r.state)},
          {"fields", r.fields}, {"dates", dates}, {"next", next(next_phase)}};
}

json explanation(const actions::Explanation& e) {
  json phases = json::array();
  for (const auto& p : e.phases) {
    phases.push_back({{"index", p.index}, {"action", policy::to_string(p.action)}, {"at", p.at},
                      {"due", instant_or_null(p.due)}, {"missing", p.missing}, {"done", p.done},
                      {"done_at", instant_or_null(p.done_at)}, {"runs_at", instant_or_null(p.runs_at)},
                      {"overdue", p.overdue}});
  }
  return {{"key", e.record.key}, {"category", e.record.category}, {"state", store::to_string(e.record.state)},
          {"held", !e.holds.empty()}, {"holds", e.holds}, {"phases", phases}, {"next", next(e.next)}};
}

json disposal(const actions::Disposal& d) {
  json out = {{"key", d.key}, {"state", "purged"}, {"purged_at", calendar::format_instant(d.purged_at)},
              {"audit_seq", d.audit_seq}};
  if (d.restorable_until) out["restorable_until"] = calendar::format_instant(*d.restorable_until);
  return out;
}

json erasure(const actions::ErasureReport& report, bool dry_run) {
  json erased = json::array(), erased_records = json::array(), retained = json::array();
  for (const auto& e : report.erased) {
    erased.push_back(e.key);
    erased_records.push_back({{"key", e.key}, {"category", e.category}});
  }
  for (const auto& r : report.retained) {
    retained.push_back({{"key", r.key}, {"category", r.category}, {"reason", r.reason}, {"until", instant_or_null(r.until)}});
  }
  json out = {{"erased", erased}, {"erased_records", erased_records}, {"retained", retained}};
  if (dry_run) out["dry_run"] = true;
  return out;
}

json receipt(const actions::ErasureReport& report) {
  json erased = json::array(), retained = json::array();
  for (const auto& e : report.erased) erased.push_back({{"key", e.key}, {"category", e.category}, {"audit_seq", e.audit_seq}});
  for (const auto& r : report.retained) {
    retained.push_back({{"key", r.key}, {"category", r.category}, {"reason", r.reason}, {"until", instant_or_null(r.until)}});
  }
  return {{"subject_ref", report.subject_ref ? json(*report.subject_ref) : json(nullptr)},
          {"erased", erased},
          {"retained", retained},
          {"at", calendar::format_instant(report.at)},
          {"policy_hash", report.policy_hash},
          {"audit_head", {{"seq", report.head_seq}, {"hash", report.head_hash}}}};
}

json plan(const actions::Plan& plan) {
  json actions = json::array();
  for (const auto& e : plan.actions) {
    actions.push_back({{"month", e.month}, {"category", e.category}, {"action", policy::to_string(e.action)}, {"count", e.count}});
  }
  json out = {{"from", calendar::format_instant(plan.from)},
              {"until", calendar::format_instant(plan.until)},
              {"actions", actions},
              {"totals", {{"archive", plan.archive}, {"anonymise", plan.anonymise}, {"purge", plan.purge}}},
              {"waiting", plan.waiting},
              {"held", plan.held}};
  if (plan.purge_grace) out["purge_grace"] = calendar::format_duration(*plan.purge_grace);
  if (const auto& c = plan.candidate) {
    out["candidate"] = {{"hash", c->hash}, {"changed_categories", c->changed_categories}, {"newly_due", c->newly_due},
                        {"guard", c->guard}, {"guard_trips", c->guard_trips}};
    json diff = json::array();
    for (const auto& s : plan.diff) {
      diff.push_back({{"category", s.category}, {"earlier", s.earlier}, {"later", s.later}, {"unchanged", s.unchanged},
                      {"newly_due", s.newly_due}});
    }
    out["diff"] = std::move(diff);
  }
  return out;
}

json audit_rows(const std::vector<store::AuditRow>& rows) {
  json entries = json::array();
  for (const auto& r : rows) {
    entries.push_back({{"seq", r.seq}, {"at", calendar::format_instant(r.at)}, {"action", r.action}, {"key", opt(r.key)},
                       {"category", opt(r.category)}, {"phase", opt(r.phase)}, {"subject_ref", opt(r.subject_ref)},
                       {"actor", r.actor}, {"reason", opt(r.reason)}, {"policy_hash", r.policy_hash}, {"hash", r.hash}});
  }
  return entries;
}

json holds(const std::vector<vault::Hold>& holds) {
  json out = json::array();
  for (const auto& h : holds) {
    out.push_back({{"id", h.id}, {"scope", h.scope}, {"target", h.target}, {"reason", h.reason},
                   {"placed_at", calendar::format_instant(h.placed_at)}, {"placed_by", h.placed_by}});
  }
  return out;
}

json policy(const policy::Policy& policy) {
  json categories = json::array();
  for (const auto& c : policy.categories) {
    json phases = json::array();
    for (const auto& p : c.phases) phases.push_back({{"action", policy::to_string(p.action)}, {"at", p.at_text}});
    json anonymise = nullptr;
    if (c.has_anonymise) {
      anonymise = json::object();
      for (const auto& [field, strategy] : c.anonymise) anonymise[field] = policy::to_string(strategy);
    }
    categories.push_back({{"name", c.name},
                          {"purpose", c.purpose},
                          {"legal_basis", c.legal_basis},
                          {"source", c.source.empty() ? json(nullptr) : json(c.source)},
                          {"erasable", c.erasable},
                          {"dates", c.declares_dates ? json(c.dates) : json(nullptr)},
                          {"phases", phases},
                          {"anonymise", anonymise}});
  }
  return {{"hash", policy.hash},
          {"fiscal_year_end", calendar::format_month_day(policy.daemon.fiscal_year_end)},
          {"categories", categories}};
}

json sweep_counts(const actions::SweepCounts& c) {
  return {{"archived", c.archived}, {"anonymised", c.anonymised}, {"purged", c.purged}, {"held", c.held}};
}

std::string policy_table(const policy::Policy& policy, const std::string& format) {
  using policy::Action;
  // With an undo window, a purge destroys the data only at its end: a
  // privacy policy must say so.
  const bool grace = calendar::add(calendar::Instant{0}, policy.daemon.purge_grace).seconds > 0;
  const std::string destroyed = grace ? ", then destroyed " + calendar::format_duration(policy.daemon.purge_grace) + " later"
                                      : std::string();
  const auto participle = [&](Action a) {
    return a == Action::archive ? std::string("archived")
           : a == Action::anonymise ? std::string("anonymised")
                                    : "purged" + destroyed;
  };
  const auto retention = [&](const policy::Category& c) {
    if (c.phases.empty()) return "kept until erased on request" + destroyed;
    std::string out;
    for (const auto& phase : c.phases) {
      std::string when = phase.at.describe();
      if (when.find(" after ") == std::string::npos && when.find(" before ") == std::string::npos) when = "at " + when;
      out += (out.empty() ? "" : "; ") + when + ", then " + participle(phase.action);
    }
    return out;
  };
  const auto basis = [](std::string b) {
    std::replace(b.begin(), b.end(), '_', ' ');
    return b;
  };
  std::string out;
  if (format == "markdown") {
    const auto cell = [](const std::string& s) {
      std::string o;
      for (char ch : s) o += ch == '|' ? std::string("\\|") : std::string(1, ch);
      return o;
    };
    out = "| Category | Purpose | Legal basis | Retention |\n|---|---|---|---|\n";
    for (const auto& c : policy.categories) {
      out += "| " + cell(c.name) + " | " + cell(c.purpose) + " | " + basis(c.legal_basis) + " | " + cell(retention(c)) + " |\n";
    }
  } else {
    for (const auto& c : policy.categories) {
      out += c.name + "\n  purpose:     " + c.purpose + "\n  legal basis: " + basis(c.legal_basis) +
             "\n  retention:   " + retention(c) + "\n\n";
    }
  }
  return out;
}

json jobs_of_record(const std::vector<store::StoredJob>& jobs) {
  json out = json::array();
  for (const auto& j : jobs) {
    out.push_back({{"connector", j.connector},
                   {"job", j.id},
                   {"action", j.action},
                   {"phase", j.phase ? json(*j.phase) : json(nullptr)},
                   {"decided_at", calendar::format_instant(j.decided_at)},
                   {"audit_seq", j.audit_seq},
                   {"state", std::string(store::to_string(j.state))},
                   {"attempts", j.attempts},
                   {"last_error", j.last_error ? json(*j.last_error) : json(nullptr)}});
  }
  return out;
}

}  // namespace retentiond::protocol::render
