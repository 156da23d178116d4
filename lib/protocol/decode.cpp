#include "lib/protocol/decode.hpp"

#include <algorithm>
#include <initializer_list>
#include <string_view>

namespace retentiond::protocol::decode {

namespace {

using nlohmann::json;

Error bad(std::string reason, std::string message) { return Error::invalid_params(std::move(reason), std::move(message)); }

// Success when `params` has no member outside `allowed`.
Status only(const json& params, std::initializer_list<std::string_view> allowed) {
  if (!params.is_object()) return bad("invalid_params", "params must be an object");
  for (const auto& [k, v] : params.items()) {
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
      return bad("invalid_params", "unknown parameter '" + k + "'");
    }
  }
  return {};
}

Result<std::string> required_string(const json& params, const char* name, std::size_t max_bytes) {
  const auto it = params.find(name);
  if (it == params.end()) return bad("invalid_params", std::string("missing parameter '") + name + "'");
  if (!it->is_string()) return bad("invalid_params", std::string("'") + name + "' must be a string");
  const auto& s = it->get_ref<const std::string&>();
  if (s.empty()) return bad("invalid_params", std::string("'") + name + "' must not be empty");
  if (s.size() > max_bytes) {
    return bad("too_large", std::string("'") + name + "' is longer than " + std::to_string(max_bytes) + " bytes");
  }
  return s;
}

Result<std::optional<std::string>> optional_string(const json& params, const char* name, std::size_t max_bytes) {
  if (!params.contains(name)) return std::optional<std::string>{};
  auto s = required_string(params, name, max_bytes);
  if (!s) return std::move(s).error();
  return std::optional<std::string>{std::move(*s)};
}

Result<bool> optional_bool(const json& params, const char* name) {
  const auto it = params.find(name);
  if (it == params.end()) return false;
  if (!it->is_boolean()) return bad("invalid_params", std::string("'") + name + "' must be true or false");
  return it->get<bool>();
}

Result<calendar::Instant> time(const json& params, const char* name) {
  auto text = required_string(params, name, 64);
  if (!text) return std::move(text).error();
  auto t = calendar::parse_instant(*text);
  if (!t) return bad("bad_time", std::string("'") + name + "': " + t.error().message);
  return *t;
}

bool valid_date_name(const std::string& name) {
  if (name.empty() || name[0] < 'a' || name[0] > 'z') return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

Error with_index(Error e, std::size_t i) {
  e.message = "records[" + std::to_string(i) + "]: " + e.message;
  e.data["index"] = i;
  return e;
}

}  // namespace

Status none(const json& params) { return only(params, {}); }

Result<actions::PutRequest> put(const json& params) {
  if (auto st = only(params, {"key", "subject", "category", "fields", "dates"}); !st) return std::move(st).error();
  actions::PutRequest r;
  auto key = required_string(params, "key", actions::kMaxKeyBytes);
  if (!key) return std::move(key).error();
  r.key = std::move(*key);
  auto subject = required_string(params, "subject", actions::kMaxSubjectBytes);
  if (!subject) return std::move(subject).error();
  r.subject = std::move(*subject);
  auto category = required_string(params, "category", 64);
  if (!category) {
    if (category.error().reason == "too_large") return bad("unknown_category", "unknown category (name longer than 64 characters)");
    return std::move(category).error();
  }
  r.category = std::move(*category);
  if (const auto it = params.find("fields"); it != params.end()) {
    if (!it->is_object()) return bad("invalid_params", "'fields' must be an object");
    if (it->dump().size() > actions::kMaxFieldsBytes) {
      return bad("too_large", "'fields' is larger than " + std::to_string(actions::kMaxFieldsBytes) + " bytes of JSON");
    }
    r.fields = *it;
  }
  if (const auto it = params.find("dates"); it != params.end()) {
    if (!it->is_object()) return bad("invalid_params", "'dates' must be an object of name: time");
    if (it->size() > actions::kMaxDates) return bad("too_large", "more than " + std::to_string(actions::kMaxDates) + " dates");
    for (const auto& [name, value] : it->items()) {
      if (!value.is_string()) return bad("bad_time", "date '" + name + "' must be a time string");
      auto t = calendar::parse_instant(value.get<std::string>());
      if (!t) return bad("bad_time", "date '" + name + "': " + t.error().message);
      r.dates.emplace_back(name, *t);
    }
  }
  return r;
}

Result<std::vector<actions::PutRequest>> put_many(const json& params, std::size_t max_records) {
  if (auto st = only(params, {"records"}); !st) return std::move(st).error();
  const auto it = params.find("records");
  if (it == params.end()) return bad("invalid_params", "missing parameter 'records'");
  if (!it->is_array()) return bad("invalid_params", "'records' must be an array");
  if (it->size() > max_records) {
    return bad("too_large", std::to_string(it->size()) + " records in one call; the limit is " + std::to_string(max_records));
  }
  std::vector<actions::PutRequest> out;
  out.reserve(it->size());
  for (std::size_t i = 0; i < it->size(); ++i) {
    auto r = put((*it)[i]);
    if (!r) return with_index(std::move(r).error(), i);
    out.push_back(std::move(*r));
  }
  return out;
}

Result<actions::EventRequest> event(const json& params) {
  if (auto st = only(params, {"name", "at", "subject", "key"}); !st) return std::move(st).error();
  actions::EventRequest r;
  auto name = required_string(params, "name", 64);
  if (!name) return std::move(name).error();
  if (!valid_date_name(*name)) return bad("invalid_params", "invalid date name '" + *name + "' (expected [a-z][a-z0-9_]*)");
  r.name = std::move(*name);
  auto at_text = required_string(params, "at", 64);
  if (!at_text) return std::move(at_text).error();
  auto at = calendar::parse_instant(*at_text);
  if (!at) return std::move(at).error();
  r.at = *at;
  if (params.contains("key") == params.contains("subject")) return bad("invalid_params", "give exactly one of 'subject' and 'key'");
  auto key = optional_string(params, "key", actions::kMaxKeyBytes);
  if (!key) return std::move(key).error();
  r.key = std::move(*key);
  auto subject = optional_string(params, "subject", actions::kMaxSubjectBytes);
  if (!subject) return std::move(subject).error();
  r.subject = std::move(*subject);
  return r;
}

Result<GetRequest> get(const json& params) {
  if (auto st = only(params, {"key", "include_archived"}); !st) return std::move(st).error();
  const auto it = params.find("key");
  if (it == params.end() || !it->is_string()) return bad("invalid_params", "'key' must be a string");
  auto include_archived = optional_bool(params, "include_archived");
  if (!include_archived) return std::move(include_archived).error();
  return GetRequest{it->get<std::string>(), *include_archived};
}

Result<std::string> key_only(const json& params) {
  if (auto st = only(params, {"key"}); !st) return std::move(st).error();
  const auto it = params.find("key");
  if (it == params.end() || !it->is_string()) return bad("invalid_params", "'key' must be a string");
  return it->get<std::string>();
}

Result<std::string> subject_only(const json& params) {
  if (auto st = only(params, {"subject"}); !st) return std::move(st).error();
  return required_string(params, "subject", actions::kMaxSubjectBytes);
}

namespace {

Result<actions::EraseRequest> erase_common(const json& params, actions::EraseRequest r) {
  auto reason = required_string(params, "reason", actions::kMaxReasonBytes);
  if (!reason) return std::move(reason).error();
  r.reason = std::move(*reason);
  auto dry_run = optional_bool(params, "dry_run");
  if (!dry_run) return std::move(dry_run).error();
  r.dry_run = *dry_run;
  return r;
}

}  // namespace

Result<actions::EraseRequest> subject_erase(const json& params) {
  if (auto st = only(params, {"subject", "reason", "dry_run", "categories"}); !st) return std::move(st).error();
  actions::EraseRequest r;
  auto subject = required_string(params, "subject", actions::kMaxSubjectBytes);
  if (!subject) return std::move(subject).error();
  r.subject = std::move(*subject);
  if (const auto it = params.find("categories"); it != params.end()) {
    const auto refuse = [] { return bad("invalid_params", "'categories' must be a non-empty array of category names"); };
    if (!it->is_array() || it->empty()) return refuse();
    r.categories.emplace();
    for (const auto& c : *it) {
      if (!c.is_string()) return refuse();
      r.categories->push_back(c.get<std::string>());
    }
  }
  return erase_common(params, std::move(r));
}

Result<actions::EraseRequest> record_erase(const json& params) {
  if (auto st = only(params, {"key", "reason", "dry_run"}); !st) return std::move(st).error();
  actions::EraseRequest r;
  auto key = required_string(params, "key", actions::kMaxKeyBytes);
  if (!key) return std::move(key).error();
  r.key = std::move(*key);
  return erase_common(params, std::move(r));
}

Result<actions::RestoreRequest> restore(const json& params) {
  if (auto st = only(params, {"key", "reason"}); !st) return std::move(st).error();
  actions::RestoreRequest r;
  auto key = required_string(params, "key", actions::kMaxKeyBytes);
  if (!key) return std::move(key).error();
  r.key = std::move(*key);
  auto reason = required_string(params, "reason", actions::kMaxReasonBytes);
  if (!reason) return std::move(reason).error();
  r.reason = std::move(*reason);
  return r;
}

Result<actions::HoldRequest> hold_place(const json& params) {
  if (auto st = only(params, {"subject", "category", "key", "reason"}); !st) return std::move(st).error();
  const int scopes = static_cast<int>(params.contains("subject")) + static_cast<int>(params.contains("category")) +
                     static_cast<int>(params.contains("key"));
  if (scopes != 1) return bad("invalid_params", "give exactly one of 'subject', 'category' and 'key'");
  actions::HoldRequest r;
  r.scope = params.contains("subject") ? "subject" : params.contains("category") ? "category" : "key";
  auto target = required_string(params, r.scope.c_str(), actions::kMaxKeyBytes);
  if (!target) return std::move(target).error();
  r.target = std::move(*target);
  auto reason = required_string(params, "reason", actions::kMaxReasonBytes);
  if (!reason) return std::move(reason).error();
  r.reason = std::move(*reason);
  return r;
}

Result<actions::ReleaseRequest> hold_release(const json& params) {
  if (auto st = only(params, {"id", "reason"}); !st) return std::move(st).error();
  const auto it = params.find("id");
  if (it == params.end() || !it->is_number_integer()) return bad("invalid_params", "'id' must be an integer");
  actions::ReleaseRequest r;
  r.id = it->get<std::int64_t>();
  if (const auto reason = params.find("reason"); reason != params.end()) {
    if (!reason->is_string()) return bad("invalid_params", "'reason' must be a string");
    r.reason = reason->get<std::string>();
  }
  return r;
}

Result<actions::PlanRequest> plan(const json& params) {
  if (auto st = only(params, {"until", "from", "policy"}); !st) return std::move(st).error();
  actions::PlanRequest r;
  if (const auto it = params.find("policy"); it != params.end()) {
    if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
      return bad("invalid_params", "'policy' must be the path of a candidate policy file");
    }
    r.policy = it->get<std::string>();
  }
  auto until = time(params, "until");
  if (!until) return std::move(until).error();
  r.until = *until;
  if (params.contains("from")) {
    auto from = time(params, "from");
    if (!from) return std::move(from).error();
    r.from = *from;
  }
  return r;
}

