// The store's part of the metrics (lib/metrics renders them): everything is
// read from kept counts, the audit entries appended since the last scrape,
// and a bounded walk for the deletion lateness, so a scrape costs the same
// with a thousand records or a hundred million.

#include <set>

#include "lib/actions/service.hpp"

#include <algorithm>

namespace retentiond::actions {

using calendar::Instant;

namespace {

// Audit entries read per page while catching up on the actions done.
constexpr std::size_t kAuditPage = 5000;

}  // namespace

Status Service::start_action_counts() {
  auto head = m_reader.store().last_audit();
  if (!head) return std::move(head).error();
  m_counted_seq = *head ? (*head)->seq : 0;
  return {};
}

// The first unheld record in (due, key) order from the earliest day whose
// due records include an unheld category. Records under a key or subject
// hold, and those of held categories due the same days, are walked past,
// at most kLatenessScan of them.
Result<std::optional<Instant>> Service::oldest_unheld_due(vault::RecordReader& reader, const HoldSet& holds,
                                                          Instant now, bool& bounded) {
  bounded = false;
  std::set<std::string> held_categories;
  for (const auto& h : holds.holds) {
    if (h.scope == "category") held_categories.insert(h.target);
  }
  auto days = reader.store().due_days(now);
  if (!days) return std::move(days).error();
  const auto first = std::find_if(days->begin(), days->end(),
                                  [&](const store::DueDay& d) { return !held_categories.count(d.category); });
  if (first == days->end()) return std::optional<Instant>{};
  // Just before the day starts: the cursor is exclusive.
  std::optional<store::StoreReader::DueCursor> cursor = store::StoreReader::DueCursor{Instant{first->day.seconds - 1}, ""};
  std::size_t walked = 0;
  std::optional<Instant> last_seen;
  while (walked < kLatenessScan) {
    auto page = reader.store().due(now, std::min<std::size_t>(512, kLatenessScan - walked), cursor);
    if (!page) return std::move(page).error();
    if (page->empty()) return std::optional<Instant>{};
    for (const auto& record : *page) {
      if (!holds.covers(record)) return record.due;
      last_seen = record.due;
    }
    walked += page->size();
    cursor = store::StoreReader::DueCursor{*page->back().due, page->back().key};
  }
  bounded = true;
  return last_seen;
}

Result<MetricsSnapshot> Service::metrics() {
  MetricsSnapshot out;
  out.now = m_clock.now();
  Status st = m_slow.read([&]() -> Status {
    auto records = m_slow.store().counts_by_category();
    if (!records) return std::move(records).error();
    out.records = std::move(*records);
    auto due = m_slow.store().due_by_category(out.now);
    if (!due) return std::move(due).error();
    out.due = std::move(*due);
    auto backlog = this->backlog(m_slow, out.now);
    if (!backlog) return std::move(backlog).error();
    out.backlog = *backlog;
    auto holds = load_holds(m_slow);
    if (!holds) return std::move(holds).error();
    for (const auto& h : holds->holds) ++out.holds[h.scope];
    auto oldest = oldest_unheld_due(m_slow, *holds, out.now, out.lateness_bounded);
    if (!oldest) return std::move(oldest).error();
    out.oldest_due = *oldest;
    auto head = m_slow.store().last_audit();
    if (!head) return std::move(head).error();
    out.audit_seq = *head ? (*head)->seq : 0;
    auto connectors = m_slow.store().connector_stats();
    if (!connectors) return std::move(connectors).error();
    out.connectors = std::move(*connectors);
    for (const auto& c : policy()->connectors) {
      const bool known = std::any_of(out.connectors.begin(), out.connectors.end(),
                                     [&](const store::ConnectorStats& k) { return k.connector == c.name; });
      if (!known) out.connectors.push_back(store::ConnectorStats{c.name, 0, 0, 0, 0, 0, {}, {}, {}});
    }
    return {};
  });
  if (!st) return std::move(st).error();

  // The actions done since the last call, up to the head just read (entries
  // are only ever appended, so each page is final).
  while (m_counted_seq < out.audit_seq) {
    store::StoreReader::AuditQuery q;
    q.after_seq = m_counted_seq;
    q.limit = kAuditPage;
    auto page = m_slow.store().audit_entries(q);
    if (!page) return std::move(page).error();
    if (page->empty()) break;
    for (const auto& e : *page) {
      if (e.seq > out.audit_seq) break;
      ++m_action_counts[{e.action, e.category.value_or("")}];
      m_counted_seq = e.seq;
    }
  }
  out.actions = m_action_counts;
  return out;
}

}  // namespace retentiond::actions
