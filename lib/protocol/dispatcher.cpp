#include "lib/protocol/dispatcher.hpp"

#include <algorithm>
#include <memory>
#include <stdexcept>

#include "lib/proof/proof.hpp"
#include "lib/protocol/decode.hpp"
#include "lib/protocol/metrics_text.hpp"
#include "lib/protocol/render.hpp"

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

// How often a waiting audit.tail looks at the log's head: the delay an
// entry waits before it is shipped.
constexpr std::chrono::milliseconds kAuditPollInterval{100};

// The largest audit.tail page answered on the event loop (about 10 ms); a
// larger one goes to the slow-read thread.
constexpr std::size_t kLoopAuditTailLimit = 250;

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






}  // namespace

Dispatcher::Dispatcher(Context& context, Limits limits) : m_ctx(context), m_limits(limits) { register_methods(); }

std::string Dispatcher::error_line(ErrorCode code, const std::string& reason, const std::string& message) {
  return dump(error_response(nullptr, Error{code, reason, message, json::object()}));
}

namespace {

// The line parsed within the depth limit, or the error line to answer.
struct Parsed {
  json value;
  std::optional<std::string> error;
};

Parsed parse_line(std::string_view line, std::size_t max_depth) {
  Parsed out;
  try {
    out.value = json::parse(line, [max_depth](int depth, json::parse_event_t, json&) {
      if (static_cast<std::size_t>(depth) > max_depth) throw TooDeep();
      return true;
    });
  } catch (const TooDeep&) {
    out.error = Dispatcher::error_line(ErrorCode::invalid_request, "too_large",
                                       "JSON nesting deeper than " + std::to_string(max_depth) + " levels");
  } catch (const json::exception& e) {
    out.error = dump(error_response(nullptr, Error{static_cast<ErrorCode>(-32700), "parse_error",
                                                   std::string("not valid JSON: ") + e.what(), json::object()}));
  }
  return out;
}

bool is_put_many(const json& request) {
  if (!request.is_object()) return false;
  const auto m = request.find("method");
  const auto p = request.find("params");
  return m != request.end() && *m == "record.put_many" && p != request.end() && p->is_object();
}

}  // namespace

void Dispatcher::handle_line(std::string_view line, const Caller& caller, Reply reply) {
  if (line.size() >= kOffloadLineBytes && m_ctx.offload && m_ctx.to_loop) {
    // Parsed, and an import's records decoded, on the offload thread; the
    // big JSON tree is freed there too. The rest comes back to the loop.
    auto text = std::make_shared<std::string>(line);
    m_ctx.offload([this, text, caller, reply = std::move(reply)]() mutable {
      auto parsed = std::make_shared<Parsed>(parse_line(*text, m_limits.max_json_depth));
      text.reset();
      std::shared_ptr<Result<std::vector<actions::PutRequest>>> predecoded;
      if (!parsed->error && is_put_many(parsed->value)) {
        json& params = parsed->value["params"];
        predecoded = std::make_shared<Result<std::vector<actions::PutRequest>>>(decode::put_many(params, m_limits.max_put_many));
        if (*predecoded) params = json::object();  // its records are in `predecoded` now
      }
      m_ctx.to_loop([this, parsed, predecoded, caller, reply = std::move(reply)]() mutable {
        if (parsed->error) return reply(std::move(parsed->error));
        m_predecoded = predecoded;
        handle_parsed(std::move(parsed->value), caller, std::move(reply));
        m_predecoded.reset();
      });
    });
    return;
  }
  Parsed parsed = parse_line(line, m_limits.max_json_depth);
  if (parsed.error) return reply(std::move(parsed.error));
  handle_parsed(std::move(parsed.value), caller, std::move(reply));
}