Result<actions::AuditTailRequest> audit_tail(const json& params) {
  if (auto st = only(params, {"limit", "after", "key", "subject", "wait_ms"}); !st) return std::move(st).error();
  actions::AuditTailRequest r;
  if (const auto it = params.find("wait_ms"); it != params.end()) {
    if (!it->is_number_integer() || it->get<std::int64_t>() < 0 || it->get<std::int64_t>() > actions::kMaxAuditWaitMs) {
      return bad("invalid_params", "'wait_ms' must be an integer from 0 to " + std::to_string(actions::kMaxAuditWaitMs));
    }
    r.wait_ms = it->get<std::int64_t>();
    if (params.find("after") == params.end()) {
      return bad("invalid_params", "'wait_ms' needs 'after': it waits for an entry past that sequence number");
    }
  }
  if (const auto it = params.find("limit"); it != params.end()) {
    if (!it->is_number_integer() || it->get<std::int64_t>() < 1 || it->get<std::int64_t>() > 10000) {
      return bad("invalid_params", "'limit' must be an integer from 1 to 10000");
    }
    r.limit = it->get<std::size_t>();
  }
  if (const auto it = params.find("after"); it != params.end()) {
    if (!it->is_number_integer() || it->get<std::int64_t>() < 0) {
      return bad("invalid_params", "'after' must be a sequence number (an integer >= 0)");
    }
    r.after = it->get<std::int64_t>();
  }
  if (const auto it = params.find("key"); it != params.end()) {
    if (!it->is_string()) return bad("invalid_params", "'key' must be a string");
    r.key = it->get<std::string>();
  }
  if (const auto it = params.find("subject"); it != params.end()) {
    if (!it->is_string()) return bad("invalid_params", "'subject' must be a string");
    r.subject = it->get<std::string>();
  }
  return r;
}

