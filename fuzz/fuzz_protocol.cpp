// Fuzz target: the JSON-RPC request handler, lib/protocol's
// Dispatcher::handle_line, in front of a real Service over a SqliteStore.
//
// Each input is up to kMaxLines lines, handed one after the other to one
// dispatcher as an admin caller, so a put can be followed by its explain,
// erase or sweep. Every input starts from the same state: a fresh copy of a
// migrated, empty state directory made once per process (under $TMPDIR),
// the bundled example policy (config/retentiond.toml) adopted, the clock
// fixed at 2030-01-01T00:00:00Z. config.reload alternates between the
// example and a variant with other durations, through PolicyChange and the
// reload guard, as the daemon does.
//
// Checked for every line, beyond "no crash, no UB, no exception":
//  - the reply callback is called exactly once, at once or after the
//    io_context's ready handlers ran (sweep);
//  - it is nothing only for a notification or a batch of notifications;
//  - otherwise it is one line of valid JSON: a JSON-RPC 2.0 response object
//    (or, for a batch, a non-empty array of them) with "jsonrpc": "2.0", an
//    id (the request's, when it had a valid one), and exactly one of
//    "result" and an "error" {code: integer, message: string, data: {reason:
//    string, ...}};
//  - the error is never internal_error: that code means a handler threw.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>

#include <spdlog/spdlog.h>

#include "fuzz/check.hpp"
#include "lib/actions/policy_change.hpp"
#include "lib/actions/service.hpp"
#include "lib/audit/audit.hpp"
#include "lib/calendar/clock.hpp"
#include "lib/policy/policy.hpp"
#include "lib/protocol/dispatcher.hpp"
#include "lib/scheduler/scheduler.hpp"
#include "lib/store/sqlite_store.hpp"
#include "lib/util/asio.hpp"

namespace rd = retentiond;
using nlohmann::json;

namespace {

constexpr std::size_t kMaxLines = 32;
const std::string kSecret(32, 's');
constexpr rd::calendar::Instant kNow{1893456000};  // 2030-01-01T00:00:00Z
const char* const kStateFiles[] = {"retention.db", "archive.db", "keys"};

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::shared_ptr<const rd::policy::Policy> load(const std::string& text, const std::string& name) {
  auto r = rd::policy::load_policy_text(text, rd::policy::ConfFormat::toml, name);
  if (!r.ok()) {
    std::fprintf(stderr, "fuzz_protocol: %s\n", r.first_error().c_str());
    std::abort();
  }
  return r.policy;
}

// Process-wide: the directories and the two policies.
struct Setup {
  std::filesystem::path root;
  std::filesystem::path pristine;  // the migrated, empty state
  std::filesystem::path state;     // the copy each input works on
  std::shared_ptr<const rd::policy::Policy> policy;
  std::shared_ptr<const rd::policy::Policy> variant;

  Setup() {
    spdlog::set_level(spdlog::level::off);
    std::string tmpl = (std::filesystem::temp_directory_path() / "retentiond-fuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    root = tmpl;
    pristine = root / "pristine";
    state = root / "state";
    std::filesystem::create_directory(pristine);
    std::filesystem::create_directory(state);

    const std::string text = read_file(RETENTIOND_SOURCE_DIR "/config/retentiond.toml");
    policy = load(text, "retentiond.toml");
    std::string other = text;
    for (std::size_t at = other.find("3 years"); at != std::string::npos; at = other.find("3 years", at)) {
      other.replace(at, 7, "2 years");
    }
    variant = load(other, "variant.toml");

    // The start-up of the daemon on a new state directory: migrate, adopt.
    rd::store::SqliteOptions options;
    options.secret = kSecret;
    auto store = rd::store::open_sqlite_store(pristine / "retention.db", options);
    if (!store) std::abort();
    rd::audit::AuditLog audit(**store, kSecret);
    rd::calendar::ManualClock clock(kNow);
    rd::actions::Service service(**store, audit, clock, policy, kSecret);
    rd::actions::PolicyChange change(service);
    auto assessment = change.assess(*policy);
    if (!assessment || !change.adopt(policy, *assessment, rd::actions::Actor{"scheduler"}, "")) std::abort();
  }
  ~Setup() {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }
};

Setup& setup() {
  static Setup s;
  return s;
}

// What one input works on, built from a fresh copy of the pristine state.
struct World {
  rd::calendar::ManualClock clock{kNow};
  boost::asio::io_context io;
  std::unique_ptr<rd::store::Store> store;
  std::unique_ptr<rd::audit::AuditLog> audit;
  std::unique_ptr<rd::actions::Service> service;
  std::unique_ptr<rd::scheduler::Scheduler> scheduler;
  std::unique_ptr<rd::protocol::Context> ctx;
  std::unique_ptr<rd::protocol::Dispatcher> dispatcher;
  bool use_variant = true;

