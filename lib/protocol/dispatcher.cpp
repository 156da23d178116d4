#include "lib/protocol/dispatcher.hpp"

#include "lib/util/params.hpp"

#include <stdexcept>

namespace retentiond::protocol {

using nlohmann::json;

std::string_view to_string(Role r) {
  switch (r) {
    case Role::none: return "none";
    case Role::reader: return "R";
    case Role::admin: return "A";
  }
  return "?";
}

namespace {

struct TooDeep : std::runtime_error {
  TooDeep() : std::runtime_error("too deep") {}
};

json error_object(const Error& e) {
  json data = e.data.is_object() ? e.data : json::object();
  data["reason"] = e.reason.empty() ? "internal_error" : e.reason;
  return {{"code", static_cast<int>(e.code)}, {"message", e.message}, {"data", data}};
}

// Every reply is dumped with invalid UTF-8 replaced: a message can quote the
// caller's bytes (a parse error's "last read: ..."), and a strict dump would
// throw out of handle_line and stop the daemon.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json error_response(const json& id, const Error& e) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", error_object(e)}};
}

json instant_or_null(const std::optional<calendar::Instant>& t) {
  return t ? json(calendar::format_instant(*t)) : json(nullptr);
}

json next_json(const std::optional<actions::PhaseSchedule>& next) {
  if (!next) return nullptr;
  return {{"phase", next->index},
          {"action", policy::to_string(next->action)},
          {"due", instant_or_null(next->due)},
          {"waiting_for", next->missing}};
}

json record_json(const store::RecordRow& r, const std::optional<actions::PhaseSchedule>& next) {
  json dates = json::object();
  for (const auto& [name, t] : r.dates) dates[name] = calendar::format_instant(t);
  return {{"key", r.key}, {"subject", r.subject ? json(*r.subject) : json(nullptr)}, {"category", r.category},
          {"state", store::to_string(r.state)}, {"fields", r.fields}, {"dates", dates}, {"next", next_json(next)}};
}

template <typename T>
json opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

Result<bool> optional_bool(const json& params, const char* name, bool fallback) {
  const auto it = params.find(name);
  if (it == params.end()) return fallback;
  if (!it->is_boolean()) return Error::invalid_params("invalid_params", std::string("'") + name + "' must be true or false");
  return it->get<bool>();
}

}  // namespace

Dispatcher::Dispatcher(Context& context, Limits limits) : m_ctx(context), m_limits(limits) { register_methods(); }

std::string Dispatcher::error_line(ErrorCode code, const std::string& reason, const std::string& message) {
  return dump(error_response(nullptr, Error{code, reason, message, json::object()}));
}

void Dispatcher::handle_line(std::string_view line, const Caller& caller, Reply reply) {
  json parsed;
  try {
    const std::size_t max_depth = m_limits.max_json_depth;
    parsed = json::parse(line, [max_depth](int depth, json::parse_event_t, json&) {
      if (static_cast<std::size_t>(depth) > max_depth) throw TooDeep();
      return true;
    });
  } catch (const TooDeep&) {
    reply(error_line(ErrorCode::invalid_request, "too_large",
                     "JSON nesting deeper than " + std::to_string(m_limits.max_json_depth) + " levels"));
    return;
  } catch (const json::exception& e) {
    reply(dump(error_response(nullptr, Error{static_cast<ErrorCode>(-32700), "parse_error",
                                             std::string("not valid JSON: ") + e.what(), json::object()})));
    return;
  }

  if (!parsed.is_array()) {
    handle_request(parsed, caller, [reply = std::move(reply)](std::optional<json> r) {
      reply(r ? std::optional<std::string>(dump(*r)) : std::nullopt);
    });
    return;
  }
  if (parsed.empty()) {
    reply(error_line(ErrorCode::invalid_request, "invalid_request", "empty batch"));
    return;
  }
  // A batch: the responses, in request order, once every request is done.
  struct Batch {
    std::vector<std::optional<json>> responses;
    std::size_t pending;
    Reply reply;
  };
  auto batch = std::make_shared<Batch>(Batch{std::vector<std::optional<json>>(parsed.size()), parsed.size(), std::move(reply)});
  for (std::size_t i = 0; i < parsed.size(); ++i) {
    handle_request(parsed[i], caller, [batch, i](std::optional<json> r) {
      batch->responses[i] = std::move(r);
      if (--batch->pending > 0) return;
      json out = json::array();
      for (auto& x : batch->responses) {
        if (x) out.push_back(std::move(*x));
      }
      // Nothing at all for a batch of notifications.
      batch->reply(out.empty() ? std::nullopt : std::optional<std::string>(dump(out)));
    });
  }
}