Result<actions::AuditVerifyRequest> audit_verify(const json& params) {
  if (auto st = only(params, {"full", "checkpoints"}); !st) return std::move(st).error();
  actions::AuditVerifyRequest r;
  auto full = optional_bool(params, "full");
  if (!full) return std::move(full).error();
  r.full = *full;
  const auto it = params.find("checkpoints");
  if (it == params.end()) return r;
  if (!it->is_array() || it->size() > actions::kMaxCheckpoints) {
    return bad("invalid_params", "'checkpoints' must be an array of at most " + std::to_string(actions::kMaxCheckpoints) +
                                     " checkpoints (as audit.checkpoint returns them)");
  }
  for (std::size_t i = 0; i < it->size(); ++i) {
    const json& c = (*it)[i];
    const auto fail = [i](std::string message) {
      Error e = bad("invalid_params", "checkpoints[" + std::to_string(i) + "]: " + message);
      e.data["index"] = i;
      return e;
    };
    if (!c.is_object()) return fail("must be an object");
    if (auto st = only(c, {"seq", "hash", "at", "signature"}); !st) {
      return fail(st.error().message);
    }
    actions::Checkpoint cp;
    const auto seq = c.find("seq");
    if (seq == c.end() || !seq->is_number_integer() || seq->get<std::int64_t>() < 0) {
      return fail("'seq' must be a sequence number (an integer >= 0)");
    }
    cp.seq = seq->get<std::int64_t>();
    const auto hash = c.find("hash");
    if (hash == c.end() || !hash->is_string() || hash->get<std::string>().size() != 64 ||
        hash->get<std::string>().find_first_not_of("0123456789abcdef") != std::string::npos) {
      return fail("'hash' must be a SHA-256 in lowercase hex (64 characters), as audit.checkpoint gives it");
    }
    cp.hash = hash->get<std::string>();
    for (const char* name : {"at", "signature"}) {
      const auto m = c.find(name);
      if (m == c.end()) continue;
      if (!m->is_string()) return fail(std::string("'") + name + "' must be a string");
      (std::string_view(name) == "at" ? cp.at : cp.signature) = m->get<std::string>();
    }
    r.checkpoints.push_back(std::move(cp));
  }
  return r;
}

