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

  nlohmann::json to_json() const {
    nlohmann::json h = nlohmann::json::object();
    for (const auto& [from, to] : holds) h[std::to_string(from)] = to;
    return {{"base_seq", base_seq}, {"base_hash", base_hash}, {"done_through", done_through}, {"holds", h}};
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
  ReplayState state;
  auto kept = store.get_meta(kReplayMeta);
  if (!kept) return std::move(kept).error();
  std::optional<ReplayState> resumed;
  if (*kept) resumed = ReplayState::from_json(**kept);
  const auto* base_in_file = resumed ? in_file(resumed->base_seq) : nullptr;
  if (resumed && (resumed->base_seq == 0 ? resumed->base_hash == audit::kGenesisHash
                                         : base_in_file != nullptr && base_in_file->hash == resumed->base_hash)) {
    // A replay of this history began before: the entries past its base are
    // the replay's own, and it goes on after the last entry it redid.
    state = *resumed;
  } else {
    // The restored chain must be a prefix of the file's: every entry both
    // hold is the same, and the file reaches the restored head.
    auto head = store.last_audit();
    if (!head) return std::move(head).error();
    state.base_seq = *head ? (*head)->seq : 0;
    state.base_hash = *head ? (*head)->hash : std::string(audit::kGenesisHash);
    if (state.base_seq > summary.file_head) {
      return Error::invalid_params("bad_replay", "the restored audit log (head " + seq_text(state.base_seq) +
                                                     ") is longer than the copy (last " + seq_text(summary.file_head) +
                                                     "): the copy is older than the database; nothing to replay from it");
    }
    if (first > state.base_seq + 1) {
      return Error::invalid_params("bad_replay", "the audit log copy starts at " + seq_text(first) +
                                                     ", after the restored head " + seq_text(state.base_seq) +
                                                     ": it must include that entry to prove the restored log is its prefix");
    }
    store::StoreReader::AuditQuery q;
    q.after_seq = std::max<std::int64_t>(first - 1, 0);
    q.limit = 10000;
    while (*q.after_seq < state.base_seq) {
      auto rows = store.audit_entries(q);
      if (!rows) return std::move(rows).error();
      if (rows->empty()) break;
      for (const auto& row : *rows) {
        const auto* theirs = in_file(row.seq);
        if (theirs == nullptr || theirs->hash != row.hash) {
          return Error::invalid_params(
              "bad_replay", "the restored audit log is not a prefix of the copy: their " + seq_text(row.seq) +
                                " differ (a different history, or a copy of another daemon's log); nothing was changed");
        }
      }
      q.after_seq = rows->back().seq;
    }
    state.done_through = state.base_seq;
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
        } else if (action == "destroy") {
          auto gone = m_vault.destroy_retired(*original.key);
          if (!gone) return std::move(gone).error();
          outcome = Outcome::replayed;
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
        const std::int64_t ours = id && next.holds.count(*id) ? next.holds.at(*id) : id.value_or(0);
        auto holds = m_vault.holds();
        if (!holds) return std::move(holds).error();
        const bool present = ours != 0 && std::any_of(holds->begin(), holds->end(),
                                                      [&](const vault::Hold& h) { return h.id == ours; });
        if (!present) {
          outcome = Outcome::nothing;
        } else {
          auto removed = m_vault.remove_hold(ours);
          if (!removed) return std::move(removed).error();
          e.reason = "hold " + std::to_string(ours) + ": replay of " + seq_text(seq);
          outcome = Outcome::replayed;
        }
      }
      if (outcome == Outcome::replayed) {
        if (auto appended = m_audit.append(e); !appended) return std::move(appended).error();
      }
      next.done_through = seq;
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
    if (manual) summary.manual.push_back(*manual);
  }
  return summary;
}

}  // namespace retentiond::actions