void Dispatcher::handle_parsed(json parsed, const Caller& caller, Reply reply) {
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
  // Read methods: answered now, on the event loop, from a snapshot.
  const auto read = [](auto fn) -> Handler { return [fn](const json& p, const Caller& c) { return fn(p, c); }; };
  // Methods that answer later: a change (a job on the writer), a read that
  // grows with the data (on the slow-read thread), a sweep (when its pass ends).
  const auto later = [](auto fn) -> AsyncHandler {
    return [fn](const json& p, const Caller& c, Done d) { fn(p, c, std::move(d)); };
  };
  actions::Service& service = m_ctx.service;
  m_methods = {
      {"help", Role::reader, "List the methods, their role and what they do",
       read([this](const json& p, const Caller&) -> Result<json> {
         if (auto st = decode::none(p); !st) return std::move(st).error();
         json methods = json::array();
         for (const auto& m : m_methods) methods.push_back({{"name", m.name}, {"role", to_string(m.role)}, {"summary", m.summary}});
         return json{{"methods", methods}};
       })},
      {"status", Role::reader, "Daemon, policy, record counts, next due time and backlog",
       read([this](const json& p, const Caller&) { return status(p); })},
      {"policy.get", Role::reader, "The loaded policy: categories, phases, strategies",
       read([&service](const json& p, const Caller&) -> Result<json> {
         if (auto st = decode::none(p); !st) return std::move(st).error();
         return render::policy(*service.policy());
       })},
      {"policy.table", Role::reader, "The retention table in words, ready for a privacy policy",
       read([&service](const json& p, const Caller&) -> Result<json> {
         auto format = decode::table_format(p);
         if (!format) return std::move(format).error();
         return json{{"text", render::policy_table(*service.policy(), *format)}};
       })},
      {"metrics", Role::reader, "Counts, lateness, actions and sweeps in the Prometheus text format",
       {},
       later([this](const json& p, const Caller&, Done d) {
         if (auto st = decode::none(p); !st) return d(std::move(st).error());
         metrics([d = std::move(d)](Result<std::string> text) {
           if (!text) return d(std::move(text).error());
           d(json{{"text", std::move(text).value()}});
         });
       })},
      {"plan", Role::reader, "Forecast: what falls due before a date, by month, category and action",
       {},
       later([this, &service](const json& p, const Caller& c, Done d) {
         auto request = decode::plan(p);
         if (!request) return d(std::move(request).error());
         // The daemon reads the file as its own user: not on a reader's word.
         if (request->policy && c.role != Role::admin) {
           return d(Error{ErrorCode::forbidden, "forbidden",
                          "uid " + std::to_string(c.uid) + " may not call 'plan' with 'policy' (admin only)",
                          json::object()});
         }
         on_slow([&service, r = *request]() -> Result<json> {
           auto plan = service.plan(r);
           if (!plan) return std::move(plan).error();
           return render::plan(*plan);
         }, std::move(d));
       })},
      {"record.put", Role::admin, "Create or replace an active record",
       {},
       later([this, &service](const json& p, const Caller& c, Done d) {
         auto request = decode::put(p);
         if (!request) return d(std::move(request).error());
         on_writer<vault::Record>(
             [&service, r = std::move(*request), actor = actions::Actor{c.actor()}] { return service.put(r, actor); },
             [&service](vault::Record& record) -> json {
               return {{"key", record.key}, {"state", "active"}, {"next", render::next(service.next(record, *service.policy()))}};
             },
             true, std::move(d));
       })},
      {"record.put_many", Role::admin, "Store many records, all or nothing",
       {},
       later([this, &service](const json& p, const Caller& c, Done d) {
         // Decoded off the loop with its line (handle_line), or here.
         auto predecoded = std::move(m_predecoded);
         auto requests = predecoded ? std::move(*predecoded) : decode::put_many(p, m_limits.max_put_many);
         if (!requests) return d(std::move(requests).error());
         auto shared = std::make_shared<std::vector<actions::PutRequest>>(std::move(*requests));
         on_writer<std::size_t>(
             [&service, shared, actor = actions::Actor{c.actor()}] { return service.put_many(*shared, actor); },
             [](std::size_t& count) -> json { return {{"count", count}}; }, true, std::move(d));
       })},
      {"record.explain", Role::reader, "Every phase of a record with its due time, or its proof of disposal",
       read([&service](const json& p, const Caller&) -> Result<json> {
         auto key = decode::key_only(p);
         if (!key) return std::move(key).error();
         auto r = service.explain(*key);
         if (!r) return std::move(r).error();
         auto jobs = service.jobs_of_key(*key);
         if (!jobs) return std::move(jobs).error();
         json out = std::holds_alternative<actions::Disposal>(*r) ? render::disposal(std::get<actions::Disposal>(*r))
                                                                  : render::explanation(std::get<actions::Explanation>(*r));
         // Only for a record that has connector jobs: records of categories
         // without connectors are explained as before.
         if (!jobs->empty()) out["connectors"] = render::jobs_of_record(*jobs);
         return out;
       })},
      {"record.restore", Role::admin, "Bring back a record purged within the undo window (purge_grace)",
       {},
       later([this, &service](const json& p, const Caller& c, Done d) {
         auto request = decode::restore(p);
         if (!request) return d(std::move(request).error());
         on_writer<vault::Record>(
             [&service, r = std::move(*request), actor = actions::Actor{c.actor()}] { return service.restore(r, actor); },
             [](vault::Record& record) -> json {
               return {{"key", record.key}, {"state", std::string(store::to_string(record.state))}};
             },
             true, std::move(d));
       })},
      {"record.get", Role::admin, "A record with its fields (archived ones with include_archived)",
       read([&service](const json& p, const Caller&) -> Result<json> {
         auto request = decode::get(p);
         if (!request) return std::move(request).error();
         auto record = service.get(request->key, request->include_archived);
         if (!record) return std::move(record).error();
         return render::record(*record, service.next(*record, *service.policy()));
       })},
      {"event.record", Role::admin, "Set a date on a subject's records or one record; recompute due times",
       {},
       later([this, &service](const json& p, const Caller& c, Done d) {
         auto request = decode::event(p);
         if (!request) return d(std::move(request).error());
         on_writer<std::int64_t>(
             [&service, r = std::move(*request), actor = actions::Actor{c.actor()}] { return service.record_event(r, actor); },
             [](std::int64_t& updated) -> json { return {{"updated", updated}}; }, true, std::move(d));
       })},
      {"audit.tail", Role::reader, "Audit entries, newest last (filters: after, key, subject, limit)",
       {},
       later([this, &service](const json& p, const Caller&, Done d) {
         auto request = decode::audit_tail(p);
         if (!request) return d(std::move(request).error());
         // A page costs about 40 us an entry to read and render: the
         // default 100 is answered here, a larger one off the loop.
         const bool large = request->limit > kLoopAuditTailLimit;
         if (request->wait_ms > 0 && m_ctx.after) {
           const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(request->wait_ms);
           return audit_tail_waiting(std::move(*request), deadline, -1, std::move(d));
         }
         const auto tail = [&service, r = *request, large]() -> Result<json> {
           auto rows = service.audit_tail(r, large);
           if (!rows) return std::move(rows).error();
           return json{{"entries", render::audit_rows(*rows)}};
         };
         if (!large) return d(tail());
         on_slow(tail, std::move(d));
       })},
      {"audit.verify", Role::reader,
       "Check the audit hash chain: what was appended since the last check (full: from entry 1, admin only)",
       {},
       later([this, &service](const json& p, const Caller& c, Done d) {
         auto request = decode::audit_verify(p);
         if (!request) return d(std::move(request).error());
         const auto full = std::make_optional(request->full);
         if (*full && c.role != Role::admin) {
           return d(Error{ErrorCode::forbidden, "forbidden",
                          "uid " + std::to_string(c.uid) + " may not call 'audit.verify' with full (admin only)",
                          json::object()});
         }
         // Checkpoints handed back: each must name an entry the present
         // chain still has, with the same hash (else history was rewritten).
         const auto render_report = [this, &service, checkpoints = request->checkpoints](
                                        const audit::VerifyReport& r, bool slow) -> Result<json> {
           json out = {{"ok", r.ok}, {"entries", r.entries},
                       {"first_bad", r.first_bad ? json(*r.first_bad) : json(nullptr)}, {"head", r.head},
                       {"checked", r.checked}};
           if (checkpoints.empty()) return out;
           json checked = json::array();
           for (const auto& cp : checkpoints) {
             auto extended = service.audit_extends(cp.seq, cp.hash, slow);
             if (!extended) return std::move(extended).error();
             if (!*extended) out["ok"] = false;
             json one = {{"seq", cp.seq}, {"hash", cp.hash}, {"extended", *extended}};
             if (cp.signature && m_ctx.signing_key) {
               json signed_part = {{"seq", cp.seq}, {"hash", cp.hash}, {"signature", *cp.signature}};
               if (cp.at) signed_part["at"] = *cp.at;
               one["signature_valid"] = proof::verify(signed_part, m_ctx.signing_key->public_key()).valid;
             }
             checked.push_back(std::move(one));
           }
           out["checkpoints"] = std::move(checked);
           return out;
         };
         if (!*full) {
           // What was appended since the verified prefix, here when it is little.
           auto quick = service.verify_audit_quick();
           if (!quick) return d(std::move(quick).error());
           if (*quick) return d(render_report(**quick, false));
         }
         on_slow([&service, render_report, f = *full]() -> Result<json> {
           auto report = service.verify_audit(f);
           if (!report) return std::move(report).error();
           return render_report(*report, true);
         }, std::move(d));
       })},
      {"audit.checkpoint", Role::reader, "The audit log's head, signed: keep it off the host to prove the log later",
       read([this, &service](const json& p, const Caller&) -> Result<json> {
         if (auto st = decode::none(p); !st) return std::move(st).error();
         auto head = service.audit_head();
         if (!head) return std::move(head).error();
         return signed_object({{"seq", *head ? (*head)->seq : 0},
                               {"hash", *head ? (*head)->hash : std::string(audit::kGenesisHash)},
                               {"at", calendar::format_instant(service.clock().now())}});
       })},
      {"record.receipt", Role::reader, "A signed receipt proving the disposal of a purged or erased key",
       read([this, &service](const json& p, const Caller&) -> Result<json> {
         auto key = decode::key_only(p);
         if (!key) return std::move(key).error();
         auto report = service.receipt(*key);
         if (!report) return std::move(report).error();
         return signed_object(render::receipt(*report));
       })},
      {"subject.export", Role::admin, "Everything held about a subject, with purpose and legal basis (access, portability)",
       {},
       later([this, &service](const json& p, const Caller& c, Done d) {
         auto subject = decode::subject_only(p);
         if (!subject) return d(std::move(subject).error());
         on_writer<std::vector<vault::Record>>(
             [&service, s = *subject, actor = actions::Actor{c.actor()}] { return service.export_subject(s, actor); },
             [&service, s = *subject](std::vector<vault::Record>& records) -> json {
               const auto policy = service.policy();
               json out = json::array();
               for (const auto& r : records) {
                 json j = render::record(r, service.next(r, *policy));
                 if (const auto* category = policy->find(r.category)) {
                   j["purpose"] = category->purpose;
                   j["legal_basis"] = category->legal_basis;
                   j["source"] = category->source.empty() ? json(nullptr) : json(category->source);
                 }
                 out.push_back(std::move(j));
               }
               return {{"subject", s}, {"exported_at", calendar::format_instant(service.clock().now())}, {"records", out}};
             },
             false, std::move(d));
       })},
      {"subject.erase", Role::admin,
       "Erase a subject's records (or those of some categories), except those under legal obligation or hold",
       {},
       later([this, &service](const json& p, const Caller& c, Done d) {
         auto request = decode::subject_erase(p);
         if (!request) return d(std::move(request).error());
         const bool dry_run = request->dry_run;
         on_writer<actions::ErasureReport>(
             [&service, r = std::move(*request), actor = actions::Actor{c.actor()}] { return service.erase(r, actor); },
             [this, dry_run](actions::ErasureReport& report) {
               if (!dry_run && m_ctx.jobs_changed) m_ctx.jobs_changed();
               return erasure_with_receipt(report, dry_run);
             },
             false, std::move(d));
       })},
      {"record.erase", Role::admin, "Erase one record, unless under legal obligation or hold",
       {},
       later([this, &service](const json& p, const Caller& c, Done d) {
         auto request = decode::record_erase(p);
         if (!request) return d(std::move(request).error());
         const bool dry_run = request->dry_run;
         on_writer<actions::ErasureReport>(
             [&service, r = std::move(*request), actor = actions::Actor{c.actor()}] { return service.erase(r, actor); },
             [this, dry_run](actions::ErasureReport& report) {
               if (!dry_run && m_ctx.jobs_changed) m_ctx.jobs_changed();
               return erasure_with_receipt(report, dry_run);
             },
             false, std::move(d));
       })},
      {"hold.place", Role::admin, "Stop every phase and erasure of a subject's, a category's or a key's records",
       {},
       later([this, &service](const json& p, const Caller& c, Done d) {
         auto request = decode::hold_place(p);
         if (!request) return d(std::move(request).error());
         on_writer<std::int64_t>(
             [&service, r = std::move(*request), actor = actions::Actor{c.actor()}] { return service.place_hold(r, actor); },
             [](std::int64_t& id) -> json { return {{"id", id}}; }, false, std::move(d));
       })},
      {"hold.release", Role::admin, "Release a hold; overdue phases run at the next sweep",
       {},
       later([this, &service](const json& p, const Caller& c, Done d) {
         auto request = decode::hold_release(p);
         if (!request) return d(std::move(request).error());
         on_writer<bool>(
             [&service, r = std::move(*request), actor = actions::Actor{c.actor()}]() -> Result<bool> {
               if (auto st = service.release_hold(r, actor); !st) return std::move(st).error();
               return true;
             },
             [](bool&) -> json { return {{"released", true}}; }, true, std::move(d));
       })},
      {"connector.list", Role::reader, "Each connector with its jobs pending, in flight, failed and done",
       read([&service](const json& p, const Caller&) -> Result<json> {
         if (auto st = decode::none(p); !st) return std::move(st).error();
         auto list = service.connectors();
         if (!list) return std::move(list).error();
         json out = json::array();
         for (const auto& c : *list) {
           out.push_back({{"name", c.connector->name},
                          {"kind", std::string(policy::to_string(c.connector->kind))},
                          {"pending", c.stats.pending},
                          {"in_flight", c.stats.in_flight},
                          {"failed", c.stats.failed},
                          {"done", c.stats.done},
                          {"discarded", c.stats.discarded},
                          {"last_error", c.stats.last_error ? json(*c.stats.last_error) : json(nullptr)},
                          {"oldest_pending", render::instant_or_null(c.stats.oldest_pending)}});
         }
         return json{{"connectors", out}};
       })},
      {"connector.jobs", Role::admin, "A connector's jobs (pending, in flight and failed by default), with their subjects",
       read([&service](const json& p, const Caller&) -> Result<json> {
         auto request = decode::connector_jobs(p);
         if (!request) return std::move(request).error();
         auto jobs = service.connector_jobs(*request);
         if (!jobs) return std::move(jobs).error();
         json out = json::array();
         for (const auto& j : *jobs) out.push_back(actions::job_json(j, true));
         return json{{"jobs", out}};
       })},
      {"connector.claim", Role::admin, "Lease due jobs of a pull connector; acknowledge them with connector.ack",
       {},
       later([this, &service](const json& p, const Caller&, Done d) {
         auto request = decode::connector_claim(p);
         if (!request) return d(std::move(request).error());
         on_writer<std::vector<vault::Job>>(
             [&service, r = std::move(*request)] { return service.claim_jobs(r, true); },
             [](std::vector<vault::Job>& jobs) -> json {
               json out = json::array();
               for (const auto& j : jobs) out.push_back(actions::job_json(j));
               return {{"jobs", out}};
             },
             false, std::move(d));
       })},
      {"connector.ack", Role::admin, "Report claimed jobs done, or a failed attempt",
       {},
       later([this, &service](const json& p, const Caller& c, Done d) {
         auto request = decode::connector_ack(p);
         if (!request) return d(std::move(request).error());
         // The daemon's own workers settle the exec and http jobs.
         if (const auto* connector = service.policy()->find_connector(request->connector);
             connector != nullptr && connector->kind != policy::ConnectorKind::pull) {
           return d(Error::invalid_params("wrong_kind", "connector '" + request->connector + "' is an " +
                                                            std::string(policy::to_string(connector->kind)) +
                                                            " connector: the daemon delivers and settles its jobs"));
         }
         std::vector<actions::DeliveryOutcome> outcomes;
         for (const auto& id : request->ids) {
           outcomes.push_back({id, request->done ? actions::Delivery::done : actions::Delivery::failed_attempt, request->message});
         }
         on_writer<std::int64_t>(
             [&service, connector = request->connector, outcomes = std::move(outcomes), actor = actions::Actor{c.actor()}] {
               return service.settle_jobs(connector, outcomes, actor);
             },
             [](std::int64_t& n) -> json { return {{"acknowledged", n}}; }, false, std::move(d));
       })},
      {"connector.retry", Role::admin, "Failed jobs back to pending (ids, or all: true)",
       {},
       later([this, &service](const json& p, const Caller& c, Done d) {
         auto request = decode::connector_retry(p);
         if (!request) return d(std::move(request).error());
         on_writer<std::int64_t>(
             [&service, r = std::move(*request), actor = actions::Actor{c.actor()}] { return service.retry_jobs(r, actor); },
             [this](std::int64_t& n) -> json {
               if (n > 0 && m_ctx.jobs_changed) m_ctx.jobs_changed();
               return {{"retried", n}};
             },
             false, std::move(d));
       })},
      {"connector.discard", Role::admin, "Drop unfinished jobs (audited; their subjects destroyed)",
       {},
       later([this, &service](const json& p, const Caller& c, Done d) {
         auto request = decode::connector_discard(p);
         if (!request) return d(std::move(request).error());
         on_writer<std::int64_t>(
             [&service, r = std::move(*request), actor = actions::Actor{c.actor()}] { return service.discard_jobs(r, actor); },
             [](std::int64_t& n) -> json { return {{"discarded", n}}; }, false, std::move(d));
       })},
      {"hold.list", Role::admin, "The holds in force",
       read([&service](const json& p, const Caller&) -> Result<json> {
         if (auto st = decode::none(p); !st) return std::move(st).error();
         auto holds = service.holds();
         if (!holds) return std::move(holds).error();
         return json{{"holds", render::holds(*holds)}};
       })},
      {"sweep", Role::admin, "Run every due phase now (dry_run: count only)",
       {},
       later([this, &service](const json& p, const Caller& c, Done d) {
         auto dry_run = decode::flag_only(p, "dry_run");
         if (!dry_run) return d(std::move(dry_run).error());
         if (*dry_run) {
           return on_slow([&service]() -> Result<json> {
             auto counts = service.count_due();
             if (!counts) return std::move(counts).error();
             json out = render::sweep_counts(*counts);
             out["duration_ms"] = 0;
             out["dry_run"] = true;
             return out;
           }, std::move(d));
         }
         m_ctx.scheduler.sweep(actions::Actor{c.actor()}, [d = std::move(d)](const Result<scheduler::SweepReport>& r) {
           if (!r) return d(r.error());
           json out = render::sweep_counts(r->counts);
           out["duration_ms"] = r->duration_ms;
           d(out);
         });
       })},
      {"clock.confirm", Role::admin, "Accept the clock as it is now: lifts a clock guard pause (audited)",
       {},
       later([this, &service](const json& p, const Caller& c, Done d) {
         if (auto st = decode::none(p); !st) return d(std::move(st).error());
         m_ctx.writer.submit<Result<actions::ClockCheck>>(
             [&service, actor = actions::Actor{c.actor()}] { return service.check_clock(true, actor); },
             [this, d = std::move(d)](Result<actions::ClockCheck> r) {
               if (!r) return d(std::move(r).error());
               // Whatever the check found (a jump now recorded and audited,
               // or nothing to confirm), the clock as it is now is accepted.
               m_ctx.scheduler.clock_confirmed();
               d(json{{"confirmed", true}});
             });
       })},
      {"config.reload", Role::admin, "Reload the policy file through the reload guard (confirm: accept it)",
       {},
       later([this](const json& p, const Caller& c, Done d) {
         auto confirm = decode::flag_only(p, "confirm");
         if (!confirm) return d(std::move(confirm).error());
         if (!m_ctx.reload) return d(Error::internal("config.reload is not available in this process"));
         m_ctx.reload(*confirm, c, std::move(d));
       })},
  };
}