Result<bool> flag_only(const json& params, const char* name) {
  if (auto st = only(params, {name}); !st) return std::move(st).error();
  return optional_bool(params, name);
}

Result<std::string> table_format(const json& params) {
  if (auto st = only(params, {"format"}); !st) return std::move(st).error();
  const auto it = params.find("format");
  if (it == params.end()) return std::string("markdown");
  if (!it->is_string() || (*it != "markdown" && *it != "text")) {
    return bad("invalid_params", "'format' must be \"markdown\" or \"text\"");
  }
  return it->get<std::string>();
}

namespace {

Result<std::size_t> optional_count(const json& params, const char* name, std::size_t fallback, std::size_t max) {
  const auto it = params.find(name);
  if (it == params.end()) return fallback;
  if (!it->is_number_integer() || it->get<std::int64_t>() < 1 || it->get<std::int64_t>() > static_cast<std::int64_t>(max)) {
    return bad("invalid_params", std::string("'") + name + "' must be an integer from 1 to " + std::to_string(max));
  }
  return it->get<std::size_t>();
}

// The `connector` every connector.* method names, into `out`.
Status connector_name(const json& params, std::string& out) {
  auto name = required_string(params, "connector", 64);
  if (!name) return std::move(name).error();
  out = std::move(*name);
  return {};
}

Result<std::vector<std::string>> job_ids(const json& params) {
  const auto it = params.find("ids");
  if (it == params.end()) return bad("invalid_params", "missing parameter 'ids'");
  if (!it->is_array() || it->empty()) return bad("invalid_params", "'ids' must be a non-empty array of job ids");
  if (it->size() > actions::kMaxJobIds) {
    return bad("too_large", "more than " + std::to_string(actions::kMaxJobIds) + " job ids in one call");
  }
  std::vector<std::string> out;
  for (const auto& id : *it) {
    if (!id.is_string() || id.get_ref<const std::string&>().empty() || id.get_ref<const std::string&>().size() > 64) {
      return bad("invalid_params", "'ids' must hold job ids (strings)");
    }
    out.push_back(id.get<std::string>());
  }
  return out;
}

}  // namespace