void Dispatcher::handle_request(const json& request, const Caller& caller,
                                std::function<void(std::optional<json>)> done) {
  const auto invalid = [](const json& id, const std::string& message) {
    return error_response(id, Error{ErrorCode::invalid_request, "invalid_request", message, json::object()});
  };
  if (!request.is_object()) return done(invalid(nullptr, "a request must be a JSON object"));
  json id = nullptr;
  const bool has_id = request.contains("id");
  if (has_id) {
    id = request["id"];
    if (!id.is_string() && !id.is_number() && !id.is_null()) {
      return done(invalid(nullptr, "'id' must be a string, a number or null"));
    }
  }
  if (request.value("jsonrpc", json()) != "2.0") return done(invalid(id, "'jsonrpc' must be \"2.0\""));
  const auto m = request.find("method");
  if (m == request.end() || !m->is_string()) return done(invalid(id, "'method' must be a string"));
  json params = json::object();
  if (const auto p = request.find("params"); p != request.end()) {
    if (!p->is_object()) {
      if (!has_id) return done(std::nullopt);
      return done(error_response(id, Error::invalid_params("invalid_params", "'params' must be an object")));
    }
    params = *p;
  }

  auto respond = [id, has_id, done = std::move(done)](Result<json> result) {
    if (!has_id) return done(std::nullopt);  // a notification: done, nothing to say
    if (!result) return done(error_response(id, result.error()));
    done(json{{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result).value()}});
  };
  const std::string& name = m->get_ref<const std::string&>();
  const auto method = std::find_if(m_methods.begin(), m_methods.end(), [&](const Method& x) { return x.name == name; });
  if (method == m_methods.end()) {
    return respond(Error{ErrorCode::method_not_found, "method_not_found", "unknown method '" + name + "' (see 'help')",
                         json::object()});
  }
  call(*method, params, caller, std::move(respond));
}

void Dispatcher::call(const Method& m, const json& params, const Caller& caller, Done done) {
  if (caller.role == Role::none || (m.role == Role::admin && caller.role != Role::admin)) {
    return done(Error{ErrorCode::forbidden, "forbidden",
                      "uid " + std::to_string(caller.uid) + " may not call '" + m.name + "'", json::object()});
  }
  try {
    if (m.async_handler) return m.async_handler(params, caller, std::move(done));
    Result<json> result = m.handler(params, caller);
    if (result && m.changes_records) m_ctx.scheduler.records_changed();
    done(std::move(result));
  } catch (const std::exception& e) {
    // A bug, not the caller's fault; the daemon keeps serving.
    done(Error::internal(std::string("internal error in '") + m.name + "': " + e.what()));
  }
}

