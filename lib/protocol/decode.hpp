#pragma once
// JSON params -> typed requests (lib/actions/requests.hpp): the one place
// for every "unknown / missing / ill-typed parameter", malformed time and
// over-long value error. Each decoder returns the request, or
// invalid_params with a finer reason (bad_time, too_large...) and a message
// naming the parameter. Pure functions, thread-safe.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/actions/requests.hpp"
#include "lib/util/result.hpp"

namespace retentiond::protocol::decode {

// Params that must have no member at all (status, help...).
Status none(const nlohmann::json& params);

Result<actions::PutRequest> put(const nlohmann::json& params);
// record.put_many: at most `max_records`; an error in one element names it
// (message "records[i]: ...", data.index).
Result<std::vector<actions::PutRequest>> put_many(const nlohmann::json& params, std::size_t max_records);
Result<actions::EventRequest> event(const nlohmann::json& params);

struct GetRequest {
  std::string key;
  bool include_archived = false;
};
Result<GetRequest> get(const nlohmann::json& params);
// {"key"} alone (record.explain).
Result<std::string> key_only(const nlohmann::json& params);
// {"subject"} alone (subject.export).
Result<std::string> subject_only(const nlohmann::json& params);

Result<actions::EraseRequest> subject_erase(const nlohmann::json& params);
Result<actions::EraseRequest> record_erase(const nlohmann::json& params);
Result<actions::HoldRequest> hold_place(const nlohmann::json& params);
Result<actions::ReleaseRequest> hold_release(const nlohmann::json& params);
Result<actions::PlanRequest> plan(const nlohmann::json& params);
Result<actions::RestoreRequest> restore(const nlohmann::json& params);
Result<actions::AuditTailRequest> audit_tail(const nlohmann::json& params);
// audit.verify: {"full", "checkpoints": [{"seq", "hash", "at", "signature"}]}.
Result<actions::AuditVerifyRequest> audit_verify(const nlohmann::json& params);

// {"dry_run"} (sweep), {"confirm"} (config.reload): a boolean, default false.
Result<bool> flag_only(const nlohmann::json& params, const char* name);
// policy.table: "markdown" (default) or "text".
Result<std::string> table_format(const nlohmann::json& params);

// Connectors: connector.jobs, connector.claim, connector.ack,
// connector.retry (ids or all) and connector.discard (ids, reason).
Result<actions::JobsRequest> connector_jobs(const nlohmann::json& params);
Result<actions::ClaimRequest> connector_claim(const nlohmann::json& params);
Result<actions::AckRequest> connector_ack(const nlohmann::json& params);
Result<actions::JobIdsRequest> connector_retry(const nlohmann::json& params);
Result<actions::JobIdsRequest> connector_discard(const nlohmann::json& params);

}  // namespace retentiond::protocol::decode
