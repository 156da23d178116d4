// Service: records — put, put_many, events, get, explain and schedules.

#include <algorithm>
#include <set>

#include "lib/actions/service.hpp"

namespace retentiond::actions {

using calendar::Instant;
using store::RecordState;

namespace {

Error bad(std::string reason, std::string message) {
  return Error::invalid_params(std::move(reason), std::move(message));
}

std::string due_text(const std::optional<Instant>& due) {
  return due ? calendar::format_instant(*due) : std::string("none (waiting for a date, or no phase left)");
}

// Levenshtein distance, for "did you mean" (names are short).
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// "did you mean 'left'? " or "", then what the policy names.
std::string date_suggestion(const std::string& name, const std::vector<std::string>& known) {
  std::string best;
  std::size_t best_distance = 3;  // at most two edits away
  for (const auto& k : known) {
    const std::size_t d = edit_distance(name, k);
    if (d < best_distance) {
      best_distance = d;
      best = k;
    }
  }
  std::string list;
  for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
  return (best.empty() ? std::string() : "did you mean '" + best + "'? ") + "the policy names: " + list;
}

Error with_index(Error e, std::size_t i) {
  e.message = "records[" + std::to_string(i) + "]: " + e.message;
  e.data["index"] = i;
  return e;
}

}  // namespace

SweepCounts& SweepCounts::operator+=(const SweepCounts& o) {
  archived += o.archived;
  anonymised += o.anonymised;
  purged += o.purged;
  held += o.held;
  stuck += o.stuck;
  visited += o.visited;
  destroyed += o.destroyed;
  return *this;
}

Service::Service(vault::Vault& vault, vault::RecordReader& reader, audit::AuditLog& audit, const calendar::Clock& clock,
                 std::shared_ptr<const policy::Policy> policy, vault::RecordReader* slow)
    : m_vault(vault),
      m_reader(reader),
      m_slow(slow != nullptr ? *slow : reader),
      m_audit(audit),
      m_clock(clock),
      m_policy(std::move(policy)) {}

std::shared_ptr<const policy::Policy> Service::policy() const {
  std::lock_guard lock(m_policy_mutex);
  return m_policy;
}

void Service::set_policy(std::shared_ptr<const policy::Policy> policy) {
  std::lock_guard lock(m_policy_mutex);
  m_policy = std::move(policy);
}

audit::Entry Service::entry(const policy::Policy& policy, std::string action, const Actor& actor) const {
  audit::Entry e;
  e.at = m_clock.now();
  e.action = std::move(action);
  e.actor = actor.name;
  e.policy_hash = policy.hash;
  return e;
}

void reschedule_under(store::Schedule& record, const policy::Category& category, calendar::MonthDay fiscal_year_end) {
  record.due.reset();
  const auto n = static_cast<int>(category.phases.size());
  // A changed category with fewer phases than a record has reached: when its
  // last phase is a purge, the record still owes it.
  if (record.next_phase >= n && n > 0 && category.phases.back().action == policy::Action::purge) {
    record.next_phase = n - 1;
  }
  if (record.next_phase >= n) return;
  const auto at = category.phases[static_cast<std::size_t>(record.next_phase)].at.evaluate(record.dates, fiscal_year_end);
  if (at && *at <= calendar::kMaxInstant) record.due = *at;
}

std::vector<PhaseSchedule> Service::schedule(const store::Schedule& record, const policy::Policy& policy) const {
  std::vector<PhaseSchedule> out;
  const policy::Category* category = policy.find(record.category);
  if (category == nullptr) return out;
  for (std::size_t i = 0; i < category->phases.size(); ++i) {
    const auto& phase = category->phases[i];
    PhaseSchedule s;
    s.index = static_cast<int>(i);
    s.action = phase.action;
    s.at = phase.at_text;
    const auto at = phase.at.evaluate(record.dates, policy.daemon.fiscal_year_end);
    if (!at) {
      for (const auto& name : phase.at.date_names()) {
        if (record.dates.find(name) == record.dates.end()) s.missing.push_back(name);
      }
    } else if (*at <= calendar::kMaxInstant) {
      s.due = *at;  // past 9999-12-31T23:59:59Z it is never reached: due stays null
    }
    s.done = static_cast<int>(i) < record.next_phase;
    if (s.done && i < record.done.size()) s.done_at = record.done[i];
    out.push_back(std::move(s));
  }
  // When each phase not yet done will run: the later of its own due time and
  // the run of the phase before it (for the next phase, the previous one's
  // done_at). Undefined from the first waiting phase on.
  const Instant now = m_clock.now();
  std::optional<Instant> before;
  bool defined = true;
  for (auto& s : out) {
    if (s.done) {
      before = s.done_at;
      continue;
    }
    if (!defined || !s.due) {
      defined = false;
      continue;
    }
    s.runs_at = before ? std::max(*s.due, *before) : *s.due;
    s.overdue = *s.runs_at <= now;
    before = s.runs_at;
  }
  return out;
}

std::optional<PhaseSchedule> Service::next(const store::Schedule& record, const policy::Policy& policy) const {
  auto phases = schedule(record, policy);
  if (record.next_phase < 0 || static_cast<std::size_t>(record.next_phase) >= phases.size()) return std::nullopt;
  return phases[static_cast<std::size_t>(record.next_phase)];
}

Result<Record> Service::prepare_put(const PutRequest& request, const policy::Policy& policy) const {
  const policy::Category* category = policy.find(request.category);
  if (category == nullptr) return bad("unknown_category", "unknown category '" + request.category + "'");
  Record record;
  record.key = request.key;
  record.subject = request.subject;
  record.category = category->name;
  record.state = RecordState::active;
  record.fields = request.fields;
  for (const auto& [name, at] : request.dates) {
    if (!category->allows_date(name)) {
      std::string declared = "collected";
      for (const auto& d : category->dates) {
        if (d != "collected") declared += ", " + d;
      }
      return bad("unknown_date", "category '" + category->name + "' does not declare the date '" + name +
                                     "' (it declares: " + declared + ")");
    }
    record.dates.insert_or_assign(name, at);
  }
  const Instant now = m_clock.now();
  record.dates.emplace("collected", now);  // no-op when given
  record.created_at = now;
  record.next_phase = 0;
  reschedule_under(record, *category, policy.daemon.fiscal_year_end);
  return record;
}

Status Service::store_put(const Record& record, const policy::Policy& policy, const Actor& actor) {
  // A new key (the common case) is stored at once; a known one is looked at.
  auto inserted = m_vault.insert_new(record);
  if (!inserted) return std::move(inserted).error();
  if (*inserted) return {};
  auto existing = m_vault.schedule_of(record.key);
  if (!existing) return std::move(existing).error();
  if (!*existing) return Error::internal("record '" + record.key + "' neither new nor stored");
  const Record& old = **existing;
  if (old.state != RecordState::active || old.location != store::Location::active) {
    return Error::conflict("record '" + record.key + "' is " + std::string(store::to_string(old.state)) +
                           " and can no longer be replaced");
  }
  // Retention made longer by a replacement leaves a trace: the old next due
  // time, and the new one (none at all counts as later).
  if (old.due && (!record.due || *record.due > *old.due)) {
    audit::Entry e = entry(policy, "extend", actor);
    e.key = record.key;
    e.category = record.category;
    e.phase = record.next_phase;
    e.subject_ref = m_vault.subject_ref(*record.subject);
    e.reason = "record.put replaced the record: next due " + due_text(old.due) + " -> " + due_text(record.due);
    if (auto appended = m_audit.append(e); !appended) return std::move(appended).error();
  }
  return m_vault.replace(record);
}

Result<Record> Service::put(const PutRequest& request, const Actor& actor) {
  const auto policy = this->policy();
  auto record = prepare_put(request, *policy);
  if (!record) return record;
  Status st = m_vault.transaction([&]() -> Status { return store_put(*record, *policy, actor); });
  if (!st) return std::move(st).error();
  return record;
}

Result<std::size_t> Service::put_many(const std::vector<PutRequest>& requests, const Actor& actor) {
  const auto policy = this->policy();
  std::vector<Record> records;
  records.reserve(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    auto record = prepare_put(requests[i], *policy);
    if (!record) return with_index(std::move(record).error(), i);
    records.push_back(std::move(record).value());
  }
  std::size_t failed_at = 0;
  Status st = m_vault.transaction([&]() -> Status {
    for (std::size_t i = 0; i < records.size(); ++i) {
      failed_at = i;
      if (auto s = store_put(records[i], *policy, actor); !s) return s;
    }
    return {};
  });
  if (!st) {
    Error e = std::move(st).error();
    if (e.code == ErrorCode::conflict) return with_index(std::move(e), failed_at);
    return e;
  }
  return records.size();
}

Result<std::int64_t> Service::record_event(const EventRequest& request, const Actor& actor) {
  const auto policy = this->policy();
  const std::string& name = request.name;
  // A misspelt name would update nothing and leave records waiting for ever.
  if (request.subject && std::none_of(policy->categories.begin(), policy->categories.end(),
                                      [&](const policy::Category& c) { return c.names_date(name); })) {
    return bad("unknown_date", "no category of the policy declares the date '" + name + "'; nothing was changed (" +
                                   date_suggestion(name, policy->date_names()) + ")");
  }
  std::int64_t updated = 0;
  Status st = m_vault.transaction([&]() -> Status {
    updated = 0;
    std::vector<Record> records;
    audit::Entry e = entry(*policy, "event", actor);
    if (request.key) {
      auto record = m_vault.schedule_of(*request.key);
      if (!record) return std::move(record).error();
      if (!*record) return Error::not_found("no record with key '" + *request.key + "'");
      const policy::Category* category = policy->find((*record)->category);
      if (category != nullptr && !category->allows_date(name)) {
        return bad("unknown_date", "category '" + category->name + "' does not declare the date '" + name + "'");
      }
      e.key = *request.key;
      e.category = (*record)->category;
      e.subject_ref = (*record)->subject_ref;
      records.push_back(std::move(**record));
    } else {
      auto found = m_vault.subject_schedules(*request.subject);
      if (!found) return std::move(found).error();
      e.subject_ref = m_vault.subject_ref(*request.subject);
      records = std::move(*found);
    }
    for (auto& record : records) {
      if (record.state == RecordState::anonymised) continue;  // no longer anyone's data: not an event target
      const policy::Category* category = policy->find(record.category);
      if (category == nullptr || !category->allows_date(name)) continue;  // left as it is, not counted
      record.dates.insert_or_assign(name, request.at);
      reschedule_under(record, *category, policy->daemon.fiscal_year_end);
      if (auto s = m_vault.update_schedule(record); !s) return s;
      ++updated;
    }
    e.reason = name + " = " + calendar::format_instant(request.at) + ": " + std::to_string(updated) +
               (updated == 1 ? " record updated" : " records updated");
    if (auto appended = m_audit.append(e); !appended) return std::move(appended).error();
    return {};
  });
  if (!st) return std::move(st).error();
  return updated;
}

Result<Record> Service::get(const std::string& key, bool include_archived) {
  auto record = m_reader.get(key);
  if (!record) return std::move(record).error();
  if (!*record) return Error::not_found("no record with key '" + key + "'");
  if ((*record)->location == store::Location::archive && !include_archived) {
    return Error::not_found("record '" + key + "' is archived; pass include_archived to read it");
  }
  return std::move(**record);
}

Result<std::variant<Explanation, Disposal>> Service::explain(const std::string& key) {
  const auto policy = this->policy();
  std::variant<Explanation, Disposal> out;
  Status st = m_reader.read([&]() -> Status {
    auto record = m_reader.schedule_of(key);
    if (!record) return std::move(record).error();
    if (*record) {
      Explanation e;
      e.record = std::move(**record);
      e.phases = schedule(e.record, *policy);
      auto holds = load_holds(m_reader);
      if (!holds) return std::move(holds).error();
      e.holds = holds->covering(e.record);
      if (static_cast<std::size_t>(e.record.next_phase) < e.phases.size()) {
        e.next = e.phases[static_cast<std::size_t>(e.record.next_phase)];
      }
      out = std::move(e);
      return {};
    }
    auto disposal = m_reader.store().find_disposal(key);
    if (!disposal) return std::move(disposal).error();
    if (!*disposal) return Error::not_found("no record with key '" + key + "'");
    Disposal d{key, (*disposal)->at, (*disposal)->seq, std::nullopt};
    // Within the undo window, and not ended: restorable until then.
    auto retired = m_reader.store().retired(key);
    if (!retired) return std::move(retired).error();
    if (*retired && m_clock.now() < (*retired)->destroy_at) d.restorable_until = (*retired)->destroy_at;
    out = std::move(d);
    return {};
  });
  if (!st) return std::move(st).error();
  return out;
}

Result<ErasureReport> Service::receipt(const std::string& key) {
  ErasureReport report;
  Status st = m_reader.read([&]() -> Status {
    auto record = m_reader.schedule_of(key);
    if (!record) return std::move(record).error();
    if (*record) return Error::not_found("record '" + key + "' is still stored: there is no disposal to prove");
    auto disposal = m_reader.store().find_disposal(key);
    if (!disposal) return std::move(disposal).error();
    if (!*disposal) return Error::not_found("no record with key '" + key + "' was purged or erased");
    const store::AuditRow& row = **disposal;
    report.erased.push_back({key, row.category.value_or(""), row.seq});
    report.at = row.at;
    report.policy_hash = row.policy_hash;
    report.subject_ref = row.subject_ref;
    auto head = m_reader.store().last_audit();
    if (!head) return std::move(head).error();
    if (!*head) return Error::storage("the audit log is empty although it holds entry " + std::to_string(row.seq));
    report.head_seq = (*head)->seq;
    report.head_hash = (*head)->hash;
    return {};
  });
  if (!st) return std::move(st).error();
  return report;
}

}  // namespace retentiond::actions
