// Service: the data subject's rights — export (access, portability) and
// erasure of a subject's records, of some categories of them, or of one
// record.

#include <set>

#include "lib/actions/service.hpp"

namespace retentiond::actions {

using calendar::Instant;

Result<std::vector<Record>> Service::export_subject(const std::string& subject, const Actor& actor) {
  const auto policy = this->policy();
  std::vector<Record> records;
  Status st = m_vault.transaction([&]() -> Status {
    auto found = m_vault.by_subject(subject);
    if (!found) return std::move(found).error();
    records = std::move(*found);
    audit::Entry e = entry(*policy, "export", actor);
    e.subject_ref = m_vault.subject_ref(subject);
    e.reason = std::to_string(records.size()) + (records.size() == 1 ? " record exported" : " records exported");
    if (auto appended = m_audit.append(e); !appended) return std::move(appended).error();
    return {};
  });
  if (!st) return std::move(st).error();
  return records;
}

Status Service::erase_records(const std::vector<Record>& records, const EraseRequest& request,
                              const policy::Policy& policy, const Actor& actor, ErasureReport& report) {
  auto holds = load_holds(m_vault);
  if (!holds) return std::move(holds).error();
  for (const auto& record : records) {
    const policy::Category* category = policy.find(record.category);
    const bool erasable = category == nullptr || category->erasable;
    if (!erasable || holds->covers(record)) {
      std::optional<Instant> until;
      for (const auto& phase : schedule(record, policy)) {
        if (phase.action == policy::Action::purge) until = phase.due;
      }
      report.retained.push_back({record.key, record.category, erasable ? "hold" : "legal_obligation", until});
      continue;
    }
    report.erased.push_back({record.key, record.category, 0});
    if (request.dry_run) continue;
    // A connector's job names the subject: the request's, or (record.erase)
    // the record's own, read before it goes.
    std::optional<std::string> subject = request.subject;
    if (!subject && record.subject_ref && category != nullptr && !category->connectors.empty()) {
      auto full = m_vault.get(record.key);
      if (!full) return std::move(full).error();
      if (*full) subject = (*full)->subject;
    }
    // One instant for the entries, the undo windows they open and the receipt.
    if (auto st = dispose(record, policy, report.at, actor); !st) return st;
    audit::Entry e = entry(policy, "erase", actor);
    e.at = report.at;
    e.key = record.key;
    e.category = record.category;
    e.subject_ref = record.subject_ref;
    e.reason = request.reason;
    auto appended = m_audit.append(e);
    if (!appended) return std::move(appended).error();
    if (category != nullptr && !category->connectors.empty()) {
      if (auto st = enqueue_jobs(*category, "erase", record, subject, std::nullopt, report.at, appended->seq); !st) return st;
    }
    report.erased.back().audit_seq = appended->seq;
    report.head_seq = appended->seq;
    report.head_hash = appended->hash;
  }
  return {};
}

Result<ErasureReport> Service::erase(const EraseRequest& request, const Actor& actor) {
  const auto policy = this->policy();
  // Purpose-limited erasure (an objection to marketing must not erase the
  // invoices): only the records of the named categories are considered.
  std::optional<std::set<std::string>> only;
  if (request.categories) {
    only.emplace();
    for (const auto& name : *request.categories) {
      if (policy->find(name) == nullptr) {
        return Error::invalid_params("unknown_category", "unknown category '" + name + "'; nothing was changed");
      }
      only->insert(name);
    }
  }
  ErasureReport report;
  Status st = m_vault.transaction([&]() -> Status {
    report = ErasureReport{};
    report.at = m_clock.now();
    report.policy_hash = policy->hash;
    if (request.subject) report.subject_ref = m_vault.subject_ref(*request.subject);
    // The head the receipt names when nothing is appended (all retained).
    auto head = m_vault.store().last_audit();
    if (!head) return std::move(head).error();
    if (*head) {
      report.head_seq = (*head)->seq;
      report.head_hash = (*head)->hash;
    }
    std::vector<Record> records;
    if (request.key) {
      // Read without its values: erasing needs none.
      auto record = m_vault.schedule_of(*request.key);
      if (!record) return std::move(record).error();
      if (!*record) return Error::not_found("no record with key '" + *request.key + "'");
      report.subject_ref = (*record)->subject_ref;
      records.push_back(std::move(**record));
    } else {
      auto found = m_vault.subject_schedules(*request.subject);
      if (!found) return std::move(found).error();
      records = std::move(*found);
    }
    if (only) std::erase_if(records, [&](const Record& r) { return only->count(r.category) == 0; });
    return erase_records(records, request, *policy, actor, report);
  });
  if (!st) return std::move(st).error();
  return report;
}

}  // namespace retentiond::actions