template <typename T>
void Dispatcher::on_writer(std::function<Result<T>()> job, std::function<nlohmann::json(T&)> render, bool changes_records,
                           Done done) {
  m_ctx.writer.submit<Result<T>>(std::move(job), [this, render = std::move(render), changes_records,
                                                 done = std::move(done)](Result<T> result) {
    if (!result) return done(std::move(result).error());
    nlohmann::json out;
    try {
      out = render(*result);
    } catch (const std::exception& e) {
      return done(Error::internal(std::string("internal error rendering a result: ") + e.what()));
    }
    if (changes_records) m_ctx.scheduler.records_changed();
    done(std::move(out));
  });
}

void Dispatcher::metrics(std::function<void(Result<std::string>)> done) {
  auto snapshot = std::make_shared<actions::MetricsSnapshot>();
  on_slow(
      [this, snapshot]() -> Result<json> {
        auto read = m_ctx.service.metrics();
        if (!read) return std::move(read).error();
        *snapshot = std::move(read).value();
        return json();
      },
      [this, snapshot, done = std::move(done)](Result<json> read) {
        if (!read) return done(std::move(read).error());
        const auto policy = m_ctx.service.policy();
        DaemonFacts facts;
        facts.version = m_ctx.version;
        facts.policy_hash = policy->hash;
        for (const auto& c : policy->categories) facts.categories.push_back(c.name);
        facts.started_at = m_ctx.started_at;
        if (const auto& pause = m_ctx.scheduler.pause()) facts.paused = pause->reason;
        facts.sweeps = &m_ctx.scheduler.stats();
        facts.consecutive_failures = m_ctx.scheduler.failures();
        done(metrics_text(*snapshot, facts));
      });
}

