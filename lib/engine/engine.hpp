#pragma once
// Engine: retentiond without its front door. One wiring function shared by
// the daemon, the protocol fuzzer and the profiling tool (bench/): it opens the store in the state
// directory (the database, the keys), the vault and a reader, builds the
// service, the writer thread, the scheduler and the dispatcher, and runs the
// reload guard against the policy the state last ran. It also owns the
// reload sequence (config.reload and SIGHUP): read and validate the file,
// keep the [daemon] settings that need a restart, and adopt through the
// guard on the writer.
//
// Threading: every method is called on the io_context's thread; the writer
// thread is the engine's own (see lib/scheduler/writer.hpp). The socket
// (lib/server) and the process's signals and sd_notify stay with the daemon.

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "lib/actions/reload.hpp"
#include "lib/actions/service.hpp"
#include "lib/calendar/clock.hpp"
#include "lib/crypto/signing.hpp"
#include "lib/policy/policy.hpp"
#include "lib/protocol/dispatcher.hpp"
#include "lib/scheduler/deliverer.hpp"
#include "lib/scheduler/scheduler.hpp"
#include "lib/scheduler/writer.hpp"
#include "lib/util/asio.hpp"
#include "lib/util/result.hpp"

namespace retentiond::engine {

struct EngineOptions {
  // The policy file: reloads read it again.
  std::filesystem::path config_path;
  // The policy loaded from it, command-line overrides applied; its daemon
  // settings are the running ones (state_dir...).
  std::shared_ptr<const policy::Policy> policy;
  // Applied to every policy read again by a reload (the command line wins).
  std::function<void(policy::DaemonSettings&)> overrides;
  const calendar::Clock* clock = nullptr;
  std::string secret;  // the daemon's secret (>= 32 bytes)
  // Signs receipts and checkpoints ([daemon] signing_key); without it they
  // are not offered (tools and tests that do not need them).
  std::shared_ptr<const crypto::SigningKey> signing_key;
  std::string version;
  bool confirm_policy = false;  // --confirm-policy
  bool confirm_clock = false;   // --confirm-clock
  scheduler::Writer::Mode writer_mode = scheduler::Writer::Mode::thread;
  // --replay-audit: a copy of the audit log to replay after a backup
  // restore, once the database is open and before the start-up guards
  // (whose entries would otherwise follow the restored head).
  std::optional<std::filesystem::path> replay_audit;
  // For tests: the scheduler's check interval.
  std::optional<std::chrono::seconds> check_interval;
};

class Engine {
 public:
  // Opens everything (see above) and runs the start-up guard: a change that
  // trips it starts the scheduler paused; a policy that drops a category
  // still holding records is refused (bad_config). Fails with the error to
  // report (storage_error, bad_config...).
  static Result<std::unique_ptr<Engine>> open(boost::asio::io_context& io, EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Starts the writer thread and the scheduler (its catch-up pass first).
  void start();
  // Stops the scheduler and the writer, between two batches.
  void stop();

  // config.reload / SIGHUP: answers through `done` on the io_context. The
  // result is {"hash", "changed_categories", "newly_due"}; a file that does
  // not validate is bad_config (the first error with its line); a guard
  // that trips is confirmation_required.
  void reload(bool confirm, const std::string& actor, std::function<void(Result<nlohmann::json>)> done);

  // What EngineOptions::replay_audit did (nullopt without it).
  const std::optional<actions::ReplaySummary>& replayed() const { return m_replayed; }

  // systemd's STATUS= line.
  std::string status_line();

  protocol::Dispatcher& dispatcher() { return *m_dispatcher; }
  scheduler::Scheduler& scheduler() { return *m_scheduler; }
  scheduler::Writer& writer() { return *m_writer; }
  scheduler::Deliverer& deliverer() { return *m_deliverer; }
  actions::Service& service() { return *m_service; }
  protocol::Context& context() { return *m_context; }

  // Called when a reload starts and when it ends (sd_notify RELOADING=1,
  // READY=1 and STATUS=), and after every pass (STATUS=).
  std::function<void()> on_reload_start;
  std::function<void()> on_reload_end;
  std::function<void()> on_pass_end;

 private:
  struct Parts;
  explicit Engine(boost::asio::io_context& io, EngineOptions options);
  Status open_parts();
  Status startup_guard();
  Status startup_clock_guard();
  // FILE holds audit entries as JSON lines (what `retentionctl audit
  // --follow --json` writes); see actions::Service::replay_audit.
  // invalid_params (bad_replay) names the line of an entry that cannot be read.
  Result<actions::ReplaySummary> replay_audit(const std::filesystem::path& file);
  std::optional<actions::ReplaySummary> m_replayed;

  boost::asio::io_context& m_io;
  EngineOptions m_options;
  std::unique_ptr<Parts> m_parts;
  std::unique_ptr<actions::Service> m_service;
  std::unique_ptr<scheduler::Writer> m_writer;
  std::unique_ptr<scheduler::Scheduler> m_scheduler;
  std::unique_ptr<scheduler::Deliverer> m_deliverer;
  std::unique_ptr<protocol::Context> m_context;
  std::unique_ptr<protocol::Dispatcher> m_dispatcher;
  std::unique_ptr<actions::PolicyChange> m_change;
  // Parses long request lines off the event loop, and runs the reads whose
  // cost grows with the data on a reader of their own (Mode::thread only).
  std::unique_ptr<boost::asio::thread_pool> m_offload;
  std::unique_ptr<boost::asio::thread_pool> m_slow;
};

// A reload takes the policy, the log level and the reload guard from the
// new file; the other [daemon] settings (paths, socket, limits) need a
// restart: they are kept as `running`, and the names of those that differ
// are returned in `ignored`.
policy::DaemonSettings settings_for_reload(const policy::DaemonSettings& running, const policy::DaemonSettings& file,
                                           std::vector<std::string>& ignored);

}  // namespace retentiond::engine
