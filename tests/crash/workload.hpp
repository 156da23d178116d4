#pragma once
// The crash harness's workload: the test policy, the records it puts (each
// with canary values that must be gone once the record is anonymised or
// destroyed), and the phase arithmetic the ledger uses to bound when a phase
// may run. Pure data and functions, safe to call from any thread.

#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace retentiond::crash {

inline constexpr std::int64_t kDay = 86400;
// A date the record does not carry, in the ledger's sets of possible values.
inline constexpr std::int64_t kAbsent = std::numeric_limits<std::int64_t>::min();

enum class Action : std::uint8_t { archive, anonymise, purge };
const char* to_string(Action a);

// One phase of the test policy. Every `at` is one of two shapes, both
// monotonic in the dates: `<date> + offset`, or
// `max(collected, <date>) + offset`.
struct PhaseSpec {
  Action action = Action::purge;
  bool max_with_collected = false;
  std::int64_t offset = 0;  // seconds
  const char* at = "";      // as written in the policy file
};

struct CategorySpec {
  const char* name = "";
  const char* date = "";  // the category's own date, besides collected
  bool erasable = true;   // false for the legal-obligation category
  std::vector<PhaseSpec> phases;
};

// Index = the category's id in the ledger.
const std::vector<CategorySpec>& categories();
std::optional<int> category_index(std::string_view name);

// The policy file: state and socket inside `dir`, small batches so that a
// pass is many transactions (more commits for a kill to land in).
// With an undo window of kGraceSeconds: purges and erasures retire the
// record; a pass destroys it once the window has ended.
std::string policy_toml(const std::filesystem::path& dir, const std::filesystem::path& connector_exe);
// The connector of the tickets (issue 14): an exec connector,
// `connector_exe` (crash_connector, beside the harness), that appends each
// job it is given to <dir>/received.jsonl and exits 0, or, one time in
// ten, exits 75 (try later) without taking it; never once <dir>/steady
// exists (the end of the run, which waits for every job).
inline constexpr const char* kConnectorCategory = "ticket";
inline constexpr const char* kConnectorName = "app";
std::filesystem::path received_file(const std::filesystem::path& dir);
std::filesystem::path steady_file(const std::filesystem::path& dir);
inline constexpr std::int64_t kGraceSeconds = 2 * 86400;

std::string key_name(std::uint32_t id);
// The id of a key this harness wrote ("k<digits>"), or nullopt.
std::optional<std::uint32_t> key_id(std::string_view key);
std::string subject_name(std::uint32_t subject);
std::string erase_reason(std::uint32_t request);
std::optional<std::uint32_t> erase_request(std::string_view reason);

// The fields put for a record: every personal value carries "canary".
nlohmann::json fields_for(int category, std::uint32_t id);
// What the anonymise phase must leave of them (secret: the daemon's secret
// file, which keys the hmac strategy).
nlohmann::json anonymised_fields(int category, std::uint32_t id, const std::string& secret);

// The due time of `phase` for these dates (kAbsent: not carried), or
// nullopt when it is undefined (waiting for the date).
std::optional<std::int64_t> due_at(const PhaseSpec& phase, std::int64_t collected, std::int64_t date);
// The earliest due time of `phase` over every value each date may have had
// (kAbsent among them: the record may not carry it); nullopt when none of
// them defines it, so the phase cannot have run.
std::optional<std::int64_t> due_lower(const PhaseSpec& phase, const std::vector<std::int64_t>& collected,
                                      const std::vector<std::int64_t>& date);

std::string format_time(std::int64_t seconds);

}  // namespace retentiond::crash