void Dispatcher::on_slow(std::function<Result<nlohmann::json>()> read, Done done) {
  const auto run = [read = std::move(read)]() -> Result<nlohmann::json> {
    try {
      return read();
    } catch (const std::exception& e) {
      return Error::internal(std::string("internal error in a read: ") + e.what());
    }
  };
  if (!m_ctx.slow || !m_ctx.to_loop) return done(run());
  m_ctx.slow([this, run, done = std::move(done)]() mutable {
    auto result = std::make_shared<Result<nlohmann::json>>(run());
    m_ctx.to_loop([result, done = std::move(done)]() { done(std::move(*result)); });
  });
}

Result<nlohmann::json> Dispatcher::signed_object(nlohmann::json object) const {
  if (!m_ctx.signing_key) return Error::internal("this daemon has no signing key");
  return proof::sign(std::move(object), *m_ctx.signing_key);
}

nlohmann::json Dispatcher::erasure_with_receipt(const actions::ErasureReport& report, bool dry_run) const {
  json out = render::erasure(report, dry_run);
  if (dry_run || !m_ctx.signing_key) return out;
  out["receipt"] = proof::sign(render::receipt(report), *m_ctx.signing_key);
  return out;
}

void Dispatcher::audit_tail_waiting(actions::AuditTailRequest request, std::chrono::steady_clock::time_point deadline,
                                    std::int64_t head_seen, Done done) {
  // The head is one indexed read on the loop; the page is read only when
  // the head has moved past `after` (a filter may still leave it empty:
  // then the wait goes on), or once at the deadline.
  auto head = m_ctx.service.audit_head();
  if (!head) return done(std::move(head).error());
  const std::int64_t seq = *head ? (*head)->seq : 0;
  const bool expired = std::chrono::steady_clock::now() >= deadline;
  if ((seq > *request.after && seq != head_seen) || expired) {
    const bool large = request.limit > kLoopAuditTailLimit;
    auto read = [&service = m_ctx.service, request, large]() -> Result<json> {
      auto rows = service.audit_tail(request, large);
      if (!rows) return std::move(rows).error();
      return json{{"entries", render::audit_rows(*rows)}};
    };
    auto answer = [this, request, deadline, seq, done](Result<json> page) mutable {
      if (!page || !(*page)["entries"].empty() || std::chrono::steady_clock::now() >= deadline) {
        return done(std::move(page));
      }
      audit_tail_waiting(std::move(request), deadline, seq, std::move(done));
    };
    if (large) return on_slow(std::move(read), std::move(answer));
    return answer(read());
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  m_ctx.after(std::clamp(left, std::chrono::milliseconds(1), kAuditPollInterval),
              [this, request = std::move(request), deadline, seq, done = std::move(done)]() mutable {
                audit_tail_waiting(std::move(request), deadline, seq, std::move(done));
              });
}

Result<nlohmann::json> Dispatcher::status(const nlohmann::json& params) {
  if (auto st = decode::none(params); !st) return std::move(st).error();
  auto overview = m_ctx.service.overview();
  if (!overview) return std::move(overview).error();
  const auto policy = m_ctx.service.policy();
  json last = nullptr;
  if (const auto& r = m_ctx.scheduler.last()) {
    last = {{"at", calendar::format_instant(r->finished_at)}, {"archived", r->counts.archived},
            {"anonymised", r->counts.anonymised}, {"purged", r->counts.purged}, {"held", r->counts.held},
            {"duration_ms", r->duration_ms}};
  }
  json pause = nullptr;
  if (const auto& p = m_ctx.scheduler.pause()) {
    pause = {{"newly_due", p->newly_due}, {"guard", p->guard}};
    if (p->reason == "clock_guard") {
      pause["last_seen"] = render::instant_or_null(p->last_seen);
      pause["now"] = render::instant_or_null(p->now);
    }
  }
  const auto& records = overview->records;
  json daemons = json::array();
  for (const auto& d : overview->daemons) {
    daemons.push_back({{"host", d.host}, {"pid", d.pid}, {"address", d.address}, {"since", calendar::format_instant(d.since)}});
  }
  auto connectors = m_ctx.service.connectors();
  if (!connectors) return std::move(connectors).error();
  std::int64_t pending = 0, failed = 0;
  for (const auto& c : *connectors) {
    pending += c.stats.pending + c.stats.in_flight;
    failed += c.stats.failed;
  }
  return json{
      {"version", m_ctx.version},
      {"now", calendar::format_instant(m_ctx.service.clock().now())},
      {"started_at", calendar::format_instant(m_ctx.started_at)},
      {"policy", {{"hash", policy->hash}, {"categories", policy->categories.size()},
                  {"loaded_at", calendar::format_instant(m_ctx.policy_loaded_at)}}},
      {"records", {{"active", records.active}, {"archived", records.archived}, {"anonymised", records.anonymised}}},
      {"holds", overview->holds},
      {"next_due", render::instant_or_null(overview->next_due)},
      {"backlog", overview->backlog},
      {"paused", m_ctx.scheduler.paused() ? json(m_ctx.scheduler.pause()->reason) : json(nullptr)},
      {"pause", pause},
      {"last_sweep", last},
      {"signing_key", m_ctx.signing_key ? json(crypto::base64_encode(m_ctx.signing_key->public_key())) : json(nullptr)},
      {"connectors", {{"pending", pending}, {"failed", failed}}},
      {"store", {{"backend", policy::to_string(policy->daemon.store_backend)}, {"daemons", daemons}}},
  };
}

}  // namespace retentiond::protocol
