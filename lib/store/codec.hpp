#pragma once
// What every backend encodes the same way (internal to lib/store): a
// record's dates and done times as JSON text, key slot lists as packed
// bytes, states by name, the UTC day of a due time, the column lists of the
// shared schema, and the counts a write transaction changes, gathered as
// deltas and written once before its commit.

#include <array>
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "lib/store/store.hpp"

namespace retentiond::store::codec {

constexpr std::int64_t kDay = 86400;
// floor(t / 86400), for negative times too.
std::int64_t day_of(std::int64_t t);

Error storage_error(const std::exception& e);

// How this process names itself to a database ("retentiond <host> pid
// <pid>", PostgreSQL's application_name), and the DaemonSeen such a name
// gives (nullopt for a name of another form).
std::string daemon_name();
std::optional<DaemonSeen> daemon_from_name(const std::string& name);

std::string dates_to_json(const policy::Dates& dates);
policy::Dates dates_from_json(const std::string& text);
std::string done_to_json(const std::vector<calendar::Instant>& done);
std::vector<calendar::Instant> done_from_json(const std::string& text);
RecordState state_from(const std::string& s);
void add_count(RecordCounts& c, RecordState state, std::int64_t n);

// Key slot lists: 8-byte little-endian numbers.
std::string pack_slots(const std::vector<std::int64_t>& slots);
std::vector<std::int64_t> unpack_slots(const std::string& blob);

// A record's scheduling columns (and its subject_ref), aliased r; the
// record columns add its slot and sealed values.
inline constexpr const char* kScheduleColumns =
    "r.key, r.category, r.state, r.dates, r.next_phase, r.due, r.done, r.created_at, r.subject_ref";
inline constexpr const char* kRecordColumns =
    "r.key, r.category, r.state, r.dates, r.next_phase, r.due, r.done, r.created_at, r.subject_ref, r.slot, r.sealed";
inline constexpr const char* kJobColumns =
    "id, connector, action, key, category, phase, decided_at, audit_seq, subject_ref, slot, sealed, state, attempts, "
    "failures, next_at, last_error, finished_at";
inline constexpr const char* kAuditColumns =
    "seq, at, action, key, category, phase, subject_ref, actor, reason, policy_hash, hash";

// The kept counts a write transaction changes (record_counts, due_counts,
// connector_stats), summed in memory and written once before the commit.
struct Deltas {
  std::map<std::tuple<int, int, std::string>, std::int64_t> records;  // (location 0|1, state, category)
  std::map<std::pair<std::int64_t, std::string>, std::int64_t> due;     // (day, category)
  std::map<std::string, std::array<std::int64_t, 5>> jobs;             // connector -> per JobState
  std::map<std::string, std::pair<std::string, calendar::Instant>> job_error;

  void count(Location where, RecordState state, const std::string& category, std::int64_t delta) {
    records[{where == Location::active ? 0 : 1, static_cast<int>(state), category}] += delta;
  }
  void count_due(const std::optional<calendar::Instant>& at, const std::string& category, std::int64_t delta) {
    if (at) due[{day_of(at->seconds), category}] += delta;
  }
  // A job entered `after` (from `before`, none for a new one); an error it
  // carries becomes the connector's latest.
  void count_job(const std::string& connector, std::optional<JobState> before, JobState after,
                 const std::optional<std::string>& error, calendar::Instant at) {
    auto& d = jobs[connector];
    if (before != after) {
      if (before) --d[static_cast<std::size_t>(*before)];
      ++d[static_cast<std::size_t>(after)];
    }
    if (error && after != JobState::done && after != JobState::discarded) job_error[connector] = {*error, at};
  }
  void clear() {
    records.clear();
    due.clear();
    jobs.clear();
    job_error.clear();
  }
};

}  // namespace retentiond::store::codec
