#include "lib/engine/engine.hpp"

#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "lib/audit/audit.hpp"
#include "lib/engine/migrate_store.hpp"
#include "lib/store/postgresql/pg_store.hpp"
#include "lib/store/sqlite/sqlite_store.hpp"
#include "lib/vault/key_file.hpp"
#include "lib/vault/vault.hpp"

namespace retentiond::engine {

// What the engine opens, in the order it opens them (and closes them in
// reverse): the keys, the writer's store and its vault, a reader on a
// connection of its own, the audit log.
struct Engine::Parts {
  std::unique_ptr<vault::KeyStore> keys;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<vault::Vault> vault;
  std::unique_ptr<store::StoreReader> reader_store;
  std::unique_ptr<vault::RecordReader> reader;
  std::unique_ptr<store::StoreReader> slow_store;    // the slow-read thread's (Mode::thread only)
  std::unique_ptr<vault::RecordReader> slow_reader;
  std::unique_ptr<audit::AuditLog> audit;
};

policy::DaemonSettings settings_for_reload(const policy::DaemonSettings& running, const policy::DaemonSettings& file,
                                           std::vector<std::string>& ignored) {
  policy::DaemonSettings out = running;
  out.fiscal_year_end = file.fiscal_year_end;
  out.log_level = file.log_level;
  out.reload_guard = file.reload_guard;
  out.clock_guard = file.clock_guard;
  out.purge_grace = file.purge_grace;
  const auto note = [&](const char* name, bool differs) {
    if (differs) ignored.emplace_back(name);
  };
  note("state_dir", file.state_dir != running.state_dir);
  note("socket", !file.socket.empty() && file.socket != running.socket);
  note("socket_mode", file.socket_mode != running.socket_mode);
  note("admin_group", file.admin_group != running.admin_group);
  note("reader_group", file.reader_group != running.reader_group);
  note("secret_file", file.secret_file != running.secret_file);
  note("signing_key", file.signing_key != running.signing_key);
  note("max_batch_records", file.max_batch_records != running.max_batch_records);
  note("max_batch_ms", file.max_batch_ms != running.max_batch_ms);
  note("max_request_bytes", file.max_request_bytes != running.max_request_bytes);
  note("max_json_depth", file.max_json_depth != running.max_json_depth);
  note("max_put_many", file.max_put_many != running.max_put_many);
  note("max_connections", file.max_connections != running.max_connections);
  note("idle_timeout", file.idle_timeout_s != running.idle_timeout_s);
  note("max_connections_per_uid", file.max_connections_per_uid != running.max_connections_per_uid);
  note("admin_reserved_connections", file.admin_reserved_connections != running.admin_reserved_connections);
  note("metrics_listen", file.metrics_listen != running.metrics_listen);
  note("store.backend", file.store_backend != running.store_backend);
  note("store.url", file.store_url != running.store_url);
  note("store.key_vacuum_interval", file.store_key_vacuum_interval_s != running.store_key_vacuum_interval_s);
  return out;
}

Engine::Engine(boost::asio::io_context& io, EngineOptions options)
    : m_io(io), m_options(std::move(options)), m_parts(std::make_unique<Parts>()) {}

Engine::~Engine() {
  stop();
  // The writer thread is gone; the rest goes in reverse order of opening.
  m_dispatcher.reset();
  m_context.reset();
  m_scheduler.reset();
  m_writer.reset();
  m_change.reset();
  m_service.reset();
}

Result<std::unique_ptr<Engine>> Engine::open(boost::asio::io_context& io, EngineOptions options) {
  if (options.clock == nullptr || !options.policy) return Error::internal("Engine::open: a clock and a policy are required");
  if (options.secret.size() < 32) return Error::internal("Engine::open: a secret of at least 32 bytes is required");
  std::unique_ptr<Engine> engine(new Engine(io, std::move(options)));
  if (auto st = engine->open_parts(); !st) return std::move(st).error();
  if (const auto& file = engine->m_options.replay_audit) {
    auto replayed = engine->replay_audit(*file);
    if (!replayed) {
      Error e = std::move(replayed).error();
      e.message = "replay of " + file->string() + (e.reason == "bad_replay" ? " refused: " : " failed: ") + e.message;
      return e;
    }
    // Logged at once: a start that fails after the replay (a guard) still
    // says what it did and what is left to do by hand.
    const auto& r = *replayed;
    spdlog::info("replay.done file={} restored_head={} file_head={} resumed_after={} replayed={} nothing_to_do={} "
                 "not_replayed={} manual={}",
                 file->string(), r.base_seq, r.file_head, r.resumed_after, r.replayed, r.nothing_to_do, r.not_replayed,
                 r.manual.size());
    for (const auto& m : r.manual) spdlog::warn("replay.manual {}", m);
    engine->m_replayed = std::move(*replayed);
  }
  if (auto st = engine->startup_guard(); !st) return std::move(st).error();
  store::Store& store = *engine->m_parts->store;
  if (store.shared()) {
    // Other daemons may share the database: this one acts only while the
    // policy adopted there is the one it runs.
    auto adopted = store.get_meta("policy_hash");
    if (!adopted) return std::move(adopted).error();
    if (*adopted) store.expect_policy(**adopted);
    spdlog::info("store.shared backend=postgresql: write transactions are serialised with the other daemons "
                 "on this database");
  } else {
    // Jobs the last run had claimed for delivery and never settled (it
    // stopped or died meanwhile) are delivered again, with the same ids. (On
    // a shared database another daemon may be delivering them: there they
    // are delivered again when their lease ends.)
    auto released = engine->m_service->release_push_jobs();
    if (!released) return std::move(released).error();
    if (*released > 0) spdlog::info("connector.redeliver jobs={} (claimed before the last stop, never settled)", *released);
  }
  return engine;
}

Status Engine::open_parts() {
  const auto& settings = m_options.policy->daemon;
  const std::filesystem::path dir = settings.state_dir;
  Parts& p = *m_parts;
  // The backend: the writer's store and the keys, then readers of their own.
  const bool postgresql = settings.store_backend == policy::StoreBackend::postgresql;
  const auto open_reader = [&]() -> Result<std::unique_ptr<store::StoreReader>> {
    return postgresql ? store::open_postgresql_reader(settings.store_url) : store::open_sqlite_reader(dir / "retention.db");
  };
  if (postgresql) {
    // The store first: it migrates the schema and takes the writer lock.
    auto store = store::open_postgresql_store(settings.store_url);
    if (!store) return std::move(store).error();
    p.store = std::move(*store);
    if (auto st = check_shared_secret(*p.store, m_options.secret); !st) return st;
    auto keys = store::open_postgresql_key_store(settings.store_url,
                                                 std::chrono::seconds(settings.store_key_vacuum_interval_s));
    if (!keys) return std::move(keys).error();
    p.keys = std::move(*keys);
  } else {
    auto keys = vault::KeyFile::open(dir / "keys");
    if (!keys) return std::move(keys).error();
    p.keys = std::make_unique<vault::KeyFile>(std::move(*keys));
    auto store = store::open_sqlite_store(dir / "retention.db");
    if (!store) return std::move(store).error();
    p.store = std::move(*store);
  }
  p.vault = std::make_unique<vault::Vault>(*p.store, *p.keys, m_options.secret);
  if (auto st = p.vault->open(); !st) return st;
  auto reader = open_reader();
  if (!reader) return std::move(reader).error();
  p.reader_store = std::move(*reader);
  p.reader = std::make_unique<vault::RecordReader>(*p.reader_store, *p.keys, m_options.secret);
  const bool threads = m_options.writer_mode == scheduler::Writer::Mode::thread;
  if (threads) {
    auto slow = open_reader();
    if (!slow) return std::move(slow).error();
    p.slow_store = std::move(*slow);
    p.slow_reader = std::make_unique<vault::RecordReader>(*p.slow_store, *p.keys, m_options.secret);
  }
  p.audit = std::make_unique<audit::AuditLog>(*p.store);

  m_service = std::make_unique<actions::Service>(*p.vault, *p.reader, *p.audit, *m_options.clock, m_options.policy,
                                                 p.slow_reader.get());
  if (auto st = m_service->start_action_counts(); !st) return st;
  m_change = std::make_unique<actions::PolicyChange>(*m_service, *p.vault, *p.audit);
  m_writer = std::make_unique<scheduler::Writer>(m_io, m_options.writer_mode);
  scheduler::SchedulerOptions so;
  so.max_batch_records = static_cast<std::size_t>(settings.max_batch_records);
  so.max_batch_time = std::chrono::milliseconds(settings.max_batch_ms);
  if (m_options.check_interval) so.check_interval = *m_options.check_interval;
  m_scheduler = std::make_unique<scheduler::Scheduler>(m_io, *m_writer, *m_service, so);
  m_deliverer = std::make_unique<scheduler::Deliverer>(m_io, *m_writer, *m_service, "retentiond/" + m_options.version);
  m_scheduler->on_pass_end = [this] {
    m_deliverer->wake();  // the pass may have decided jobs
    if (on_pass_end) on_pass_end();
  };
  const auto started_at = m_options.clock->now();
  m_context = std::make_unique<protocol::Context>(
      protocol::Context{*m_service, *m_writer, *m_scheduler, m_options.version, started_at, started_at, {}, {}, {}, {}, {}, {}, {}});
  m_context->jobs_changed = [this] { m_deliverer->wake(); };
  m_context->reload = [this](bool confirm, const protocol::Caller& caller, std::function<void(Result<nlohmann::json>)> done) {
    reload(confirm, caller.actor(), std::move(done));
  };
  if (threads) {
    m_offload = std::make_unique<boost::asio::thread_pool>(1);
    m_slow = std::make_unique<boost::asio::thread_pool>(1);
    m_context->offload = [this](std::function<void()> work) { boost::asio::post(*m_offload, std::move(work)); };
    m_context->slow = [this](std::function<void()> work) { boost::asio::post(*m_slow, std::move(work)); };
    m_context->to_loop = [this](std::function<void()> work) { boost::asio::post(m_io, std::move(work)); };
  }
  m_context->after = [this](std::chrono::milliseconds delay, std::function<void()> work) {
    auto timer = std::make_shared<boost::asio::steady_timer>(m_io, delay);
    // A timer cancelled by the loop's end drops its work uncalled.
    timer->async_wait([timer, work = std::move(work)](const boost::system::error_code& ec) {
      if (!ec) work();
    });
  };
  m_context->signing_key = m_options.signing_key;
  m_dispatcher = std::make_unique<protocol::Dispatcher>(
      *m_context,
      protocol::Limits{static_cast<std::size_t>(settings.max_json_depth), static_cast<std::size_t>(settings.max_put_many)});
  return {};
}

// The reload guard at start-up, against the policy the state last ran and
// with the guard in force then. Runs before the writer thread starts.
Status Engine::startup_guard() {
  const auto& policy = m_options.policy;
  auto assessment = m_change->assess(*policy);
  if (!assessment) return std::move(assessment).error();
  auto adopted = m_change->adopted();
  if (!adopted) return std::move(adopted).error();
  if (adopted->is_null()) {  // a new state directory: nothing to audit
    if (auto st = m_change->adopt_first(*policy); !st) return st;
    return startup_clock_guard();
  }
  if (assessment->diff.empty()) return startup_clock_guard();
  auto guard = m_change->guard(policy->daemon.reload_guard);
  if (!guard) return std::move(guard).error();
  if (assessment->newly_due > *guard && !m_options.confirm_policy) {
    spdlog::warn("reload_guard.tripped newly_due={} guard={} {}; starting paused until confirmed "
                 "(config.reload with confirm, or --confirm-policy)",
                 assessment->newly_due, *guard, actions::describe(assessment->diff));
    m_scheduler->set_paused(
        scheduler::Scheduler::Pause{assessment->newly_due, *guard, "reload_guard", std::nullopt, std::nullopt});
    // The clock is asked when the policy is confirmed, before the first
    // pass; --confirm-clock then applies to that check.
    if (m_options.confirm_clock) m_service->confirm_clock_at_next_check("at start-up, confirmed with --confirm-clock");
    return {};
  }
  if (auto st = m_change->adopt(policy, *assessment, actions::Actor{"scheduler"},
                                m_options.confirm_policy ? "at start-up, confirmed with --confirm-policy" : "at start-up");
      !st) {
    return st;
  }
  spdlog::info("config.reloaded at=start-up hash={} {} newly_due={}", policy->hash.substr(0, 12),
               actions::describe(assessment->diff), assessment->newly_due);
  return startup_clock_guard();
}

// The clock guard at start-up, against the latest instant the state's clock
// has shown: a restart after a long stop, or a --now run on a copy.
Status Engine::startup_clock_guard() {
  auto check = m_service->check_clock(m_options.confirm_clock, actions::Actor{"scheduler"},
                                      "at start-up, confirmed with --confirm-clock");
  if (!check) return std::move(check).error();
  using Verdict = actions::ClockCheck::Verdict;
  const auto seen = check->last_seen ? calendar::format_instant(*check->last_seen) : std::string("-");
  switch (check->verdict) {
    case Verdict::tripped:
      spdlog::warn("clock_guard.tripped last_seen={} now={} newly_due={} guard={}; starting paused until the clock is "
                   "confirmed (clock.confirm, retentionctl confirm-clock, or --confirm-clock)",
                   seen, calendar::format_instant(check->now), check->newly_due, check->guard);
      m_scheduler->set_paused(scheduler::Scheduler::clock_pause(*check));
      break;
    case Verdict::confirmed:
      spdlog::info("clock.confirmed at=start-up last_seen={} now={} newly_due={}", seen,
                   calendar::format_instant(check->now), check->newly_due);
      break;
    case Verdict::accepted:
      spdlog::info("clock.jump last_seen={} now={} newly_due={} guard={} (within the guard: nothing paused)", seen,
                   calendar::format_instant(check->now), check->newly_due, check->guard);
      break;
    default: break;  // steady, first; backward is logged by the check
  }
  return {};
}

void Engine::start() {
  // The catch-up pass first, so that its first batch runs before the writer
  // takes any job (Writer::start).
  m_scheduler->start();
  m_writer->start();
  m_deliverer->start();
}

void Engine::stop() {
  // The delivery workers first: they hand their work to the writer.
  if (m_deliverer) m_deliverer->stop();
  if (m_scheduler) m_scheduler->stop();
  if (m_writer) m_writer->stop();
  // A line being parsed and a slow read finish; their answers are dropped
  // with the loop.
  if (m_offload) m_offload->join();
  if (m_slow) m_slow->join();
}

namespace {

// One line of a shipped audit log, as render::audit_rows writes an entry.
Result<store::AuditRow> audit_row_of(const std::string& line) {
  const auto j = nlohmann::json::parse(line, nullptr, false);
  if (!j.is_object()) return Error::invalid_params("bad_replay", "not a JSON object");
  try {
    store::AuditRow r;
    r.seq = j.at("seq").get<std::int64_t>();
    auto at = calendar::parse_instant(j.at("at").get<std::string>());
    if (!at) return Error::invalid_params("bad_replay", "'at': " + at.error().message);
    r.at = *at;
    r.action = j.at("action").get<std::string>();
    const auto opt_string = [&](const char* name) -> std::optional<std::string> {
      const auto& v = j.at(name);
      return v.is_null() ? std::nullopt : std::optional<std::string>(v.get<std::string>());
    };
    r.key = opt_string("key");
    r.category = opt_string("category");
    if (!j.at("phase").is_null()) r.phase = j.at("phase").get<int>();
    r.subject_ref = opt_string("subject_ref");
    r.actor = j.at("actor").get<std::string>();
    r.reason = opt_string("reason");
    r.policy_hash = j.at("policy_hash").get<std::string>();
    r.hash = j.at("hash").get<std::string>();
    return r;
  } catch (const nlohmann::json::exception& e) {
    return Error::invalid_params("bad_replay", std::string("not an audit entry: ") + e.what());
  }
}

}  // namespace

Result<actions::ReplaySummary> Engine::replay_audit(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) return Error::invalid_params("bad_replay", "cannot read " + file.string() + ": " + std::strerror(errno));
  std::vector<store::AuditRow> rows;
  std::string line;
  for (std::size_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto row = audit_row_of(line);
    if (!row) {
      Error e = std::move(row).error();
      e.message = file.string() + ":" + std::to_string(n) + ": " + e.message;
      return e;
    }
    // A stream resumed after a restart may repeat an entry: the same seq
    // twice must be the same entry.
    if (!rows.empty() && row->seq <= rows.back().seq) {
      const std::int64_t back = rows.back().seq - row->seq;
      if (back < static_cast<std::int64_t>(rows.size())) {
        const auto& same = rows[rows.size() - 1 - static_cast<std::size_t>(back)];
        if (same.seq == row->seq && same.hash == row->hash) continue;
      }
      return Error::invalid_params("bad_replay", file.string() + ":" + std::to_string(n) + ": seq " +
                                                     std::to_string(row->seq) + " is out of order");
    }
    rows.push_back(std::move(*row));
  }
  return m_service->replay_audit(rows);
}

