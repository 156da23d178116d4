#include "lib/audit/audit.hpp"

#include <nlohmann/json.hpp>

#include "lib/crypto/crypto.hpp"

namespace retentiond::audit {
namespace {

template <typename T>
nlohmann::json opt(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

}  // namespace

std::string canonical_content(const store::AuditRow& r) {
  // A JSON array in a fixed order: unambiguous and independent of key sorting.
  const nlohmann::json j = {r.seq,          r.at.seconds,    r.action, opt(r.key),    opt(r.category),
                            opt(r.phase),   opt(r.subject_ref), r.actor, opt(r.reason), r.policy_hash};
  return j.dump();
}

std::string chain_hash(const std::string& prev_hash, const store::AuditRow& row) {
  return crypto::sha256_hex(prev_hash + "\n" + canonical_content(row));
}

Result<VerifyReport> verify(store::StoreReader& store) {
  VerifyReport report;
  // One snapshot: entries appended meanwhile are not half seen.
  Status st = store.read([&]() -> Status {
    report = VerifyReport{};
    std::string prev = kGenesisHash;
    std::int64_t expected_seq = 1;
    store::StoreReader::AuditQuery q;
    q.after_seq = 0;
    q.limit = 1000;
    for (;;) {
      auto page = store.audit_entries(q);
      if (!page) return std::move(page).error();
      if (page->empty()) break;
      for (const auto& row : *page) {
        ++report.entries;
        if (report.ok && (row.seq != expected_seq || chain_hash(prev, row) != row.hash)) {
          report.ok = false;
          report.first_bad = row.seq;
        }
        prev = row.hash;
        expected_seq = row.seq + 1;
      }
      q.after_seq = page->back().seq;
    }
    report.head = prev;
    return {};
  });
  if (!st) return std::move(st).error();
  return report;
}

Result<store::AuditRow> AuditLog::append(const Entry& e) {
  auto head = m_store.last_audit();
  if (!head) return std::move(head).error();
  store::AuditRow row;
  row.seq = *head ? (*head)->seq + 1 : 1;
  row.at = e.at;
  row.action = e.action;
  row.key = e.key;
  row.category = e.category;
  row.phase = e.phase;
  row.subject_ref = e.subject_ref;
  row.actor = e.actor;
  row.reason = e.reason;
  row.policy_hash = e.policy_hash;
  row.hash = chain_hash(*head ? (*head)->hash : std::string(kGenesisHash), row);
  if (auto st = m_store.append_audit(row); !st) return std::move(st).error();
  return row;
}

}  // namespace retentiond::audit
