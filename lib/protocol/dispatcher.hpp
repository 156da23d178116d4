#pragma once
// Dispatcher: JSON-RPC 2.0 over lines (shared/spec/admin-protocol.md).
// Request in, response out: it knows nothing of sockets. One line in gives at
// most one line out (nothing for notifications); batches give an array. Most
// methods answer at once; `sweep` answers when its pass ends, with the event
// loop serving others meanwhile, so the answer comes through a callback. No
// exception crosses it: every failure becomes an error response.
//
// Not thread-safe: called from the daemon's io_context thread.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/actions/service.hpp"
#include "lib/scheduler/scheduler.hpp"

namespace retentiond::protocol {

enum class Role { none, reader, admin };
std::string_view to_string(Role r);

struct Caller {
  Role role = Role::none;
  uid_t uid = 0;
  std::string actor() const { return "uid:" + std::to_string(uid); }
};

struct Limits {
  std::size_t max_json_depth = 64;
  std::size_t max_put_many = 10000;
};

// What the handlers work on; owned by the daemon.
struct Context {
  actions::Service& service;
  audit::AuditLog& audit;
  scheduler::Scheduler& scheduler;
  std::string version;
  calendar::Instant started_at;
  calendar::Instant policy_loaded_at;
  // config.reload, provided by the daemon (it knows the file and the guard).
  std::function<Result<nlohmann::json>(bool confirm, const Caller& caller)> reload;
};

class Dispatcher {
 public:
  Dispatcher(Context& context, Limits limits);

  // Receives the response line (without its trailing newline), or nullopt
  // when nothing is to be sent. Called exactly once per handled line, at
  // once or later (sweep), always on the io_context's thread.
  using Reply = std::function<void(std::optional<std::string>)>;

  // Handles one request line (a request or a batch).
  void handle_line(std::string_view line, const Caller& caller, Reply reply);

  // An error response with a null id, for transport-level refusals.
  static std::string error_line(ErrorCode code, const std::string& reason, const std::string& message);

 private:
  using Done = std::function<void(Result<nlohmann::json>)>;
  using Handler = std::function<Result<nlohmann::json>(const nlohmann::json& params, const Caller& caller)>;
  using AsyncHandler = std::function<void(const nlohmann::json& params, const Caller& caller, Done done)>;
  struct Method {
    std::string name;
    Role role;
    std::string summary;
    Handler handler = {};             // answers at once, or
    AsyncHandler async_handler = {};  // answers through `done`
    bool changes_records = false;     // re-arms the scheduler after success
  };

  // Handles one parsed request object; `done` receives nullopt for a notification.
  void handle_request(const nlohmann::json& request, const Caller& caller,
                      std::function<void(std::optional<nlohmann::json>)> done);
  void register_methods();
  void call(const Method& m, const nlohmann::json& params, const Caller& caller, Done done);

  Result<nlohmann::json> help(const nlohmann::json& params);
  Result<nlohmann::json> status(const nlohmann::json& params);
  Result<nlohmann::json> policy_get(const nlohmann::json& params);
  Result<nlohmann::json> record_put(const nlohmann::json& params, const Caller& caller);
  Result<nlohmann::json> record_put_many(const nlohmann::json& params, const Caller& caller);
  Result<nlohmann::json> record_explain(const nlohmann::json& params);
  Result<nlohmann::json> record_get(const nlohmann::json& params);
  Result<nlohmann::json> event_record(const nlohmann::json& params, const Caller& caller);
  Result<nlohmann::json> audit_tail(const nlohmann::json& params);
  Result<nlohmann::json> audit_verify(const nlohmann::json& params);
  Result<nlohmann::json> subject_export(const nlohmann::json& params, const Caller& caller);
  Result<nlohmann::json> subject_erase(const nlohmann::json& params, const Caller& caller);
  Result<nlohmann::json> record_erase(const nlohmann::json& params, const Caller& caller);
  Result<nlohmann::json> plan(const nlohmann::json& params);
  Result<nlohmann::json> policy_table(const nlohmann::json& params);
  Result<nlohmann::json> hold_place(const nlohmann::json& params, const Caller& caller);
  Result<nlohmann::json> hold_release(const nlohmann::json& params, const Caller& caller);
  Result<nlohmann::json> hold_list(const nlohmann::json& params);
  void sweep(const nlohmann::json& params, const Caller& caller, Done done);
  Result<nlohmann::json> config_reload(const nlohmann::json& params, const Caller& caller);

  Context& m_ctx;
  Limits m_limits;
  std::vector<Method> m_methods;
};

}  // namespace retentiond::protocol
