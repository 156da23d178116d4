// Fuzz target: the JSON-RPC request handler, lib/protocol's
// Dispatcher::handle_line, in front of the daemon's own engine
// (lib/engine: a real Service over a SqliteStore, the vault, the writer,
// the scheduler), on one thread.
//
// Each input is up to kMaxLines lines, handed one after the other to one
// dispatcher as an admin caller, so a put can be followed by its explain,
// erase or sweep. Every input starts from the same state: a fresh copy of a
// migrated, empty state directory made once per process (under $TMPDIR),
// the bundled example policy (config/retentiond.toml) adopted, the clock
// fixed at 2030-01-01T00:00:00Z. config.reload alternates between the
// example and a variant with other durations, through the engine's reload
// and the reload guard, as the daemon does.
//
// Checked for every line, beyond "no crash, no UB, no exception":
//  - the reply callback is called exactly once, at once or after the
//    io_context's ready handlers ran (changes, sweep);
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
#include "lib/calendar/clock.hpp"
#include "lib/engine/engine.hpp"
#include "lib/policy/policy.hpp"
#include "lib/util/asio.hpp"

namespace rd = retentiond;
using nlohmann::json;

namespace {

constexpr std::size_t kMaxLines = 32;
const std::string kSecret(32, 's');
constexpr rd::calendar::Instant kNow{1893456000};  // 2030-01-01T00:00:00Z
const char* const kStateFiles[] = {"retention.db", "keys"};

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::shared_ptr<const rd::policy::Policy> load(const std::string& text, const std::string& name,
                                               const std::filesystem::path& state) {
  auto r = rd::policy::load_policy_text(text, rd::policy::ConfFormat::toml, name);
  if (!r.ok()) {
    std::fprintf(stderr, "fuzz_protocol: %s\n", r.first_error().c_str());
    std::abort();
  }
  auto policy = std::make_shared<rd::policy::Policy>(*r.policy);
  policy->daemon.state_dir = state.string();
  return policy;
}

// The engine the daemon runs, on one thread (the writer's jobs on the
// io_context), over the state in `dir`.
std::unique_ptr<rd::engine::Engine> open_engine(boost::asio::io_context& io, const rd::calendar::Clock& clock,
                                                std::shared_ptr<const rd::policy::Policy> policy,
                                                const std::filesystem::path& config) {
  rd::engine::EngineOptions options;
  options.config_path = config;
  options.policy = std::move(policy);
  options.clock = &clock;
  options.secret = kSecret;
  options.version = "fuzz";
  options.writer_mode = rd::scheduler::Writer::Mode::io;
  auto engine = rd::engine::Engine::open(io, std::move(options));
  FUZZ_CHECK(engine.ok(), engine.ok() ? "" : engine.error().message);
  return std::move(engine).value();
}

// Process-wide: the directories and the two policies.
struct Setup {
  std::filesystem::path root;
  std::filesystem::path pristine;  // the migrated, empty state
  std::filesystem::path state;     // the copy each input works on
  std::filesystem::path config;    // the policy file config.reload reads
  std::string example_text, variant_text;
  std::shared_ptr<const rd::policy::Policy> policy;

  Setup() {
    spdlog::set_level(spdlog::level::off);
    std::string tmpl = (std::filesystem::temp_directory_path() / "retentiond-fuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    root = tmpl;
    pristine = root / "pristine";
    state = root / "state";
    config = root / "policy.toml";
    std::filesystem::create_directory(pristine);
    std::filesystem::create_directory(state);

    example_text = read_file(RETENTIOND_SOURCE_DIR "/config/retentiond.toml");
    variant_text = example_text;
    for (std::size_t at = variant_text.find("3 years"); at != std::string::npos; at = variant_text.find("3 years", at)) {
      variant_text.replace(at, 7, "2 years");
    }
    (void)load(variant_text, "variant.toml", state);  // it must load
    policy = load(example_text, "retentiond.toml", state);

    // The start-up of the daemon on a new state directory: migrate, adopt.
    // Closed cleanly, so the database file is whole without its WAL.
    boost::asio::io_context io;
    rd::calendar::ManualClock clock(kNow);
    auto pristine_policy = std::make_shared<rd::policy::Policy>(*policy);
    pristine_policy->daemon.state_dir = pristine.string();
    open_engine(io, clock, pristine_policy, config).reset();
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
  std::unique_ptr<rd::engine::Engine> engine;
  bool use_variant = true;

  World() {
    Setup& s = setup();
    for (const auto& entry : std::filesystem::directory_iterator(s.state)) std::filesystem::remove(entry.path());
    for (const char* f : kStateFiles) std::filesystem::copy_file(s.pristine / f, s.state / f);
    engine = open_engine(io, clock, s.policy, s.config);
    // config.reload alternates between the variant and the example, through
    // the engine's own reload (the guard, the adoption) as the daemon's.
    auto& ctx = engine->context();
    ctx.reload = [this](bool confirm, const rd::protocol::Caller& caller,
                        std::function<void(rd::Result<json>)> done) {
      std::ofstream(setup().config, std::ios::trunc) << (use_variant ? setup().variant_text : setup().example_text);
      engine->reload(confirm, caller.actor(), [this, done](rd::Result<json> r) {
        if (r) use_variant = !use_variant;
        done(std::move(r));
      });
    };
    engine->start();
  }
  ~World() { engine->stop(); }
  rd::protocol::Dispatcher& dispatcher() { return engine->dispatcher(); }
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
    world.dispatcher().handle_line(line, admin, [&](std::optional<std::string> r) {
      ++calls;
      reply = std::move(r);
    });
    // Changes answer when their job has run, a sweep when its pass ends: run
    // what they posted.
    world.io.restart();
    while (calls == 0 && world.io.poll() > 0) {
    }
    FUZZ_CHECK(calls == 1, std::to_string(calls) + " replies to: " + std::string(line));
    check_reply(line, reply);
  }
  return 0;
}
