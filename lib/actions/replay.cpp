// Service: erasure replay after a backup restore (issue 16; docs/operations.md,
// "Backups and erasure replay"). A restored database has forgotten what was
// destroyed since the backup was taken; a copy of the audit log shipped off
// the host (retentionctl audit --follow --json) remembers. replay_audit
// checks that the restored chain is a prefix of the shipped one, then redoes,
// in order, each action past the restored head that destroyed or protected
// data — purge, erase, anonymise (and archive, to keep the phases in order),
// destroy, restore, hold.place, hold.release — whose record or hold is still
// there, each with its own audit entry ("replay of seq N") in one
// transaction with the progress kept in meta "replay", so that a replay cut
// short by a crash resumes where it stopped.

#include <algorithm>
#include <charconv>
#include <set>

#include <nlohmann/json.hpp>

#include "lib/actions/service.hpp"

namespace retentiond::actions {
namespace {

using calendar::Instant;

constexpr const char* kReplayMeta = "replay";

// Where a replay stands, kept in meta "replay" with each step.
struct ReplayState {
  std::int64_t base_seq = 0;  // the restored head
  std::string base_hash;
  std::int64_t done_through = 0;            // the last entry of the file redone (or found nothing to redo)
  std::map<std::int64_t, std::int64_t> holds;  // hold ids of the file -> ids of the holds placed again
  // The holds of the restored database not yet released by the replay: a
  // release in the file names one of these, or one the replay placed
  // (`holds`), or one it could not place (a subject's).
  std::set<std::int64_t> base_holds;
  // The file's entry at done_through, and the database's head once that
  // step committed: a replay resumes only where it stopped, on a database
  // nothing has changed since.
  std::string done_hash;
  std::int64_t head_seq = 0;
  std::string head_hash;
  std::vector<std::string> manual;  // what an operator must redo by hand, kept until the replay is over

  nlohmann::json to_json() const {
    nlohmann::json h = nlohmann::json::object();
    for (const auto& [from, to] : holds) h[std::to_string(from)] = to;
    return {{"base_seq", base_seq}, {"base_hash", base_hash}, {"done_through", done_through}, {"holds", h},
            {"base_holds", base_holds}, {"done_hash", done_hash}, {"head_seq", head_seq},
            {"head_hash", head_hash}, {"manual", manual}};
  }
  static std::optional<ReplayState> from_json(const std::string& text) {
    const auto j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_object()) return std::nullopt;
    ReplayState s;
    s.base_seq = j.value("base_seq", std::int64_t{0});
    s.base_hash = j.value("base_hash", std::string());
    s.done_through = j.value("done_through", std::int64_t{0});
    if (const auto it = j.find("holds"); it != j.end() && it->is_object()) {
      for (const auto& [from, to] : it->items()) s.holds[std::stoll(from)] = to.get<std::int64_t>();
    }
    if (const auto it = j.find("base_holds"); it != j.end() && it->is_array()) {
      for (const auto& id : *it) s.base_holds.insert(id.get<std::int64_t>());
    }
    s.done_hash = j.value("done_hash", std::string());
    s.head_seq = j.value("head_seq", std::int64_t{0});
    s.head_hash = j.value("head_hash", std::string());
    if (const auto it = j.find("manual"); it != j.end() && it->is_array()) {
      for (const auto& m : *it) s.manual.push_back(m.get<std::string>());
    }
    return s;
  }
};

// The hold id in a hold entry's reason ("hold 12: ..." or "hold 12").
std::optional<std::int64_t> hold_id_of(const store::AuditRow& row) {
  if (!row.reason || row.reason->rfind("hold ", 0) != 0) return std::nullopt;
  const char* begin = row.reason->data() + 5;
  const char* end = row.reason->data() + row.reason->size();
  std::int64_t id = 0;
  const auto [p, ec] = std::from_chars(begin, end, id);
  if (ec != std::errc() || p == begin) return std::nullopt;
  return id;
}

std::string seq_text(std::int64_t seq) { return "seq " + std::to_string(seq); }

// Whether a `destroy` entry is about the copy purged at `purged_at`: its
// reason says "(purged <instant>, restorable until ...)".
bool same_purge(const store::AuditRow& destroy, Instant purged_at) {
  if (!destroy.reason) return true;
  const auto at = destroy.reason->find("(purged ");
  if (at == std::string::npos) return true;
  const auto end = destroy.reason->find(',', at);
  if (end == std::string::npos) return true;
  const auto instant = calendar::parse_instant(std::string_view(*destroy.reason).substr(at + 8, end - at - 8));
  return !instant || *instant == purged_at;
}

}  // namespace