void Dispatcher::register_methods() {
  const auto bind0 = [this](Result<json> (Dispatcher::*fn)(const json&)) {
    return [this, fn](const json& p, const Caller&) { return (this->*fn)(p); };
  };
  // {name, role, summary, handler, async handler, changes records}
  m_methods = {
      {"help", Role::reader, "List the methods, their role and what they do", bind0(&Dispatcher::help)},
      {"status", Role::reader, "Daemon, policy, record counts, next due time and backlog", bind0(&Dispatcher::status)},
      {"policy.get", Role::reader, "The loaded policy: categories, phases, strategies", bind0(&Dispatcher::policy_get)},
      {"policy.table", Role::reader, "The retention table in words, ready for a privacy policy",
       bind0(&Dispatcher::policy_table)},
      {"plan", Role::reader, "Forecast: what falls due before a date, by month, category and action",
       bind0(&Dispatcher::plan)},
      {"record.put", Role::admin, "Create or replace an active record",
       [this](const json& p, const Caller& c) { return record_put(p, c); }, {}, true},
      {"record.put_many", Role::admin, "Store many records, all or nothing",
       [this](const json& p, const Caller& c) { return record_put_many(p, c); }, {}, true},
      {"record.explain", Role::reader, "Every phase of a record with its due time, or its proof of disposal",
       bind0(&Dispatcher::record_explain)},
      {"record.get", Role::admin, "A record with its fields (archived ones with include_archived)",
       bind0(&Dispatcher::record_get)},
      {"event.record", Role::admin, "Set a date on a subject's records or one record; recompute due times",
       [this](const json& p, const Caller& c) { return event_record(p, c); }, {}, true},
      {"audit.tail", Role::reader, "Audit entries, newest last (filters: after, key, subject, limit)",
       bind0(&Dispatcher::audit_tail)},
      {"audit.verify", Role::reader, "Recompute the audit hash chain and name the first bad entry",
       bind0(&Dispatcher::audit_verify)},
      {"subject.export", Role::admin, "Everything held about a subject, with purpose and legal basis (access, portability)",
       [this](const json& p, const Caller& c) { return subject_export(p, c); }},
      {"subject.erase", Role::admin,
       "Erase a subject's records (or those of some categories), except those under legal obligation or hold",
       [this](const json& p, const Caller& c) { return subject_erase(p, c); }},
      {"record.erase", Role::admin, "Erase one record, unless under legal obligation or hold",
       [this](const json& p, const Caller& c) { return record_erase(p, c); }},
      {"hold.place", Role::admin, "Stop every phase and erasure of a subject's, a category's or a key's records",
       [this](const json& p, const Caller& c) { return hold_place(p, c); }},
      {"hold.release", Role::admin, "Release a hold; overdue phases run at the next sweep",
       [this](const json& p, const Caller& c) { return hold_release(p, c); }, {}, true},
      {"hold.list", Role::admin, "The holds in force", bind0(&Dispatcher::hold_list)},
      {"sweep", Role::admin, "Run every due phase now (dry_run: count only)", {},
       [this](const json& p, const Caller& c, Done d) { sweep(p, c, std::move(d)); }},
      {"config.reload", Role::admin, "Reload the policy file through the reload guard (confirm: accept it)",
       [this](const json& p, const Caller& c) { return config_reload(p, c); }},
  };
}

Result<json> Dispatcher::help(const json& params) {
  if (auto st = only_keys(params, {}); !st) return std::move(st).error();
  json methods = json::array();
  for (const auto& m : m_methods) methods.push_back({{"name", m.name}, {"role", to_string(m.role)}, {"summary", m.summary}});
  return json{{"methods", methods}};
}

Result<json> Dispatcher::status(const json& params) {
  if (auto st = only_keys(params, {}); !st) return std::move(st).error();
  auto& store = m_ctx.service.store();
  const auto now = m_ctx.service.clock().now();
  auto counts = store.counts();
  if (!counts) return std::move(counts).error();
  auto next_due = store.next_due();
  if (!next_due) return std::move(next_due).error();
  auto backlog = m_ctx.service.backlog();
  if (!backlog) return std::move(backlog).error();
  auto holds = m_ctx.service.load_holds();
  if (!holds) return std::move(holds).error();
  const auto& policy = m_ctx.service.policy();
  json last = nullptr;
  if (const auto& r = m_ctx.scheduler.last()) {
    last = {{"at", calendar::format_instant(r->finished_at)}, {"archived", r->counts.archived},
            {"anonymised", r->counts.anonymised}, {"purged", r->counts.purged}, {"held", r->counts.held},
            {"duration_ms", r->duration_ms}};
  }
  json pause = nullptr;
  if (const auto& p = m_ctx.scheduler.pause()) pause = {{"newly_due", p->newly_due}, {"guard", p->guard}};
  return json{
      {"version", m_ctx.version},
      {"now", calendar::format_instant(now)},
      {"started_at", calendar::format_instant(m_ctx.started_at)},
      {"policy", {{"hash", policy.hash}, {"categories", policy.categories.size()},
                  {"loaded_at", calendar::format_instant(m_ctx.policy_loaded_at)}}},
      {"records", {{"active", counts->active}, {"archived", counts->archived}, {"anonymised", counts->anonymised}}},
      {"holds", holds->holds.size()},
      {"next_due", instant_or_null(*next_due)},
      {"backlog", *backlog},
      {"paused", m_ctx.scheduler.paused() ? json("reload_guard") : json(nullptr)},
      {"pause", pause},
      {"last_sweep", last},
  };
}

