// retentiond: the retention daemon. This file only wires the library
// together (see docs/architecture.md); each start-up step is commented.

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "lib/util/asio.hpp"
#include <algorithm>
#include <cxxopts.hpp>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>

#include "daemon/logging.hpp"
#include "daemon/version.hpp"
#include "lib/actions/policy_change.hpp"
#include "lib/actions/service.hpp"
#include "lib/audit/audit.hpp"
#include "lib/calendar/clock.hpp"
#include "lib/crypto/crypto.hpp"
#include "lib/policy/policy.hpp"
#include "lib/protocol/dispatcher.hpp"
#include "lib/scheduler/scheduler.hpp"
#include "lib/server/server.hpp"
#include "lib/store/sqlite_store.hpp"
#include "lib/util/state_lock.hpp"

namespace rd = retentiond;
namespace asio = boost::asio;

namespace {

enum Exit { kOk = 0, kConfigError = 1, kUsage = 2, kStartupError = 3 };

void print_diagnostics(const rd::policy::LoadResult& r) {
  for (const auto& d : r.diagnostics) std::cerr << d.to_string() << '\n';
}

int check(const std::string& config) {
  const auto r = rd::policy::load_policy_file(config);
  print_diagnostics(r);
  if (!r.ok()) {
    std::cerr << config << ": invalid policy\n";
    return kConfigError;
  }
  const auto& p = *r.policy;
  std::cout << config << ": OK\n"
            << "policy hash " << p.hash << '\n'
            << p.categories.size() << " categories (fiscal year end " << rd::calendar::format_month_day(p.daemon.fiscal_year_end)
            << "):\n";
  std::size_t width = 0;
  for (const auto& c : p.categories) width = std::max(width, c.name.size());
  for (const auto& c : p.categories) {
    std::string phases;
    for (const auto& ph : c.phases) {
      phases += (phases.empty() ? "" : "; ") + std::string(rd::policy::to_string(ph.action)) + " at " + ph.at_text;
    }
    std::cout << "  " << c.name << std::string(width - c.name.size() + 2, ' ') << c.legal_basis << ": "
              << (phases.empty() ? "kept until erased" : phases) << '\n';
  }
  return kOk;
}

// Command-line options override the file, at start-up and at every reload.
void apply_overrides(const cxxopts::ParseResult& opts, rd::policy::DaemonSettings& settings) {
  if (opts.count("state-dir")) settings.state_dir = opts["state-dir"].as<std::string>();
  if (opts.count("socket")) settings.socket = opts["socket"].as<std::string>();
  if (opts.count("log-level")) settings.log_level = opts["log-level"].as<std::string>();
}

// The first policy of a new state directory becomes the adopted one without
// an audit entry: nothing changed.
rd::Status store_first_policy(rd::store::Store& store, const rd::policy::Policy& policy) {
  return store.transaction([&]() -> rd::Status {
    if (auto st = store.set_meta("policy", rd::policy::canonical_json(policy).dump()); !st) return st;
    if (auto st = store.set_meta("reload_guard", std::to_string(policy.daemon.reload_guard)); !st) return st;
    return store.set_meta("policy_hash", policy.hash);
  });
}

// A reload takes the policy, the log level and the reload guard from the
// new file; the other [daemon] settings (paths, socket, limits) need a
// restart: they are kept, and a change is logged.
rd::policy::DaemonSettings policy_settings_for_reload(const rd::policy::DaemonSettings& running,
                                                      const rd::policy::DaemonSettings& file) {
  rd::policy::DaemonSettings out = running;
  out.fiscal_year_end = file.fiscal_year_end;
  out.log_level = file.log_level;
  out.reload_guard = file.reload_guard;
  std::vector<std::string> ignored;
  const auto note = [&](const char* name, bool differs) {
    if (differs) ignored.emplace_back(name);
  };
  note("state_dir", file.state_dir != running.state_dir);
  note("socket", !file.socket.empty() && file.socket != running.socket);
  note("socket_mode", file.socket_mode != running.socket_mode);
  note("admin_group", file.admin_group != running.admin_group);
  note("reader_group", file.reader_group != running.reader_group);
  note("secret_file", file.secret_file != running.secret_file);
  note("max_batch_records", file.max_batch_records != running.max_batch_records);
  note("max_batch_ms", file.max_batch_ms != running.max_batch_ms);
  note("max_request_bytes", file.max_request_bytes != running.max_request_bytes);
  note("max_json_depth", file.max_json_depth != running.max_json_depth);
  note("max_put_many", file.max_put_many != running.max_put_many);
  note("max_connections", file.max_connections != running.max_connections);
  note("idle_timeout", file.idle_timeout_s != running.idle_timeout_s);
  if (!ignored.empty()) {
    std::string names;
    for (const auto& n : ignored) names += (names.empty() ? "" : ",") + n;
    spdlog::warn("config.restart_needed keys={} (these [daemon] settings take effect at the next start)", names);
  }
  return out;
}

// systemd's STATUS= line: what an administrator wants from systemctl status.
std::string status_line(rd::actions::Service& service, const rd::scheduler::Scheduler& scheduler) {
  auto& store = service.store();
  const auto now = service.clock().now();
  auto due = store.count_due(now);
  auto next = store.next_due();
  std::string out = scheduler.paused() ? "PAUSED by the reload guard (confirm the policy); " : "";
  out += "due now: " + (due ? std::to_string(*due) : std::string("?"));
  if (next && *next) out += "; next due " + rd::calendar::format_instant(**next);
  if (const auto& last = scheduler.last()) {
    out += "; last sweep " + rd::calendar::format_instant(last->finished_at) + ": " +
           std::to_string(last->counts.actions()) + " actions";
  }
  return out;
}

int run(const cxxopts::ParseResult& opts) {
  const std::string config = opts["config"].as<std::string>();

  // 1. Load and validate the policy; every problem is printed.
  auto loaded = rd::policy::load_policy_file(config);
  print_diagnostics(loaded);
  if (!loaded.ok()) return kConfigError;
  auto policy = std::make_shared<rd::policy::Policy>(*loaded.policy);
  apply_overrides(opts, policy->daemon);
  const auto& settings = policy->daemon;
  rd::daemon::setup_logging(settings.log_level);

  // 2. The clock: real time, or --now and then real time.
  std::unique_ptr<rd::calendar::Clock> clock = std::make_unique<rd::calendar::SystemClock>();
  if (opts.count("now")) {
    auto start = rd::calendar::parse_instant(opts["now"].as<std::string>());
    if (!start) {
      spdlog::critical("startup.failed --now: {}", start.error().message);
      return kUsage;
    }
    clock = std::make_unique<rd::calendar::OffsetClock>(*start);
  }

  // 3. State directory (0700) and its lock, secret, database and its migrations.
  const std::filesystem::path state_dir = settings.state_dir;
  std::error_code fs_ec;
  if (!std::filesystem::exists(state_dir, fs_ec)) {
    std::filesystem::create_directories(state_dir, fs_ec);
    if (!fs_ec) ::chmod(state_dir.c_str(), 0700);
  }
  if (fs_ec) {
    spdlog::critical("startup.failed cannot create state directory {}: {}", state_dir.string(), fs_ec.message());
    return kStartupError;
  }
  // One daemon per state directory, locked before anything in it is opened
  // (the secret, the databases, the keys); held until the process ends.
  auto state_lock = rd::StateLock::acquire(state_dir);
  if (!state_lock) {
    spdlog::critical("startup.failed {}", state_lock.error().message);
    return kStartupError;
  }
  bool created = false;
  const std::filesystem::path secret_path =
      settings.secret_file.empty() ? state_dir / "secret" : std::filesystem::path(settings.secret_file);
  auto secret = rd::crypto::load_or_create_secret(secret_path, created);
  if (!secret) {
    spdlog::critical("startup.failed {}", secret.error().message);
    return kStartupError;
  }
  if (created) spdlog::info("secret.created path={}", secret_path.string());

  rd::store::SqliteOptions store_options;
  store_options.secret = *secret;
  auto store = rd::store::open_sqlite_store(state_dir / "retention.db", store_options);
  if (!store) {
    spdlog::critical("startup.failed {}", store.error().message);
    return kStartupError;
  }

  // 4. Wire the modules.
  const auto started_at = clock->now();
  rd::audit::AuditLog audit(**store, *secret);
  rd::actions::Service service(**store, audit, *clock, policy, *secret);
  asio::io_context io;
  rd::scheduler::SchedulerOptions scheduler_options;
  scheduler_options.max_batch_records = static_cast<std::size_t>(settings.max_batch_records);
  scheduler_options.max_batch_time = std::chrono::milliseconds(settings.max_batch_ms);
  rd::scheduler::Scheduler scheduler(io, service, scheduler_options);
  rd::protocol::Context ctx{service, audit, scheduler, RETENTIOND_VERSION, started_at, started_at, {}};
  rd::protocol::Dispatcher dispatcher(ctx, {static_cast<std::size_t>(settings.max_json_depth),
                                            static_cast<std::size_t>(settings.max_put_many)});

  // 5. The admin socket: systemd's, or our own. Bound before anything is
  //    adopted, so a second daemon on a live socket changes nothing.
  rd::server::ServerOptions server_options;
  server_options.socket_path = settings.socket;
  server_options.socket_mode = settings.socket_mode;
  server_options.admin_group = settings.admin_group;
  server_options.reader_group = settings.reader_group;
  server_options.max_request_bytes = static_cast<std::size_t>(settings.max_request_bytes);
  server_options.max_connections = static_cast<std::size_t>(settings.max_connections);
  server_options.idle_timeout = std::chrono::seconds(settings.idle_timeout_s);
  if (sd_listen_fds(1) == 1) {
    server_options.inherited_fd = SD_LISTEN_FDS_START;
    server_options.socket_path.clear();
  }
  rd::server::Server server(io, dispatcher, server_options);
  if (auto st = server.start(); !st) {
    spdlog::critical("startup.failed {}", st.error().message);
    return kStartupError;
  }

  // 6. The reload guard at start-up, against the policy the daemon last ran
  //    and with the guard in force then.
  rd::actions::PolicyChange change(service);
  std::int64_t guard = settings.reload_guard;
  if (auto kept = (**store).get_meta("reload_guard"); kept && *kept) guard = std::stoll(**kept);
  {
    auto assessment = change.assess(*policy);
    if (!assessment) {
      spdlog::critical("startup.failed {}", assessment.error().message);
      return assessment.error().reason == "bad_config" ? kConfigError : kStartupError;
    }
    auto adopted = change.adopted();
    if (!adopted) {
      spdlog::critical("startup.failed {}", adopted.error().message);
      return kStartupError;
    }
    const bool first = adopted->is_null();  // a new state directory: nothing to compare with, nothing to audit
    if (first) {
      if (auto st = store_first_policy(**store, *policy); !st) {
        spdlog::critical("startup.failed {}", st.error().message);
        return kStartupError;
      }
    } else if (!assessment->diff.empty()) {
      const bool confirmed = opts.count("confirm-policy") > 0;
      if (assessment->newly_due > guard && !confirmed) {
        spdlog::warn("reload_guard.tripped newly_due={} guard={} {}; starting paused until confirmed "
                     "(config.reload with confirm, or --confirm-policy)",
                     assessment->newly_due, guard, rd::actions::describe(assessment->diff));
        scheduler.set_paused(rd::scheduler::Scheduler::Pause{assessment->newly_due, guard});
      } else if (auto st = change.adopt(policy, *assessment, rd::actions::Actor{"scheduler"},
                                        confirmed ? "at start-up, confirmed with --confirm-policy" : "at start-up");
                 !st) {
        spdlog::critical("startup.failed {}", st.error().message);
        return kStartupError;
      } else {
        spdlog::info("config.reloaded at=start-up hash={} {} newly_due={}", policy->hash.substr(0, 12),
                     rd::actions::describe(assessment->diff), assessment->newly_due);
      }
    }
  }

  // config.reload and SIGHUP: validate, assess, guard, adopt.
  const auto reload = [&](bool confirm, const std::string& actor) -> rd::Result<nlohmann::json> {
    sd_notify(0, "RELOADING=1");
    struct Ready {
      ~Ready() { sd_notify(0, "READY=1"); }
    } ready;
    auto next = rd::policy::load_policy_file(config);
    if (!next.ok()) {
      std::string message = next.first_error();
      const auto errors = std::count_if(next.diagnostics.begin(), next.diagnostics.end(), [](const auto& d) {
        return d.severity == rd::policy::Diagnostic::Severity::error;
      });
      if (errors > 1) message += " (and " + std::to_string(errors - 1) + " more; run retentiond --check)";
      spdlog::error("config.reload_failed {}; the policy in force is unchanged", message);
      return rd::Error::invalid_params("bad_config", message);
    }
    auto candidate = std::make_shared<rd::policy::Policy>(*next.policy);
    apply_overrides(opts, candidate->daemon);  // the command line still wins
    candidate->daemon = policy_settings_for_reload(service.policy().daemon, candidate->daemon);
    auto assessment = change.assess(*candidate);
    if (!assessment) {
      spdlog::error("config.reload_failed {}", assessment.error().message);
      return std::move(assessment).error();
    }
    std::vector<std::string> names = assessment->diff.changed;
    names.insert(names.end(), assessment->diff.added.begin(), assessment->diff.added.end());
    names.insert(names.end(), assessment->diff.removed.begin(), assessment->diff.removed.end());
    std::sort(names.begin(), names.end());
    if (assessment->newly_due > guard && !confirm) {
      spdlog::warn("config.reload_refused newly_due={} guard={} {}{}", assessment->newly_due, guard,
                   rd::actions::describe(assessment->diff), actor == "scheduler" ? " (SIGHUP never confirms)" : "");
      rd::Error e{rd::ErrorCode::confirmation_required, "confirmation_required",
                  "the new policy makes " + std::to_string(assessment->newly_due) +
                      " records due at once, more than daemon.reload_guard (" + std::to_string(guard) +
                      "); nothing was changed. Call config.reload with confirm to accept it",
                  nlohmann::json::object()};
      e.data = {{"newly_due", assessment->newly_due}, {"guard", guard}, {"changed_categories", names}};
      return e;
    }
    if (auto st = change.adopt(candidate, *assessment, rd::actions::Actor{actor}, confirm ? "confirmed" : ""); !st) {
      spdlog::error("config.reload_failed {}", st.error().message);
      return std::move(st).error();
    }
    guard = candidate->daemon.reload_guard;  // a new guard protects the next change, not this one
    spdlog::set_level(spdlog::level::from_str(candidate->daemon.log_level));
    ctx.policy_loaded_at = service.clock().now();
    if (scheduler.paused()) scheduler.set_paused(std::nullopt);
    scheduler.records_changed();
    spdlog::info("config.reloaded actor={} hash={} {} newly_due={}", actor, candidate->hash.substr(0, 12),
                 rd::actions::describe(assessment->diff), assessment->newly_due);
    return nlohmann::json{{"hash", candidate->hash}, {"changed_categories", names}, {"newly_due", assessment->newly_due}};
  };

  // 7. systemd: STATUS= after every pass, WATCHDOG=1 at half the interval.
  const auto notify_status = [&] {
    sd_notify(0, ("STATUS=" + status_line(service, scheduler)).c_str());
  };
  scheduler.on_pass_end = notify_status;
  ctx.reload = [&](bool confirm, const rd::protocol::Caller& caller) {
    auto result = reload(confirm, caller.actor());
    notify_status();
    return result;
  };
  asio::steady_timer watchdog(io);
  std::uint64_t watchdog_usec = 0;
  std::function<void()> pet = [&] {
    sd_notify(0, "WATCHDOG=1");
    watchdog.expires_after(std::chrono::microseconds(watchdog_usec / 2));
    watchdog.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) pet();
    });
  };
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) pet();

  // 8. Signals. SIGHUP reloads (never confirming); SIGTERM/SIGINT stop
  //    between two batches, so nothing is half-done.
  asio::signal_set hangup(io, SIGHUP);
  std::function<void()> wait_hangup = [&] {
    hangup.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      spdlog::info("config.reload_requested signal=SIGHUP");
      (void)reload(false, "scheduler");
      notify_status();
      wait_hangup();
    });
  };
  wait_hangup();
  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    spdlog::info("daemon.stopping signal={}", signo);
    sd_notify(0, "STOPPING=1");
    scheduler.stop();
    watchdog.cancel();
    hangup.cancel();
    server.stop();
    io.stop();
  });

  // 9. Ready: the first pass catches up on anything overdue.
  scheduler.start();
  const std::string where = server_options.inherited_fd ? std::string("socket from systemd") : settings.socket;
  spdlog::info("daemon.ready version={} policy={} categories={} socket={} now={}{}", RETENTIOND_VERSION,
               policy->hash.substr(0, 12), policy->categories.size(), where,
               rd::calendar::format_instant(clock->now()), scheduler.paused() ? " paused=reload_guard" : "");
  sd_notify(0, "READY=1");
  notify_status();
  io.run();
  spdlog::info("daemon.stopped");
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options("retentiond", "Retention and erasure daemon: enforces the retention periods of a policy file.");
  options.add_options()
      ("c,config", "policy file (.toml, .yaml, .yml)", cxxopts::value<std::string>())
      ("check", "validate the policy file, print every problem and exit (opens no socket, no database)")
      ("now", "start the clock at this instant (then it advances in real time)", cxxopts::value<std::string>())
      ("confirm-policy", "confirm a policy change that trips the reload guard at start-up")
      ("state-dir", "override daemon.state_dir", cxxopts::value<std::string>())
      ("socket", "override daemon.socket", cxxopts::value<std::string>())
      ("log-level", "override daemon.log_level (trace, debug, info, warn, error)", cxxopts::value<std::string>())
      ("version", "print the version and exit")
      ("h,help", "print this help and exit");
  try {
    const auto opts = options.parse(argc, argv);
    if (opts.count("help")) {
      std::cout << options.help() << '\n';
      return kOk;
    }
    if (opts.count("version")) {
      std::cout << "retentiond " << RETENTIOND_VERSION << '\n';
      return kOk;
    }
    if (!opts.count("config")) {
      std::cerr << "retentiond: --config FILE is required (see --help)\n";
      return kUsage;
    }
    if (opts.count("log-level")) {
      const auto level = opts["log-level"].as<std::string>();
      if (level != "trace" && level != "debug" && level != "info" && level != "warn" && level != "warning" && level != "error") {
        std::cerr << "retentiond: unknown --log-level '" << level << "'\n";
        return kUsage;
      }
    }
    if (opts.count("check")) return check(opts["config"].as<std::string>());
    return run(opts);
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << "retentiond: " << e.what() << " (see --help)\n";
    return kUsage;
  } catch (const std::exception& e) {
    std::cerr << "retentiond: fatal: " << e.what() << '\n';
    return kStartupError;
  }
}
