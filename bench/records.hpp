#pragma once
// Benchmark data: deterministic records and the policy that disposes of
// them. Record i depends only on (seed, i), so a fill of 10 million records
// and a run of one million give the same first million records, and two runs
// with the same seed store the same bytes.
//
// Thread safety: RecordGenerator is immutable after construction; make() may
// be called from any number of threads.

#include <cstdint>
#include <filesystem>
#include <string>

namespace retentiond::bench {

// The two categories of the bench policy. Even indexes are purged, odd
// indexes anonymised.
inline constexpr const char* kPurgeCategory = "bench.purge";
inline constexpr const char* kAnonymiseCategory = "bench.anonymise";

// The clocks (--now) of the phases. With last_contact in
// 2020-01-02..2021-06-30:
//   purge due     = last_contact + 3 years: 2023-01-02..2024-06-30
//   anonymise due = last_contact + 6 years: 2026-01-02..2027-06-30
// so nothing is due at kIngestNow, every purge and no anonymisation at
// kPurgeNow, and every anonymisation at kAnonymiseNow. The daemon's clock then
// runs in real time, which leaves months of margin either way.
inline constexpr const char* kIngestNow = "2022-01-01T00:00:00Z";
inline constexpr const char* kPurgeNow = "2025-06-01T00:00:00Z";
inline constexpr const char* kAnonymiseNow = "2030-01-01T00:00:00Z";

struct BenchRecord {
  std::string key;
  std::string subject;
  const char* category = kPurgeCategory;
  std::string fields_json;   // compact JSON object, 2-4 fields of ~10-40 bytes
  std::string dates_json;    // {"collected":"YYYY-MM-DD","last_contact":"YYYY-MM-DD"}
  std::string last_contact;  // YYYY-MM-DD, the purge order's first component
  // The due time the daemon computes for the record's one phase, in seconds
  // since the epoch (UTC): max(collected, last_contact) + 3 years for
  // bench.purge, last_contact + 6 years for bench.anonymise, the day clamped
  // to the month's end as lib/calendar does. The raw tables store it in their
  // `due` column.
  std::int64_t due = 0;
};

class RecordGenerator {
 public:
  explicit RecordGenerator(std::uint64_t seed) : m_seed(seed) {}

  BenchRecord make(std::uint64_t index) const;

  // The record as one element of record.put_many's `records`, appended to
  // `out` (compact JSON, no escaping needed: every generated string is plain
  // ASCII without quotes or backslashes).
  static void append_json(const BenchRecord& r, std::string& out);

  // What the bench's anonymise strategies leave of `r`'s fields: the value
  // the raw SQLite UPDATE writes in place of the daemon's anonymisation.
  static std::string anonymised_fields(const BenchRecord& r);
  // The same, from the fields' JSON alone (the raw one-statement UPDATE
  // computes it per row, as an SQL function).
  static std::string anonymised_fields(const std::string& fields_json);

 private:
  std::uint64_t m_seed;
};

// The last_contact date (YYYY-MM-DD) below or at which about `percent` % of
// the records fall (last_contact is uniform over 2020-01-02..2021-06-30);
// never 29 February, so adding whole years to it is exact.
std::string last_contact_cutoff(int percent);

// `date` (YYYY-MM-DD, not 29 February) plus `years`, as an instant at midnight
// UTC: the daemon clock at which records whose last_contact is at or before
// `date` are due under "last_contact + <years> years".
std::string plus_years(const std::string& date, int years);

// An instant written as the daemon writes them ("YYYY-MM-DDTHH:MM:SSZ", or a
// bare "YYYY-MM-DD" for midnight) in seconds since the epoch, UTC; throws
// std::invalid_argument on anything else.
std::int64_t instant_seconds(const std::string& instant);

// The bench policy (TOML): one category purged 3 years after the last
// contact, one anonymised 6 years after it; state_dir and socket inside `dir`.
// With `connector`, the purge category also runs on a pull connector: each
// purge then commits a job with its sealed subject (issue 14's outbox).
std::string policy_toml(const std::filesystem::path& dir, bool connector = false);

}  // namespace retentiond::bench
