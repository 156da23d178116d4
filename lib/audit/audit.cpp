#include "lib/audit/audit.hpp"

#include <algorithm>

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

Result<VerifyReport> verify(store::StoreReader& store, std::int64_t after_seq, const std::string& after_hash,
                            const std::function<void(std::int64_t checked)>& progress) {
  VerifyReport report;
  report.entries = after_seq;
  std::string prev = after_hash;
  if (after_seq > 0) {
    // The end of the prefix verified before must not have moved: its hash
    // is the one remembered, and it still chains from the entry before it
    // (so an entry edited in place, hash column untouched, is found too).
    store::StoreReader::AuditQuery q;
    q.after_seq = std::max<std::int64_t>(after_seq - 2, 0);
    q.limit = after_seq >= 2 ? 2 : 1;
    auto rows = store.audit_entries(q);
    if (!rows) return std::move(rows).error();
    const store::AuditRow* last = !rows->empty() && rows->back().seq == after_seq ? &rows->back() : nullptr;
    const std::string before = after_seq == 1 ? std::string(kGenesisHash)
                               : rows->size() == 2 && rows->front().seq == after_seq - 1 ? rows->front().hash
                                                                                        : std::string();
    if (last == nullptr || last->hash != after_hash || chain_hash(before, *last) != last->hash) {
      report.ok = false;
      report.first_bad = after_seq;
      if (last != nullptr) prev = last->hash;
    }
  }
  std::int64_t expected_seq = after_seq + 1;
  store::StoreReader::AuditQuery q;
  q.after_seq = after_seq;
  q.limit = 1000;
  for (;;) {
    auto page = store.audit_entries(q);
    if (!page) return std::move(page).error();
    if (page->empty()) break;
    for (const auto& row : *page) {
      ++report.checked;
      if (report.ok && (row.seq != expected_seq || chain_hash(prev, row) != row.hash)) {
        report.ok = false;
        report.first_bad = row.seq;
      }
      prev = row.hash;
      expected_seq = row.seq + 1;
      report.entries = row.seq;
    }
    q.after_seq = page->back().seq;
    if (progress) progress(report.checked);
  }
  report.head = prev;
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
