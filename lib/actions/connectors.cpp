// Service: connectors (docs/connectors.md). The outbox is written by the
// phases and erasures (enqueue_jobs, in their transaction); the rest moves
// jobs on: claimed (leased) by a delivery worker or a pull consumer,
// settled by the outcome, retried or discarded by an admin. Every job that
// finishes destroys its sealed subject in the same transaction, and the
// outcomes that matter (done, failed for good, discarded) are audited there.

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include <spdlog/spdlog.h>

#include "lib/actions/service.hpp"
#include "lib/crypto/crypto.hpp"

namespace retentiond::actions {

using calendar::Instant;
using store::JobState;

namespace {

std::string to_hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

double jitter_unit() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

// The audit entry of a job's outcome: the job's record, phase and connector.
audit::Entry job_entry(audit::Entry e, const store::StoredJob& job, const std::string& reason) {
  e.key = job.key;
  e.category = job.category;
  e.phase = job.phase;
  e.subject_ref = job.subject_ref;
  e.reason = "connector=" + job.connector + " job=" + job.id + " attempts=" + std::to_string(job.attempts) + reason;
  return e;
}

}  // namespace

std::int64_t job_backoff_seconds(std::int64_t attempts, double unit) {
  const std::int64_t exponent = std::clamp<std::int64_t>(attempts - 1, 0, 30);
  const double full = std::min<double>(static_cast<double>(kMaxJobBackoffSeconds), std::ldexp(1.0, static_cast<int>(exponent)));
  const double jittered = full / 2 + full / 2 * std::clamp(unit, 0.0, 1.0);
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(std::llround(jittered)));
}

nlohmann::json job_json(const vault::Job& job, bool with_state) {
  const auto& r = job.row;
  nlohmann::json j = {
      {"id", r.id},
      {"connector", r.connector},
      {"action", r.action},
      {"key", r.key},
      {"subject", job.subject ? nlohmann::json(*job.subject) : nlohmann::json(nullptr)},
      {"category", r.category},
      {"phase", r.phase ? nlohmann::json(*r.phase) : nlohmann::json(nullptr)},
      {"decided_at", calendar::format_instant(r.decided_at)},
      {"audit_seq", r.audit_seq},
  };
  if (with_state) {
    j["attempts"] = r.attempts;
    j["state"] = std::string(store::to_string(r.state));
    j["last_error"] = r.last_error ? nlohmann::json(*r.last_error) : nlohmann::json(nullptr);
  }
  return j;
}

Result<const policy::Connector*> Service::find_connector(const policy::Policy& policy, const std::string& name) const {
  const policy::Connector* c = policy.find_connector(name);
  if (c == nullptr) {
    std::string known;
    for (const auto& k : policy.connectors) known += (known.empty() ? "" : ", ") + k.name;
    return Error::invalid_params("unknown_connector", "unknown connector '" + name + "' (" +
                                                          (known.empty() ? "the policy defines none" : "defined: " + known) + ")");
  }
  return c;
}

Status Service::enqueue_jobs(const policy::Category& category, const std::string& action, const Record& record,
                             const std::optional<std::string>& subject, std::optional<int> phase, Instant now,
                             std::int64_t audit_seq) {
  for (const auto& name : category.connectors) {
    vault::Job job;
    job.row.id = to_hex(crypto::random_bytes(16));
    job.row.connector = name;
    job.row.action = action;
    job.row.key = record.key;
    job.row.category = record.category;
    job.row.phase = phase;
    job.row.decided_at = now;
    job.row.audit_seq = audit_seq;
    job.row.subject_ref = record.subject_ref;
    job.row.state = JobState::pending;
    job.row.next_at = now;
    job.subject = subject;
    if (auto st = m_vault.add_job(job); !st) return st;
  }
  return {};
}

Result<std::vector<ConnectorInfo>> Service::connectors() {
  const auto policy = this->policy();
  auto stats = m_reader.store().connector_stats();
  if (!stats) return std::move(stats).error();
  std::vector<ConnectorInfo> out;
  for (const auto& c : policy->connectors) {
    ConnectorInfo info;
    info.connector = &c;
    info.stats.connector = c.name;
    for (const auto& s : *stats) {
      if (s.connector == c.name) info.stats = s;
    }
    out.push_back(std::move(info));
  }
  return out;
}

