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
#include "lib/calendar/clock.hpp"
#include "lib/crypto/crypto.hpp"
#include "lib/crypto/signing.hpp"
#include "lib/engine/engine.hpp"
#include "lib/engine/migrate_store.hpp"
#include "lib/store/postgresql/pg_store.hpp"
#include "lib/policy/policy.hpp"
#include "lib/server/metrics_http.hpp"
#include "lib/server/server.hpp"
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
  if (opts.count("store-url")) {
    settings.store_backend = rd::policy::StoreBackend::postgresql;
    settings.store_url = opts["store-url"].as<std::string>();
  }
}

// --migrate-store FROM: the SQLite state in FROM (a stopped daemon's
// state_dir) into the PostgreSQL database of the configuration, with FROM's
// secret, which becomes this configuration's when it has none yet.
int migrate(const std::filesystem::path& from, const rd::policy::DaemonSettings& settings,
            const std::filesystem::path& state_dir) {
  if (settings.store_backend != rd::policy::StoreBackend::postgresql) {
    spdlog::critical("migrate.failed --migrate-store copies a SQLite state into the PostgreSQL database of the "
                     "configuration: its [store] backend must be \"postgresql\" (or give --store-url)");
    return kConfigError;
  }
  auto secret = rd::crypto::read_file(from / "secret", "secret file of the source state");
  if (!secret) {
    spdlog::critical("migrate.failed {}", secret.error().message);
    return kStartupError;
  }
  const std::filesystem::path target_secret =
      settings.secret_file.empty() ? state_dir / "secret" : std::filesystem::path(settings.secret_file);
  if (std::filesystem::exists(target_secret)) {
    auto existing = rd::crypto::read_file(target_secret, "secret file");
    if (!existing || *existing != *secret) {
      spdlog::critical("migrate.failed {} is not the secret of {} (subject refs would not match): remove it or "
                       "point secret_file at {}; nothing was changed",
                       target_secret.string(), from.string(), (from / "secret").string());
      return kStartupError;
    }
  } else if (auto made = rd::crypto::create_file_once(target_secret, *secret, "secret file"); !made) {
    spdlog::critical("migrate.failed {}", made.error().message);
    return kStartupError;
  }
  spdlog::info("migrate.started from={} to={}", from.string(), rd::store::redact_url(settings.store_url));
  auto done = rd::engine::migrate_store(from, settings, *secret);
  if (!done) {
    spdlog::critical("migrate.failed {}", done.error().message);
    return done.error().code == rd::ErrorCode::invalid_params ? kConfigError : kStartupError;
  }
  const auto& m = *done;
  spdlog::info("migrate.done records active={} archived={} anonymised={} retired={} holds={} audit_entries={} "
               "audit_head={} jobs={} meta={}",
               m.records.active, m.records.archived, m.records.anonymised, m.retired, m.holds, m.audit_entries,
               m.audit_head.substr(0, 16), m.jobs, m.meta);
  std::cout << "migrated " << from.string() << " to " << rd::store::redact_url(settings.store_url) << ": "
            << m.records.active << " active, " << m.records.archived << " archived, " << m.records.anonymised
            << " anonymised, " << m.retired << " in the undo window, " << m.holds << " holds, " << m.audit_entries
            << " audit entries (head " << m.audit_head << "), " << m.jobs << " connector jobs\n";
  return kOk;
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

  // 3. State directory (0700) and its lock, before anything in it is opened
  //    (the secret, the database, the keys); held until the process ends.
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
  auto state_lock = rd::StateLock::acquire(state_dir);
  if (!state_lock) {
    spdlog::critical("startup.failed {}", state_lock.error().message);
    return kStartupError;
  }

  if (opts.count("migrate-store") > 0) return migrate(opts["migrate-store"].as<std::string>(), settings, state_dir);

  // 4. The secret.
  bool created = false;
  const std::filesystem::path secret_path =
      settings.secret_file.empty() ? state_dir / "secret" : std::filesystem::path(settings.secret_file);
  auto secret = rd::crypto::load_or_create_secret(secret_path, created);
  if (!secret) {
    spdlog::critical("startup.failed {}", secret.error().message);
    return kStartupError;
  }
  if (created) spdlog::info("secret.created path={}", secret_path.string());
  //    The signing key of receipts and checkpoints, created with the secret.
  const std::filesystem::path signing_path =
      settings.signing_key.empty() ? state_dir / "signing.key" : std::filesystem::path(settings.signing_key);
  auto signing_key = rd::crypto::SigningKey::load_or_create(signing_path, created);
  if (!signing_key) {
    spdlog::critical("startup.failed {}", signing_key.error().message);
    return kStartupError;
  }
  if (created) spdlog::info("signing_key.created path={}", signing_path.string());

  // 5. The engine: the database and its migrations, the keys, the service,
  //    the writer thread, the scheduler, and the reload guard against the
  //    policy the state last ran (lib/engine).
  asio::io_context io;
  rd::engine::EngineOptions engine_options;
  engine_options.config_path = config;
  engine_options.policy = policy;
  engine_options.overrides = [&opts](rd::policy::DaemonSettings& s) { apply_overrides(opts, s); };
  engine_options.clock = clock.get();
  engine_options.secret = *secret;
  engine_options.signing_key = std::make_shared<const rd::crypto::SigningKey>(std::move(*signing_key));
  engine_options.version = RETENTIOND_VERSION;
  engine_options.confirm_policy = opts.count("confirm-policy") > 0;
  engine_options.confirm_clock = opts.count("confirm-clock") > 0;
  if (opts.count("replay-audit") > 0) engine_options.replay_audit = opts["replay-audit"].as<std::string>();
  auto opened = rd::engine::Engine::open(io, std::move(engine_options));
  if (!opened) {
    spdlog::critical("startup.failed {}", opened.error().message);
    return opened.error().reason == "bad_config" ? kConfigError : kStartupError;
  }
  rd::engine::Engine& engine = **opened;

  //    After a backup restore: the destroying actions the restored database
  //    had forgotten, redone from a copy of the log (in Engine::open, before
  //    anything is served; logged there), summed up for the operator.
  if (const auto& replayed = engine.replayed()) {
    const std::string file = opts["replay-audit"].as<std::string>();
    const auto& r = *replayed;
    std::cout << "replay of " << file << ": restored log head seq " << r.base_seq << ", copy up to seq " << r.file_head
              << (r.resumed_after > r.base_seq ? ", resumed after seq " + std::to_string(r.resumed_after) : std::string())
              << ": " << r.replayed << " actions redone, " << r.nothing_to_do << " with nothing left to act on, "
              << r.not_replayed << " entries not to redo\n";
    for (const auto& m : r.manual) std::cout << "  to do by hand: " << m << '\n';
    std::cout.flush();
  }

  // 6. The admin socket: systemd's, or our own.
  rd::server::ServerOptions server_options;
  server_options.socket_path = settings.socket;
  server_options.socket_mode = settings.socket_mode;
  server_options.admin_group = settings.admin_group;
  server_options.reader_group = settings.reader_group;
  server_options.max_request_bytes = static_cast<std::size_t>(settings.max_request_bytes);
  server_options.max_connections = static_cast<std::size_t>(settings.max_connections);
  server_options.max_connections_per_uid = static_cast<std::size_t>(settings.max_connections_per_uid);
  server_options.admin_reserved_connections = static_cast<std::size_t>(settings.admin_reserved_connections);
  server_options.idle_timeout = std::chrono::seconds(settings.idle_timeout_s);
  if (sd_listen_fds(1) == 1) {
    server_options.inherited_fd = SD_LISTEN_FDS_START;
    server_options.socket_path.clear();
  }
  rd::server::Server server(io, engine.dispatcher(), server_options);
  if (auto st = server.start(); !st) {
    spdlog::critical("startup.failed {}", st.error().message);
    return kStartupError;
  }

  // 6b. Prometheus GET /metrics, when [daemon] metrics_listen asks for it.
  //     An address that cannot be bound stops the start, as the socket's does.
  std::optional<rd::server::MetricsEndpoint> metrics;
  if (!settings.metrics_listen.empty()) {
    metrics.emplace(io, settings.metrics_host, settings.metrics_port,
                    [&engine](std::function<void(rd::Result<std::string>)> done) {
                      engine.dispatcher().metrics(std::move(done));
                    });
    if (auto st = metrics->start(); !st) {
      spdlog::critical("startup.failed {}", st.error().message);
      return kStartupError;
    }
  }

  // 7. systemd: STATUS= after every pass and reload, RELOADING=1/READY=1
  //    around reloads, WATCHDOG=1 at half the interval.
  const auto notify_status = [&] { sd_notify(0, ("STATUS=" + engine.status_line()).c_str()); };
  engine.on_pass_end = notify_status;
  engine.on_reload_start = [] { sd_notify(0, "RELOADING=1"); };
  engine.on_reload_end = [&] {
    sd_notify(0, "READY=1");
    notify_status();
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
      engine.reload(false, "scheduler", [](const rd::Result<nlohmann::json>&) {});
      wait_hangup();
    });
  };
  wait_hangup();
  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    spdlog::info("daemon.stopping signal={}", signo);
    sd_notify(0, "STOPPING=1");
    engine.stop();
    watchdog.cancel();
    hangup.cancel();
    server.stop();
    if (metrics) metrics->stop();
    io.stop();
  });

  // 9. Ready (STATUS= tells what is due before the first pass), then the
  //    first pass catches up on anything overdue: its first batch runs
  //    before the first request is read (Engine::start).
  const std::string where = server_options.inherited_fd ? std::string("socket from systemd") : settings.socket;
  spdlog::info("daemon.ready version={} policy={} categories={} socket={} now={}{}", RETENTIOND_VERSION,
               policy->hash.substr(0, 12), policy->categories.size(), where,
               rd::calendar::format_instant(clock->now()),
               engine.scheduler().paused() ? " paused=" + engine.scheduler().pause()->reason : std::string());
  sd_notify(0, "READY=1");
  notify_status();
  engine.start();
  io.run();
  engine.stop();
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
      ("confirm-clock", "confirm a forward clock jump that trips the clock guard at start-up")
      ("replay-audit", "after restoring a backup: redo the erasures, purges and hold changes that FILE (a copy of "
                       "the audit log in JSON lines, as shipped with retentionctl's audit follow) holds past the "
                       "restored log",
       cxxopts::value<std::string>(), "FILE")
      ("migrate-store", "copy the SQLite state in DIR (a stopped daemon's state_dir) into the PostgreSQL database "
                        "of --config, which must be empty, then exit",
       cxxopts::value<std::string>(), "DIR")
      ("state-dir", "override daemon.state_dir", cxxopts::value<std::string>())
      ("socket", "override daemon.socket", cxxopts::value<std::string>())
      ("store-url", "override [store]: backend postgresql, this url (a libpq connection string or URI)",
       cxxopts::value<std::string>(), "URL")
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
