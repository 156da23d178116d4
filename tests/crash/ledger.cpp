#include "tests/crash/ledger.hpp"

#include <algorithm>
#include <charconv>
#include <unordered_set>

#include "lib/audit/audit.hpp"
#include "lib/crypto/crypto.hpp"

namespace retentiond::crash {
namespace {

void add_unique(std::vector<std::int64_t>& v, std::int64_t x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

bool contains(const std::vector<std::int64_t>& v, std::int64_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

std::string time_or_absent(std::int64_t t) { return t == kAbsent ? std::string("absent") : format_time(t); }

std::string times(const std::vector<std::int64_t>& v) {
  std::string out;
  for (const auto t : v) out += (out.empty() ? "" : ", ") + time_or_absent(t);
  return "{" + out + "}";
}

std::string due_text(const std::optional<std::int64_t>& d) { return d ? format_time(*d) : std::string("null"); }

// "hold <id>" or "hold <id>: <reason>".
std::optional<std::int64_t> hold_id(const std::optional<std::string>& reason) {
  if (!reason || reason->rfind("hold ", 0) != 0) return std::nullopt;
  std::int64_t id = 0;
  const char* first = reason->data() + 5;
  const char* last = reason->data() + reason->size();
  const auto [p, ec] = std::from_chars(first, last, id);
  if (ec != std::errc{} || (p != last && *p != ':')) return std::nullopt;
  return id;
}

std::string seq_text(const store::AuditRow& a) { return "audit entry " + std::to_string(a.seq) + " (" + a.action + ")"; }

}  // namespace

// ---------------------------------------------------------------- requests

std::uint32_t Ledger::begin_put(int owner, std::vector<NewRecord>& records) {
  std::lock_guard lock(m_mutex);
  const auto group = static_cast<std::uint32_t>(m_groups.size());
  Group g;
  for (auto& r : records) {
    r.id = static_cast<std::uint32_t>(m_keys.size());
    KeyInfo k;
    k.subject = r.subject;
    k.group = group;
    k.category = static_cast<std::uint8_t>(r.category);
    k.owner = static_cast<std::uint8_t>(owner);
    m_keys.push_back(k);
    m_seen.push_back(0);
    m_dates[r.id] = {DateBook{{r.collected}, {r.collected}}, DateBook{{r.own_date}, {r.own_date}}};
    g.ids.push_back(r.id);
  }
  m_stats.keys_sent += records.size();
  m_groups.push_back(std::move(g));
  return group;
}

void Ledger::end_put(std::uint32_t group, bool acked) {
  std::lock_guard lock(m_mutex);
  Group& g = m_groups[group];
  g.acked = acked;
  if (!acked) {
    m_pending_groups.push_back(group);
    ++m_stats.unacked_groups;
    return;
  }
  for (const auto id : g.ids) {
    m_keys[id].exist = Exist::yes;
    make_live(id);
  }
  m_stats.keys_acked += g.ids.size();
}

std::uint32_t Ledger::begin_event(const std::vector<std::uint32_t>& ids, std::int64_t value,
                                  std::optional<std::uint32_t> key, std::optional<std::uint32_t> subject) {
  std::lock_guard lock(m_mutex);
  ++m_stats.events_sent;
  m_events.push_back(EventBook{key ? std::optional<std::string>(key_name(*key)) : std::nullopt, subject, value, false, false});
  const auto event = static_cast<std::uint32_t>(m_events.size() - 1);
  for (const auto id : ids) {
    const auto it = m_dates.find(id);
    if (it == m_dates.end()) continue;
    add_unique(it->second[1].possible, value);
    add_unique(it->second[1].allowed, value);
  }
  return event;
}

void Ledger::end_event(std::uint32_t event, const std::vector<std::uint32_t>& ids, std::int64_t value, bool acked) {
  if (!acked) return;
  std::lock_guard lock(m_mutex);
  m_events[event].acked = true;
  // Answered: a record that is not anonymised now was not anonymised then,
  // so it took the value (its worker sends nothing else on it meanwhile).
  for (const auto id : ids) {
    const auto it = m_dates.find(id);
    if (it != m_dates.end()) it->second[1].allowed = {value};
  }
}

std::uint32_t Ledger::begin_erase(std::uint32_t subject) {
  std::lock_guard lock(m_mutex);
  m_erasures.push_back(Erase{subject, false, false, {}});
  return static_cast<std::uint32_t>(m_erasures.size() - 1);
}

void Ledger::end_erase(std::uint32_t request, bool acked, const std::vector<std::uint32_t>& erased) {
  if (!acked) return;
  std::lock_guard lock(m_mutex);
  m_erasures[request].acked = true;
  m_erasures[request].erased = erased;
  ++m_stats.erasures_acked;
}

void Ledger::hold_acked(std::int64_t id) {
  std::lock_guard lock(m_mutex);
  m_acked_holds.push_back(id);
  ++m_stats.holds_acked;
}

void Ledger::release_acked(std::int64_t id) {
  std::lock_guard lock(m_mutex);
  m_acked_releases.push_back(id);
  ++m_stats.releases_acked;
}

// ----------------------------------------------------------------- checker

const std::string& Ledger::subject_ref(std::uint32_t subject) {
  auto it = m_subject_refs.find(subject);
  if (it == m_subject_refs.end()) {
    it = m_subject_refs.emplace(subject, crypto::hmac_sha256_hex(m_secret, subject_name(subject))).first;
  }
  return it->second;
}

void Ledger::make_live(std::uint32_t id) {
  KeyInfo& k = m_keys[id];
  if (k.live || k.destroyed_seq != 0) return;
  k.live = true;
  m_live.push_back(id);
}

nlohmann::json Ledger::expected(std::uint32_t id) const {
  const KeyInfo& k = m_keys[id];
  if (k.anonymised) return {{"subject", nullptr}, {"fields", anonymised_fields(k.category, id, m_secret)}};
  return {{"subject", subject_name(k.subject)}, {"fields", fields_for(k.category, id)}};
}

std::vector<std::int64_t> Ledger::open_hold_ids() const {
  std::vector<std::int64_t> out;
  for (const auto& [id, h] : m_open_holds) out.push_back(id);
  return out;
}

bool Ledger::covered_by_hold(const store::AuditRow& a, const KeyInfo& k, std::int64_t* which) const {
  const char* category = categories()[k.category].name;
  for (const auto& [id, h] : m_open_holds) {
    if ((h.scope == "key" && a.key && h.target == *a.key) || (h.scope == "category" && h.target == category) ||
        (h.scope == "subject" && a.subject_ref && h.target == *a.subject_ref)) {
      *which = id;
      return true;
    }
  }
  return false;
}

void Ledger::apply_record_action(const store::AuditRow& a, std::vector<std::string>& v) {
  const auto id = a.key ? key_id(*a.key) : std::nullopt;
  if (!id || *id >= m_keys.size()) {
    v.push_back(seq_text(a) + " names a key the harness never sent: " + a.key.value_or("null"));
    return;
  }
  KeyInfo& k = m_keys[*id];
  const std::string name = *a.key;
  k.audit_seen = true;
  if (k.exist == Exist::never) {
    v.push_back(seq_text(a) + " acts on " + name + ", whose unanswered put was stored nowhere at an earlier check");
  }
  if (k.destroyed_seq != 0) {
    v.push_back(seq_text(a) + " acts on " + name + ", already destroyed by audit entry " +
                std::to_string(k.destroyed_seq) + " (a second destroying entry, or an action after destruction)");
    return;
  }
  const CategorySpec& cat = categories()[k.category];
  if (a.category != std::optional<std::string>(cat.name)) {
    v.push_back(seq_text(a) + " on " + name + " names category " + a.category.value_or("null") + ", not " + cat.name);
  }
  if (a.category == std::optional<std::string>(kConnectorCategory)) {
    m_decisions[a.seq] = Decision{name, a.action, a.action == "erase" ? std::nullopt : a.phase};
    m_new_decisions.push_back(a.seq);
  }
  std::int64_t hold = 0;
  if (covered_by_hold(a, k, &hold)) {
    v.push_back(seq_text(a) + " acted on " + name + " while hold " + std::to_string(hold) + " covered it");
  }
  if (!k.anonymised && a.subject_ref != std::optional<std::string>(subject_ref(k.subject))) {
    v.push_back(seq_text(a) + " on " + name + ": subject_ref is not the HMAC of its subject");
  }
  if (k.anonymised && a.subject_ref) {
    v.push_back(seq_text(a) + " on anonymised " + name + " still carries a subject_ref");
  }
  if (a.action == "erase") {
    if (!cat.erasable) v.push_back(seq_text(a) + " erased " + name + ", of the legal-obligation category " + cat.name);
    if (a.phase) v.push_back(seq_text(a) + " on " + name + " has a phase");
    const auto req = a.reason ? erase_request(*a.reason) : std::nullopt;
    if (!req || *req >= m_erasures.size() || m_erasures[*req].subject != k.subject) {
      v.push_back(seq_text(a) + " erased " + name + " under reason '" + a.reason.value_or("null") +
                  "', which is no erasure of its subject");
    } else {
      k.erased_by = *req + 1;
    }
    k.destroyed_seq = a.seq;
    k.destroyed_at = a.at.seconds;
    return;
  }
  if (!a.phase || *a.phase != k.phases_done || static_cast<std::size_t>(*a.phase) >= cat.phases.size()) {
    v.push_back(seq_text(a) + " on " + name + " is phase " + (a.phase ? std::to_string(*a.phase) : "null") +
                ", but " + std::to_string(k.phases_done) + " phase entries came before it");
    return;
  }
  const PhaseSpec& ph = cat.phases[static_cast<std::size_t>(*a.phase)];
  if (a.action != to_string(ph.action)) {
    v.push_back(seq_text(a) + " on " + name + ": phase " + std::to_string(*a.phase) + " of " + cat.name + " is " +
                to_string(ph.action));
  }
  if (a.reason != std::optional<std::string>(std::string("retention: ") + ph.at)) {
    v.push_back(seq_text(a) + " on " + name + " has reason '" + a.reason.value_or("null") + "'");
  }
  const auto& dates = m_dates[*id];
  const auto lower = due_lower(ph, dates[0].possible, dates[1].possible);
  if (!lower) {
    v.push_back(seq_text(a) + " ran on " + name + ", whose " + cat.date + " was never set (" +
                times(dates[1].possible) + ")");
  } else if (*lower > a.at.seconds) {
    v.push_back(seq_text(a) + " ran on " + name + " at " + format_time(a.at.seconds) +
                ", before it could be due (at the earliest " + format_time(*lower) + ")");
  }
  ++k.phases_done;
  switch (ph.action) {
    case Action::archive: k.archived = true; break;
    case Action::anonymise:
      k.anonymised = true;
      m_new_anonymised.push_back(*id);
      break;
    case Action::purge:
      k.destroyed_seq = a.seq;
      k.destroyed_at = a.at.seconds;
      break;
  }
}

// An `event` entry ("<name> = <time>: N records updated") belongs to one
// event.record the harness sent since the last check, on the same key or
// subject and with the same time.
void Ledger::apply_event(const store::AuditRow& a, std::vector<std::string>& v) {
  std::optional<std::int64_t> value;
  if (a.reason) {
    const auto eq = a.reason->find(" = ");
    const auto colon = a.reason->find(": ", eq == std::string::npos ? 0 : eq);
    if (eq != std::string::npos && colon != std::string::npos) {
      if (auto t = calendar::parse_instant(a.reason->substr(eq + 3, colon - eq - 3))) value = t->seconds;
    }
  }
  if (!value) {
    v.push_back(seq_text(a) + " has no date in its reason '" + a.reason.value_or("null") + "'");
    return;
  }
  for (auto& e : m_events) {
    if (e.seen || e.value != *value) continue;
    const bool same = e.key ? a.key == e.key : (!a.key && a.subject_ref == std::optional<std::string>(subject_ref(*e.subject)));
    if (!same) continue;
    e.seen = true;
    return;
  }
  v.push_back(seq_text(a) + " records an event.record the harness never sent (key " + a.key.value_or("null") + ", " +
              format_time(*value) + ")");
}

// A `destroy` entry ends the undo window of a purged or erased record, once
// the window is over, once.
void Ledger::apply_destroy(const store::AuditRow& a, std::vector<std::string>& v) {
  const auto id = a.key ? key_id(*a.key) : std::nullopt;
  if (!id || *id >= m_keys.size()) {
    v.push_back(seq_text(a) + " destroys a key the harness never sent: " + a.key.value_or("null"));
    return;
  }
  KeyInfo& k = m_keys[*id];
  if (k.destroyed_seq == 0) {
    v.push_back(seq_text(a) + " destroys " + *a.key + ", which no purge or erase entry disposed of");
  } else if (k.destroy_seq != 0) {
    v.push_back(seq_text(a) + " destroys " + *a.key + " again (first by entry " + std::to_string(k.destroy_seq) + ")");
  } else if (a.at.seconds < k.destroyed_at + kGraceSeconds) {
    v.push_back(seq_text(a) + " destroys " + *a.key + " at " + format_time(a.at.seconds) + ", before its undo window ended (" +
                format_time(k.destroyed_at + kGraceSeconds) + ")");
  }
  k.destroy_seq = a.seq;
}

void Ledger::apply(const store::AuditRow& a, std::vector<std::string>& v) {
  if (a.action == "destroy") {
    apply_destroy(a, v);
    return;
  }
  if (a.action == "archive" || a.action == "anonymise" || a.action == "purge" || a.action == "erase") {
    apply_record_action(a, v);
    return;
  }
  if (a.action == "event") {
    apply_event(a, v);
    return;
  }
  if (a.action == "connector.done" || a.action == "connector.failed" || a.action == "connector.discard") {
    apply_connector(a, v);
    return;
  }
  if (a.action == "hold.place" || a.action == "hold.release") {
    const auto id = hold_id(a.reason);
    if (!id) {
      v.push_back(seq_text(a) + " has no hold id in its reason '" + a.reason.value_or("null") + "'");
      return;
    }
    if (a.action == "hold.place") {
      HoldBook h;
      h.placed_seq = a.seq;
      if (a.key) {
        h.scope = "key";
        h.target = *a.key;
      } else if (a.category) {
        h.scope = "category";
        h.target = *a.category;
      } else if (a.subject_ref) {
        h.scope = "subject";
        h.target = *a.subject_ref;
      } else {
        v.push_back(seq_text(a) + " names no target");
      }
      // An id comes back once its hold is released (see the report): only
      // two holds in force under one id are wrong.
      if (!m_open_holds.emplace(*id, h).second) {
        v.push_back(seq_text(a) + " places hold " + std::to_string(*id) + " while a hold with that id is in force");
      }
      if (m_places[*id]++ > 0) ++m_stats.hold_ids_reused;
      return;
    }
    if (!m_open_holds.erase(*id)) {
      v.push_back(seq_text(a) + " releases hold " + std::to_string(*id) + ", which is not in force");
      return;
    }
    ++m_releases[*id];
    return;
  }
  v.push_back(seq_text(a) + ": an action the harness never asked for");
}

void Ledger::apply_connector(const store::AuditRow& a, std::vector<std::string>& v) {
  const std::string reason = a.reason.value_or("");
  const std::string prefix = std::string("connector=") + kConnectorName + " job=";
  if (!reason.starts_with(prefix) || reason.size() < prefix.size() + 32) {
    v.push_back(seq_text(a) + " does not name the connector and job in its reason '" + reason + "'");
    return;
  }
  const std::string id = reason.substr(prefix.size(), 32);
  if (++m_job_entries[id][a.action] > 1 && a.action != "connector.failed") {
    v.push_back(seq_text(a) + " is the second " + a.action + " entry of job " + id);
  }
  m_job_entry_keys[id] = a.key.value_or("");
  m_new_entry_ids.push_back(id);
  if (a.action == "connector.discard") v.push_back(seq_text(a) + " discards job " + id + ": the harness never discards");
}

void Ledger::check_jobs(const Snapshot& s, std::vector<std::string>& v) {
  const std::unordered_set<std::string> watched = m_unfinished;
  for (const auto& id : s.jobs_vanished) v.push_back("job " + id + " vanished from the table while unfinished");
  for (const auto& j : s.jobs) {
    const auto who = [&] {
      return "job " + j.id + " (" + j.action + " of " + j.key + ", entry " + std::to_string(j.audit_seq) + ")";
    };
    auto known = m_jobs.find(j.id);
    if (known == m_jobs.end()) {
      // First seen: it must belong to an action, committed with it.
      if (j.connector != kConnectorName) v.push_back(who() + " is for connector '" + j.connector + "', which the policy lacks");
      const auto d = m_decisions.find(j.audit_seq);
      if (d == m_decisions.end()) {
        v.push_back(who() + " names no action of a " + kConnectorCategory + " record: a job invented");
      } else if (d->second.key != j.key || d->second.action != j.action || d->second.phase != j.phase) {
        v.push_back(who() + " does not match its entry (" + d->second.action + " of " + d->second.key + ")");
      }
      if (j.audit_seq <= m_seq_before) {
        v.push_back(who() + " appeared after its action was checked: not committed with it");
      }
      ++m_decision_jobs[j.audit_seq];
      known = m_jobs.emplace(j.id, JobBook{j.audit_seq, false}).first;
    } else if (known->second.finished) {
      v.push_back(who() + " is " + j.state + " again after it was seen finished");
      continue;
    } else if (!watched.count(j.id)) {
      v.push_back(who() + " was read twice by one snapshot");
    }
    const auto e = m_job_entries.find(j.id);
    const auto count = [&](const char* action) {
      if (e == m_job_entries.end()) return 0;
      const auto it = e->second.find(action);
      return it == e->second.end() ? 0 : it->second;
    };
    const bool finished = j.state == "done" || j.state == "discarded";
    if (finished && j.slot >= 0) v.push_back(who() + " is " + j.state + " but still holds its sealed subject");
    if (j.state == "done") {
      if (count("connector.done") != 1) {
        v.push_back(who() + " is done with " + std::to_string(count("connector.done")) + " connector.done entries");
      }
      const auto at = s.received ? s.received->position(j.id) : std::nullopt;
      if (!at || *at >= s.received_after) v.push_back(who() + " is done, but the connector never received it");
    } else if (count("connector.done") != 0) {
      v.push_back(who() + " is " + j.state + " although a connector.done entry names it");
    }
    if ((j.state == "failed") != (count("connector.failed") == 1) || count("connector.failed") > 1) {
      v.push_back(who() + " is " + j.state + " with " + std::to_string(count("connector.failed")) + " connector.failed entries");
    }
    if (e != m_job_entries.end() && m_job_entry_keys.at(j.id) != j.key) {
      v.push_back(who() + ": its connector entries name key " + m_job_entry_keys.at(j.id));
    }
    known->second.finished = finished;
    if (finished) m_unfinished.erase(j.id);
    else m_unfinished.insert(j.id);
  }
  // Each action of the connector's category decided since the last check
  // has exactly one job (one connector), committed with it.
  for (const auto seq : m_new_decisions) {
    const auto it = m_decision_jobs.find(seq);
    const int n = it == m_decision_jobs.end() ? 0 : it->second;
    if (n != 1) {
      const auto& d = m_decisions.at(seq);
      v.push_back("entry " + std::to_string(seq) + " (" + d.action + " of " + d.key + ") has " + std::to_string(n) +
                  " connector jobs, not one: " + (n == 0 ? "a decided job lost" : "a job doubled"));
    }
  }
  m_new_decisions.clear();
  for (const auto& id : m_new_entry_ids) {
    if (!m_jobs.count(id)) v.push_back("audit entries name job " + id + ", which is not in the table");
  }
  m_new_entry_ids.clear();
  // Everything the connector received was decided (and committed) first.
  if (s.received) {
    for (; m_received_checked < s.received_before; ++m_received_checked) {
      const std::string& id = s.received->ids()[m_received_checked];
      if (!m_jobs.count(id)) v.push_back("the connector received job " + id + ", which was never decided (not in the table)");
    }
  }
}

void Ledger::check_row(const RecordView& r, std::uint32_t id, std::vector<std::string>& v) {
  KeyInfo& k = m_keys[id];
  const std::string where = r.in_archive ? "the archive table" : "the records table";
  if (k.exist == Exist::never) {
    v.push_back(r.key + " is in " + where + ", but its unanswered put was stored nowhere at an earlier check");
    return;
  }
  if (k.destroyed_seq != 0) {
    v.push_back(r.key + " is still in " + where + " although audit entry " + std::to_string(k.destroyed_seq) +
                " destroyed it");
    return;
  }
  const CategorySpec& cat = categories()[k.category];
  if (r.category != cat.name) v.push_back(r.key + " is stored with category " + r.category + ", put as " + cat.name);
  if (r.in_archive != k.archived) {
    v.push_back(r.key + " is in " + where + (k.archived ? " but an archive entry moved it" : " without an archive entry"));
  }
  const std::string state = k.anonymised ? "anonymised" : k.archived ? "archived" : "active";
  if (r.state != state) v.push_back(r.key + " has state " + r.state + "; its audit entries say " + state);
  if (r.next_phase != k.phases_done) {
    v.push_back(r.key + " is at phase " + std::to_string(r.next_phase) + " but has " + std::to_string(k.phases_done) +
                " phase entries");
  }
  auto& dates = m_dates[id];
  if (!contains(dates[0].possible, r.collected)) {
    v.push_back(r.key + ": collected is " + time_or_absent(r.collected) + ", sent " + times(dates[0].possible));
  }
  const auto& own_ok = k.anonymised ? dates[1].possible : dates[1].allowed;
  if (!contains(own_ok, r.own_date)) {
    v.push_back(r.key + ": " + cat.date + " is " + time_or_absent(r.own_date) + ", expected one of " + times(own_ok) +
                (k.anonymised ? "" : " (an answered event.record was lost, or an unsent value appeared)"));
  }
  const int carried = (r.collected != kAbsent) + (r.own_date != kAbsent);
  if (r.date_count != carried) v.push_back(r.key + " carries " + std::to_string(r.date_count) + " dates, not " + std::to_string(carried));
  // Collapse: from now on the record's dates are what is stored.
  dates[0].possible = dates[0].allowed = {r.collected};
  dates[1].possible = dates[1].allowed = {r.own_date};
  const std::optional<std::int64_t> due =
      static_cast<std::size_t>(r.next_phase) < cat.phases.size()
          ? due_at(cat.phases[static_cast<std::size_t>(r.next_phase)], r.collected, r.own_date)
          : std::nullopt;
  if (r.due != due) {
    v.push_back(r.key + ": stored due " + due_text(r.due) + ", but its dates and phase give " + due_text(due));
  }
  if (!r.has_data) v.push_back(r.key + " has no personal-data row in " + where);
  if (r.has_data && r.subject_ref_null != k.anonymised) {
    v.push_back(r.key + (k.anonymised ? " is anonymised but keeps a subject_ref" : " lost its subject_ref"));
  }
}

std::vector<std::string> Ledger::reconcile(const Snapshot& s, Reconciled& out) {
  std::vector<std::string> v;

  m_seq_before = m_last_seq;
  // 1. The audit log: unchanged up to the last check, chained after it, and
  //    each new entry's action legitimate (applied to the ledger in order).
  if (m_last_seq > 0 && s.hash_at_after != std::optional<std::string>(m_last_hash)) {
    v.push_back("audit entry " + std::to_string(m_last_seq) + " changed or vanished since the last check");
  }
  for (const auto& a : s.audit) {
    if (a.seq != m_last_seq + 1) {
      v.push_back("audit entry " + std::to_string(a.seq) + " follows entry " + std::to_string(m_last_seq));
    }
    if (audit::chain_hash(m_last_hash, a) != a.hash) v.push_back(seq_text(a) + ": its hash does not chain");
    if (a.at.seconds < m_last_at) v.push_back(seq_text(a) + " is dated before the entry before it");
    m_last_seq = a.seq;
    m_last_hash = a.hash;
    m_last_at = a.at.seconds;
    ++m_stats.audit_by_action[a.action];
    if (a.actor == "scheduler") ++m_stats.audit_by_scheduler;
    apply(a, v);
  }
  if (s.max_seq != m_last_seq) v.push_back("the audit log ends at " + std::to_string(s.max_seq));
  // Every answered event.record committed its entry; an unanswered one did
  // or did not, and after the restart it never will.
  for (const auto& e : m_events) {
    if (e.acked && !e.seen) {
      v.push_back("an answered event.record (" + (e.key ? "key " + *e.key : "subject " + subject_name(*e.subject)) +
                  ", " + format_time(e.value) + ") has no `event` audit entry");
    }
  }
  m_events.clear();

  // 2. Which keys are stored.
  ++m_generation;
  std::vector<std::pair<std::uint32_t, const RecordView*>> rows;
  rows.reserve(s.records.size());
  for (const auto& r : s.records) {
    const auto id = key_id(r.key);
    if (!id || *id >= m_keys.size()) {
      v.push_back((r.in_archive ? "the archive table" : "the records table") + std::string(" holds a key the harness never sent: ") + r.key);
      continue;
    }
    if (m_seen[*id] == m_generation) continue;  // in both tables: reported from s.in_both
    m_seen[*id] = m_generation;
    rows.emplace_back(*id, &r);
  }

  // 3. Unanswered puts, now decided: stored (or acted on) or not, all or
  //    nothing per request.
  for (const auto g : m_pending_groups) {
    std::size_t stored = 0;
    for (const auto id : m_groups[g].ids) {
      KeyInfo& k = m_keys[id];
      if (m_seen[id] == m_generation || k.audit_seen) {
        k.exist = Exist::yes;
        make_live(id);
        ++stored;
      } else {
        k.exist = Exist::never;
        m_dates.erase(id);
      }
    }
    const std::size_t n = m_groups[g].ids.size();
    if (stored != 0 && stored != n) {
      v.push_back("an unanswered put of " + std::to_string(n) + " records (keys " + key_name(m_groups[g].ids.front()) +
                  "..." + key_name(m_groups[g].ids.back()) + ") left " + std::to_string(stored) + " stored: not all or nothing");
    }
    if (stored != 0) ++m_stats.unacked_groups_committed;
  }
  m_pending_groups.clear();

  // 4. Each stored record against what its requests and entries say.
  for (const auto& [id, r] : rows) check_row(*r, id, v);

  // 5. Nothing alive vanished: a record gone from both tables has its
  //    destroying entry.
  std::vector<std::uint32_t> live;
  live.reserve(m_live.size());
  for (const auto id : m_live) {
    KeyInfo& k = m_keys[id];
    if (k.destroyed_seq != 0) {
      k.live = false;
      m_dates.erase(id);
      continue;
    }
    if (m_seen[id] != m_generation) {
      v.push_back(key_name(id) + " vanished from both tables without a purge or erase entry");
      k.live = false;
      continue;
    }
    live.push_back(id);
  }
  m_live = std::move(live);

  // 6. Holds: the table is exactly the holds placed and not released.
  std::unordered_set<std::int64_t> stored_holds;
  for (const auto& h : s.holds) {
    stored_holds.insert(h.id);
    if (!m_open_holds.count(h.id)) v.push_back("hold " + std::to_string(h.id) + " is in the holds table without an open hold.place entry");
  }
  for (const auto& [id, h] : m_open_holds) {
    if (!stored_holds.count(id)) {
      v.push_back("hold " + std::to_string(id) + " (placed by audit entry " + std::to_string(h.placed_seq) +
                  ") is missing from the holds table");
    }
  }
  // Acknowledged places and releases have their entries (an id may be
  // reused, so count them per id).
  std::unordered_map<std::int64_t, std::uint32_t> acked;
  for (const auto id : m_acked_holds) {
    if (++acked[id] > m_places[id]) v.push_back("hold " + std::to_string(id) + " was acknowledged but has no hold.place entry");
  }
  acked.clear();
  for (const auto id : m_acked_releases) {
    if (++acked[id] > m_releases[id]) {
      v.push_back("the release of hold " + std::to_string(id) + " was acknowledged but has no hold.release entry");
    }
  }
  m_acked_holds.clear();
  m_acked_releases.clear();

  // 7. Answered erasures: every key they reported erased has its entry.
  for (std::size_t i = 0; i < m_erasures.size(); ++i) {
    Erase& e = m_erasures[i];
    if (!e.acked || e.checked) continue;
    e.checked = true;
    for (const auto id : e.erased) {
      if (m_keys[id].erased_by != i + 1) {
        v.push_back(erase_reason(static_cast<std::uint32_t>(i)) + " answered that it erased " + key_name(id) +
                    ", which has no erase entry of it");
      }
    }
  }

  // 8. Storage bookkeeping: one record per key, the kept counts (status's
  //    record counts and backlog) equal to the rows, each live row's key
  //    slot its own, in use and holding a key.
  for (const auto& key : s.in_both) v.push_back(key + " is stored in both the records and the archive table");
  for (const auto& m : s.count_mismatches) v.push_back(m);
  const std::unordered_set<std::int64_t> released_since(s.released_since.begin(), s.released_since.end());
  const std::unordered_set<std::int64_t> free_slots(s.free_slots.begin(), s.free_slots.end());
  const std::unordered_set<std::int64_t> queued(s.queued_slots.begin(), s.queued_slots.end());
  std::unordered_map<std::int64_t, std::string> used;
  const auto use = [&](std::int64_t slot, const std::string& who) {
    const auto [it, fresh] = used.emplace(slot, who);
    if (!fresh) v.push_back("key slot " + std::to_string(slot) + " is used by both " + it->second + " and " + who);
    if (slot < 0 || slot >= s.next_key_slot) v.push_back(who + " uses key slot " + std::to_string(slot) + ", past next_key_slot");
    if (free_slots.count(slot)) v.push_back(who + " uses key slot " + std::to_string(slot) + ", which is on the free list");
    if (queued.count(slot)) v.push_back(who + " uses key slot " + std::to_string(slot) + ", which is queued for zeroing");
    const auto off = static_cast<std::size_t>(slot) * 32;
    if (slot < 0 || off + 32 > s.keys.size() ||
        std::all_of(s.keys.begin() + static_cast<std::ptrdiff_t>(off), s.keys.begin() + static_cast<std::ptrdiff_t>(off + 32),
                    [](char c) { return c == 0; })) {
      // Zero, but its row was destroyed by a commit after the snapshot
      // (gone from a later one): the slot was zeroed as it should be.
      if (released_since.count(slot)) ++m_stats.keys_zeroed_after_snapshot;
      else v.push_back(who + "'s key slot " + std::to_string(slot) + " holds no key: its values are lost");
    }
  };
  for (const auto& r : s.records) {
    if (r.has_data) use(r.slot, r.key);
  }
  for (const auto& h : s.holds) use(h.slot, "hold " + std::to_string(h.id));
  for (const auto& j : s.jobs) {
    if (j.slot >= 0) use(j.slot, "job " + j.id);
  }
  check_jobs(s, v);

  // 7. The undo window: exactly the records purged or erased and not yet
  //    destroyed are retired, each with its key, since its disposal and
  //    until the window's end.
  std::unordered_set<std::uint32_t> retired_ids;
  for (const auto& r : s.retired) {
    use(r.slot, "retired " + r.key);
    const auto id = key_id(r.key);
    if (!id || *id >= m_keys.size()) {
      v.push_back("retired " + r.key + " is a key the harness never sent");
      continue;
    }
    retired_ids.insert(*id);
    const KeyInfo& k = m_keys[*id];
    if (k.destroyed_seq == 0) {
      v.push_back(r.key + " is retired without a purge or erase entry");
    } else if (k.destroy_seq != 0) {
      v.push_back(r.key + " is still retired although entry " + std::to_string(k.destroy_seq) + " destroyed it");
    } else if (r.purged_at != k.destroyed_at || r.destroy_at != k.destroyed_at + kGraceSeconds) {
      v.push_back(r.key + " is retired from " + format_time(r.purged_at) + " to " + format_time(r.destroy_at) +
                  ", not from its disposal at " + format_time(k.destroyed_at) + " for the undo window");
    }
  }
  for (std::uint32_t id = 0; id < m_keys.size(); ++id) {
    const KeyInfo& k = m_keys[id];
    if (k.destroyed_seq != 0 && k.destroy_seq == 0 && !retired_ids.count(id)) {
      v.push_back(key_name(id) + " left the undo window without a destroy entry (disposed of by entry " +
                  std::to_string(k.destroyed_seq) + ")");
    }
  }

  out.newly_anonymised.clear();
  for (const auto id : m_new_anonymised) {
    if (alive(id)) out.newly_anonymised.push_back(id);
  }
  m_new_anonymised.clear();
  out.live_records = m_live.size();
  out.last_seq = m_last_seq;
  return v;
}

std::vector<std::string> Ledger::check_finished(const Snapshot& s, std::int64_t now) const {
  std::vector<std::string> v;
  for (const auto& r : s.records) {
    if (r.due && *r.due <= now) {
      v.push_back(r.key + " is still due (" + format_time(*r.due) + ", phase " + std::to_string(r.next_phase) +
                  ") after the final sweep at " + format_time(now));
    }
  }
  if (!s.holds.empty()) v.push_back(std::to_string(s.holds.size()) + " holds remain after every hold was released");
  for (const auto& j : s.jobs) {
    if (j.state != "done") v.push_back("job " + j.id + " (" + j.action + " of " + j.key + ") is still " + j.state + " at the end");
  }
  for (const auto& r : s.retired) {
    if (r.destroy_at <= now) {
      v.push_back(r.key + " is still retired after the final sweep at " + format_time(now) + " (its window ended " +
                  format_time(r.destroy_at) + ")");
    }
  }
  return v;
}

Ledger::StrayKeys Ledger::stray_keys(const Snapshot& s) {
  std::unordered_set<std::int64_t> used;
  for (const auto& r : s.records) {
    if (r.has_data) used.insert(r.slot);
  }
  for (const auto& h : s.holds) used.insert(h.slot);
  for (const auto& r : s.retired) used.insert(r.slot);
  for (const auto& j : s.jobs) {
    if (j.slot >= 0) used.insert(j.slot);
  }
  const std::unordered_set<std::int64_t> free_slots(s.free_slots.begin(), s.free_slots.end());
  const std::unordered_set<std::int64_t> queued(s.queued_slots.begin(), s.queued_slots.end());
  StrayKeys out;
  for (std::size_t off = 0; off + 32 <= s.keys.size(); off += 32) {
    const auto slot = static_cast<std::int64_t>(off / 32);
    const bool zero = std::all_of(s.keys.begin() + static_cast<std::ptrdiff_t>(off),
                                  s.keys.begin() + static_cast<std::ptrdiff_t>(off + 32), [](char c) { return c == 0; });
    if (zero || used.count(slot)) continue;
    if (slot >= s.next_key_slot) ++out.past_counter;
    else if (free_slots.count(slot)) ++out.free;
    else if (queued.count(slot)) ++out.queued;
    else out.lost.push_back(slot);
  }
  return out;
}

}  // namespace retentiond::crash