Result<std::vector<vault::Job>> Service::connector_jobs(const JobsRequest& request) {
  const auto policy = this->policy();
  if (auto c = find_connector(*policy, request.connector); !c) return std::move(c).error();
  std::vector<JobState> states;
  for (const auto& name : request.states) {
    auto st = store::job_state_from(name);
    if (!st || *st == JobState::done || *st == JobState::discarded) {
      // Finished jobs are not listed (their number grows with the history):
      // record.explain shows a record's.
      return Error::invalid_params("invalid_params",
                                   "unknown job state '" + name + "' (expected pending, in_flight or failed)");
    }
    states.push_back(*st);
  }
  if (states.empty()) states = {JobState::pending, JobState::in_flight, JobState::failed};
  std::vector<vault::Job> out;
  Status st = m_reader.read([&]() -> Status {
    out.clear();
    for (JobState state : states) {
      auto jobs = m_reader.jobs(request.connector, state, request.limit);
      if (!jobs) return std::move(jobs).error();
      for (auto& j : *jobs) out.push_back(std::move(j));
    }
    return {};
  });
  if (!st) return std::move(st).error();
  std::sort(out.begin(), out.end(), [](const vault::Job& a, const vault::Job& b) { return a.row.audit_seq < b.row.audit_seq; });
  if (out.size() > request.limit) out.resize(request.limit);
  return out;
}

Result<std::vector<store::StoredJob>> Service::jobs_of_key(const std::string& key) {
  return m_reader.store().jobs_of_key(key);
}

Result<std::vector<vault::Job>> Service::claim_jobs(const ClaimRequest& request, bool pull_only) {
  const auto policy = this->policy();
  auto connector = find_connector(*policy, request.connector);
  if (!connector) return std::move(connector).error();
  if (pull_only && (*connector)->kind != policy::ConnectorKind::pull) {
    return Error::invalid_params("wrong_kind", "connector '" + request.connector + "' is an " +
                                                   std::string(policy::to_string((*connector)->kind)) +
                                                   " connector: the daemon delivers its jobs; only pull connectors are claimed");
  }
  const Instant now = m_clock.now();
  std::vector<vault::Job> claimed;
  Status st = m_vault.transaction([&]() -> Status {
    claimed.clear();
    // In_flight jobs whose lease ended, then pending ones due, oldest first.
    // Each job looked at leaves the ready range (claimed: leased; or held
    // back behind an earlier job of its record), so reading from the start
    // again always moves on, and the scan is bounded.
    std::size_t scanned = 0;
    for (JobState state : {JobState::in_flight, JobState::pending}) {
      while (claimed.size() < request.max && scanned < kMaxClaimScan) {
        auto page = m_vault.jobs_ready(request.connector, state, now, std::min<std::size_t>(request.max - claimed.size() + 16, 256));
        if (!page) return std::move(page).error();
        if (page->empty()) break;
        for (auto& j : *page) {
          if (claimed.size() >= request.max) break;
          ++scanned;
          auto blocker = earlier_open_job(j.row);
          if (!blocker) return std::move(blocker).error();
          if (*blocker) {
            // One record's jobs reach a connector in the order they were
            // decided (an archive before its purge): this one waits until
            // the earlier one is settled (which wakes it) or, failed, for a
            // day at a time.
            const Instant until = (*blocker)->state == JobState::failed
                                      ? Instant{now.seconds + 86400}
                                      : Instant{std::max((*blocker)->next_at.seconds, now.seconds + 1)};
            // (A lease that ended is no delivery under way: pending again.)
            store::JobUpdate u{j.row.id, JobState::pending, j.row.attempts, j.row.failures, until, j.row.last_error,
                               std::nullopt, now, false};
            if (auto r = m_vault.update_job(u); !r) return r;
            continue;
          }
          j.row.state = JobState::in_flight;
          j.row.attempts += 1;
          j.row.next_at = Instant{now.seconds + request.lease_s};
          store::JobUpdate u{j.row.id, j.row.state, j.row.attempts, j.row.failures, j.row.next_at, j.row.last_error,
                             std::nullopt, now, false};
          if (auto r = m_vault.update_job(u); !r) return r;
          claimed.push_back(std::move(j));
        }
      }
    }
    return {};
  });
  if (!st) return std::move(st).error();
  return claimed;
}