  World() {
    Setup& s = setup();
    for (const auto& entry : std::filesystem::directory_iterator(s.state)) std::filesystem::remove(entry.path());
    for (const char* f : kStateFiles) std::filesystem::copy_file(s.pristine / f, s.state / f);
    rd::store::SqliteOptions options;
    options.secret = kSecret;
    auto opened = rd::store::open_sqlite_store(s.state / "retention.db", options);
    FUZZ_CHECK(opened.ok(), opened.ok() ? "" : opened.error().message);
    store = std::move(opened).value();
    audit = std::make_unique<rd::audit::AuditLog>(*store, kSecret);
    service = std::make_unique<rd::actions::Service>(*store, *audit, clock, s.policy, kSecret);
    scheduler = std::make_unique<rd::scheduler::Scheduler>(io, *service, rd::scheduler::SchedulerOptions{});
    ctx = std::make_unique<rd::protocol::Context>(
        rd::protocol::Context{*service, *audit, *scheduler, "fuzz", kNow, kNow, {}});
    ctx->reload = [this](bool confirm, const rd::protocol::Caller& caller) { return reload(confirm, caller); };
    const auto& d = s.policy->daemon;
    dispatcher = std::make_unique<rd::protocol::Dispatcher>(
        *ctx, rd::protocol::Limits{static_cast<std::size_t>(d.max_json_depth), static_cast<std::size_t>(d.max_put_many)});
  }
  ~World() {
    scheduler->stop();
  }

  // The daemon's config.reload, minus the file: alternate between the variant and the example.
  rd::Result<json> reload(bool confirm, const rd::protocol::Caller& caller) {
    const auto candidate = use_variant ? setup().variant : setup().policy;
    rd::actions::PolicyChange change(*service);
    auto assessment = change.assess(*candidate);
    if (!assessment) return std::move(assessment).error();
    const std::int64_t guard = service->policy().daemon.reload_guard;
    if (assessment->newly_due > guard && !confirm) {
      return rd::Error{rd::ErrorCode::confirmation_required, "confirmation_required", "over the guard",
                       {{"newly_due", assessment->newly_due}, {"guard", guard}}};
    }
    if (auto st = change.adopt(candidate, *assessment, rd::actions::Actor{caller.actor()}, ""); !st) {
      return std::move(st).error();
    }
    use_variant = !use_variant;
    scheduler->records_changed();
    return json{{"hash", candidate->hash}, {"newly_due", assessment->newly_due}};
  }
};

bool is_notification(const json& j) {
  return j.is_object() && !j.contains("id") && j.contains("jsonrpc") && j["jsonrpc"] == "2.0" &&
         j.contains("method") && j["method"].is_string();
}

// The request as JSON, when it is valid JSON within the depth limit (else null).
json parse_request(std::string_view line) {
  try {
    return json::parse(line, [](int depth, json::parse_event_t, json&) {
      if (depth > 64) throw std::runtime_error("deep");
      return true;
    });
  } catch (const std::exception&) {
    return json();
  }
}

void check_response(const json& r, const std::string& line) {
  FUZZ_CHECK(r.is_object(), "not an object: " + line);
  for (const auto& [k, v] : r.items()) {
    FUZZ_CHECK(k == "jsonrpc" || k == "id" || k == "result" || k == "error", "key " + k + ": " + line);
  }
  FUZZ_CHECK(r.contains("jsonrpc") && r["jsonrpc"] == "2.0", line);
  FUZZ_CHECK(r.contains("id") && (r["id"].is_string() || r["id"].is_number() || r["id"].is_null()), line);
  FUZZ_CHECK(r.contains("result") != r.contains("error"), line);
  if (r.contains("error")) {
    const json& e = r["error"];
    FUZZ_CHECK(e.is_object() && e.contains("code") && e["code"].is_number_integer(), line);
    FUZZ_CHECK(e.contains("message") && e["message"].is_string(), line);
    FUZZ_CHECK(e.contains("data") && e["data"].is_object() && e["data"].contains("reason") &&
                   e["data"]["reason"].is_string(),
               line);
    FUZZ_CHECK(e["code"] != static_cast<int>(rd::ErrorCode::internal_error), line);
  }
}

void check_reply(std::string_view request, const std::optional<std::string>& reply) {
  const json req = parse_request(request);
  if (!reply) {
    bool all_notifications = is_notification(req);
    if (req.is_array() && !req.empty()) {
      all_notifications = true;
      for (const auto& r : req) all_notifications = all_notifications && is_notification(r);
    }
    FUZZ_CHECK(all_notifications, "no reply to: " + std::string(request));
    return;
  }
  const std::string& line = *reply;
  FUZZ_CHECK(line.find('\n') == std::string::npos && line.find('\r') == std::string::npos, "not one line: " + line);
  json parsed;
  try {
    parsed = json::parse(line);
  } catch (const json::exception& e) {
    FUZZ_CHECK(false, std::string("not JSON (") + e.what() + "): " + line);
  }
  if (parsed.is_array()) {
    FUZZ_CHECK(req.is_array() && !parsed.empty() && parsed.size() <= req.size(), line);
    for (const auto& r : parsed) check_response(r, line);
    return;
  }
  check_response(parsed, line);
  if (req.is_object() && req.contains("id") && (req["id"].is_string() || req["id"].is_number())) {
    FUZZ_CHECK(parsed["id"] == req["id"], line);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setup();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  World world;
  const rd::protocol::Caller admin{rd::protocol::Role::admin, 1000};
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (std::size_t n = 0; n < kMaxLines && !rest.empty(); ++n) {
    const std::size_t eol = rest.find('\n');
    const std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);

    int calls = 0;
    std::optional<std::string> reply;
    world.dispatcher->handle_line(line, admin, [&](std::optional<std::string> r) {
      ++calls;
      reply = std::move(r);
    });
    // A sweep answers when its pass ends: run the turns it posted.
    world.io.restart();
    while (calls == 0 && world.io.poll() > 0) {
    }
    FUZZ_CHECK(calls == 1, std::to_string(calls) + " replies to: " + std::string(line));
    check_reply(line, reply);
  }
  return 0;
}
