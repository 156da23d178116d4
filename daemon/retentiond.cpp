// retentiond: the retention daemon. This file only wires the library
// together (see docs/architecture.md); each start-up step is commented.

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "lib/util/asio.hpp"
#include <cxxopts.hpp>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>

#include "daemon/logging.hpp"
#include "daemon/version.hpp"
#include "lib/actions/service.hpp"
#include "lib/audit/audit.hpp"
#include "lib/calendar/clock.hpp"
#include "lib/crypto/crypto.hpp"
#include "lib/policy/policy.hpp"
#include "lib/protocol/dispatcher.hpp"
#include "lib/scheduler/sweeper.hpp"
#include "lib/server/server.hpp"
#include "lib/store/sqlite_store.hpp"

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

// Wakes at the earliest due time (at least every check interval), sweeps
// what is due, and re-arms. Bounded, yielding sweeps arrive with issue 4.
class Waker {
 public:
  Waker(asio::io_context& io, rd::actions::Service& service, rd::scheduler::Sweeper& sweeper)
      : m_timer(io), m_service(service), m_sweeper(sweeper) {}

  void arm(std::chrono::seconds delay) {
    m_timer.expires_after(delay);
    m_timer.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) fire();
    });
  }
  void cancel() { m_timer.cancel(); }

 private:
  static constexpr std::chrono::seconds kCheckInterval{60};

  void fire() {
    auto report = m_sweeper.run_to_completion(rd::actions::Actor{"scheduler"});
    if (!report) spdlog::error("sweep.failed {}", report.error().message);  // retried at the next wake
    // Wake at the next due time, or at the check interval. A due time
    // already past belongs to a held record the sweep skipped: wait for the
    // check interval rather than spinning.
    std::chrono::seconds delay = kCheckInterval;
    if (auto next = m_service.store().next_due(); next && *next) {
      const auto until = (**next).seconds - m_service.clock().now().seconds;
      if (until > 0) delay = std::min(std::chrono::seconds(until), kCheckInterval);
    }
    arm(delay);
  }

  asio::steady_timer m_timer;
  rd::actions::Service& m_service;
  rd::scheduler::Sweeper& m_sweeper;
};

int run(const cxxopts::ParseResult& opts) {
  const std::string config = opts["config"].as<std::string>();

  // 1. Load and validate the policy; every problem is printed.
  auto loaded = rd::policy::load_policy_file(config);
  print_diagnostics(loaded);
  if (!loaded.ok()) return kConfigError;
  auto policy = std::make_shared<rd::policy::Policy>(*loaded.policy);
  if (opts.count("state-dir")) policy->daemon.state_dir = opts["state-dir"].as<std::string>();
  if (opts.count("socket")) policy->daemon.socket = opts["socket"].as<std::string>();
  if (opts.count("log-level")) policy->daemon.log_level = opts["log-level"].as<std::string>();
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

  // 3. State directory (0700), database and its migrations, secret.
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
  rd::scheduler::Sweeper sweeper(service, static_cast<std::size_t>(settings.max_batch_records));
  rd::protocol::Context ctx{service, audit, sweeper, RETENTIOND_VERSION, started_at, started_at};
  rd::protocol::Dispatcher dispatcher(ctx, {static_cast<std::size_t>(settings.max_json_depth),
                                            static_cast<std::size_t>(settings.max_put_many)});
  if (auto st = (**store).set_meta("policy_hash", policy->hash); !st) {
    spdlog::critical("startup.failed {}", st.error().message);
    return kStartupError;
  }

  // 5. The admin socket: systemd's, or our own.
  asio::io_context io;
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

  // 6. Signals, the wake-up timer (its first turn catches up on anything
  //    overdue), readiness.
  Waker waker(io, service, sweeper);
  waker.arm(std::chrono::seconds(0));
  // SIGHUP will reload through the reload guard (issue 4); until then it is
  // caught and logged, so it cannot kill the daemon by default action.
  asio::signal_set hangup(io, SIGHUP);
  std::function<void()> wait_hangup = [&] {
    hangup.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      spdlog::warn("config.reload_unsupported SIGHUP received; reloading is not implemented yet, the policy is unchanged");
      wait_hangup();
    });
  };
  wait_hangup();
  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    spdlog::info("daemon.stopping signal={}", signo);
    sd_notify(0, "STOPPING=1");
    waker.cancel();
    hangup.cancel();
    server.stop();
    io.stop();
  });
  const std::string where = server_options.inherited_fd ? std::string("socket from systemd") : settings.socket;
  spdlog::info("daemon.ready version={} policy={} categories={} socket={} now={}", RETENTIOND_VERSION,
               policy->hash.substr(0, 12), policy->categories.size(), where,
               rd::calendar::format_instant(clock->now()));
  sd_notify(0, "READY=1");
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