Result<std::optional<store::StoredJob>> Service::earlier_open_job(const store::StoredJob& job) {
  auto of_key = m_vault.store().jobs_of_key(job.key);
  if (!of_key) return std::move(of_key).error();
  for (auto& o : *of_key) {
    if (o.connector == job.connector && o.audit_seq < job.audit_seq &&
        (o.state == JobState::pending || o.state == JobState::in_flight || o.state == JobState::failed)) {
      return std::optional<store::StoredJob>{std::move(o)};
    }
  }
  return std::optional<store::StoredJob>{};
}

Status Service::wake_later_jobs(const store::StoredJob& job, Instant now) {
  auto of_key = m_vault.store().jobs_of_key(job.key);
  if (!of_key) return std::move(of_key).error();
  for (const auto& o : *of_key) {
    if (o.connector != job.connector || o.audit_seq <= job.audit_seq || o.state != JobState::pending || o.next_at <= now) {
      continue;
    }
    store::JobUpdate u{o.id, o.state, o.attempts, o.failures, now, o.last_error, std::nullopt, now, false};
    if (auto r = m_vault.update_job(u); !r) return r;
  }
  return {};
}

Result<std::int64_t> Service::settle_jobs(const std::string& connector, const std::vector<DeliveryOutcome>& outcomes,
                                          const Actor& actor) {
  const auto policy = this->policy();
  auto found = find_connector(*policy, connector);
  if (!found) return std::move(found).error();
  const policy::Connector& c = **found;
  const Instant now = m_clock.now();
  std::int64_t settled = 0;
  std::vector<std::string> failed_for_good;
  Status st = m_vault.transaction([&]() -> Status {
    settled = 0;
    failed_for_good.clear();
    for (const auto& o : outcomes) {
      auto row = m_vault.store().job(o.id);
      if (!row) return std::move(row).error();
      if (!*row || (*row)->connector != connector) continue;
      store::StoredJob job = std::move(**row);
      if (job.state != JobState::pending && job.state != JobState::in_flight) continue;
      store::JobUpdate u{job.id, job.state, job.attempts, job.failures, job.next_at, job.last_error, std::nullopt, now, false};
      if (o.outcome == Delivery::done) {
        u.state = JobState::done;
        u.finished_at = now;
        u.next_at = now;
        u.drop_subject = true;
        if (auto a = m_audit.append(job_entry(entry(*policy, "connector.done", actor), job, "")); !a) {
          return std::move(a).error();
        }
        if (auto w = wake_later_jobs(job, now); !w) return w;
      } else {
        u.last_error = o.message.empty() ? std::string(o.outcome == Delivery::later ? "try later" : "failed") : o.message;
        u.error_is_new = true;
        if (o.outcome == Delivery::failed_attempt) u.failures += 1;
        if (u.failures >= c.max_attempts) {
          u.state = JobState::failed;
          u.next_at = now;
          failed_for_good.push_back(job.id);
          if (auto a = m_audit.append(job_entry(entry(*policy, "connector.failed", actor), job, "")); !a) {
            return std::move(a).error();
          }
        } else {
          u.state = JobState::pending;
          u.next_at = Instant{now.seconds + job_backoff_seconds(std::max<std::int64_t>(job.attempts, 1), jitter_unit())};
        }
      }
      if (auto r = m_vault.update_job(u); !r) return r;
      ++settled;
    }
    return {};
  });
  if (!st) return std::move(st).error();
  for (const auto& id : failed_for_good) {
    spdlog::warn("connector.failed connector={} job={} (max_attempts {} reached; retry or discard it)", connector, id,
                 c.max_attempts);
  }
  return settled;
}

