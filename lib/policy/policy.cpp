#include "lib/policy/policy.hpp"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "lib/crypto/crypto.hpp"

namespace retentiond::policy {

std::string_view to_string(StoreBackend b) { return b == StoreBackend::postgresql ? "postgresql" : "sqlite"; }

std::string_view to_string(Action a) {
  switch (a) {
    case Action::archive: return "archive";
    case Action::anonymise: return "anonymise";
    case Action::purge: return "purge";
  }
  return "?";
}

std::string_view to_string(Strategy s) {
  switch (s) {
    case Strategy::keep: return "keep";
    case Strategy::drop: return "drop";
    case Strategy::redact: return "redact";
    case Strategy::hmac: return "hmac";
    case Strategy::truncate_ip: return "truncate_ip";
    case Strategy::year_only: return "year_only";
  }
  return "?";
}

bool Category::allows_date(std::string_view date) const {
  if (!declares_dates || date == "collected") return true;
  return std::find(dates.begin(), dates.end(), date) != dates.end();
}

bool Category::names_date(std::string_view date) const {
  if (date == "collected") return true;
  if (declares_dates && std::find(dates.begin(), dates.end(), date) != dates.end()) return true;
  return std::any_of(phases.begin(), phases.end(), [&](const Phase& p) {
    const auto names = p.at.date_names();
    return std::find(names.begin(), names.end(), date) != names.end();
  });
}

std::vector<std::string> Policy::date_names() const {
  std::set<std::string> names = {"collected"};
  for (const auto& c : categories) {
    if (c.declares_dates) names.insert(c.dates.begin(), c.dates.end());
    for (const auto& p : c.phases) {
      for (auto& n : p.at.date_names()) names.insert(std::move(n));
    }
  }
  return {names.begin(), names.end()};
}

std::string_view to_string(ConnectorKind k) {
  switch (k) {
    case ConnectorKind::exec: return "exec";
    case ConnectorKind::http: return "http";
    case ConnectorKind::pull: return "pull";
  }
  return "?";
}

const Connector* Policy::find_connector(std::string_view name) const {
  for (const auto& c : connectors) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const Category* Policy::find(std::string_view name) const {
  for (const auto& c : categories) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string Diagnostic::to_string() const {
  std::string out = file;
  if (pos.line > 0) {
    out += ":" + std::to_string(pos.line);
    if (pos.column > 0) out += ":" + std::to_string(pos.column);
  }
  out += ": ";
  if (severity == Severity::warning) out += "warning: ";
  if (!key.empty()) out += key + ": ";
  return out + message;
}

std::string LoadResult::first_error() const {
  for (const auto& d : diagnostics) {
    if (d.severity == Diagnostic::Severity::error) return d.to_string();
  }
  return "";
}

namespace {

using Kind = ConfNode::Kind;

constexpr std::array<std::string_view, 6> kLegalBases = {
    "consent", "contract", "legal_obligation", "vital_interests", "public_task", "legitimate_interest"};
constexpr std::array<std::string_view, 5> kLogLevels = {"trace", "debug", "info", "warn", "error"};

std::string join(const std::vector<std::string>& v, std::string_view sep = ", ") {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out += sep;
    out += v[i];
  }
  return out;
}

template <typename Array>
std::string join_views(const Array& a) {
  std::string out;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (i > 0) out += ", ";
    out += a[i];
  }
  return out;
}

// Offset of `name` as a whole identifier in `text` (not inside a longer one).
std::size_t find_identifier(const std::string& text, const std::string& name) {
  const auto ident = [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'; };
  for (std::size_t at = text.find(name); at != std::string::npos; at = text.find(name, at + 1)) {
    const bool starts = at == 0 || !ident(text[at - 1]);
    const bool ends = at + name.size() == text.size() || !ident(text[at + name.size()]);
    if (starts && ends) return at;
  }
  return std::string::npos;
}

// [a-z][a-z0-9_]*, by hand: std::regex_match recurses once per character
// and overflowed the stack on a name of some 100000 characters.
bool is_date_name(const std::string& s) {
  if (s.empty() || s[0] < 'a' || s[0] > 'z') return false;
  return std::all_of(s.begin(), s.end(), [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'; });
}

bool is_integer_text(const std::string& s) {
  if (s.empty() || s.size() > 18) return false;
  std::size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

// libpq's own parser: nullopt when `url` is a valid connection string or
// URI, else libpq's reason (no connection is made).
std::optional<std::string> check_libpq_conninfo(const std::string& url) {
  char* err = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &err);
  if (options == nullptr) {
    std::string why = err ? err : "cannot be parsed (out of memory)";
    if (err) PQfreemem(err);
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return "not a libpq connection string or URI: " + why;
  }
  PQconninfoFree(options);
  return std::nullopt;
}

bool conninfo_has_password(const std::string& url) {
  PQconninfoOption* options = PQconninfoParse(url.c_str(), nullptr);
  if (options == nullptr) return false;
  bool found = false;
  for (auto* o = options; o->keyword != nullptr; ++o) {
    if (std::string_view(o->keyword) == "password" && o->val != nullptr && *o->val != '\0') found = true;
  }
  PQconninfoFree(options);
  return found;
}

// Walks the ConfNode tree and builds a Policy, collecting every problem.
class Builder {
 public:
  explicit Builder(std::string file) : m_file(std::move(file)) {}

  LoadResult build(const ConfNode& root) {
    auto policy = std::make_shared<Policy>();
    policy->source_path = m_file;
    if (root.kind != Kind::map) {
      error(root.pos, "", "the policy must be a table/mapping at the top level");
      return finish(nullptr);
    }
    check_keys(root, "", {"daemon", "store", "connectors", "categories"});
    if (const auto* d = root.find("daemon")) {
      read_daemon(*d, policy->daemon);
    } else {
      error(root.pos, "daemon", "missing [daemon] section (state_dir is required)");
    }
    if (const auto* s = root.find("store")) read_store(*s, policy->daemon);
    if (const auto* c = root.find("connectors")) read_connectors(*c, *policy);
    if (const auto* c = root.find("categories")) {
      read_categories(*c, *policy);
    } else {
      warning(root.pos, "categories", "no categories: this policy retains nothing and acts on nothing");
    }
    policy->hash = compute_hash(*policy);
    return finish(std::move(policy));
  }

 private:
  // ---- diagnostics -------------------------------------------------------

  void error(SourcePos pos, std::string key, std::string message) {
    m_diags.push_back({Diagnostic::Severity::error, m_file, pos, std::move(key), std::move(message)});
    m_failed = true;
  }
  void warning(SourcePos pos, std::string key, std::string message) {
    m_diags.push_back({Diagnostic::Severity::warning, m_file, pos, std::move(key), std::move(message)});
  }

  LoadResult finish(std::shared_ptr<const Policy> policy) {
    std::stable_sort(m_diags.begin(), m_diags.end(), [](const Diagnostic& a, const Diagnostic& b) {
      return std::pair(a.pos.line, a.pos.column) < std::pair(b.pos.line, b.pos.column);
    });
    LoadResult r;
    r.diagnostics = std::move(m_diags);
    if (!m_failed) r.policy = std::move(policy);
    return r;
  }

  static std::string sub(const std::string& base, std::string_view key) {
    return base.empty() ? std::string(key) : base + "." + std::string(key);
  }

  void check_keys(const ConfNode& map, const std::string& path, std::initializer_list<std::string_view> allowed) {
    for (const auto& e : map.entries) {
      if (std::find(allowed.begin(), allowed.end(), e.key) == allowed.end()) {
        std::string list;
        for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        error(e.key_pos, sub(path, e.key), "unknown key '" + e.key + "' (expected one of: " + list + ")");
      }
    }
  }

  // ---- typed accessors ---------------------------------------------------

  bool get_string(const ConfNode& n, const std::string& key, std::string& out) {
    if (n.kind == Kind::string || n.kind == Kind::yaml_scalar) {
      out = n.text;
      return true;
    }
    error(n.pos, key, "expected a string, got " + n.kind_name());
    return false;
  }

  bool get_int(const ConfNode& n, const std::string& key, std::int64_t lo, std::int64_t hi, std::int64_t& out) {
    std::int64_t v = 0;
    if (n.kind == Kind::integer) {
      v = n.integer;
    } else if (n.kind == Kind::yaml_scalar && !n.quoted && is_integer_text(n.text)) {
      v = std::stoll(n.text);
    } else {
      error(n.pos, key, "expected an integer, got " + (n.kind == Kind::yaml_scalar ? "'" + n.text + "'" : n.kind_name()));
      return false;
    }
    if (v < lo || v > hi) {
      error(n.pos, key, std::to_string(v) + " is out of range (" + std::to_string(lo) + ".." + std::to_string(hi) + ")");
      return false;
    }
    out = v;
    return true;
  }

  bool get_bool(const ConfNode& n, const std::string& key, bool& out) {
    if (n.kind == Kind::boolean) {
      out = n.boolean;
      return true;
    }
    if (n.kind == Kind::yaml_scalar && !n.quoted) {
      if (n.text == "true" || n.text == "True" || n.text == "TRUE") { out = true; return true; }
      if (n.text == "false" || n.text == "False" || n.text == "FALSE") { out = false; return true; }
    }
    error(n.pos, key, "expected true or false, got " + (n.kind == Kind::yaml_scalar ? "'" + n.text + "'" : n.kind_name()));
    return false;
  }

  // Position of character `offset` inside a single-line string value.
  static SourcePos inside(const ConfNode& n, std::size_t offset) {
    SourcePos p = n.pos;
    if (p.column > 0) p.column += static_cast<int>(offset) + n.quote_len;
    return p;
  }

  // ---- [store] -----------------------------------------------------------

  void read_store(const ConfNode& t, DaemonSettings& s) {
    if (t.kind != Kind::map) {
      error(t.pos, "store", "expected a table, got " + t.kind_name());
      return;
    }
    check_keys(t, "store", {"backend", "url", "key_vacuum_interval"});
    if (const auto* n = t.find("backend")) {
      std::string name;
      if (get_string(*n, "store.backend", name)) {
        if (name == "sqlite") {
          s.store_backend = StoreBackend::sqlite;
        } else if (name == "postgresql") {
          s.store_backend = StoreBackend::postgresql;
        } else {
          error(n->pos, "store.backend", "unknown backend '" + name + "' (expected \"sqlite\" or \"postgresql\")");
        }
      }
    }
    const auto* url = t.find("url");
    if (url) get_string(*url, "store.url", s.store_url);
    const auto* interval = t.find("key_vacuum_interval");
    if (interval) {
      std::string text;
      if (get_string(*interval, "store.key_vacuum_interval", text)) {
        auto seconds = calendar::parse_short_duration(text);
        if (seconds) s.store_key_vacuum_interval_s = *seconds;
        else error(interval->pos, "store.key_vacuum_interval", seconds.error().message);
      }
    }
    if (s.store_backend == StoreBackend::sqlite) {
      if (url) error(url->pos, "store.url", "only for backend = \"postgresql\" (sqlite keeps its state in daemon.state_dir)");
      if (interval) {
        error(interval->pos, "store.key_vacuum_interval",
              "only for backend = \"postgresql\" (sqlite zeroes a destroyed key in place at once)");
      }
      return;
    }
    if (!url) {
      error(t.pos, "store.url", "required with backend = \"postgresql\" (a libpq connection string or URI, "
                                "e.g. \"postgresql:///retentiond?host=/run/postgresql\")");
      return;
    }
    if (auto why = check_libpq_conninfo(s.store_url)) {
      error(url->pos, "store.url", *why);
    } else if (conninfo_has_password(s.store_url)) {
      warning(url->pos, "store.url",
              "holds a password, readable by whoever reads this policy: prefer a password file (~/.pgpass or "
              "PGPASSFILE) or peer authentication over the Unix socket");
    }
  }

  // ---- [daemon] ----------------------------------------------------------

  void read_daemon(const ConfNode& d, DaemonSettings& s) {
    if (d.kind != Kind::map) {
      error(d.pos, "daemon", "expected a table, got " + d.kind_name());
      return;
    }
    check_keys(d, "daemon",
               {"state_dir", "socket", "socket_mode", "admin_group", "reader_group", "fiscal_year_end",
                "secret_file", "signing_key", "reload_guard", "clock_guard", "purge_grace", "log_level", "max_batch_records", "max_batch_ms",
                "max_request_bytes", "max_json_depth", "max_put_many", "max_connections", "idle_timeout_s",
                "max_connections_per_uid", "admin_reserved_connections", "metrics_listen"});
    if (const auto* n = d.find("state_dir")) {
      if (get_string(*n, "daemon.state_dir", s.state_dir) && s.state_dir.empty()) {
        error(n->pos, "daemon.state_dir", "must not be empty");
      }
    } else {
      error(d.pos, "daemon.state_dir", "required (the directory holding retention.db, the keys and the secret)");
    }
    if (const auto* n = d.find("socket")) {
      get_string(*n, "daemon.socket", s.socket);
    } else {
      warning(d.pos, "daemon.socket", "not set: the daemon will need a socket passed by systemd (socket activation)");
    }
    if (const auto* n = d.find("socket_mode")) {
      std::string text;
      if (get_string(*n, "daemon.socket_mode", text)) {
        const bool octal = (text.size() == 3 || text.size() == 4) &&
                           std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '7'; });
        if (!octal) {
          error(n->pos, "daemon.socket_mode", "expected an octal mode such as \"0660\", got '" + text + "'");
        } else {
          s.socket_mode = static_cast<unsigned>(std::stoul(text, nullptr, 8));
        }
      }
    }
    if (const auto* n = d.find("admin_group")) get_string(*n, "daemon.admin_group", s.admin_group);
    if (const auto* n = d.find("reader_group")) get_string(*n, "daemon.reader_group", s.reader_group);
    if (const auto* n = d.find("fiscal_year_end")) {
      std::string text;
      if (get_string(*n, "daemon.fiscal_year_end", text)) {
        auto md = calendar::parse_month_day(text);
        if (md) s.fiscal_year_end = *md;
        else error(n->pos, "daemon.fiscal_year_end", md.error().message);
      }
    }
    if (const auto* n = d.find("secret_file")) get_string(*n, "daemon.secret_file", s.secret_file);
    if (const auto* n = d.find("signing_key")) {
      if (get_string(*n, "daemon.signing_key", s.signing_key) && s.signing_key.empty()) {
        error(n->pos, "daemon.signing_key", "must not be empty (leave it out for <state_dir>/signing.key)");
      }
    }
    if (const auto* n = d.find("reload_guard")) get_int(*n, "daemon.reload_guard", 0, INT64_MAX / 2, s.reload_guard);
    if (const auto* n = d.find("clock_guard")) {
      std::string text;
      if (get_string(*n, "daemon.clock_guard", text)) {
        auto duration = calendar::parse_duration(text);
        if (!duration) {
          error(n->pos, "daemon.clock_guard", duration.error().message);
        } else if (calendar::add(calendar::Instant{0}, *duration).seconds <= 0) {
          error(n->pos, "daemon.clock_guard",
                "must be longer than zero (a guard of nothing would pause on every tick of the clock)");
        } else {
          s.clock_guard = *duration;
        }
      }
    }
    if (const auto* n = d.find("purge_grace")) {
      std::string text;
      if (get_string(*n, "daemon.purge_grace", text)) {
        auto duration = calendar::parse_duration(text);
        if (!duration) error(n->pos, "daemon.purge_grace", duration.error().message);
        else s.purge_grace = *duration;
      }
    }
    if (const auto* n = d.find("log_level")) {
      if (get_string(*n, "daemon.log_level", s.log_level) && s.log_level == "warning") s.log_level = "warn";
      if (
          std::find(kLogLevels.begin(), kLogLevels.end(), s.log_level) == kLogLevels.end()) {
        error(n->pos, "daemon.log_level", "unknown level '" + s.log_level + "' (expected " + join_views(kLogLevels) + ")");
      }
    }
    struct Limit { const char* key; std::int64_t lo, hi; std::int64_t* out; };
    const std::array<Limit, 9> limits = {{
        {"max_batch_records", 1, 100000, &s.max_batch_records},
        {"max_batch_ms", 1, 10000, &s.max_batch_ms},
        {"max_request_bytes", 1024, 256LL * 1024 * 1024, &s.max_request_bytes},
        {"max_json_depth", 4, 1024, &s.max_json_depth},
        {"max_put_many", 1, 1000000, &s.max_put_many},
        {"max_connections", 1, 4096, &s.max_connections},
        {"idle_timeout_s", 1, 86400, &s.idle_timeout_s},
        {"max_connections_per_uid", 1, 4096, &s.max_connections_per_uid},
        {"admin_reserved_connections", 0, 4095, &s.admin_reserved_connections},
    }};
    for (const auto& l : limits) {
      if (const auto* n = d.find(l.key)) get_int(*n, std::string("daemon.") + l.key, l.lo, l.hi, *l.out);
    }
    if (const auto* n = d.find("metrics_listen")) {
      if (get_string(*n, "daemon.metrics_listen", s.metrics_listen)) {
        if (auto why = parse_listen_address(s.metrics_listen, s.metrics_host, s.metrics_port)) {
          error(n->pos, "daemon.metrics_listen", *why);
        } else if (!is_loopback_host(s.metrics_host)) {
          // Allowed, since it was asked for, but counts of personal data
          // per category are then readable by anyone who can reach it.
          warning(n->pos, "daemon.metrics_listen",
                  "'" + s.metrics_listen + "' is not a loopback address: /metrics will be served to the network");
        }
      }
    }
    // The default reserve shrinks with a small max_connections; a reserve
    // given that leaves no slot to the others is a mistake.
    if (s.admin_reserved_connections >= s.max_connections) {
      if (const auto* n = d.find("admin_reserved_connections")) {
        error(n->pos, "daemon.admin_reserved_connections",
              std::to_string(s.admin_reserved_connections) + " must be less than daemon.max_connections (" +
                  std::to_string(s.max_connections) + "), or nobody but an administrator could connect");
      } else {
        s.admin_reserved_connections = s.max_connections - 1;
      }
    }
  }

  // ---- [[categories]] ----------------------------------------------------

  void read_categories(const ConfNode& list, Policy& policy) {
    if (list.kind != Kind::seq) {
      error(list.pos, "categories", "expected an array of tables ([[categories]]), got " + list.kind_name());
      return;
    }
    std::set<std::string> names;
    for (std::size_t i = 0; i < list.items.size(); ++i) {
      const std::string path = "categories[" + std::to_string(i) + "]";
      Category c;
      check_category_connectors(list.items[i], path, policy);
      if (read_category(list.items[i], path, c)) {
        if (!names.insert(c.name).second) {
          const auto* n = list.items[i].find("name");
          error(n ? n->pos : list.items[i].pos, path + ".name", "duplicate category name '" + c.name + "'");
        }
        policy.categories.push_back(std::move(c));
      }
    }
  }

  bool read_category(const ConfNode& n, const std::string& path, Category& c) {
    if (n.kind != Kind::map) {
      error(n.pos, path, "expected a table, got " + n.kind_name());
      return false;
    }
    const std::size_t errors_before = error_count();
    check_keys(n, path, {"name", "purpose", "legal_basis", "source", "erasable", "dates", "phases", "anonymise", "anonymize",
                         "connectors"});

    static const std::regex kName("[a-z][a-z0-9_.-]*");
    if (const auto* v = n.find("name")) {
      if (get_string(*v, path + ".name", c.name)) {
        if (c.name.size() > 64 || !std::regex_match(c.name, kName)) {
          error(v->pos, path + ".name", "invalid category name '" + c.name + "' (expected [a-z][a-z0-9_.-]*, at most 64 characters)");
        }
      }
    } else {
      error(n.pos, path + ".name", "required");
    }
    if (const auto* v = n.find("purpose")) {
      if (get_string(*v, path + ".purpose", c.purpose) && c.purpose.empty()) error(v->pos, path + ".purpose", "must not be empty");
    } else {
      error(n.pos, path + ".purpose", "required (the purpose of processing, in words)");
    }
    if (const auto* v = n.find("legal_basis")) {
      if (get_string(*v, path + ".legal_basis", c.legal_basis) &&
          std::find(kLegalBases.begin(), kLegalBases.end(), c.legal_basis) == kLegalBases.end()) {
        error(v->pos, path + ".legal_basis", "unknown legal basis '" + c.legal_basis + "' (expected one of: " + join_views(kLegalBases) + ")");
      }
    } else {
      error(n.pos, path + ".legal_basis", "required (one of: " + join_views(kLegalBases) + ")");
    }
    if (const auto* v = n.find("source")) get_string(*v, path + ".source", c.source);
    c.erasable = c.legal_basis != "legal_obligation";
    if (const auto* v = n.find("erasable")) get_bool(*v, path + ".erasable", c.erasable);

    if (const auto* v = n.find("dates")) read_dates(*v, path + ".dates", c);
    if (const auto* v = n.find("phases")) read_phases(*v, path + ".phases", c);
    if (const auto* v = n.find("connectors")) {
      if (v->kind != Kind::seq) {
        error(v->pos, path + ".connectors", "expected an array of connector names, got " + v->kind_name());
      } else {
        for (std::size_t i = 0; i < v->items.size(); ++i) {
          std::string name;
          const std::string key = path + ".connectors[" + std::to_string(i) + "]";
          if (!get_string(v->items[i], key, name)) continue;
          if (std::find(c.connectors.begin(), c.connectors.end(), name) != c.connectors.end()) {
            error(v->items[i].pos, key, "connector '" + name + "' named twice");
          } else {
            c.connectors.push_back(name);
          }
        }
      }
    }
    if (c.phases.empty() && error_count() == errors_before) {
      warning(n.pos, path + ".phases", "category '" + c.name + "' has no phases: its records are kept until erased");
    }

    const ConfNode* anon = n.find("anonymise");
    const char* anon_key = "anonymise";
    if (const auto* alt = n.find("anonymize")) {
      if (anon) error(alt->pos, path + ".anonymize", "both 'anonymise' and 'anonymize' given; keep one");
      else { anon = alt; anon_key = "anonymize"; }
    }
    if (anon) read_anonymise(*anon, path + "." + anon_key, c);
    const bool anonymises = std::any_of(c.phases.begin(), c.phases.end(),
                                        [](const Phase& p) { return p.action == Action::anonymise; });
    if (anonymises && !c.has_anonymise) {
      error(n.pos, path + ".anonymise", "required: a phase anonymises but no field -> strategy table is given");
    } else if (!anonymises && c.has_anonymise) {
      warning(anon->pos, path + "." + anon_key, "unused: no phase of this category anonymises");
    }

    return error_count() == errors_before;
  }

  // ---- [[connectors]] ----------------------------------------------------

  void read_connectors(const ConfNode& list, Policy& policy) {
    if (list.kind != Kind::seq) {
      error(list.pos, "connectors", "expected an array of tables ([[connectors]]), got " + list.kind_name());
      return;
    }
    for (std::size_t i = 0; i < list.items.size(); ++i) {
      const std::string path = "connectors[" + std::to_string(i) + "]";
      Connector c;
      // An invalid one is kept under its name (the load fails anyway), so
      // that the categories naming it get no second error.
      if (!read_connector(list.items[i], path, c) && c.name.empty()) continue;
      if (policy.find_connector(c.name) != nullptr) {
        const auto* n = list.items[i].find("name");
        error(n ? n->pos : list.items[i].pos, path + ".name", "duplicate connector name '" + c.name + "'");
        continue;
      }
      policy.connectors.push_back(std::move(c));
    }
  }

  bool read_connector(const ConfNode& n, const std::string& path, Connector& c) {
    if (n.kind != Kind::map) {
      error(n.pos, path, "expected a table, got " + n.kind_name());
      return false;
    }
    const std::size_t errors_before = error_count();
    check_keys(n, path, {"name", "kind", "command", "url", "allow_remote", "timeout", "max_attempts"});
    static const std::regex kName("[a-z][a-z0-9_.-]*");
    if (const auto* v = n.find("name")) {
      if (get_string(*v, path + ".name", c.name) && (c.name.size() > 64 || !std::regex_match(c.name, kName))) {
        error(v->pos, path + ".name", "invalid connector name '" + c.name + "' (expected [a-z][a-z0-9_.-]*, at most 64 characters)");
      }
    } else {
      error(n.pos, path + ".name", "required");
    }
    const auto* kind = n.find("kind");
    std::string kind_text;
    if (kind == nullptr) {
      error(n.pos, path + ".kind", "required (exec, http or pull)");
    } else if (get_string(*kind, path + ".kind", kind_text)) {
      if (kind_text == "exec") c.kind = ConnectorKind::exec;
      else if (kind_text == "http") c.kind = ConnectorKind::http;
      else if (kind_text == "pull") c.kind = ConnectorKind::pull;
      else error(kind->pos, path + ".kind", "unknown kind '" + kind_text + "' (expected exec, http or pull)");
    }
    const auto* command = n.find("command");
    const auto* url = n.find("url");
    const auto* allow_remote = n.find("allow_remote");
    if (c.kind == ConnectorKind::exec && !kind_text.empty()) {
      if (command == nullptr) {
        error(n.pos, path + ".command", "required for an exec connector (an argv array, its first element an absolute path)");
      } else if (command->kind != Kind::seq || command->items.empty()) {
        error(command->pos, path + ".command", "expected a non-empty array of strings (argv; no shell), got " + command->kind_name());
      } else {
        for (std::size_t i = 0; i < command->items.size(); ++i) {
          std::string arg;
          if (get_string(command->items[i], path + ".command[" + std::to_string(i) + "]", arg)) c.command.push_back(arg);
        }
        if (!c.command.empty() && (c.command[0].empty() || c.command[0][0] != '/')) {
          error(command->items[0].pos, path + ".command[0]",
                "'" + c.command[0] + "' is not an absolute path (no PATH lookup, no shell: give the program's full path)");
        }
      }
    } else if (command != nullptr) {
      error(command->pos, path + ".command", "only an exec connector runs a command");
    }
    if (c.kind == ConnectorKind::http && !kind_text.empty()) {
      if (allow_remote) get_bool(*allow_remote, path + ".allow_remote", c.allow_remote);
      if (url == nullptr) {
        error(n.pos, path + ".url", "required for an http connector (http://host:port/path)");
      } else if (get_string(*url, path + ".url", c.url)) {
        if (auto why = parse_http_url(c.url, c.host, c.port, c.target)) {
          error(url->pos, path + ".url", *why);
        } else if (!c.allow_remote && !is_loopback_host(c.host)) {
          error(url->pos, path + ".url",
                "'" + c.host + "' is not a loopback address: jobs carry personal data and go in clear over http; "
                "set allow_remote = true to send them there anyway");
        }
      }
    } else {
      if (url != nullptr) error(url->pos, path + ".url", "only an http connector has a url");
      if (allow_remote != nullptr) error(allow_remote->pos, path + ".allow_remote", "only an http connector has allow_remote");
    }
    if (const auto* v = n.find("timeout")) {
      std::string text;
      if (get_string(*v, path + ".timeout", text)) {
        auto seconds = calendar::parse_short_duration(text);
        if (seconds) c.timeout_s = *seconds;
        else error(v->pos, path + ".timeout", seconds.error().message);
      }
    }
    if (const auto* v = n.find("max_attempts")) get_int(*v, path + ".max_attempts", 1, 1000, c.max_attempts);
    return error_count() == errors_before;
  }

  // Every name in a category's `connectors` must be a [[connectors]] entry
  // (those are read first).
  void check_category_connectors(const ConfNode& category, const std::string& path, const Policy& policy) {
    if (category.kind != Kind::map) return;
    const auto* v = category.find("connectors");
    if (v == nullptr || v->kind != Kind::seq) return;
    for (std::size_t j = 0; j < v->items.size(); ++j) {
      const auto& item = v->items[j];
      if (item.kind != Kind::string && item.kind != Kind::yaml_scalar) continue;
      if (policy.find_connector(item.text) != nullptr) continue;
      std::string known;
      for (const auto& c : policy.connectors) known += (known.empty() ? "" : ", ") + c.name;
      error(item.pos, path + ".connectors[" + std::to_string(j) + "]",
            "unknown connector '" + item.text + "' (" + (known.empty() ? "no [[connectors]] are defined" : "defined: " + known) + ")");
    }
  }

  std::size_t error_count() const {
    return static_cast<std::size_t>(std::count_if(m_diags.begin(), m_diags.end(), [](const Diagnostic& d) {
      return d.severity == Diagnostic::Severity::error;
    }));
  }

  void read_dates(const ConfNode& v, const std::string& key, Category& c) {
    if (v.kind != Kind::seq) {
      error(v.pos, key, "expected an array of date names, got " + v.kind_name());
      return;
    }
    static const std::set<std::string> kReserved = {"min", "max", "fiscal_year_end", "end_of_month", "end_of_year", "end_of_day"};
    c.declares_dates = true;
    for (std::size_t i = 0; i < v.items.size(); ++i) {
      const std::string k = key + "[" + std::to_string(i) + "]";
      std::string name;
      if (!get_string(v.items[i], k, name)) continue;
      if (!is_date_name(name)) {
        error(v.items[i].pos, k, "invalid date name '" + name + "' (expected [a-z][a-z0-9_]*)");
      } else if (kReserved.count(name) != 0) {
        error(v.items[i].pos, k, "'" + name + "' is a function name and cannot name a date");
      } else if (std::find(c.dates.begin(), c.dates.end(), name) != c.dates.end()) {
        error(v.items[i].pos, k, "date name '" + name + "' listed twice");
      } else {
        c.dates.push_back(name);
      }
    }
  }

  void read_phases(const ConfNode& v, const std::string& key, Category& c) {
    if (v.kind != Kind::seq) {
      error(v.pos, key, "expected an array of {action, at} tables, got " + v.kind_name());
      return;
    }
    std::set<Action> seen;
    std::vector<std::size_t> item_of;  // file index of each loaded phase
    for (std::size_t i = 0; i < v.items.size(); ++i) {
      const ConfNode& p = v.items[i];
      const std::string path = key + "[" + std::to_string(i) + "]";
      if (p.kind != Kind::map) {
        error(p.pos, path, "expected a table {action, at}, got " + p.kind_name());
        continue;
      }
      check_keys(p, path, {"action", "at"});
      Phase phase;
      bool ok = true;
      if (const auto* a = p.find("action")) {
        std::string text;
        if (get_string(*a, path + ".action", text)) {
          if (text == "archive") phase.action = Action::archive;
          else if (text == "anonymise" || text == "anonymize") phase.action = Action::anonymise;
          else if (text == "purge") phase.action = Action::purge;
          else {
            error(a->pos, path + ".action", "unknown action '" + text + "' (expected archive, anonymise or purge)");
            ok = false;
          }
          if (ok && !seen.insert(phase.action).second) {
            error(a->pos, path + ".action", "a category has at most one '" + std::string(to_string(phase.action)) + "' phase");
            ok = false;
          }
        } else {
          ok = false;
        }
      } else {
        error(p.pos, path + ".action", "required (archive, anonymise or purge)");
        ok = false;
      }
      const auto* at = p.find("at");
      if (!at) {
        error(p.pos, path + ".at", "required (e.g. \"collected + 3 years\")");
        continue;
      }
      if (!get_string(*at, path + ".at", phase.at_text)) continue;
      auto expr = Expr::parse(phase.at_text);
      if (!expr) {
        const auto offset = expr.error().data.value("offset", std::size_t{0});
        error(inside(*at, offset), path + ".at", expr.error().message);
        continue;
      }
      for (const auto& name : expr->date_names()) {
        if (!c.allows_date(name)) {
          const auto offset = find_identifier(phase.at_text, name);
          std::vector<std::string> declared = {"collected"};
          for (const auto& dn : c.dates) {
            if (dn != "collected") declared.push_back(dn);
          }
          error(inside(*at, offset == std::string::npos ? 0 : offset), path + ".at",
                "unknown date name '" + name + "' (this category declares: " + join(declared) + ")");
          ok = false;
        }
      }
      if (!ok) continue;
      phase.at = std::move(expr).value();
      c.phases.push_back(std::move(phase));
      item_of.push_back(i);
    }
    for (std::size_t i = 0; i + 1 < c.phases.size(); ++i) {
      if (c.phases[i].action == Action::purge) {
        const std::size_t item = item_of[i];
        const ConfNode* action = v.items[item].find("action");
        error(action ? action->pos : v.items[item].pos, key + "[" + std::to_string(item) + "].action",
              "'purge' must be the last phase");
      }
    }
    warn_overtaking_phases(v, key, c, item_of);
  }

  // A phase never runs before the one before it, so a later phase whose own
  // date comes first waits: anonymise at +3 years then purge at +1 year
  // keeps the data two years past the purge's own date. Judged on a typical
  // record, every date on the same day (mid-month, so no month-end clamping
  // hides a difference); the fiscal year end is the default one.
  void warn_overtaking_phases(const ConfNode& v, const std::string& key, const Category& c,
                              const std::vector<std::size_t>& item_of) {
    constexpr calendar::Instant kTypical{1736899200};  // 2025-01-15T00:00:00Z
    Dates dates;
    for (const auto& phase : c.phases) {
      for (const auto& name : phase.at.date_names()) dates.emplace(name, kTypical);
    }
    dates.emplace("collected", kTypical);
    std::optional<calendar::Instant> previous;
    std::size_t previous_index = 0;
    for (std::size_t i = 0; i < c.phases.size(); ++i) {
      const auto at = c.phases[i].at.evaluate(dates, calendar::MonthDay{12, 31});
      if (!at) continue;
      if (previous && *at < *previous) {
        const std::int64_t days = (previous->seconds - at->seconds) / 86400;
        const std::string gap = days >= 1 ? std::to_string(days) + " day" + (days == 1 ? "" : "s") +
                                                (days >= 365 ? " (about " + years_text(days) + ")" : "")
                                          : std::to_string(previous->seconds - at->seconds) + " seconds";
        const ConfNode* at_node = v.items[item_of[i]].find("at");
        warning(at_node ? at_node->pos : v.items[item_of[i]].pos, key + "[" + std::to_string(item_of[i]) + "].at",
                "phase " + std::to_string(i) + " (" + std::string(to_string(c.phases[i].action)) + " at " +
                    c.phases[i].at_text + ") falls " + gap + " before phase " + std::to_string(previous_index) + " (" +
                    std::string(to_string(c.phases[previous_index].action)) + " at " +
                    c.phases[previous_index].at_text +
                    ") for a record whose dates are all the same day; a phase never runs before the one before it, "
                    "so it would wait, and the data would be kept " + gap + " past its own date");
      }
      if (!previous || *at > *previous) {
        previous = at;
        previous_index = i;
      }
    }
  }

  static std::string years_text(std::int64_t days) {
    const std::int64_t tenths = (days * 10 * 4 + 730) / 1461;  // days / 365.25, in tenths, rounded
    std::string out = std::to_string(tenths / 10);
    if (tenths % 10 != 0) out += "." + std::to_string(tenths % 10);
    return out + (tenths == 10 ? " year" : " years");
  }

  void read_anonymise(const ConfNode& v, const std::string& key, Category& c) {
    if (v.kind != Kind::map) {
      error(v.pos, key, "expected a table of field = strategy, got " + v.kind_name());
      return;
    }
    c.has_anonymise = true;
    for (const auto& e : v.entries) {
      std::string text;
      if (!get_string(e.value, key + "." + e.key, text)) continue;
      static const std::array<std::pair<std::string_view, Strategy>, 6> kStrategies = {{
          {"keep", Strategy::keep}, {"drop", Strategy::drop}, {"redact", Strategy::redact},
          {"hmac", Strategy::hmac}, {"truncate_ip", Strategy::truncate_ip}, {"year_only", Strategy::year_only},
      }};
      const auto it = std::find_if(kStrategies.begin(), kStrategies.end(), [&](const auto& s) { return s.first == text; });
      if (it == kStrategies.end()) {
        error(e.value.pos, key + "." + e.key,
              "unknown strategy '" + text + "' (expected keep, drop, redact, hmac, truncate_ip or year_only)");
        continue;
      }
      c.anonymise.emplace_back(e.key, it->second);
    }
  }

  static std::string compute_hash(const Policy& p) { return crypto::sha256_hex(canonical_json(p).dump()); }

  std::string m_file;
  std::vector<Diagnostic> m_diags;
  bool m_failed = false;
};

}  // namespace

nlohmann::json canonical_json(const Category& c) {
  nlohmann::json cj;
  cj["name"] = c.name;
  cj["purpose"] = c.purpose;
  cj["legal_basis"] = c.legal_basis;
  cj["source"] = c.source;
  cj["erasable"] = c.erasable;
  cj["dates"] = c.declares_dates ? nlohmann::json(c.dates) : nlohmann::json(nullptr);
  cj["phases"] = nlohmann::json::array();
  for (const auto& ph : c.phases) {
    cj["phases"].push_back({{"action", to_string(ph.action)}, {"at", ph.at.canonical()}});
  }
  nlohmann::json anon = nlohmann::json::object();
  for (const auto& [field, strategy] : c.anonymise) anon[field] = to_string(strategy);
  cj["anonymise"] = c.has_anonymise ? anon : nlohmann::json(nullptr);
  // Only when given, so that the hash of a policy without connectors is
  // what it was before they existed.
  if (!c.connectors.empty()) cj["connectors"] = c.connectors;
  return cj;
}

// The hash covers what decides retention — the fiscal year end and every
// category with its expressions in canonical form — and not operational
// settings (paths, limits, log level), so moving a socket is not a policy
// change, and a TOML file and its YAML twin hash the same.
nlohmann::json canonical_json(const Policy& p) {
  nlohmann::json j;
  j["fiscal_year_end"] = calendar::format_month_day(p.daemon.fiscal_year_end);
  j["categories"] = nlohmann::json::array();
  for (const auto& c : p.categories) j["categories"].push_back(canonical_json(c));
  return j;
}

PolicyDiff diff_policies(const nlohmann::json& before, const Policy& after) {
  PolicyDiff d;
  std::map<std::string, nlohmann::json> old;
  if (before.is_object() && before.contains("categories")) {
    for (const auto& c : before.at("categories")) old.emplace(c.value("name", std::string()), c);
  }
  const bool fiscal_changed = !before.is_object() || before.value("fiscal_year_end", std::string()) !=
                                                         calendar::format_month_day(after.daemon.fiscal_year_end);
  for (const auto& c : after.categories) {
    const auto it = old.find(c.name);
    if (it == old.end()) {
      d.added.push_back(c.name);
    } else {
      // A new fiscal year end can move any expression that uses end_of_fiscal_year.
      if (fiscal_changed || it->second != canonical_json(c)) d.changed.push_back(c.name);
      old.erase(it);
    }
  }
  for (const auto& [name, _] : old) d.removed.push_back(name);
  return d;
}

LoadResult load_policy_text(std::string_view text, ConfFormat format, const std::string& display_name) {
  ConfDocument doc = parse_conf(text, format);
  if (!doc.errors.empty()) {
    LoadResult r;
    for (auto& e : doc.errors) {
      r.diagnostics.push_back({Diagnostic::Severity::error, display_name, e.pos, "", std::move(e.message)});
    }
    return r;
  }
  return Builder(display_name).build(doc.root);
}

LoadResult load_policy_file(const std::filesystem::path& path) {
  LoadResult r;
  ConfFormat format;
  if (!format_from_path(path, format)) {
    r.diagnostics.push_back({Diagnostic::Severity::error, path.string(), {}, "",
                             "unknown file type '" + path.extension().string() + "' (expected .toml, .yaml or .yml)"});
    return r;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    r.diagnostics.push_back({Diagnostic::Severity::error, path.string(), {}, "", "cannot open: " + std::string(std::strerror(errno))});
    return r;
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  return load_policy_text(buf.str(), format, path.string());
}

std::optional<std::string> parse_listen_address(const std::string& text, std::string& host, std::uint16_t& port) {
  const std::string expected = "expected \"host:port\" such as \"127.0.0.1:9464\" or \"[::1]:9464\", got '" + text + "'";
  std::string h, p;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') return expected;
    h = text.substr(1, close - 1);
    p = text.substr(close + 2);
    in6_addr a6{};
    if (inet_pton(AF_INET6, h.c_str(), &a6) != 1) return "'" + h + "' is not an IPv6 address";
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) return expected;
    h = text.substr(0, colon);
    p = text.substr(colon + 1);
    in_addr a4{};
    if (h != "localhost" && inet_pton(AF_INET, h.c_str(), &a4) != 1) {
      return "'" + h + "' is not an IPv4 address nor \"localhost\" (an IPv6 address goes in brackets)";
    }
  }
  if (p.empty() || p.size() > 5 || !std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoi(p) < 1 || std::stoi(p) > 65535) {
    return "port '" + p + "' is not a number from 1 to 65535";
  }
  host = h;
  port = static_cast<std::uint16_t>(std::stoi(p));
  return std::nullopt;
}

std::optional<std::string> parse_http_url(const std::string& url, std::string& host, std::uint16_t& port,
                                          std::string& target) {
  constexpr std::string_view kScheme = "http://";
  if (url.compare(0, kScheme.size(), kScheme) != 0) {
    return "'" + url + "' is not an http:// URL (https is not supported: put a local proxy in front)";
  }
  const std::string rest = url.substr(kScheme.size());
  const auto slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (authority.empty()) return "'" + url + "' names no host";
  if (authority.find('@') != std::string::npos) return "'" + url + "': credentials in the URL are not supported";
  std::string h = authority, p;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string::npos) return "'" + url + "': unterminated IPv6 address";
    h = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return "'" + url + "': expected ':' and a port after the IPv6 address";
      p = authority.substr(close + 2);
    }
  } else if (const auto colon = authority.rfind(':'); colon != std::string::npos) {
    h = authority.substr(0, colon);
    p = authority.substr(colon + 1);
  }
  if (h.empty()) return "'" + url + "' names no host";
  port = 80;
  if (!p.empty() || authority.back() == ':') {
    if (p.empty() || p.size() > 5 || !std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoi(p) < 1 || std::stoi(p) > 65535) {
      return "port '" + p + "' is not a number from 1 to 65535";
    }
    port = static_cast<std::uint16_t>(std::stoi(p));
  }
  host = h;
  return std::nullopt;
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  in_addr a4{};
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6{};
  return inet_pton(AF_INET6, host.c_str(), &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

}  // namespace retentiond::policy
