#include "lib/protocol/metrics_text.hpp"

#include <algorithm>
#include <set>

#include "lib/metrics/exposition.hpp"

namespace retentiond::protocol {

using metrics::Exposition;

std::string metrics_text(const actions::MetricsSnapshot& s, const DaemonFacts& d) {
  Exposition out;
  out.family("retentiond_info", "gauge", "The daemon's version and the hash of the policy in force (always 1)");
  out.sample("retentiond_info", {{"version", d.version}, {"policy_hash", d.policy_hash}}, std::int64_t{1});
  out.family("retentiond_start_time_seconds", "gauge", "When the daemon started, in seconds since the Unix epoch");
  out.sample("retentiond_start_time_seconds", {}, d.started_at.seconds);

  // Records by category and state: the policy's categories, and any still
  // holding records that a reload has since dropped.
  std::set<std::string> categories(d.categories.begin(), d.categories.end());
  for (const auto& [category, counts] : s.records) categories.insert(category);
  out.family("retentiond_records", "gauge", "Records stored, by category and state (active, archived, anonymised)");
  for (const auto& category : categories) {
    const auto found = s.records.find(category);
    const store::RecordCounts c = found == s.records.end() ? store::RecordCounts{} : found->second;
    out.sample("retentiond_records", {{"category", category}, {"state", "active"}}, c.active);
    out.sample("retentiond_records", {{"category", category}, {"state", "archived"}}, c.archived);
    out.sample("retentiond_records", {{"category", category}, {"state", "anonymised"}}, c.anonymised);
  }
  out.family("retentiond_due_records", "gauge",
             "Records whose next phase is due now, by category, held ones included");
  for (const auto& category : categories) {
    const auto found = s.due.find(category);
    out.sample("retentiond_due_records", {{"category", category}}, found == s.due.end() ? 0 : found->second);
  }
  out.family("retentiond_backlog_records", "gauge",
             "Unheld records whose next phase is due now (status.backlog): what the next sweep acts on");
  out.sample("retentiond_backlog_records", {}, s.backlog);
  out.family("retentiond_deletion_lateness_seconds", "gauge",
             "Age of the oldest unheld record past its due time (0 when none is due)");
  out.sample("retentiond_deletion_lateness_seconds", {},
             s.oldest_due ? std::max<std::int64_t>(0, s.now.seconds - s.oldest_due->seconds) : 0);
  out.family("retentiond_deletion_lateness_bounded", "gauge",
             "1 when more held records than the scan limit came first: the lateness is then an upper bound");
  out.sample("retentiond_deletion_lateness_bounded", {}, std::int64_t{s.lateness_bounded ? 1 : 0});

  out.family("retentiond_actions_total", "counter",
             "Audit entries appended since the daemon started, by action (archive, anonymise, purge, erase, "
             "hold.place, hold.release...) and category (empty when the entry has none)");
  for (const auto& [bucket, n] : s.actions) {
    out.sample("retentiond_actions_total", {{"action", bucket.first}, {"category", bucket.second}}, n);
  }
  out.family("retentiond_audit_entries", "gauge", "Entries in the audit log (the seq of its last entry)");
  out.sample("retentiond_audit_entries", {}, s.audit_seq);
  out.family("retentiond_holds", "gauge", "Legal holds in force, by scope");
  for (const char* scope : {"subject", "category", "key"}) {
    const auto found = s.holds.find(scope);
    out.sample("retentiond_holds", {{"scope", scope}}, found == s.holds.end() ? 0 : found->second);
  }

  out.family("retentiond_connector_jobs", "gauge",
             "Connector jobs by connector and state (pending, in_flight, failed, done, discarded)");
  for (const auto& c : s.connectors) {
    out.sample("retentiond_connector_jobs", {{"connector", c.connector}, {"state", "pending"}}, c.pending);
    out.sample("retentiond_connector_jobs", {{"connector", c.connector}, {"state", "in_flight"}}, c.in_flight);
    out.sample("retentiond_connector_jobs", {{"connector", c.connector}, {"state", "failed"}}, c.failed);
    out.sample("retentiond_connector_jobs", {{"connector", c.connector}, {"state", "done"}}, c.done);
    out.sample("retentiond_connector_jobs", {{"connector", c.connector}, {"state", "discarded"}}, c.discarded);
  }
  out.family("retentiond_connector_oldest_pending_seconds", "gauge",
             "Age of a connector's oldest unfinished (pending or in_flight) job (0 when none)");
  for (const auto& c : s.connectors) {
    out.sample("retentiond_connector_oldest_pending_seconds", {{"connector", c.connector}},
               c.oldest_pending ? std::max<std::int64_t>(0, s.now.seconds - c.oldest_pending->seconds) : 0);
  }

  if (d.sweeps) {
    out.family("retentiond_sweep_duration_seconds", "histogram", "Duration of the sweep passes, failed ones included");
    d.sweeps->durations.write(out, "retentiond_sweep_duration_seconds");
    out.family("retentiond_sweep_failures_total", "counter", "Sweep passes that ended with an error");
    out.sample("retentiond_sweep_failures_total", {}, d.sweeps->failed);
    out.family("retentiond_last_successful_sweep_timestamp_seconds", "gauge",
               "When the last successful sweep pass ended, in seconds since the Unix epoch (0: none yet)");
    out.sample("retentiond_last_successful_sweep_timestamp_seconds", {},
               d.sweeps->last_success ? d.sweeps->last_success->seconds : 0);
  }
  out.family("retentiond_sweep_consecutive_failures", "gauge", "Sweep passes failed in a row (0 after a success)");
  out.sample("retentiond_sweep_consecutive_failures", {}, std::int64_t{d.consecutive_failures});
  out.family("retentiond_paused", "gauge", "1 when disposal is paused for this reason (status.paused), else 0");
  for (const auto& reason : kPauseReasons) {
    out.sample("retentiond_paused", {{"reason", reason}}, std::int64_t{d.paused == reason ? 1 : 0});
  }
  return out.text();
}

}  // namespace retentiond::protocol
