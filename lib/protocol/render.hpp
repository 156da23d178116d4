#pragma once
// Typed results -> the JSON the protocol fixes (shared/spec/admin-protocol.md)
// and the retention table in words. Pure functions, thread-safe.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/actions/service.hpp"
#include "lib/policy/policy.hpp"

namespace retentiond::protocol::render {

nlohmann::json instant_or_null(const std::optional<calendar::Instant>& t);
// Next: {"phase", "action", "due", "waiting_for"} or null.
nlohmann::json next(const std::optional<actions::PhaseSchedule>& next);
// Record: {"key", "subject", "category", "state", "fields", "dates", "next"}.
nlohmann::json record(const vault::Record& record, const std::optional<actions::PhaseSchedule>& next);
nlohmann::json explanation(const actions::Explanation& e);
nlohmann::json disposal(const actions::Disposal& d);
// subject.erase's and record.erase's result: `erased` (keys) and `retained`
// as the spec fixes them, and `erased_records` with each key's category.
nlohmann::json erasure(const actions::ErasureReport& report, bool dry_run);
// The receipt of an erasure or a disposal, without its signature
// (shared/spec/admin-protocol.md: subject_ref, erased, retained, at,
// policy_hash, audit_head).
nlohmann::json receipt(const actions::ErasureReport& report);
nlohmann::json plan(const actions::Plan& plan);
nlohmann::json audit_rows(const std::vector<store::AuditRow>& rows);
nlohmann::json holds(const std::vector<vault::Hold>& holds);
nlohmann::json policy(const policy::Policy& policy);
nlohmann::json sweep_counts(const actions::SweepCounts& counts);

// policy.table: the retention table in words, "markdown" or "text".
std::string policy_table(const policy::Policy& policy, const std::string& format);

// record.explain's `connectors`: each job of the record, by decision.
nlohmann::json jobs_of_record(const std::vector<store::StoredJob>& jobs);

}  // namespace retentiond::protocol::render