void Engine::reload(bool confirm, const std::string& actor, std::function<void(Result<nlohmann::json>)> done) {
  if (on_reload_start) on_reload_start();
  const auto finish = [this, done](Result<nlohmann::json> result) {
    done(std::move(result));
    if (on_reload_end) on_reload_end();
  };
  auto next = policy::load_policy_file(m_options.config_path);
  if (!next.ok()) {
    std::string message = next.first_error();
    const auto errors = std::count_if(next.diagnostics.begin(), next.diagnostics.end(), [](const auto& d) {
      return d.severity == policy::Diagnostic::Severity::error;
    });
    if (errors > 1) message += " (and " + std::to_string(errors - 1) + " more; run retentiond --check)";
    spdlog::error("config.reload_failed {}; the policy in force is unchanged", message);
    return finish(Error::invalid_params("bad_config", message));
  }
  auto candidate = std::make_shared<policy::Policy>(*next.policy);
  if (m_options.overrides) m_options.overrides(candidate->daemon);  // the command line still wins
  std::vector<std::string> ignored;
  candidate->daemon = settings_for_reload(m_service->policy()->daemon, candidate->daemon, ignored);
  if (!ignored.empty()) {
    std::string names;
    for (const auto& n : ignored) names += (names.empty() ? "" : ",") + n;
    spdlog::warn("config.restart_needed keys={} (these [daemon] settings take effect at the next start)", names);
  }
  std::shared_ptr<const policy::Policy> adopted = candidate;
  m_writer->submit<Result<actions::ReloadResult>>(
      [this, adopted, confirm, actor] {
        auto r = m_change->reload(adopted, confirm, actions::Actor{actor}, confirm ? "confirmed" : "");
        // On a shared database: this daemon now acts under the reloaded
        // policy (the one adopted there, when another daemon adopted it first).
        if (r) m_parts->store->expect_policy(adopted->hash);
        return r;
      },
      [this, adopted, actor, finish](Result<actions::ReloadResult> r) {
        if (!r) {
          const Error& e = r.error();
          if (e.code == ErrorCode::confirmation_required) {
            spdlog::warn("config.reload_refused newly_due={} guard={} changed={}{}", e.data.value("newly_due", 0),
                         e.data.value("guard", 0), e.data.value("changed_categories", nlohmann::json::array()).dump(),
                         actor == "scheduler" ? " (SIGHUP never confirms)" : "");
          } else {
            spdlog::error("config.reload_failed {}", e.message);
          }
          return finish(std::move(r).error());
        }
        spdlog::set_level(spdlog::level::from_str(adopted->daemon.log_level));
        m_context->policy_loaded_at = m_options.clock->now();
        if (m_scheduler->paused_by("reload_guard")) m_scheduler->set_paused(std::nullopt);
        m_scheduler->records_changed();
        m_deliverer->policy_changed();
        spdlog::info("config.reloaded actor={} hash={} {} newly_due={}", actor, adopted->hash.substr(0, 12),
                     actions::describe(r->assessment.diff), r->assessment.newly_due);
        finish(nlohmann::json{{"hash", r->hash}, {"changed_categories", r->changed_categories},
                              {"newly_due", r->assessment.newly_due}});
      });
}

std::string Engine::status_line() {
  std::string out = m_scheduler->paused_by("clock_guard") ? "PAUSED by the clock guard (confirm the clock); "
                    : m_scheduler->paused()                ? "PAUSED by the reload guard (confirm the policy); "
                                                           : "";
  auto overview = m_service->overview();
  out += "due now: " + (overview ? std::to_string(overview->backlog) : std::string("?"));
  if (overview && overview->next_due) out += "; next due " + calendar::format_instant(*overview->next_due);
  if (const auto& last = m_scheduler->last()) {
    out += "; last sweep " + calendar::format_instant(last->finished_at) + ": " + std::to_string(last->counts.actions()) +
           " actions";
  }
  return out;
}

}  // namespace retentiond::engine