Result<actions::JobsRequest> connector_jobs(const json& params) {
  if (auto st = only(params, {"connector", "state", "limit"}); !st) return std::move(st).error();
  actions::JobsRequest r;
  if (auto st = connector_name(params, r.connector); !st) return std::move(st).error();
  if (const auto it = params.find("state"); it != params.end()) {
    if (!it->is_string()) return bad("invalid_params", "'state' must be a string");
    r.states.push_back(it->get<std::string>());
  }
  auto limit = optional_count(params, "limit", 100, actions::kMaxJobsListed);
  if (!limit) return std::move(limit).error();
  r.limit = *limit;
  return r;
}

Result<actions::ClaimRequest> connector_claim(const json& params) {
  if (auto st = only(params, {"connector", "max", "lease"}); !st) return std::move(st).error();
  actions::ClaimRequest r;
  if (auto st = connector_name(params, r.connector); !st) return std::move(st).error();
  auto max = optional_count(params, "max", 100, actions::kMaxJobsListed);
  if (!max) return std::move(max).error();
  r.max = *max;
  auto lease = optional_string(params, "lease", 64);
  if (!lease) return std::move(lease).error();
  if (*lease) {
    auto seconds = calendar::parse_short_duration(**lease);
    if (!seconds) return bad("bad_duration", "'lease': " + seconds.error().message);
    r.lease_s = *seconds;
  }
  return r;
}

Result<actions::AckRequest> connector_ack(const json& params) {
  if (auto st = only(params, {"connector", "ids", "outcome", "message"}); !st) return std::move(st).error();
  actions::AckRequest r;
  if (auto st = connector_name(params, r.connector); !st) return std::move(st).error();
  auto ids = job_ids(params);
  if (!ids) return std::move(ids).error();
  r.ids = std::move(*ids);
  auto outcome = required_string(params, "outcome", 16);
  if (!outcome) return std::move(outcome).error();
  if (*outcome != "done" && *outcome != "failed") return bad("invalid_params", "'outcome' must be \"done\" or \"failed\"");
  r.done = *outcome == "done";
  if (const auto it = params.find("message"); it != params.end()) {
    if (!it->is_string()) return bad("invalid_params", "'message' must be a string");
    r.message = it->get<std::string>().substr(0, 4096);
  }
  return r;
}

Result<actions::JobIdsRequest> connector_retry(const json& params) {
  if (auto st = only(params, {"connector", "ids", "all"}); !st) return std::move(st).error();
  actions::JobIdsRequest r;
  if (auto st = connector_name(params, r.connector); !st) return std::move(st).error();
  auto all = optional_bool(params, "all");
  if (!all) return std::move(all).error();
  r.all = *all;
  if (r.all == params.contains("ids")) return bad("invalid_params", "give either 'ids' or \"all\": true");
  if (!r.all) {
    auto ids = job_ids(params);
    if (!ids) return std::move(ids).error();
    r.ids = std::move(*ids);
  }
  return r;
}

Result<actions::JobIdsRequest> connector_discard(const json& params) {
  if (auto st = only(params, {"connector", "ids", "reason"}); !st) return std::move(st).error();
  actions::JobIdsRequest r;
  if (auto st = connector_name(params, r.connector); !st) return std::move(st).error();
  auto ids = job_ids(params);
  if (!ids) return std::move(ids).error();
  r.ids = std::move(*ids);
  auto reason = required_string(params, "reason", actions::kMaxReasonBytes);
  if (!reason) return std::move(reason).error();
  r.reason = std::move(*reason);
  return r;
}

}  // namespace retentiond::protocol::decode