Result<json> Dispatcher::policy_get(const json& params) {
  if (auto st = only_keys(params, {}); !st) return std::move(st).error();
  const auto& policy = m_ctx.service.policy();
  json categories = json::array();
  for (const auto& c : policy.categories) {
    json phases = json::array();
    for (const auto& p : c.phases) phases.push_back({{"action", policy::to_string(p.action)}, {"at", p.at_text}});
    json anonymise = nullptr;
    if (c.has_anonymise) {
      anonymise = json::object();
      for (const auto& [field, strategy] : c.anonymise) anonymise[field] = policy::to_string(strategy);
    }
    categories.push_back({{"name", c.name},
                          {"purpose", c.purpose},
                          {"legal_basis", c.legal_basis},
                          {"source", c.source.empty() ? json(nullptr) : json(c.source)},
                          {"erasable", c.erasable},
                          {"dates", c.declares_dates ? json(c.dates) : json(nullptr)},
                          {"phases", phases},
                          {"anonymise", anonymise}});
  }
  return json{{"hash", policy.hash},
              {"fiscal_year_end", calendar::format_month_day(policy.daemon.fiscal_year_end)},
              {"categories", categories}};
}

Result<json> Dispatcher::record_put(const json& params, const Caller& caller) {
  auto row = m_ctx.service.put(params, actions::Actor{caller.actor()});
  if (!row) return std::move(row).error();
  return json{{"key", row->key}, {"state", "active"}, {"next", next_json(m_ctx.service.next(*row))}};
}

Result<json> Dispatcher::record_put_many(const json& params, const Caller& caller) {
  if (auto st = only_keys(params, {"records"}); !st) return std::move(st).error();
  const auto it = params.find("records");
  if (it == params.end()) return Error::invalid_params("invalid_params", "missing parameter 'records'");
  if (it->is_array() && it->size() > m_limits.max_put_many) {
    return Error::invalid_params("too_large", std::to_string(it->size()) + " records in one call; the limit is " +
                                                  std::to_string(m_limits.max_put_many));
  }
  auto count = m_ctx.service.put_many(*it, actions::Actor{caller.actor()});
  if (!count) return std::move(count).error();
  return json{{"count", *count}};
}

Result<json> Dispatcher::record_explain(const json& params) {
  if (auto st = only_keys(params, {"key"}); !st) return std::move(st).error();
  const auto it = params.find("key");
  if (it == params.end() || !it->is_string()) return Error::invalid_params("invalid_params", "'key' must be a string");
  auto r = m_ctx.service.explain(it->get<std::string>());
  if (!r) return std::move(r).error();
  if (const auto* d = std::get_if<actions::Disposal>(&*r)) {
    return json{{"key", d->key}, {"state", "purged"}, {"purged_at", calendar::format_instant(d->purged_at)},
                {"audit_seq", d->audit_seq}};
  }
  const auto& e = std::get<actions::Explanation>(*r);
  json phases = json::array();
  for (const auto& p : e.phases) {
    phases.push_back({{"index", p.index}, {"action", policy::to_string(p.action)}, {"at", p.at},
                      {"due", instant_or_null(p.due)}, {"missing", p.missing}, {"done", p.done},
                      {"done_at", instant_or_null(p.done_at)}, {"runs_at", instant_or_null(p.runs_at)},
                      {"overdue", p.overdue}});
  }
  return json{{"key", e.record.key}, {"category", e.record.category},
              {"state", store::to_string(e.record.state)}, {"held", !e.holds.empty()}, {"holds", e.holds},
              {"phases", phases}, {"next", next_json(e.next)}};
}

Result<json> Dispatcher::record_get(const json& params) {
  if (auto st = only_keys(params, {"key", "include_archived"}); !st) return std::move(st).error();
  const auto it = params.find("key");
  if (it == params.end() || !it->is_string()) return Error::invalid_params("invalid_params", "'key' must be a string");
  auto include_archived = optional_bool(params, "include_archived", false);
  if (!include_archived) return std::move(include_archived).error();
  auto row = m_ctx.service.get(it->get<std::string>());
  if (!row) return std::move(row).error();
  if (row->location == store::Location::archive && !*include_archived) {
    return Error::not_found("record '" + row->key + "' is archived; pass include_archived to read it");
  }
  return record_json(*row, m_ctx.service.next(*row));
}

