#pragma once
// Dispatcher: JSON-RPC 2.0 over lines (shared/spec/admin-protocol.md).
// Request in, response out: it knows nothing of sockets. One line in gives at
// most one line out (nothing for notifications); batches give an array.
// Params are decoded into typed requests (decode.hpp), results rendered
// (render.hpp). Read methods answer at once, on the event loop, from a
// snapshot; methods that change anything run as jobs on the writer thread
// and answer when it is done; `sweep` answers when its pass ends. Meanwhile
// the event loop serves others, so answers come through a callback. No
// exception crosses it: every failure becomes an error response.
//
// Not thread-safe: called from the daemon's io_context thread.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/actions/service.hpp"
#include "lib/crypto/signing.hpp"
#include "lib/scheduler/scheduler.hpp"
#include "lib/scheduler/writer.hpp"

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
  scheduler::Writer& writer;
  scheduler::Scheduler& scheduler;
  std::string version;
  calendar::Instant started_at;
  calendar::Instant policy_loaded_at;
  // config.reload, provided by the engine (it knows the file and the guard);
  // answers through `done` on the event loop.
  std::function<void(bool confirm, const Caller& caller, std::function<void(Result<nlohmann::json>)> done)> reload;
  // Where long lines are parsed and record.put_many decoded, off the event
  // loop (a 5,000-record line takes tens of milliseconds that reads would
  // otherwise wait for), and how to come back to the loop. Both callable
  // from any thread; without them, everything runs on the loop.
  std::function<void(std::function<void()>)> offload;
  std::function<void(std::function<void()>)> to_loop;
  // Where the reads whose cost grows with the data run (plan, dry-run
  // sweeps, audit.verify beyond the verified prefix): the thread that owns
  // the service's slow reader (actions::Service, [slow]). Without it, on
  // the loop.
  std::function<void(std::function<void()>)> slow;
  // Runs `work` on the loop after `delay` (audit.tail's wait_ms). Without
  // it, audit.tail answers at once.
  std::function<void(std::chrono::milliseconds delay, std::function<void()> work)> after;
  // Signs receipts and checkpoints; without it (tests of other things),
  // audit.checkpoint and record.receipt are internal errors and erasures
  // carry no receipt.
  std::shared_ptr<const crypto::SigningKey> signing_key;
  // Called on the loop after a change that may have decided connector jobs
  // or made failed ones pending (erasures, connector.retry): wakes the
  // delivery workers. Optional.
  std::function<void()> jobs_changed;
};

// Lines at least this long are parsed off the event loop when Context has
// an offload.
inline constexpr std::size_t kOffloadLineBytes = 64 * 1024;

class Dispatcher {
 public:
  Dispatcher(Context& context, Limits limits);

  // Receives the response line (without its trailing newline), or nullopt
  // when nothing is to be sent. Called exactly once per handled line, at
  // once or later (sweep), always on the io_context's thread.
  using Reply = std::function<void(std::optional<std::string>)>;

  // Handles one request line (a request or a batch).
  void handle_line(std::string_view line, const Caller& caller, Reply reply);

  // The metrics in the Prometheus text format (the `metrics` method and
  // GET /metrics): the store's part read on the slow-read thread, answered
  // through `done` on the event loop.
  void metrics(std::function<void(Result<std::string>)> done);

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

  // The rest of handle_line, once the line is parsed (or has failed to).
  void handle_parsed(nlohmann::json parsed, const Caller& caller, Reply reply);
  // Handles one parsed request object; `done` receives nullopt for a notification.
  void handle_request(const nlohmann::json& request, const Caller& caller,
                      std::function<void(std::optional<nlohmann::json>)> done);
  void register_methods();
  void call(const Method& m, const nlohmann::json& params, const Caller& caller, Done done);

  // Runs `job` on the writer and answers with `render` of its result on
  // the event loop; `changes_records` re-arms the scheduler after success.
  template <typename T>
  void on_writer(std::function<Result<T>()> job, std::function<nlohmann::json(T&)> render, bool changes_records,
                 Done done);

  Result<nlohmann::json> status(const nlohmann::json& params);
  // audit.tail with wait_ms: asks again every kAuditPollInterval until an
  // entry past `after` matches or the deadline passes.
  void audit_tail_waiting(actions::AuditTailRequest request, std::chrono::steady_clock::time_point deadline,
                          std::int64_t head_seen, Done done);
  // `object` signed, or an internal error without a key.
  Result<nlohmann::json> signed_object(nlohmann::json object) const;
  // subject.erase's and record.erase's answer; not in a dry run, with its
  // signed receipt.
  nlohmann::json erasure_with_receipt(const actions::ErasureReport& report, bool dry_run) const;
  // Runs `read` on the slow-read thread (or here) and answers on the loop.
  void on_slow(std::function<Result<nlohmann::json>()> read, Done done);

  Context& m_ctx;
  Limits m_limits;
  std::vector<Method> m_methods;
  // record.put_many's records, decoded off the loop with its line: set just
  // before its handler is called, taken by it (event loop only).
  std::shared_ptr<Result<std::vector<actions::PutRequest>>> m_predecoded;
};

}  // namespace retentiond::protocol
