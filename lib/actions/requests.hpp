#pragma once
// The typed requests of the use cases. lib/protocol decodes JSON params
// into them (every unknown, missing or ill-typed parameter, malformed time
// and over-long value is refused there); Service checks them against the
// policy (unknown category, undeclared date...). Plain values.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/calendar/calendar.hpp"

namespace retentiond::actions {

// Who asked: "scheduler" or "uid:N" (recorded in the audit log).
struct Actor {
  std::string name;
};

// Documented limits on one record (docs/protocol.md), checked by the decoder.
inline constexpr std::size_t kMaxKeyBytes = 512;
inline constexpr std::size_t kMaxSubjectBytes = 512;
inline constexpr std::size_t kMaxFieldsBytes = 64 * 1024;
inline constexpr std::size_t kMaxDates = 64;
inline constexpr std::size_t kMaxReasonBytes = 1024;

// record.put, and each element of record.put_many.
struct PutRequest {
  std::string key;
  std::string subject;
  std::string category;
  nlohmann::json fields = nlohmann::json::object();
  std::vector<std::pair<std::string, calendar::Instant>> dates;  // in request order
};

// event.record: exactly one of key and subject.
struct EventRequest {
  std::string name;
  calendar::Instant at;
  std::optional<std::string> key;
  std::optional<std::string> subject;
};

// subject.erase (subject, optionally some categories only) and
// record.erase (key).
struct EraseRequest {
  std::optional<std::string> subject;
  std::optional<std::string> key;
  std::string reason;
  bool dry_run = false;
  std::optional<std::vector<std::string>> categories;
};

// record.restore: a record purged within the undo window, back.
struct RestoreRequest {
  std::string key;
  std::string reason;
};

struct HoldRequest {
  std::string scope;  // subject, category or key
  std::string target;
  std::string reason;
};

struct ReleaseRequest {
  std::int64_t id = 0;
  std::optional<std::string> reason;
};

struct PlanRequest {
  calendar::Instant until;
  std::optional<calendar::Instant> from;  // default: now
  // A candidate policy file, read by the daemon: the plan is then the
  // candidate's, compared with the adopted policy (nothing is adopted).
  std::optional<std::string> policy;
};

struct AuditTailRequest {
  std::size_t limit = 100;
  std::optional<std::int64_t> after;
  std::optional<std::string> key;
  std::optional<std::string> subject;
  // With `after`: how long to wait for an entry past it (the dispatcher
  // waits; 0: answer at once). At most kMaxAuditWaitMs.
  std::int64_t wait_ms = 0;
};
inline constexpr std::int64_t kMaxAuditWaitMs = 60000;

// An audit checkpoint handed back to audit.verify: the head it named, and
// what else it carried (kept to check its signature).
struct Checkpoint {
  std::int64_t seq = 0;
  std::string hash;
  std::optional<std::string> at;
  std::optional<std::string> signature;
};
struct AuditVerifyRequest {
  bool full = false;
  std::vector<Checkpoint> checkpoints;
};
inline constexpr std::size_t kMaxCheckpoints = 1000;

// Connectors (docs/connectors.md). connector.jobs: `states` empty means
// pending, in_flight and failed.
struct JobsRequest {
  std::string connector;
  std::vector<std::string> states;
  std::size_t limit = 100;
};
// connector.claim: jobs of a pull connector, leased for `lease_s` seconds.
struct ClaimRequest {
  std::string connector;
  std::size_t max = 100;
  std::int64_t lease_s = 300;
};
// connector.ack: done, or a failed attempt.
struct AckRequest {
  std::string connector;
  std::vector<std::string> ids;
  bool done = true;
  std::string message;
};
// connector.retry (ids, or all failed jobs) and connector.discard (ids).
struct JobIdsRequest {
  std::string connector;
  std::vector<std::string> ids;
  bool all = false;
  std::string reason;
};
inline constexpr std::size_t kMaxJobIds = 1000;
inline constexpr std::size_t kMaxJobsListed = 1000;

}  // namespace retentiond::actions