Result<json> Dispatcher::event_record(const json& params, const Caller& caller) {
  auto updated = m_ctx.service.record_event(params, actions::Actor{caller.actor()});
  if (!updated) return std::move(updated).error();
  return json{{"updated", *updated}};
}

Result<json> Dispatcher::audit_tail(const json& params) {
  if (auto st = only_keys(params, {"limit", "after", "key", "subject"}); !st) return std::move(st).error();
  store::Store::AuditQuery q;
  if (const auto it = params.find("limit"); it != params.end()) {
    if (!it->is_number_integer() || it->get<std::int64_t>() < 1 || it->get<std::int64_t>() > 10000) {
      return Error::invalid_params("invalid_params", "'limit' must be an integer from 1 to 10000");
    }
    q.limit = it->get<std::size_t>();
  }
  if (const auto it = params.find("after"); it != params.end()) {
    if (!it->is_number_integer() || it->get<std::int64_t>() < 0) {
      return Error::invalid_params("invalid_params", "'after' must be a sequence number (an integer >= 0)");
    }
    q.after_seq = it->get<std::int64_t>();
  }
  if (const auto it = params.find("key"); it != params.end()) {
    if (!it->is_string()) return Error::invalid_params("invalid_params", "'key' must be a string");
    q.key = it->get<std::string>();
  }
  if (const auto it = params.find("subject"); it != params.end()) {
    if (!it->is_string()) return Error::invalid_params("invalid_params", "'subject' must be a string");
    q.subject_ref = m_ctx.audit.subject_ref(it->get<std::string>());
  }
  auto rows = m_ctx.service.store().audit_entries(q);
  if (!rows) return std::move(rows).error();
  json entries = json::array();
  for (const auto& r : *rows) {
    entries.push_back({{"seq", r.seq}, {"at", calendar::format_instant(r.at)}, {"action", r.action}, {"key", opt(r.key)},
                       {"category", opt(r.category)}, {"phase", opt(r.phase)}, {"subject_ref", opt(r.subject_ref)},
                       {"actor", r.actor}, {"reason", opt(r.reason)}, {"policy_hash", r.policy_hash}, {"hash", r.hash}});
  }
  return json{{"entries", entries}};
}

Result<json> Dispatcher::audit_verify(const json& params) {
  if (auto st = only_keys(params, {}); !st) return std::move(st).error();
  auto report = audit::verify(m_ctx.service.store());
  if (!report) return std::move(report).error();
  return json{{"ok", report->ok}, {"entries", report->entries}, {"first_bad", opt(report->first_bad)},
              {"head", report->head}};
}

Result<json> Dispatcher::subject_export(const json& params, const Caller& caller) {
  auto rows = m_ctx.service.subject_records(params, actions::Actor{caller.actor()});
  if (!rows) return std::move(rows).error();
  const auto& policy = m_ctx.service.policy();
  json records = json::array();
  for (const auto& r : *rows) {
    json j = record_json(r, m_ctx.service.next(r));
    if (const auto* c = policy.find(r.category)) {
      j["purpose"] = c->purpose;
      j["legal_basis"] = c->legal_basis;
      j["source"] = c->source.empty() ? json(nullptr) : json(c->source);
    }
    records.push_back(std::move(j));
  }
  return json{{"subject", params.at("subject")}, {"exported_at", calendar::format_instant(m_ctx.service.clock().now())},
              {"records", records}};
}

namespace {

// subject.erase's and record.erase's result: `erased` (keys) and `retained`
// as the spec fixes them, and `erased_records` with each key's category.
json erasure_json(const actions::ErasureReport& report, const json& params) {
  json erased = json::array(), erased_records = json::array(), retained = json::array();
  for (const auto& e : report.erased) {
    erased.push_back(e.key);
    erased_records.push_back({{"key", e.key}, {"category", e.category}});
  }
  for (const auto& r : report.retained) {
    retained.push_back({{"key", r.key}, {"category", r.category}, {"reason", r.reason}, {"until", instant_or_null(r.until)}});
  }
  json out = {{"erased", erased}, {"erased_records", erased_records}, {"retained", retained}};
  if (params.value("dry_run", false)) out["dry_run"] = true;
  return out;
}

}  // namespace

