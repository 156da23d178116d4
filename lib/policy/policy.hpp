#pragma once
// Policy: the immutable, validated content of a policy file (TOML or YAML,
// shared/spec/policy.md). Built once by load_policy_*(), then shared read-only
// (std::shared_ptr<const Policy>) by every module; a reload builds a new one.
// Thread-safe because it never changes.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/calendar/calendar.hpp"
#include "lib/policy/conf_tree.hpp"
#include "lib/policy/expr.hpp"

namespace retentiond::policy {

enum class Action { archive, anonymise, purge };
std::string_view to_string(Action a);

enum class Strategy { keep, drop, redact, hmac, truncate_ip, year_only };
std::string_view to_string(Strategy s);

struct Phase {
  Action action = Action::purge;
  std::string at_text;  // as written in the file
  Expr at;
};

struct Category {
  std::string name;
  std::string purpose;
  std::string legal_basis;  // one of the six GDPR art. 6(1) bases
  std::string source;       // empty when not given
  bool erasable = true;
  bool declares_dates = false;
  std::vector<std::string> dates;  // as declared (only meaningful with declares_dates)
  std::vector<Phase> phases;
  bool has_anonymise = false;
  std::vector<std::pair<std::string, Strategy>> anonymise;  // in file order
  // Connectors every phase (and erasure) of this category also runs on, by
  // name ([[connectors]]); empty: none.
  std::vector<std::string> connectors;

  // True if records of this category may carry the date `name`.
  bool allows_date(std::string_view name) const;
  // True if this category names the date: in its `dates` list, in a phase's
  // `at`, or `collected`. (A category without a `dates` list allows any
  // name but names only those.)
  bool names_date(std::string_view name) const;
};

// [store]: where the state lives (spec "Store backend"; docs/scale-out.md).
enum class StoreBackend { sqlite, postgresql };
std::string_view to_string(StoreBackend b);

// [daemon] settings. The spec fixes the first group; the rest are ours and
// documented in docs/configuration.md with their defaults and ranges.
struct DaemonSettings {
  std::string state_dir;
  std::string socket;  // empty: must come from systemd socket activation
  unsigned socket_mode = 0660;
  std::string admin_group;
  std::string reader_group;
  calendar::MonthDay fiscal_year_end{12, 31};
  std::string secret_file;  // empty: <state_dir>/secret
  std::string signing_key;  // Ed25519 key of receipts and checkpoints; empty: <state_dir>/signing.key
  std::int64_t reload_guard = 1000;
  // A forward clock jump beyond this past the latest instant the clock has
  // shown, making more than reload_guard records newly due, pauses disposal
  // until confirmed (docs/operations.md, "Clock guard").
  calendar::Duration clock_guard{.days = 1};
  // The undo window: a purged record's key is destroyed this long after the
  // purge, restorable until then (zero: at once, the default).
  calendar::Duration purge_grace{};

  std::string log_level = "info";
  std::int64_t max_batch_records = 1000;  // per sweep batch (one transaction)
  std::int64_t max_batch_ms = 50;         // per sweep batch
  std::int64_t max_request_bytes = 16 * 1024 * 1024;
  std::int64_t max_json_depth = 64;
  std::int64_t max_put_many = 10000;
  std::int64_t max_connections = 64;
  std::int64_t idle_timeout_s = 300;
  std::int64_t max_connections_per_uid = 16;    // one user's connections
  std::int64_t admin_reserved_connections = 4;  // of max_connections, kept for administrators
  // Prometheus GET /metrics: "host:port" as written (empty: off), and its
  // parts. The host is an IP address (IPv6 in brackets) or "localhost".
  std::string metrics_listen;
  std::string metrics_host;
  std::uint16_t metrics_port = 0;

  // [store]: the backend, and for postgresql the libpq connection string or
  // URI. Read at start-up only (a reload that changes them says it ignored
  // them). Kept here with the other operational settings: not in the hash.
  StoreBackend store_backend = StoreBackend::sqlite;
  std::string store_url;
  // postgresql: how often destroyed keys are compacted out of the
  // database's files (docs/scale-out.md, "Erasure on PostgreSQL").
  std::int64_t store_key_vacuum_interval_s = 300;
};

// Splits "host:port" ([v6]:port for IPv6); the host must be an IP address or
// "localhost", the port 1-65535. Returns the reason when it is not.
std::optional<std::string> parse_listen_address(const std::string& text, std::string& host, std::uint16_t& port);
// Whether `host` (as parse_listen_address leaves it) is a loopback address.
bool is_loopback_host(const std::string& host);
// Splits an http:// URL into host (IPv6 without brackets), port (80 when
// absent) and target (the path and query, "/" when absent); nullopt when
// valid, else why not.
std::optional<std::string> parse_http_url(const std::string& url, std::string& host, std::uint16_t& port,
                                          std::string& target);

// A system of record where retention is also enforced ([[connectors]];
// docs/connectors.md): the jobs of its categories' phases are delivered to
// a command (exec), a loopback HTTP endpoint (http), or claimed over the
// admin socket (pull).
enum class ConnectorKind { exec, http, pull };
std::string_view to_string(ConnectorKind k);

struct Connector {
  std::string name;
  ConnectorKind kind = ConnectorKind::pull;
  std::vector<std::string> command;  // exec: argv, argv[0] absolute
  std::string url;                   // http: http://host[:port]/path
  std::string host;                  // http: from url
  std::uint16_t port = 80;           // http: from url
  std::string target;                // http: the path (and query) from url
  bool allow_remote = false;         // http: a host that is not loopback
  std::int64_t timeout_s = 30;
  std::int64_t max_attempts = 10;
};

class Policy {
 public:
  DaemonSettings daemon;
  std::vector<Connector> connectors;
  std::vector<Category> categories;
  std::string hash;         // hex SHA-256 of the canonical policy (see policy.cpp)
  std::string source_path;  // the file it came from, for messages

  const Category* find(std::string_view name) const;
  const Connector* find_connector(std::string_view name) const;
  // Every date name some category names (Category::names_date), sorted.
  std::vector<std::string> date_names() const;
};

struct Diagnostic {
  enum class Severity { error, warning };
  Severity severity = Severity::error;
  std::string file;
  SourcePos pos;
  std::string key;  // e.g. "categories[2].phases[0].at"
  std::string message;

  // "file:line:column: key: message" (line/column omitted when unknown).
  std::string to_string() const;
};

struct LoadResult {
  std::shared_ptr<const Policy> policy;  // null when any error was found
  std::vector<Diagnostic> diagnostics;   // every error and warning, in file order

  bool ok() const { return policy != nullptr; }
  // The first error as one line, for logs and protocol messages.
  std::string first_error() const;
};

// The canonical form of a policy (what its hash covers: the fiscal year end
// and every category, expressions in canonical form) and of one category.
nlohmann::json canonical_json(const Policy& p);
nlohmann::json canonical_json(const Category& c);

// How `after` differs from the policy whose canonical form is `before`
// (null for none): categories added, changed (any canonical difference, or
// all of them when the fiscal year end moved), and removed; names sorted as
// in `after` (removed: by name).
struct PolicyDiff {
  std::vector<std::string> added, changed, removed;
  bool empty() const { return added.empty() && changed.empty() && removed.empty(); }
};
PolicyDiff diff_policies(const nlohmann::json& before, const Policy& after);

// Loads and validates a policy file; the format comes from its extension.
LoadResult load_policy_file(const std::filesystem::path& path);

// Same, from text; `display_name` is used in diagnostics.
LoadResult load_policy_text(std::string_view text, ConfFormat format, const std::string& display_name);

}  // namespace retentiond::policy
