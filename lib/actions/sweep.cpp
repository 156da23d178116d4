// Service: sweeps — the phase walker, running phases (archive, anonymise,
// purge) in batches, dry runs, and what status shows.

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "lib/actions/service.hpp"
#include "lib/crypto/crypto.hpp"

#include <spdlog/spdlog.h>

namespace retentiond::actions {

using calendar::Instant;
using policy::Action;
using store::RecordState;

namespace {

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

constexpr std::size_t kPage = 1000;

}  // namespace

std::optional<nlohmann::json> anonymise_value(const nlohmann::json& value, policy::Strategy strategy,
                                              const std::function<std::string(std::string_view)>& keyed_hash) {
  using policy::Strategy;
  switch (strategy) {
    case Strategy::keep: return value;
    case Strategy::drop: return std::nullopt;
    case Strategy::redact: return nlohmann::json("[redacted]");
    case Strategy::hmac: return nlohmann::json(keyed_hash(value.is_string() ? value.get<std::string>() : value.dump()));
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

std::optional<nlohmann::json> anonymise_value(const nlohmann::json& value, policy::Strategy strategy,
                                              const std::string& secret) {
  return anonymise_value(value, strategy, [&](std::string_view text) { return crypto::hmac_sha256_hex(secret, text); });
}

std::vector<PhaseRun> walk_phases(const store::Schedule& record, const policy::Category& category,
                                  calendar::MonthDay fiscal_year_end, Instant start, Instant until) {
  std::vector<PhaseRun> out;
  store::Schedule r;
  r.dates = record.dates;
  r.next_phase = record.next_phase;
  r.due = record.due;
  Instant previous = start;
  while (static_cast<std::size_t>(r.next_phase) < category.phases.size() && r.due && *r.due < until) {
    const Instant at = std::max(*r.due, previous);
    const Action action = category.phases[static_cast<std::size_t>(r.next_phase)].action;
    out.push_back(PhaseRun{r.next_phase, action, at});
    if (action == Action::purge) break;
    previous = at;
    ++r.next_phase;
    reschedule_under(r, category, fiscal_year_end);
  }
  return out;
}

void Service::anonymise(Record& record, const policy::Category& category) const {
  nlohmann::json out = nlohmann::json::object();
  const auto keyed_hash = [this](std::string_view text) { return m_vault.keyed_hash(text); };
  for (const auto& [field, strategy] : category.anonymise) {
    const auto it = record.fields.find(field);
    if (it == record.fields.end()) continue;
    if (auto v = anonymise_value(*it, strategy, keyed_hash)) out[field] = std::move(*v);
  }
  // Fields the table does not name are dropped: the safe default.
  record.fields = std::move(out);
  record.subject.reset();
  record.subject_ref.reset();
  record.state = RecordState::anonymised;
}

Status Service::run_phase(Record& record, const policy::Policy& policy, const policy::Category& category,
                          const PhaseRun& run, Instant now, const Actor& actor, SweepCounts& counts) {
  // A purge needs no plaintext; the other actions rewrite the values, and
  // a connector's job carries the subject.
  if ((run.action != Action::purge || !category.connectors.empty()) && !record.has_values) {
    auto full = m_vault.get(record.key);
    if (!full) return std::move(full).error();
    if (!*full) return Error::internal("record '" + record.key + "' vanished during its sweep");
    record.subject = std::move((*full)->subject);
    record.fields = std::move((*full)->fields);
    record.has_values = true;
  }
  audit::Entry e = entry(policy, std::string(policy::to_string(run.action)), actor);
  e.at = now;
  e.key = record.key;
  e.category = record.category;
  e.phase = run.phase;
  e.subject_ref = record.subject_ref;
  e.reason = "retention: " + category.phases[static_cast<std::size_t>(run.phase)].at_text;
  // The change, its audit entry and its connectors' jobs go into the
  // caller's one transaction.
  auto appended = m_audit.append(e);
  if (!appended) return std::move(appended).error();
  if (auto st = enqueue_jobs(category, std::string(policy::to_string(run.action)), record, record.subject, run.phase, now,
                             appended->seq);
      !st) {
    return st;
  }

  if (run.action == Action::purge) {
    ++counts.purged;
    return dispose(record, policy, now, actor);
  }
  record.done.resize(static_cast<std::size_t>(run.phase), now);
  record.done.push_back(now);
  record.next_phase = run.phase + 1;
  reschedule_under(record, category, policy.daemon.fiscal_year_end);
  if (run.action == Action::anonymise) {
    ++counts.anonymised;
    anonymise(record, category);
    return m_vault.replace(record);  // a fresh key: never an in-place update of personal values
  }
  // Archive: out of the active data, into the archive, in this transaction.
  ++counts.archived;
  if (record.location == store::Location::archive) return m_vault.update_schedule(record);
  auto removed = m_vault.remove(record.key, store::Location::active);
  if (!removed) return std::move(removed).error();
  record.location = store::Location::archive;
  if (record.state == RecordState::active) record.state = RecordState::archived;
  return m_vault.insert(record);
}

Result<SweepCounts> Service::sweep_batch(std::size_t max_records, const Actor& actor, SweepCursor& cursor,
                                         std::optional<std::chrono::steady_clock::time_point> deadline) {
  const auto policy = this->policy();
  SweepCounts counts;
  SweepCursor next = cursor;
  const Instant now = m_clock.now();
  Status st = m_vault.transaction([&]() -> Status {
    counts = SweepCounts{};
    next = cursor;
    auto holds = load_holds(m_vault);
    if (!holds) return std::move(holds).error();
    auto due = m_vault.due(now, max_records, cursor.position);
    if (!due) return std::move(due).error();
    next.done = due->size() < max_records;
    for (std::size_t i = 0; i < due->size(); ++i) {
      auto& record = (*due)[i];
      // Out of time: stop after this many, the cursor just past the last done.
      if (i > 0 && deadline && std::chrono::steady_clock::now() >= *deadline) {
        next.done = false;
        break;
      }
      next.position = store::StoreReader::DueCursor{*record.due, record.key};
      ++counts.visited;
      if (holds->covers(record)) {
        ++counts.held;
        continue;
      }
      const policy::Category* category = policy->find(record.category);
      if (category == nullptr) {
        ++counts.stuck;  // cannot happen while reloads refuse to drop live categories
        continue;
      }
      // All phases already due run in this sweep, in order.
      for (const auto& run : walk_phases(record, *category, policy->daemon.fiscal_year_end, now, Instant{now.seconds + 1})) {
        if (auto r = run_phase(record, *policy, *category, run, now, actor, counts); !r) return r;
      }
    }
    return {};
  });
  if (!st) return std::move(st).error();
  cursor = next;  // only a committed batch moves the cursor
  return counts;
}

Result<SweepCounts> Service::count_due() {
  const auto policy = this->policy();
  const Instant now = m_clock.now();
  SweepCounts counts;
  Status st = m_slow.read([&]() -> Status {
    counts = SweepCounts{};
    auto holds = load_holds(m_slow);
    if (!holds) return std::move(holds).error();
    std::optional<store::StoreReader::DueCursor> cursor;
    for (;;) {
      auto page = m_slow.due(now, kPage, cursor);
      if (!page) return std::move(page).error();
      if (page->empty()) return {};
      cursor = store::StoreReader::DueCursor{*page->back().due, page->back().key};
      for (const auto& record : *page) {
        if (holds->covers(record)) {
          ++counts.held;
          continue;
        }
        ++counts.due_records;
        const policy::Category* category = policy->find(record.category);
        if (category == nullptr) continue;
        // Walk the phases the way sweep_batch would, without touching the store.
        for (const auto& run : walk_phases(record, *category, policy->daemon.fiscal_year_end, now, Instant{now.seconds + 1})) {
          (run.action == Action::purge ? counts.purged : run.action == Action::archive ? counts.archived : counts.anonymised) += 1;
        }
      }
    }
  });
  if (!st) return std::move(st).error();
  return counts;
}

// Without walking the due range: the due records per category (kept per
// day by the store), minus held categories, minus the due records under a
// key or subject hold (a lookup each), each counted once.
Result<std::int64_t> Service::backlog() { return backlog(m_reader, m_clock.now()); }

Result<std::int64_t> Service::backlog(vault::RecordReader& reader, Instant now) {
  std::int64_t backlog = 0;
  Status st = reader.read([&]() -> Status {
    auto due = reader.store().due_by_category(now);
    if (!due) return std::move(due).error();
    auto holds = load_holds(reader);
    if (!holds) return std::move(holds).error();
    std::set<std::string> held_categories;
    for (const auto& h : holds->holds) {
      if (h.scope == "category") held_categories.insert(h.target);
    }
    backlog = 0;
    for (const auto& [category, n] : *due) {
      if (!held_categories.count(category)) backlog += n;
    }
    std::set<std::string> held_keys;
    const auto uncount = [&](const store::Schedule& record) {
      if (record.due && *record.due <= now && !held_categories.count(record.category) && held_keys.insert(record.key).second) {
        --backlog;
      }
    };
    for (std::size_t i = 0; i < holds->holds.size(); ++i) {
      const auto& h = holds->holds[i];
      if (h.scope == "key") {
        auto record = reader.store().schedule_of(h.target);
        if (!record) return std::move(record).error();
        if (*record) uncount(**record);
      } else if (h.scope == "subject") {
        auto records = reader.store().by_subject_ref(holds->subject_refs[i]);
        if (!records) return std::move(records).error();
        for (const auto& record : *records) uncount(record);
      }
    }
    return {};
  });
  if (!st) return std::move(st).error();
  return backlog;
}

Result<Overview> Service::overview() {
  Overview out;
  Status st = m_reader.read([&]() -> Status {
    auto counts = m_reader.store().counts();
    if (!counts) return std::move(counts).error();
    out.records = *counts;
    auto next = m_reader.store().next_due();
    if (!next) return std::move(next).error();
    out.next_due = *next;
    auto backlog = this->backlog();
    if (!backlog) return std::move(backlog).error();
    out.backlog = *backlog;
    auto holds = m_reader.store().holds();
    if (!holds) return std::move(holds).error();
    out.holds = static_cast<std::int64_t>(holds->size());
    auto daemons = m_reader.store().daemons();
    if (!daemons) return std::move(daemons).error();
    out.daemons = std::move(*daemons);
    return {};
  });
  if (!st) return std::move(st).error();
  return out;
}

Result<std::optional<Instant>> Service::next_due(std::optional<Instant> after) {
  return m_reader.store().next_due(after);
}

Result<std::vector<store::AuditRow>> Service::audit_tail(const AuditTailRequest& request, bool slow) {
  vault::RecordReader& reader = slow ? m_slow : m_reader;
  store::StoreReader::AuditQuery q;
  q.limit = request.limit;
  q.after_seq = request.after;
  q.key = request.key;
  if (request.subject) q.subject_ref = reader.subject_ref(*request.subject);
  return reader.store().audit_entries(q);
}

Result<std::optional<store::AuditRow>> Service::audit_head(bool slow) {
  vault::RecordReader& reader = slow ? m_slow : m_reader;
  return reader.store().last_audit();
}

Result<bool> Service::audit_extends(std::int64_t seq, const std::string& hash, bool slow) {
  if (seq == 0) return hash == audit::kGenesisHash;
  vault::RecordReader& reader = slow ? m_slow : m_reader;
  store::StoreReader::AuditQuery q;
  q.after_seq = seq - 1;
  q.limit = 1;
  auto rows = reader.store().audit_entries(q);
  if (!rows) return std::move(rows).error();
  return !rows->empty() && rows->front().seq == seq && rows->front().hash == hash;
}

void Service::verified(const audit::VerifyReport& report) {
  if (!report.ok) return;  // the next call finds the same damage again
  std::lock_guard lock(m_verify_mutex);
  if (report.entries < m_verified_seq) return;  // a slower call that started earlier
  m_verified_seq = report.entries;
  m_verified_hash = report.head;
}

Result<std::optional<audit::VerifyReport>> Service::verify_audit_quick() {
  std::int64_t from = 0;
  std::string hash;
  {
    std::lock_guard lock(m_verify_mutex);
    from = m_verified_seq;
    hash = m_verified_hash;
  }
  auto head = m_reader.store().last_audit();
  if (!head) return std::move(head).error();
  const std::int64_t last = *head ? (*head)->seq : 0;
  if (last - from > kQuickVerifyEntries) return std::optional<audit::VerifyReport>{};
  auto report = audit::verify(m_reader.store(), from, hash);
  if (!report) return std::move(report).error();
  verified(*report);
  return std::optional<audit::VerifyReport>{std::move(*report)};
}

Result<audit::VerifyReport> Service::verify_audit(bool full) {
  std::int64_t from = 0;
  std::string hash = audit::kGenesisHash;
  if (!full) {
    std::lock_guard lock(m_verify_mutex);
    from = m_verified_seq;
    hash = m_verified_hash;
  }
  std::int64_t next_report = 100000;
  auto report = audit::verify(m_slow.store(), from, hash, [&](std::int64_t checked) {
    if (checked < next_report) return;
    spdlog::info("audit.verify_progress checked={} from={}{}", checked, from, full ? " full" : "");
    next_report += 100000;
  });
  if (!report) return std::move(report).error();
  verified(*report);
  return report;
}

}  // namespace retentiond::actions