Result<json> Dispatcher::subject_erase(const json& params, const Caller& caller) {
  auto report = m_ctx.service.erase_subject(params, actions::Actor{caller.actor()});
  if (!report) return std::move(report).error();
  return erasure_json(*report, params);
}

Result<json> Dispatcher::record_erase(const json& params, const Caller& caller) {
  auto report = m_ctx.service.erase_record(params, actions::Actor{caller.actor()});
  if (!report) return std::move(report).error();
  return erasure_json(*report, params);
}

Result<json> Dispatcher::plan(const json& params) {
  auto plan = m_ctx.service.plan(params);
  if (!plan) return std::move(plan).error();
  json actions = json::array();
  for (const auto& e : plan->actions) {
    actions.push_back({{"month", e.month}, {"category", e.category}, {"action", policy::to_string(e.action)}, {"count", e.count}});
  }
  return json{{"from", calendar::format_instant(plan->from)},
              {"until", calendar::format_instant(plan->until)},
              {"actions", actions},
              {"totals", {{"archive", plan->archive}, {"anonymise", plan->anonymise}, {"purge", plan->purge}}},
              {"waiting", plan->waiting},
              {"held", plan->held}};
}

Result<json> Dispatcher::policy_table(const json& params) {
  auto text = m_ctx.service.policy_table(params);
  if (!text) return std::move(text).error();
  return json{{"text", *text}};
}

Result<json> Dispatcher::hold_place(const json& params, const Caller& caller) {
  auto id = m_ctx.service.place_hold(params, actions::Actor{caller.actor()});
  if (!id) return std::move(id).error();
  return json{{"id", *id}};
}

Result<json> Dispatcher::hold_release(const json& params, const Caller& caller) {
  if (auto st = m_ctx.service.release_hold(params, actions::Actor{caller.actor()}); !st) return std::move(st).error();
  return json{{"released", true}};
}

Result<json> Dispatcher::hold_list(const json& params) {
  if (auto st = only_keys(params, {}); !st) return std::move(st).error();
  auto holds = m_ctx.service.load_holds();
  if (!holds) return std::move(holds).error();
  json out = json::array();
  for (const auto& h : holds->holds) {
    out.push_back({{"id", h.id}, {"scope", h.scope}, {"target", h.target}, {"reason", h.reason},
                   {"placed_at", calendar::format_instant(h.placed_at)}, {"placed_by", h.placed_by}});
  }
  return json{{"holds", out}};
}

void Dispatcher::sweep(const json& params, const Caller& caller, Done done) {
  if (auto st = only_keys(params, {"dry_run"}); !st) return done(std::move(st).error());
  auto dry_run = optional_bool(params, "dry_run", false);
  if (!dry_run) return done(std::move(dry_run).error());
  if (*dry_run) {
    auto counts = m_ctx.service.count_due();
    if (!counts) return done(std::move(counts).error());
    return done(json{{"archived", counts->archived}, {"anonymised", counts->anonymised}, {"purged", counts->purged},
                     {"held", counts->held}, {"duration_ms", 0}, {"dry_run", true}});
  }
  m_ctx.scheduler.sweep(actions::Actor{caller.actor()}, [done = std::move(done)](const Result<scheduler::SweepReport>& r) {
    if (!r) return done(r.error());
    done(json{{"archived", r->counts.archived}, {"anonymised", r->counts.anonymised}, {"purged", r->counts.purged},
              {"held", r->counts.held}, {"duration_ms", r->duration_ms}});
  });
}

Result<json> Dispatcher::config_reload(const json& params, const Caller& caller) {
  if (auto st = only_keys(params, {"confirm"}); !st) return std::move(st).error();
  auto confirm = optional_bool(params, "confirm", false);
  if (!confirm) return std::move(confirm).error();
  if (!m_ctx.reload) return Error::internal("config.reload is not available in this process");
  return m_ctx.reload(*confirm, caller);
}

}  // namespace retentiond::protocol
