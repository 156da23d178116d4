#include "lib/actions/service.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <regex>
#include <set>
#include <tuple>

#include <spdlog/spdlog.h>

#include "lib/crypto/crypto.hpp"
#include "lib/util/params.hpp"

namespace retentiond::actions {

using calendar::Instant;
using policy::Action;
using store::RecordRow;
using store::RecordState;

SweepCounts& SweepCounts::operator+=(const SweepCounts& o) {
  archived += o.archived;
  anonymised += o.anonymised;
  purged += o.purged;
  held += o.held;
  stuck += o.stuck;
  visited += o.visited;
  return *this;
}

namespace {

Error bad(std::string reason, std::string message) {
  return Error::invalid_params(std::move(reason), std::move(message));
}

Result<std::string> required_string(const nlohmann::json& params, const char* name, std::size_t max_bytes) {
  const auto it = params.find(name);
  if (it == params.end()) return bad("invalid_params", std::string("missing parameter '") + name + "'");
  if (!it->is_string()) return bad("invalid_params", std::string("'") + name + "' must be a string");
  const auto& s = it->get_ref<const std::string&>();
  if (s.empty()) return bad("invalid_params", std::string("'") + name + "' must not be empty");
  if (s.size() > max_bytes) {
    return bad("too_large", std::string("'") + name + "' is longer than " + std::to_string(max_bytes) + " bytes");
  }
  return s;
}

std::optional<nlohmann::json> truncate_ip(const std::string& text) {
  unsigned char buf[16];
  char out[INET6_ADDRSTRLEN];
  if (inet_pton(AF_INET, text.c_str(), buf) == 1) {
    buf[3] = 0;
    if (inet_ntop(AF_INET, buf, out, sizeof out) != nullptr) return nlohmann::json(out);
  } else if (inet_pton(AF_INET6, text.c_str(), buf) == 1) {
    std::memset(buf + 6, 0, 10);  // keep the first 48 bits
    if (inet_ntop(AF_INET6, buf, out, sizeof out) != nullptr) return nlohmann::json(out);
  }
  return nlohmann::json("[redacted]");
}

}  // namespace

std::optional<nlohmann::json> anonymise_value(const nlohmann::json& value, policy::Strategy strategy,
                                              const std::string& secret) {
  using policy::Strategy;
  switch (strategy) {
    case Strategy::keep: return value;
    case Strategy::drop: return std::nullopt;
    case Strategy::redact: return nlohmann::json("[redacted]");
    case Strategy::hmac: {
      const std::string text = value.is_string() ? value.get<std::string>() : value.dump();
      return nlohmann::json(crypto::hmac_sha256_hex(secret, text));
    }
    case Strategy::truncate_ip:
      if (!value.is_string()) return nlohmann::json("[redacted]");
      return truncate_ip(value.get<std::string>());
    case Strategy::year_only: {
      // A date or timestamp of any year (birth dates are before 1970, and
      // a stored timestamp may lack an offset): its written year.
      // "YYYY-MM-DD", alone or followed by [Tt ] and anything. Checked by
      // hand: std::regex recursed once per character of the rest, and a
      // long value overflowed the stack (found by fuzz_protocol).
      const std::string text = value.is_string() ? value.get<std::string>() : std::string();
      const auto digits = [&](std::size_t from, std::size_t n) {
        for (std::size_t i = from; i < from + n; ++i) {
          if (text[i] < '0' || text[i] > '9') return false;
        }
        return true;
      };
      if (text.size() < 10 || !digits(0, 4) || text[4] != '-' || !digits(5, 2) || text[7] != '-' || !digits(8, 2) ||
          (text.size() > 10 && text[10] != 'T' && text[10] != 't' && text[10] != ' ')) {
        return nlohmann::json("[redacted]");
      }
      const int year = std::stoi(text.substr(0, 4)), month = std::stoi(text.substr(5, 2)), day = std::stoi(text.substr(8, 2));
      if (month < 1 || month > 12 || day < 1 || day > calendar::days_in_month(year, month)) {
        return nlohmann::json("[redacted]");
      }
      return nlohmann::json(text.substr(0, 4));
    }
  }
  return nlohmann::json("[redacted]");
}

Service::Service(store::Store& store, audit::AuditLog& audit, const calendar::Clock& clock,
                 std::shared_ptr<const policy::Policy> policy, std::string secret)
    : m_store(store), m_audit(audit), m_clock(clock), m_policy(std::move(policy)), m_secret(std::move(secret)) {}

std::vector<PhaseSchedule> Service::schedule(const RecordRow& row) const {
  std::vector<PhaseSchedule> out;
  const policy::Category* category = m_policy->find(row.category);
  if (category == nullptr) return out;
  for (std::size_t i = 0; i < category->phases.size(); ++i) {
    const auto& phase = category->phases[i];
    PhaseSchedule s;
    s.index = static_cast<int>(i);
    s.action = phase.action;
    s.at = phase.at_text;
    const auto at = phase.at.evaluate(row.dates, m_policy->daemon.fiscal_year_end);
    if (!at) {
      for (const auto& name : phase.at.date_names()) {
        if (row.dates.find(name) == row.dates.end()) s.missing.push_back(name);
      }
    } else if (*at <= calendar::kMaxInstant) {
      s.due = *at;  // past 9999-12-31T23:59:59Z it is never reached: due stays null
    }
    s.done = static_cast<int>(i) < row.next_phase;
    if (s.done && i < row.done.size()) s.done_at = row.done[i];
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

std::optional<PhaseSchedule> Service::next(const RecordRow& row) const {
  auto phases = schedule(row);
  if (row.next_phase < 0 || static_cast<std::size_t>(row.next_phase) >= phases.size()) return std::nullopt;
  return phases[static_cast<std::size_t>(row.next_phase)];
}

void reschedule_under(RecordRow& row, const policy::Category& category, calendar::MonthDay fiscal_year_end) {
  row.due.reset();
  const auto n = static_cast<int>(category.phases.size());
  // A changed category with fewer phases than a record has reached: when its
  // last phase is a purge, the record still owes it.
  if (row.next_phase >= n && n > 0 && category.phases.back().action == policy::Action::purge) {
    row.next_phase = n - 1;
  }
  if (row.next_phase >= n) return;
  const auto at = category.phases[static_cast<std::size_t>(row.next_phase)].at.evaluate(row.dates, fiscal_year_end);
  if (at && *at <= calendar::kMaxInstant) row.due = *at;
}

void Service::reschedule(RecordRow& row, const policy::Category& category) const {
  reschedule_under(row, category, m_policy->daemon.fiscal_year_end);
}

Result<RecordRow> Service::prepare_put(const nlohmann::json& params) const {
  if (!params.is_object()) return bad("invalid_params", "params must be an object");
  if (auto st = only_keys(params, {"key", "subject", "category", "fields", "dates"}); !st) return std::move(st).error();
  auto key = required_string(params, "key", kMaxKeyBytes);
  if (!key) return std::move(key).error();
  auto subject = required_string(params, "subject", kMaxSubjectBytes);
  if (!subject) return std::move(subject).error();
  auto category_name = required_string(params, "category", 64);
  if (!category_name) {
    if (category_name.error().reason == "too_large") {
      return bad("unknown_category", "unknown category (name longer than 64 characters)");
    }
    return std::move(category_name).error();
  }
  const policy::Category* category = m_policy->find(*category_name);
  if (category == nullptr) {
    return bad("unknown_category", "unknown category '" + *category_name + "'");
  }

  RecordRow row;
  row.key = *key;
  row.subject = *subject;
  row.category = category->name;
  row.state = RecordState::active;
  if (const auto it = params.find("fields"); it != params.end()) {
    if (!it->is_object()) return bad("invalid_params", "'fields' must be an object");
    row.fields = *it;
    if (row.fields.dump().size() > kMaxFieldsBytes) {
      return bad("too_large", "'fields' is larger than " + std::to_string(kMaxFieldsBytes) + " bytes of JSON");
    }
  }
  const Instant now = m_clock.now();
  if (const auto it = params.find("dates"); it != params.end()) {
    if (!it->is_object()) return bad("invalid_params", "'dates' must be an object of name: time");
    if (it->size() > kMaxDates) return bad("too_large", "more than " + std::to_string(kMaxDates) + " dates");
    for (const auto& [name, value] : it->items()) {
      if (!category->allows_date(name)) {
        std::string declared = "collected";
        for (const auto& d : category->dates) {
          if (d != "collected") declared += ", " + d;
        }
        return bad("unknown_date", "category '" + category->name + "' does not declare the date '" + name +
                                       "' (it declares: " + declared + ")");
      }
      if (!value.is_string()) return bad("bad_time", "date '" + name + "' must be a time string");
      auto t = calendar::parse_instant(value.get<std::string>());
      if (!t) return bad("bad_time", "date '" + name + "': " + t.error().message);
      row.dates.emplace(name, *t);
    }
  }
  row.dates.emplace("collected", now);  // no-op when given
  row.created_at = now;
  row.next_phase = 0;
  reschedule(row, *category);
  return row;
}

namespace {

std::string due_text(const std::optional<Instant>& due) {
  return due ? calendar::format_instant(*due) : std::string("none (waiting for a date, or no phase left)");
}

}  // namespace

Status Service::store_put(const RecordRow& row, const Actor& actor) {
  auto existing = m_store.schedule_of(row.key);
  if (!existing) return std::move(existing).error();
  if (*existing) {
    const RecordRow& old = **existing;
    if (old.state != RecordState::active || old.location != store::Location::active) {
      return Error::conflict("record '" + row.key + "' is " + std::string(store::to_string(old.state)) +
                             " and can no longer be replaced");
    }
    // Retention made longer by a replacement leaves a trace: the old next
    // due time, and the new one (none at all counts as later).
    if (old.due && (!row.due || *row.due > *old.due)) {
      audit::Entry entry;
      entry.at = m_clock.now();
      entry.action = "extend";
      entry.key = row.key;
      entry.category = row.category;
      entry.phase = row.next_phase;
      entry.subject = row.subject;
      entry.actor = actor.name;
      entry.reason = "record.put replaced the record: next due " + due_text(old.due) + " -> " + due_text(row.due);
      entry.policy_hash = m_policy->hash;
      if (auto appended = m_audit.append(entry); !appended) return std::move(appended).error();
    }
  }
  return m_store.put(row);
}

Result<RecordRow> Service::put(const nlohmann::json& params, const Actor& actor) {
  auto row = prepare_put(params);
  if (!row) return row;
  Status st = m_store.transaction([&]() -> Status { return store_put(*row, actor); });
  if (!st) return std::move(st).error();
  return row;
}

Result<std::size_t> Service::put_many(const nlohmann::json& records, const Actor& actor) {
  if (!records.is_array()) return bad("invalid_params", "'records' must be an array");
  std::vector<RecordRow> rows;
  rows.reserve(records.size());
  const auto with_index = [](Error e, std::size_t i) {
    e.message = "records[" + std::to_string(i) + "]: " + e.message;
    e.data["index"] = i;
    return e;
  };
  for (std::size_t i = 0; i < records.size(); ++i) {
    auto row = prepare_put(records[i]);
    if (!row) return with_index(std::move(row).error(), i);
    rows.push_back(std::move(row).value());
  }
  std::size_t failed_at = 0;
  Status st = m_store.transaction([&]() -> Status {
    for (std::size_t i = 0; i < rows.size(); ++i) {
      failed_at = i;
      if (auto s = store_put(rows[i], actor); !s) return s;
    }
    return {};
  });
  if (!st) {
    Error e = std::move(st).error();
    if (e.code == ErrorCode::conflict) return with_index(std::move(e), failed_at);
    return e;
  }
  return rows.size();
}

Result<store::RecordRow> Service::get(const std::string& key) {
  auto row = m_store.get(key);
  if (!row) return std::move(row).error();
  if (!*row) return Error::not_found("no record with key '" + key + "'");
  return std::move(**row);
}

namespace {

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

}  // namespace

Result<std::int64_t> Service::record_event(const nlohmann::json& params, const Actor& actor) {
  if (auto st = only_keys(params, {"name", "at", "subject", "key"}); !st) return std::move(st).error();
  auto name = required_string(params, "name", 64);
  if (!name) return std::move(name).error();
  static const std::regex kDateName("[a-z][a-z0-9_]*");
  if (!std::regex_match(*name, kDateName)) {
    return bad("invalid_params", "invalid date name '" + *name + "' (expected [a-z][a-z0-9_]*)");
  }
  auto at_text = required_string(params, "at", 64);
  if (!at_text) return std::move(at_text).error();
  auto at = calendar::parse_instant(*at_text);
  if (!at) return std::move(at).error();
  const bool by_key = params.contains("key");
  if (by_key == params.contains("subject")) return bad("invalid_params", "give exactly one of 'subject' and 'key'");
  // A misspelt name would update nothing and leave records waiting for ever.
  const auto& categories = m_policy->categories;
  if (!by_key && std::none_of(categories.begin(), categories.end(),
                              [&](const policy::Category& c) { return c.names_date(*name); })) {
    return bad("unknown_date", "no category of the policy declares the date '" + *name + "'; nothing was changed (" +
                                   date_suggestion(*name, m_policy->date_names()) + ")");
  }

  std::int64_t updated = 0;
  Status st = m_store.transaction([&]() -> Status {
    std::vector<RecordRow> rows;
    audit::Entry entry;
    if (by_key) {
      auto key = required_string(params, "key", kMaxKeyBytes);
      if (!key) return std::move(key).error();
      auto row = m_store.schedule_of(*key);
      if (!row) return std::move(row).error();
      if (!*row) return Error::not_found("no record with key '" + *key + "'");
      const policy::Category* category = m_policy->find((*row)->category);
      if (category != nullptr && !category->allows_date(*name)) {
        return bad("unknown_date", "category '" + category->name + "' does not declare the date '" + *name + "'");
      }
      entry.key = *key;
      entry.category = (*row)->category;
      entry.subject_ref = (*row)->subject_ref;
      rows.push_back(std::move(**row));
    } else {
      auto subject = required_string(params, "subject", kMaxSubjectBytes);
      if (!subject) return std::move(subject).error();
      auto found = m_store.by_subject(*subject);
      if (!found) return std::move(found).error();
      entry.subject = *subject;
      rows = std::move(*found);
    }
    for (auto& row : rows) {
      if (row.state == RecordState::anonymised) continue;  // no longer anyone's data: not an event target
      const policy::Category* category = m_policy->find(row.category);
      if (category == nullptr || !category->allows_date(*name)) continue;  // left as it is, not counted
      row.dates[*name] = *at;
      reschedule(row, *category);
      if (auto s = m_store.update_schedule(row); !s) return s;
      ++updated;
    }
    entry.at = m_clock.now();
    entry.action = "event";
    entry.actor = actor.name;
    entry.reason = *name + " = " + calendar::format_instant(*at) + ": " + std::to_string(updated) +
                   (updated == 1 ? " record updated" : " records updated");
    entry.policy_hash = m_policy->hash;
    if (auto appended = m_audit.append(entry); !appended) return std::move(appended).error();
    return {};
  });
  if (!st) return std::move(st).error();
  return updated;
}

Result<std::variant<Explanation, Disposal>> Service::explain(const std::string& key) {
  auto row = m_store.get(key);
  if (!row) return std::move(row).error();
  if (*row) {
    Explanation e;
    e.record = std::move(**row);
    e.phases = schedule(e.record);
    auto holds = load_holds();
    if (!holds) return std::move(holds).error();
    e.holds = holds->covering(e.record);
    if (static_cast<std::size_t>(e.record.next_phase) < e.phases.size()) {
      e.next = e.phases[static_cast<std::size_t>(e.record.next_phase)];
    }
    return std::variant<Explanation, Disposal>(std::move(e));
  }
  auto disposal = m_store.find_disposal(key);
  if (!disposal) return std::move(disposal).error();
  if (!*disposal) return Error::not_found("no record with key '" + key + "'");
  return std::variant<Explanation, Disposal>(Disposal{key, (*disposal)->at, (*disposal)->seq});
}

void Service::anonymise(RecordRow& row, const policy::Category& category) const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [field, strategy] : category.anonymise) {
    const auto it = row.fields.find(field);
    if (it == row.fields.end()) continue;
    if (auto v = anonymise_value(*it, strategy, m_secret)) out[field] = std::move(*v);
  }
  // Fields the table does not name are dropped: the safe default.
  row.fields = std::move(out);
  row.subject.reset();
  row.subject_ref.reset();
  row.state = RecordState::anonymised;
}

Status Service::run_phase(RecordRow& row, const policy::Category& category, int phase, Instant now,
                          const Actor& actor, SweepCounts& counts) {
  const Action action = category.phases[static_cast<std::size_t>(phase)].action;
  // A purge needs no plaintext; the other actions rewrite the values.
  if (action != Action::purge && !row.has_values) {
    auto full = m_store.get(row.key);
    if (!full) return std::move(full).error();
    if (!*full) return Error::internal("record '" + row.key + "' vanished during its sweep");
    row.subject = std::move((*full)->subject);
    row.fields = std::move((*full)->fields);
    row.has_values = true;
  }
  audit::Entry entry;
  entry.at = now;
  entry.action = std::string(policy::to_string(action));
  entry.key = row.key;
  entry.category = row.category;
  entry.phase = phase;
  entry.subject = row.subject;
  entry.subject_ref = row.subject_ref;
  entry.actor = actor.name;
  entry.reason = "retention: " + category.phases[static_cast<std::size_t>(phase)].at_text;
  entry.policy_hash = m_policy->hash;
  // The change and its audit entry go into the caller's one transaction.
  auto appended = m_audit.append(entry);
  if (!appended) return std::move(appended).error();

  if (action == Action::purge) {
    ++counts.purged;
    return m_store.remove(row.key, row.location);
  }
  row.done.resize(static_cast<std::size_t>(phase), now);
  row.done.push_back(now);
  row.next_phase = phase + 1;
  reschedule(row, category);
  if (action == Action::anonymise) {
    ++counts.anonymised;
    anonymise(row, category);
    return m_store.put(row);  // replaces the personal-data row: never an in-place update
  }
  // Archive: out of the active database, into the archive, in this transaction.
  ++counts.archived;
  if (row.location == store::Location::archive) return m_store.update_schedule(row);
  if (auto st = m_store.remove(row.key, store::Location::active); !st) return st;
  row.location = store::Location::archive;
  if (row.state == RecordState::active) row.state = RecordState::archived;
  return m_store.put(row);
}

Result<SweepCounts> Service::count_due() {
  SweepCounts counts;
  const Instant now = m_clock.now();
  auto holds = load_holds();
  if (!holds) return std::move(holds).error();
  std::optional<store::Store::DueCursor> cursor;
  for (;;) {
    auto page = m_store.due(now, 1000, cursor);
    if (!page) return std::move(page).error();
    if (page->empty()) return counts;
    // Take the cursor before the walk below reschedules the rows.
    cursor = store::Store::DueCursor{*page->back().due, page->back().key};
    for (auto& row : *page) {
      if (holds->covers(row)) {
        ++counts.held;
        continue;
      }
      ++counts.due_records;
      const policy::Category* category = m_policy->find(row.category);
      if (category == nullptr) continue;
      // Walk the phases the way sweep_batch would, without touching the store.
      while (static_cast<std::size_t>(row.next_phase) < category->phases.size() && row.due && *row.due <= now) {
        const Action action = category->phases[static_cast<std::size_t>(row.next_phase)].action;
        if (action == Action::purge) { ++counts.purged; break; }
        if (action == Action::archive) ++counts.archived;
        else ++counts.anonymised;
        ++row.next_phase;
        reschedule(row, *category);
      }
    }
  }
}

Result<SweepCounts> Service::sweep_batch(std::size_t max_records, const Actor& actor, SweepCursor& cursor,
                                         std::optional<std::chrono::steady_clock::time_point> deadline) {
  SweepCounts counts;
  SweepCursor next = cursor;
  const Instant now = m_clock.now();
  Status st = m_store.transaction([&]() -> Status {
    counts = SweepCounts{};
    next = cursor;
    auto holds = load_holds();
    if (!holds) return std::move(holds).error();
    auto due = m_store.due(now, max_records, cursor.position);
    if (!due) return std::move(due).error();
    next.done = due->size() < max_records;
    for (std::size_t i = 0; i < due->size(); ++i) {
      auto& row = (*due)[i];
      // Out of time: stop after this many, the cursor just past the last done.
      if (i > 0 && deadline && std::chrono::steady_clock::now() >= *deadline) {
        next.done = false;
        break;
      }
      next.position = store::Store::DueCursor{*row.due, row.key};
      ++counts.visited;
      if (holds->covers(row)) {
        ++counts.held;
        continue;
      }
      const policy::Category* category = m_policy->find(row.category);
      if (category == nullptr) {
        ++counts.stuck;  // cannot happen while reloads refuse to drop live categories
        continue;
      }
      // All phases already due run in this sweep, in order.
      while (static_cast<std::size_t>(row.next_phase) < category->phases.size() && row.due && *row.due <= now) {
        const int phase = row.next_phase;
        if (auto r = run_phase(row, *category, phase, now, actor, counts); !r) return r;
        if (category->phases[static_cast<std::size_t>(phase)].action == Action::purge) break;
      }
    }
    return {};
  });
  if (!st) return std::move(st).error();
  cursor = next;  // only a committed batch moves the cursor
  return counts;
}

// Without walking the due range: an index count of what is due, minus the
// due records under a hold (a count per held category, a lookup per held
// key or subject), each counted once.
Result<std::int64_t> Service::backlog() {
  const Instant now = m_clock.now();
  auto due = m_store.count_due(now);
  if (!due) return std::move(due).error();
  auto holds = load_holds();
  if (!holds) return std::move(holds).error();
  if (holds->holds.empty()) return *due;
  std::set<std::string> held_categories;
  std::int64_t held = 0;
  for (const auto& h : holds->holds) {
    if (h.scope != "category" || !held_categories.insert(h.target).second) continue;
    auto n = m_store.count_due_in_category(h.target, now);
    if (!n) return std::move(n).error();
    held += *n;
  }
  std::set<std::string> held_keys;
  const auto count_row = [&](const RecordRow& row) {
    if (row.due && *row.due <= now && !held_categories.count(row.category) && held_keys.insert(row.key).second) ++held;
  };
  for (const auto& h : holds->holds) {
    if (h.scope == "key") {
      auto row = m_store.get(h.target);
      if (!row) return std::move(row).error();
      if (*row) count_row(**row);
    } else if (h.scope == "subject") {
      auto rows = m_store.by_subject(h.target);
      if (!rows) return std::move(rows).error();
      for (const auto& row : *rows) count_row(row);
    }
  }
  return *due - held;
}

Result<std::vector<RecordRow>> Service::subject_records(const nlohmann::json& params, const Actor& actor) {
  if (auto st = only_keys(params, {"subject"}); !st) return std::move(st).error();
  auto subject = required_string(params, "subject", kMaxSubjectBytes);
  if (!subject) return std::move(subject).error();
  std::vector<RecordRow> rows;
  Status st = m_store.transaction([&]() -> Status {
    auto found = m_store.by_subject(*subject);
    if (!found) return std::move(found).error();
    rows = std::move(*found);
    audit::Entry entry;
    entry.at = m_clock.now();
    entry.action = "export";
    entry.subject = *subject;
    entry.actor = actor.name;
    entry.reason = std::to_string(rows.size()) + (rows.size() == 1 ? " record exported" : " records exported");
    entry.policy_hash = m_policy->hash;
    if (auto appended = m_audit.append(entry); !appended) return std::move(appended).error();
    return {};
  });
  if (!st) return std::move(st).error();
  return rows;
}

namespace {

Result<std::pair<std::string, bool>> erase_common(const nlohmann::json& params) {
  auto reason = required_string(params, "reason", 1024);
  if (!reason) return std::move(reason).error();
  bool dry_run = false;
  if (const auto it = params.find("dry_run"); it != params.end()) {
    if (!it->is_boolean()) return bad("invalid_params", "'dry_run' must be true or false");
    dry_run = it->get<bool>();
  }
  return std::pair<std::string, bool>{*reason, dry_run};
}

}  // namespace

Status Service::erase_rows(const std::vector<RecordRow>& rows, const std::string& reason, bool dry_run,
                           const Actor& actor, ErasureReport& report) {
  auto holds = load_holds();
  if (!holds) return std::move(holds).error();
  const Instant now = m_clock.now();
  for (const auto& row : rows) {
    const policy::Category* category = m_policy->find(row.category);
    const bool erasable = category == nullptr || category->erasable;
    if (!erasable || holds->covers(row)) {
      std::optional<Instant> until;
      for (const auto& phase : schedule(row)) {
        if (phase.action == Action::purge) until = phase.due;
      }
      report.retained.push_back({row.key, row.category, erasable ? "hold" : "legal_obligation", until});
      continue;
    }
    report.erased.push_back({row.key, row.category});
    if (dry_run) continue;
    if (auto r = m_store.remove(row.key, row.location); !r) return r;
    audit::Entry entry;
    entry.at = now;
    entry.action = "erase";
    entry.key = row.key;
    entry.category = row.category;
    entry.subject = row.subject;
    entry.subject_ref = row.subject_ref;
    entry.actor = actor.name;
    entry.reason = reason;
    entry.policy_hash = m_policy->hash;
    auto appended = m_audit.append(entry);
    if (!appended) return std::move(appended).error();
  }
  return {};
}

Result<ErasureReport> Service::erase_subject(const nlohmann::json& params, const Actor& actor) {
  if (auto st = only_keys(params, {"subject", "reason", "dry_run", "categories"}); !st) return std::move(st).error();
  auto subject = required_string(params, "subject", kMaxSubjectBytes);
  if (!subject) return std::move(subject).error();
  auto common = erase_common(params);
  if (!common) return std::move(common).error();
  // Purpose-limited erasure (an objection to marketing must not erase the
  // invoices): only the records of the named categories are considered.
  std::optional<std::set<std::string>> only;
  if (const auto it = params.find("categories"); it != params.end()) {
    if (!it->is_array() || it->empty()) {
      return bad("invalid_params", "'categories' must be a non-empty array of category names");
    }
    only.emplace();
    for (const auto& c : *it) {
      if (!c.is_string()) return bad("invalid_params", "'categories' must be a non-empty array of category names");
      if (m_policy->find(c.get<std::string>()) == nullptr) {
        return bad("unknown_category", "unknown category '" + c.get<std::string>() + "'; nothing was changed");
      }
      only->insert(c.get<std::string>());
    }
  }
  ErasureReport report;
  Status st = m_store.transaction([&]() -> Status {
    report = ErasureReport{};
    auto rows = m_store.by_subject(*subject);
    if (!rows) return std::move(rows).error();
    if (only) std::erase_if(*rows, [&](const RecordRow& r) { return only->count(r.category) == 0; });
    return erase_rows(*rows, common->first, common->second, actor, report);
  });
  if (!st) return std::move(st).error();
  return report;
}

Result<ErasureReport> Service::erase_record(const nlohmann::json& params, const Actor& actor) {
  if (auto st = only_keys(params, {"key", "reason", "dry_run"}); !st) return std::move(st).error();
  auto key = required_string(params, "key", kMaxKeyBytes);
  if (!key) return std::move(key).error();
  auto common = erase_common(params);
  if (!common) return std::move(common).error();
  ErasureReport report;
  Status st = m_store.transaction([&]() -> Status {
    report = ErasureReport{};
    auto row = m_store.schedule_of(*key);
    if (!row) return std::move(row).error();
    if (!*row) return Error::not_found("no record with key '" + *key + "'");
    return erase_rows({std::move(**row)}, common->first, common->second, actor, report);
  });
  if (!st) return std::move(st).error();
  return report;
}

Result<Plan> Service::plan(const nlohmann::json& params) {
  if (auto st = only_keys(params, {"until", "from"}); !st) return std::move(st).error();
  const auto time_param = [&](const char* name) -> Result<Instant> {
    auto text = required_string(params, name, 64);
    if (!text) return std::move(text).error();
    auto t = calendar::parse_instant(*text);
    if (!t) return bad("bad_time", std::string("'") + name + "': " + t.error().message);
    return *t;
  };
  Plan plan;
  auto until = time_param("until");
  if (!until) return std::move(until).error();
  plan.until = *until;
  plan.from = m_clock.now();
  if (params.contains("from")) {
    auto from = time_param("from");
    if (!from) return std::move(from).error();
    plan.from = *from;
  }
  if (plan.until < plan.from) return bad("bad_time", "'until' is before 'from'");
  auto holds = load_holds();
  if (!holds) return std::move(holds).error();

  std::map<std::tuple<std::string, std::string, int>, std::int64_t> counts;
  const auto month_of = [](Instant t) { return calendar::format_instant(t).substr(0, 7); };
  std::optional<store::Store::DueCursor> cursor;
  for (;;) {
    // "before until": due <= until - 1 s.
    auto page = m_store.due(Instant{plan.until.seconds - 1}, 1000, cursor);
    if (!page) return std::move(page).error();
    if (page->empty()) break;
    cursor = store::Store::DueCursor{*page->back().due, page->back().key};
    for (auto& row : *page) {
      if (holds->covers(row)) {
        ++plan.held;
        continue;
      }
      const policy::Category* category = m_policy->find(row.category);
      if (category == nullptr) continue;
      // A phase runs at the later of its due time and the run of the one before.
      Instant previous = plan.from;
      while (static_cast<std::size_t>(row.next_phase) < category->phases.size() && row.due && *row.due < plan.until) {
        const Instant at = std::max(*row.due, previous);
        const Action action = category->phases[static_cast<std::size_t>(row.next_phase)].action;
        ++counts[{month_of(at), row.category, static_cast<int>(action)}];
        (action == Action::archive ? plan.archive : action == Action::anonymise ? plan.anonymise : plan.purge) += 1;
        if (action == Action::purge) break;
        previous = at;
        ++row.next_phase;
        reschedule(row, *category);
      }
    }
  }
  std::string after;
  for (;;) {
    auto page = m_store.undue(1000, after);
    if (!page) return std::move(page).error();
    if (page->empty()) break;
    after = page->back().key;
    for (const auto& row : *page) {
      const policy::Category* category = m_policy->find(row.category);
      const bool has_next = category != nullptr && static_cast<std::size_t>(row.next_phase) < category->phases.size();
      if (has_next && !holds->covers(row)) ++plan.waiting;
    }
  }
  for (const auto& [k, n] : counts) {
    plan.actions.push_back({std::get<0>(k), std::get<1>(k), static_cast<Action>(std::get<2>(k)), n});
  }
  return plan;
}

Result<std::string> Service::policy_table(const nlohmann::json& params) const {
  if (auto st = only_keys(params, {"format"}); !st) return std::move(st).error();
  std::string format = "markdown";
  if (const auto it = params.find("format"); it != params.end()) {
    if (!it->is_string() || (*it != "markdown" && *it != "text")) {
      return bad("invalid_params", "'format' must be \"markdown\" or \"text\"");
    }
    format = it->get<std::string>();
  }
  const auto participle = [](Action a) {
    return a == Action::archive ? "archived" : a == Action::anonymise ? "anonymised" : "purged";
  };
  const auto retention = [&](const policy::Category& c) {
    if (c.phases.empty()) return std::string("kept until erased on request");
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
    const auto cell = [](std::string s) {
      std::string o;
      for (char ch : s) o += ch == '|' ? std::string("\\|") : std::string(1, ch);
      return o;
    };
    out = "| Category | Purpose | Legal basis | Retention |\n|---|---|---|---|\n";
    for (const auto& c : m_policy->categories) {
      out += "| " + cell(c.name) + " | " + cell(c.purpose) + " | " + basis(c.legal_basis) + " | " + cell(retention(c)) + " |\n";
    }
  } else {
    for (const auto& c : m_policy->categories) {
      out += c.name + "\n  purpose:     " + c.purpose + "\n  legal basis: " + basis(c.legal_basis) +
             "\n  retention:   " + retention(c) + "\n\n";
    }
  }
  return out;
}

std::vector<std::int64_t> HoldSet::covering(const RecordRow& row) const {
  std::vector<std::int64_t> ids;
  for (std::size_t i = 0; i < holds.size(); ++i) {
    const auto& h = holds[i];
    if ((h.scope == "key" && h.target == row.key) || (h.scope == "category" && h.target == row.category) ||
        (h.scope == "subject" && ((row.subject && h.target == *row.subject) ||
                                  (row.subject_ref && i < subject_refs.size() && subject_refs[i] == *row.subject_ref)))) {
      ids.push_back(h.id);
    }
  }
  return ids;
}

bool HoldSet::covers(const RecordRow& row) const { return !covering(row).empty(); }

// The audit entry for placing or releasing `hold`: the target goes in the
// key, category or (as an HMAC) subject field, by the hold's scope.
audit::Entry Service::hold_entry(const store::HoldRow& hold, const char* action, const Actor& actor,
                                 std::string reason) const {
  audit::Entry entry;
  entry.at = m_clock.now();
  entry.action = action;
  if (hold.scope == "key") entry.key = hold.target;
  if (hold.scope == "category") entry.category = hold.target;
  if (hold.scope == "subject") entry.subject = hold.target;
  entry.actor = actor.name;
  entry.reason = std::move(reason);
  entry.policy_hash = m_policy->hash;
  return entry;
}

Result<HoldSet> Service::load_holds() {
  auto rows = m_store.holds();
  if (!rows) return std::move(rows).error();
  HoldSet set;
  for (const auto& h : *rows) set.subject_refs.push_back(h.scope == "subject" ? m_audit.subject_ref(h.target) : std::string());
  set.holds = std::move(*rows);
  return set;
}

Result<std::int64_t> Service::place_hold(const nlohmann::json& params, const Actor& actor) {
  if (auto st = only_keys(params, {"subject", "category", "key", "reason"}); !st) return std::move(st).error();
  const int scopes = static_cast<int>(params.contains("subject")) + static_cast<int>(params.contains("category")) +
                     static_cast<int>(params.contains("key"));
  if (scopes != 1) return bad("invalid_params", "give exactly one of 'subject', 'category' and 'key'");
  const char* scope = params.contains("subject") ? "subject" : params.contains("category") ? "category" : "key";
  auto target = required_string(params, scope, kMaxKeyBytes);
  if (!target) return std::move(target).error();
  auto reason = required_string(params, "reason", 1024);
  if (!reason) return std::move(reason).error();
  if (std::string_view(scope) == "category" && m_policy->find(*target) == nullptr) {
    return bad("unknown_category", "unknown category '" + *target + "'");
  }
  std::int64_t id = 0;
  Status st = m_store.transaction([&]() -> Status {
    if (std::string_view(scope) == "key") {
      auto row = m_store.get(*target);
      if (!row) return std::move(row).error();
      if (!*row) return Error::not_found("no record with key '" + *target + "'");
    }
    const store::HoldRow hold{0, scope, *target, *reason, m_clock.now(), actor.name};
    auto added = m_store.add_hold(hold);
    if (!added) return std::move(added).error();
    id = *added;
    auto appended = m_audit.append(hold_entry(hold, "hold.place", actor, "hold " + std::to_string(id) + ": " + *reason));
    if (!appended) return std::move(appended).error();
    return {};
  });
  if (!st) return std::move(st).error();
  return id;
}

Status Service::release_hold(const nlohmann::json& params, const Actor& actor) {
  if (auto st = only_keys(params, {"id", "reason"}); !st) return st;
  const auto it = params.find("id");
  if (it == params.end() || !it->is_number_integer()) return bad("invalid_params", "'id' must be an integer");
  const std::int64_t id = it->get<std::int64_t>();
  std::optional<std::string> reason;
  if (const auto r = params.find("reason"); r != params.end()) {
    if (!r->is_string()) return bad("invalid_params", "'reason' must be a string");
    reason = r->get<std::string>();
  }
  return m_store.transaction([&]() -> Status {
    auto holds = m_store.holds();
    if (!holds) return std::move(holds).error();
    const auto h = std::find_if(holds->begin(), holds->end(), [&](const store::HoldRow& x) { return x.id == id; });
    if (h == holds->end()) return Error::not_found("no hold with id " + std::to_string(id));
    auto removed = m_store.remove_hold(id);
    if (!removed) return std::move(removed).error();
    auto appended = m_audit.append(
        hold_entry(*h, "hold.release", actor, "hold " + std::to_string(id) + (reason ? ": " + *reason : std::string())));
    if (!appended) return std::move(appended).error();
    return {};
  });
}

}  // namespace retentiond::actions