Result<std::int64_t> Service::retry_jobs(const JobIdsRequest& request, const Actor& actor) {
  const auto policy = this->policy();
  if (auto c = find_connector(*policy, request.connector); !c) return std::move(c).error();
  const Instant now = m_clock.now();
  std::int64_t retried = 0;
  Status st = m_vault.transaction([&]() -> Status {
    retried = 0;
    std::vector<store::StoredJob> jobs;
    if (request.all) {
      std::int64_t after = 0;
      for (;;) {
        auto page = m_vault.store().jobs(request.connector, JobState::failed, 1000, after);
        if (!page) return std::move(page).error();
        for (auto& j : *page) jobs.push_back(std::move(j));
        if (page->size() < 1000) break;
        after = jobs.back().audit_seq;
      }
    } else {
      for (const auto& id : request.ids) {
        auto row = m_vault.store().job(id);
        if (!row) return std::move(row).error();
        if (*row && (*row)->connector == request.connector && (*row)->state == JobState::failed) jobs.push_back(**row);
      }
    }
    for (const auto& job : jobs) {
      // A fresh start: its back-off begins again at one second.
      store::JobUpdate u{job.id, JobState::pending, 0, 0, now, job.last_error, std::nullopt, now, false};
      if (auto r = m_vault.update_job(u); !r) return r;
      ++retried;
    }
    return {};
  });
  if (!st) return std::move(st).error();
  if (retried > 0) spdlog::info("connector.retry connector={} jobs={} actor={}", request.connector, retried, actor.name);
  return retried;
}

Result<std::int64_t> Service::discard_jobs(const JobIdsRequest& request, const Actor& actor) {
  const auto policy = this->policy();
  if (auto c = find_connector(*policy, request.connector); !c) return std::move(c).error();
  const Instant now = m_clock.now();
  std::int64_t discarded = 0;
  Status st = m_vault.transaction([&]() -> Status {
    discarded = 0;
    for (const auto& id : request.ids) {
      auto row = m_vault.store().job(id);
      if (!row) return std::move(row).error();
      if (!*row || (*row)->connector != request.connector) continue;
      const store::StoredJob& job = **row;
      if (job.state == JobState::done || job.state == JobState::discarded) continue;
      store::JobUpdate u{job.id, JobState::discarded, job.attempts, job.failures, now, job.last_error, now, now, true};
      if (auto r = m_vault.update_job(u); !r) return r;
      if (auto a = m_audit.append(job_entry(entry(*policy, "connector.discard", actor), job, ": " + request.reason)); !a) {
        return std::move(a).error();
      }
      if (auto w = wake_later_jobs(job, now); !w) return w;
      ++discarded;
    }
    return {};
  });
  if (!st) return std::move(st).error();
  return discarded;
}

Result<std::int64_t> Service::release_push_jobs() {
  const auto policy = this->policy();
  const Instant now = m_clock.now();
  std::int64_t released = 0;
  Status st = m_vault.transaction([&]() -> Status {
    released = 0;
    for (const auto& c : policy->connectors) {
      if (c.kind == policy::ConnectorKind::pull) continue;
      for (;;) {
        auto page = m_vault.store().jobs(c.name, JobState::in_flight, 1000);
        if (!page) return std::move(page).error();
        for (const auto& job : *page) {
          store::JobUpdate u{job.id, JobState::pending, job.attempts, job.failures, now, job.last_error, std::nullopt, now, false};
          if (auto r = m_vault.update_job(u); !r) return r;
          ++released;
        }
        if (page->size() < 1000) break;
      }
    }
    return {};
  });
  if (!st) return std::move(st).error();
  return released;
}

Result<std::optional<Instant>> Service::next_job_at(const std::string& connector) {
  std::optional<Instant> next;
  for (JobState state : {JobState::pending, JobState::in_flight}) {
    auto at = m_vault.store().next_job_at(connector, state);
    if (!at) return std::move(at).error();
    if (*at && (!next || **at < *next)) next = *at;
  }
  return next;
}

}  // namespace retentiond::actions