Result<ReplaySummary> Service::replay_audit(const std::vector<store::AuditRow>& file) {
  ReplaySummary summary;
  if (file.empty()) return Error::invalid_params("bad_replay", "the audit log copy holds no entry");
  // The file's own chain: contiguous and intact, or it proves nothing.
  for (std::size_t i = 1; i < file.size(); ++i) {
    if (file[i].seq != file[i - 1].seq + 1) {
      return Error::invalid_params("bad_replay", "the audit log copy jumps from " + seq_text(file[i - 1].seq) + " to " +
                                                     seq_text(file[i].seq) + ": entries are missing");
    }
    if (audit::chain_hash(file[i - 1].hash, file[i]) != file[i].hash) {
      return Error::invalid_params("bad_replay", "the audit log copy is not an intact chain: " + seq_text(file[i].seq) +
                                                     " does not follow from the entry before it");
    }
  }
  if (file.front().seq == 1 && audit::chain_hash(audit::kGenesisHash, file.front()) != file.front().hash) {
    return Error::invalid_params("bad_replay", "the audit log copy is not an intact chain: seq 1 is not its first entry");
  }
  const std::int64_t first = file.front().seq;
  summary.file_head = file.back().seq;
  const auto in_file = [&](std::int64_t seq) -> const store::AuditRow* {
    if (seq < first || seq > summary.file_head) return nullptr;
    return &file[static_cast<std::size_t>(seq - first)];
  };

  auto& store = m_vault.store();
  // Is the restored chain a prefix of the file's? Every entry both hold is
  // the same, and the file reaches the restored head or follows from it.
  auto head = store.last_audit();
  if (!head) return std::move(head).error();
  const std::int64_t head_seq = *head ? (*head)->seq : 0;
  const std::string head_hash = *head ? (*head)->hash : std::string(audit::kGenesisHash);
  std::optional<std::string> not_prefix;
  if (head_seq > summary.file_head) {
    not_prefix = "the restored audit log (head " + seq_text(head_seq) + ") is longer than the copy (last " +
                 seq_text(summary.file_head) + "): the copy is older than the database, or of another history";
  } else if (first > head_seq + 1) {
    not_prefix = "the audit log copy starts at " + seq_text(first) + ", after the restored head " + seq_text(head_seq) +
                 ": it must include that entry to prove the restored log is its prefix";
  } else if (first == head_seq + 1 && audit::chain_hash(head_hash, file.front()) != file.front().hash) {
    not_prefix = "the audit log copy's first entry (" + seq_text(first) +
                 ") does not follow from the restored head: a different history";
  } else {
    store::StoreReader::AuditQuery q;
    q.after_seq = std::max<std::int64_t>(first - 1, 0);
    q.limit = 10000;
    while (!not_prefix && *q.after_seq < head_seq) {
      auto rows = store.audit_entries(q);
      if (!rows) return std::move(rows).error();
      if (rows->empty()) break;
      for (const auto& row : *rows) {
        const auto* theirs = in_file(row.seq);
        if (theirs == nullptr || theirs->hash != row.hash) {
          not_prefix = "the restored audit log is not a prefix of the copy: their " + seq_text(row.seq) +
                       " differ (a different history, or a copy of another daemon's log)";
          break;
        }
      }
      q.after_seq = rows->back().seq;
    }
  }

  ReplayState state;
  if (!not_prefix) {
    // A replay from the restored head (also when an earlier replay is
    // recorded: a backup taken after it was restored since).
    state.base_seq = head_seq;
    state.base_hash = head_hash;
    state.done_through = head_seq;
    state.done_hash = head_hash;
    state.head_seq = head_seq;
    state.head_hash = head_hash;
    auto holds = m_vault.holds();
    if (!holds) return std::move(holds).error();
    for (const auto& h : *holds) state.base_holds.insert(h.id);
  } else {
    // Not a prefix: a replay of this copy cut short (its own entries follow
    // the restored head) resumes after the last entry it did; anything else
    // is refused, and nothing changes.
    auto kept = store.get_meta(kReplayMeta);
    if (!kept) return std::move(kept).error();
    std::optional<ReplayState> resumed;
    if (*kept) resumed = ReplayState::from_json(**kept);
    const auto* base_in_file = resumed ? in_file(resumed->base_seq) : nullptr;
    const bool same_history =
        resumed && (resumed->base_seq == 0 ? resumed->base_hash == audit::kGenesisHash && first == 1
                                           : base_in_file != nullptr && base_in_file->hash == resumed->base_hash);
    if (!same_history) return Error::invalid_params("bad_replay", *not_prefix + "; nothing was changed");
    const auto* done_in_file = in_file(resumed->done_through);
    if (resumed->done_through > resumed->base_seq &&
        (done_in_file == nullptr || done_in_file->hash != resumed->done_hash)) {
      return Error::invalid_params("bad_replay", "a replay of another copy of this history stopped after " +
                                                     seq_text(resumed->done_through) + "; " + *not_prefix +
                                                     "; nothing was changed");
    }
    if ((head_seq != resumed->head_seq || head_hash != resumed->head_hash) && resumed->done_through >= summary.file_head) {
      return Error::invalid_params(
          "bad_replay", "this copy was replayed completely (up to its " + seq_text(summary.file_head) +
                            ") and the database has moved on since: there is nothing more to replay from it. "
                            "Start without --replay-audit; after restoring another backup, give a copy that "
                            "reaches past it. Nothing was changed");
    }
    if (head_seq != resumed->head_seq || head_hash != resumed->head_hash) {
      return Error::invalid_params(
          "bad_replay", "a replay of this copy stopped after its " + seq_text(resumed->done_through) +
                            ", and the database has changed since (its log's head is " + seq_text(head_seq) +
                            ", the replay left " + seq_text(resumed->head_seq) +
                            "): the copy's later entries may be applied already; restore the backup again and "
                            "replay it whole. Nothing was changed");
    }
    state = *resumed;
  }
  summary.base_seq = state.base_seq;
  summary.resumed_after = state.done_through;

  // The entries it appends name it as their actor.
  const Actor replayer{"replay"};
  for (std::int64_t seq = state.done_through + 1; seq <= summary.file_head; ++seq) {
    const store::AuditRow& original = *in_file(seq);
    enum class Outcome { replayed, nothing, not_replayable } outcome = Outcome::not_replayable;
    std::optional<std::string> manual;
    Status st = m_vault.transaction([&]() -> Status {
      outcome = Outcome::not_replayable;
      manual.reset();
      ReplayState next = state;
      const auto policy = this->policy();
      const Instant now = m_clock.now();
      audit::Entry e = entry(*policy, original.action, replayer);
      e.at = now;
      e.key = original.key;
      e.category = original.category;
      e.phase = original.phase;
      e.subject_ref = original.subject_ref;
      e.reason = "replay of " + seq_text(seq);
      const std::string& action = original.action;
      if ((action == "purge" || action == "erase" || action == "anonymise" || action == "archive") && original.key) {
        auto record = m_vault.schedule_of(*original.key);
        if (!record) return std::move(record).error();
        const policy::Category* category = *record ? policy->find((*record)->category) : nullptr;
        if (!*record) {
          outcome = Outcome::nothing;
        } else if (action == "purge" || action == "erase") {
          if (auto s = dispose(**record, *policy, original.at, replayer); !s) return s;
          e.category = (*record)->category;
          e.subject_ref = (*record)->subject_ref;
          outcome = Outcome::replayed;
        } else if (!original.phase || (*record)->next_phase > *original.phase || category == nullptr ||
                   static_cast<std::size_t>(*original.phase) >= category->phases.size()) {
          outcome = Outcome::nothing;  // done already, or no longer a phase of its category
        } else {
          // The phase as the sweep ran it, dated as it ran then.
          auto full = m_vault.get(*original.key);
          if (!full) return std::move(full).error();
          Record r = std::move(**full);
          const int phase = *original.phase;
          r.done.resize(static_cast<std::size_t>(phase), original.at);
          r.done.push_back(original.at);
          r.next_phase = phase + 1;
          reschedule_under(r, *category, policy->daemon.fiscal_year_end);
          if (action == "anonymise") {
            anonymise(r, *category);
            if (auto s = m_vault.replace(r); !s) return s;
          } else if (r.location == store::Location::archive) {
            if (auto s = m_vault.update_schedule(r); !s) return s;
          } else {
            auto removed = m_vault.remove(r.key, store::Location::active);
            if (!removed) return std::move(removed).error();
            r.location = store::Location::archive;
            if (r.state == store::RecordState::active) r.state = store::RecordState::archived;
            if (auto s = m_vault.insert(r); !s) return s;
          }
          e.subject_ref = (*record)->subject_ref;
          outcome = Outcome::replayed;
        }
      } else if ((action == "destroy" || action == "restore") && original.key) {
        auto retired = store.retired(*original.key);
        if (!retired) return std::move(retired).error();
        if (!*retired) {
          outcome = Outcome::nothing;
        } else if (action == "destroy" && !same_purge(original, (*retired)->purged_at)) {
          // The entry destroyed another copy of the key (an earlier purge,
          // its window cut short): already destroyed by the replay's purge.
          outcome = Outcome::nothing;
        } else if (action == "destroy") {
          auto gone = m_vault.destroy_retired(*original.key);
          if (!gone) return std::move(gone).error();
          outcome = Outcome::replayed;
        } else if (auto live = m_vault.schedule_of(*original.key); !live) {
          return std::move(live).error();
        } else if (*live) {
          // A record of that key is stored: the restore did not happen
          // so in the history replayed (it is refused with conflict).
          outcome = Outcome::nothing;
        } else {
          const policy::Category* category = policy->find((*retired)->record.category);
          auto back = m_vault.unretire(*original.key);
          if (!back) return std::move(back).error();
          auto record = m_vault.schedule_of(*original.key);
          if (!record) return std::move(record).error();
          if (*record && category != nullptr) {
            Record r = std::move(**record);
            reschedule_under(r, *category, policy->daemon.fiscal_year_end);
            if (auto s = m_vault.update_schedule(r); !s) return s;
          }
          outcome = Outcome::replayed;
        }
      } else if (action == "hold.place") {
        const auto id = hold_id_of(original);
        if (original.key || original.category) {
          const std::string scope = original.key ? "key" : "category";
          const std::string target = original.key ? *original.key : *original.category;
          const std::string why = original.reason ? original.reason->substr(std::min(original.reason->size(),
                                                                                      original.reason->find(": ") + 2))
                                                  : std::string();
          auto added = m_vault.add_hold(vault::Hold{0, scope, target, why + " (replay of " + seq_text(seq) + ")", now,
                                                    replayer.name});
          if (!added) return std::move(added).error();
          if (id) next.holds[*id] = *added;
          e.reason = "hold " + std::to_string(*added) + ": replay of " + seq_text(seq);
          outcome = Outcome::replayed;
        } else {
          // The log keeps a subject as its HMAC only: the subject is not
          // there to hold again.
          manual = "hold " + (id ? std::to_string(*id) : std::string("?")) + " on a subject (" + seq_text(seq) +
                   ") was placed after the backup: place it again by hand (retentionctl hold --subject ...)";
          outcome = Outcome::not_replayable;
        }
      } else if (action == "hold.release") {
        const auto id = hold_id_of(original);
        std::int64_t ours = 0;
        if (id && next.holds.count(*id)) {
          ours = next.holds.at(*id);
          next.holds.erase(*id);
        } else if (id && next.base_holds.count(*id)) {
          ours = *id;
          next.base_holds.erase(*id);
        }
        auto holds = m_vault.holds();
        if (!holds) return std::move(holds).error();
        // The hold must be the one the entry names: same scope and target.
        const auto h = std::find_if(holds->begin(), holds->end(), [&](const vault::Hold& x) {
          if (x.id != ours) return false;
          if (original.key) return x.scope == "key" && x.target == *original.key;
          if (original.category) return x.scope == "category" && x.target == *original.category;
          return x.scope == "subject" && original.subject_ref && m_vault.subject_ref(x.target) == *original.subject_ref;
        });
        if (h != holds->end()) {
          auto removed = m_vault.remove_hold(ours);
          if (!removed) return std::move(removed).error();
          e.reason = "hold " + std::to_string(ours) + ": replay of " + seq_text(seq);
          outcome = Outcome::replayed;
        } else if (ours == 0 && !original.key && !original.category) {
          manual = "hold " + (id ? std::to_string(*id) : std::string("?")) + " on a subject was released (" +
                   seq_text(seq) + "): release the hold you placed again for it by hand (retentionctl release ID)";
          outcome = Outcome::not_replayable;
        } else {
          outcome = Outcome::nothing;
        }
      }
      if (outcome == Outcome::replayed) {
        if (auto appended = m_audit.append(e); !appended) return std::move(appended).error();
      }
      next.done_through = seq;
      next.done_hash = original.hash;
      if (manual) next.manual.push_back(*manual);
      auto after = store.last_audit();
      if (!after) return std::move(after).error();
      next.head_seq = *after ? (*after)->seq : 0;
      next.head_hash = *after ? (*after)->hash : std::string(audit::kGenesisHash);
      if (auto s = store.set_meta(kReplayMeta, next.to_json().dump()); !s) return s;
      state = std::move(next);
      return {};
    });
    if (!st) return std::move(st).error();
    switch (outcome) {
      case Outcome::replayed: ++summary.replayed; break;
      case Outcome::nothing: ++summary.nothing_to_do; break;
      case Outcome::not_replayable: ++summary.not_replayed; break;
    }
  }
  // All of them, those of earlier, interrupted runs too.
  summary.manual = state.manual;
  return summary;
}

}  // namespace retentiond::actions
