// retentionctl: the command-line client of retentiond's admin socket.
//
// Each subcommand is one function: it turns its arguments into the params of
// one method, calls it, and prints the result as aligned columns for people,
// or with --json the raw result for scripts (and errors as one JSON line on
// standard error). `call METHOD [JSON]` reaches any method; `import`
// streams a JSON-lines file through record.put_many. docs/retentionctl.md
// is the user documentation.
//
// Exit codes:
//   0  success
//   1  the daemon answered with an error; import stopped at a bad line, or
//      rejected some (--rejects); the import or rejects file cannot be used
//   2  usage: unknown command or option, wrong arguments
//   3  cannot reach the daemon: no socket, permission denied, nobody
//      listening, connection lost
//   4  verify: the audit chain is broken, or a checkpoint is not extended;
//      receipt verify: the signature does not match

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

// cxxopts splits vector values at ',' by default; JSON and field values
// contain commas, so splitting is turned off.
#define CXXOPTS_VECTOR_DELIMITER '\0'
#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include "daemon/report.hpp"
#include "daemon/version.hpp"
#include "lib/crypto/signing.hpp"
#include "lib/proof/proof.hpp"
#include "lib/util/asio.hpp"

namespace asio = boost::asio;
using nlohmann::json;
// Keeps the members of what we print for scripts in the order we write
// them: an error reads code, reason, message.
using ordered = nlohmann::ordered_json;

namespace {

enum Exit { kOk = 0, kFailed = 1, kUsage = 2, kUnreachable = 3, kBrokenChain = 4 };

constexpr const char* kDefaultSocket = "/run/retentiond/admin.sock";

// The daemon's default max_put_many; a larger batch would be refused.
constexpr long kMaxBatch = 10000;
constexpr long kDefaultBatch = 1000;
// Keeps a batch well under the daemon's default 16 MiB request line, whatever
// the size of the records.
constexpr std::size_t kMaxBatchBytes = 8u << 20;

// Ends the process: main prints `message` after "retentionctl: " and exits
// with `code`. The client has nothing to recover from, so every failure
// travels up to main this way. With --json, main prints {"error": error}
// instead: the daemon's code, reason and message for a daemon error, else
// {"code": null, "reason", "message"} (see report()).
struct Failure {
  int code;
  std::string message;  // lines after the first are printed with the prefix too
  ordered error = nullptr;
};

// The JSON form of a failure of the client itself (no daemon error code).
ordered client_error(const std::string& reason, const std::string& message) {
  return {{"code", nullptr}, {"reason", reason}, {"message", message}};
}

// ---------------------------------------------------------------------------
// JSON helpers

// Results are read with report's member() and text() (daemon/report.hpp).
using retentiond::report::member;
using retentiond::report::text;

std::string join(const json& values, const char* separator) {
  std::string out;
  if (!values.is_array()) return out;
  for (const auto& v : values) {
    if (!out.empty()) out += separator;
    out += text(v);
  }
  return out;
}

// "1 record", "2 records"; "1 entry", "2 entries".
std::string count_of(const json& n, const char* singular, const char* plural) {
  return text(n) + " " + (n == 1 ? singular : plural);
}

// A phase's due time, or why it has none.
std::string due_text(const json& due, const json& waiting_for) {
  if (!due.is_null()) return text(due);
  if (waiting_for.is_array() && !waiting_for.empty()) {
    return "waiting for " + join(waiting_for, ", ");
  }
  return "never";  // past 9999-12-31
}

// "name=value, name=value": the fields of a record on one line.
std::string assignments(const json& object) {
  std::string out;
  if (!object.is_object()) return out;
  for (const auto& [name, value] : object.items()) {
    if (!out.empty()) out += ", ";
    out += name + "=" + (value.is_string() ? value.get<std::string>() : value.dump());
  }
  return out;
}

int print_json(const json& result) {
  std::cout << result.dump(2) << '\n';
  return kOk;
}

// ---------------------------------------------------------------------------
// Aligned output

// Rows of cells printed in columns two spaces apart; the first row added is
// usually the header. Widths count UTF-8 code points, so subjects and
// reasons with accents stay aligned. The last column is not padded.
class Table {
 public:
  Table() = default;
  explicit Table(std::vector<std::string> header) { add(std::move(header)); }

  Table& align_right(std::size_t column) {
    if (m_right.size() <= column) m_right.resize(column + 1, false);
    m_right[column] = true;
    return *this;
  }
  void add(std::vector<std::string> row) { m_rows.push_back(std::move(row)); }

  void print(std::ostream& out) const {
    std::vector<std::size_t> widths;
    for (const auto& row : m_rows) {
      if (widths.size() < row.size()) widths.resize(row.size(), 0);
      for (std::size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], width(row[c]));
    }
    for (const auto& row : m_rows) {
      std::string line;
      for (std::size_t c = 0; c < row.size(); ++c) {
        const std::string pad(widths[c] - width(row[c]), ' ');
        const bool last = c + 1 == row.size();
        if (c > 0) line += "  ";
        const bool right = c < m_right.size() && m_right[c];
        if (right) {
          line += pad + row[c];
        } else {
          line += last ? row[c] : row[c] + pad;  // no trailing blanks
        }
      }
      out << line << '\n';
    }
  }

 private:
  static std::size_t width(const std::string& s) {
    return static_cast<std::size_t>(std::count_if(s.begin(), s.end(), [](char ch) {
      return (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
    }));
  }

  std::vector<std::vector<std::string>> m_rows;
  std::vector<bool> m_right;
};

// ---------------------------------------------------------------------------
// The connection

// What came back for one request: `result` on success, else `error`
// ({"code", "message", "data"}).
struct Reply {
  json result;
  json error;
  bool ok() const { return error.is_null(); }
};

// "MESSAGE [reason]", the way every error reply is shown. A tripped reload
// guard (confirmation_required, from config.reload or from sweep while the
// daemon is paused) adds the counts it carries and what to do about it.
std::string describe(const json& error) {
  std::string out = text(member(error, "message"));
  const json& data = member(error, "data");
  const json& reason = member(data, "reason");
  if (reason.is_string()) out += " [" + reason.get<std::string>() + "]";
  if (reason == "confirmation_required") {
    std::string counts;
    for (const auto& [name, value] : data.items()) {
      if (name == "reason") continue;
      if (!counts.empty()) counts += ", ";
      counts += name + " " + (value.is_array() ? join(value, ", ") : text(value));
    }
    if (!counts.empty()) out += " (" + counts + ")";
    out += member(data, "paused") == "clock_guard"
               ? "\nretentionctl: check the clock, then run 'retentionctl confirm-clock' to accept it"
               : "\nretentionctl: run 'retentionctl reload --confirm' to apply the new policy anyway";
  }
  return out;
}

// An error reply as scripts get it with --json: the daemon's code, reason
// and message, the rest of its data, and the method called.
ordered daemon_error(const std::string& method, const json& error) {
  const json& data = member(error, "data");
  ordered out = {{"code", member(error, "code")},
                 {"reason", member(data, "reason")},
                 {"message", member(error, "message")},
                 {"method", method}};
  if (data.is_object() && data.size() > (data.contains("reason") ? 1u : 0u)) {
    ordered rest = data;
    rest.erase("reason");
    out["data"] = std::move(rest);
  }
  return out;
}

// One connection to the admin socket, carrying requests one at a time.
class Connection {
 public:
  // Connects to `path`. Throws Failure{kUnreachable} naming the likely cause:
  // no socket file, no permission, nobody listening.
  explicit Connection(std::string path) : m_path(std::move(path)), m_socket(m_io) {
    boost::system::error_code ec;
    asio::local::stream_protocol::endpoint endpoint;
    try {
      endpoint = asio::local::stream_protocol::endpoint(m_path);
    } catch (const boost::system::system_error&) {
      throw Failure{kUnreachable, "socket path too long: " + m_path};
    }
    m_socket.connect(endpoint, ec);
    if (ec) throw Failure{kUnreachable, connect_failure(ec)};
  }

  // Sends one request and waits for its reply. An error reply is returned,
  // not thrown; a lost connection throws Failure{kUnreachable} and a reply
  // that is not JSON-RPC throws Failure{kFailed}.
  Reply call(const std::string& method, const json& params) {
    const int id = m_next_id++;
    json request = {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}};
    if (!params.is_null()) request["params"] = params;
    const std::string line = request.dump() + "\n";
    boost::system::error_code send_ec;
    asio::write(m_socket, asio::buffer(line), send_ec);
    // A send can fail because the daemon has answered and hung up: a line
    // over its max_request_bytes gets one too_large line, then the daemon
    // closes without reading the rest. That answer is waiting to be read,
    // and it is the truth to report, not the broken pipe.
    boost::system::error_code ec;
    asio::read_until(m_socket, m_buffer, '\n', ec);
    if (ec && send_ec) {
      m_usable = false;
      throw Failure{kUnreachable, method + ": cannot send to " + m_path + ": " + send_ec.message()};
    }
    if (ec == asio::error::eof) {
      throw Failure{kUnreachable, method + ": the daemon closed the connection without answering"};
    }
    if (ec) {
      throw Failure{kUnreachable, method + ": no answer from " + m_path + ": " + ec.message()};
    }
    std::istream in(&m_buffer);
    std::string reply_line;
    std::getline(in, reply_line);
    const json reply = json::parse(reply_line, nullptr, /*allow_exceptions=*/false);
    if (reply.is_discarded() || !reply.is_object() ||
        (!reply.contains("result") && !reply.contains("error")) ||
        (member(reply, "id") != id && !member(reply, "id").is_null())) {
      const std::string message = "unreadable reply from the daemon: " + reply_line.substr(0, 200);
      throw Failure{kFailed, method + ": " + message, client_error("bad_reply", message)};
    }
    // A reply without our id answers the line, not the request (too_large,
    // parse_error); after an over-long line the daemon has closed the
    // connection. The next request goes on a new one either way.
    if (send_ec || member(reply, "id").is_null()) m_usable = false;
    return {member(reply, "result"), member(reply, "error")};
  }

  // False once the daemon may have closed the connection.
  bool usable() const { return m_usable; }

 private:
  // Why connecting failed, from what the path is rather than from guesses:
  // the socket's or directory's mode and owners when permission is denied,
  // the kind of file when it is not a socket.
  std::string connect_failure(const boost::system::error_code& ec) const {
    struct stat st {};
    const bool exists = ::stat(m_path.c_str(), &st) == 0;
    if (ec == boost::system::errc::permission_denied) return permission_failure(exists, st);
    if (exists && !S_ISSOCK(st.st_mode)) {
      if (S_ISDIR(st.st_mode)) {
        return "not a socket: " + m_path +
               " is a directory (--socket or RETENTIOND_SOCKET must name the daemon's admin "
               "socket, daemon.socket, not the directory it is in)";
      }
      return "not a socket: " + m_path + " is " + file_kind(st.st_mode) +
             " (--socket or RETENTIOND_SOCKET must name the daemon's admin socket, "
             "daemon.socket, not the policy file or another file)";
    }
    if (ec == boost::system::errc::no_such_file_or_directory) {
      return "no such file: " + m_path +
             " (is retentiond running? --socket or RETENTIOND_SOCKET must name its admin "
             "socket, daemon.socket)";
    }
    if (ec == asio::error::connection_refused) {
      return "nothing is listening on " + m_path +
             " (a socket left behind by a daemon that is no longer running: is retentiond "
             "running?)";
    }
    return "cannot connect to " + m_path + ": " + ec.message();
  }

  // EACCES: on a directory on the way to the socket (entering one needs
  // search permission), or on the socket itself (connecting needs write
  // permission). The kernel walks the path from the top, so the first
  // directory we may not enter is the one that stops us.
  std::string permission_failure(bool socket_visible, const struct stat& socket_st) const {
    std::error_code ignored;
    std::filesystem::path dir;
    for (const auto& part : std::filesystem::absolute(m_path, ignored).parent_path()) {
      dir /= part;
      struct stat st {};
      if (::stat(dir.c_str(), &st) == 0 && ::access(dir.c_str(), X_OK) != 0) {
        return "permission denied on " + m_path + ": the directory " + dir.string() + " (" +
               ownership(st) + ") may not be entered; " + advice(st, S_IXGRP, "enter it");
      }
    }
    if (!socket_visible) return "permission denied on " + m_path;
    return "permission denied on " + m_path + " (" + ownership(socket_st) +
           "): " + advice(socket_st, S_IWGRP, "connect");
  }

  // "mode 0660, owner root, group retention-admin"
  static std::string ownership(const struct stat& st) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return std::string("mode ") + mode + ", owner " + user_name(st.st_uid) + ", group " +
           group_name(st.st_gid);
  }

  // What the caller can do about a file whose `group_bit` (S_IWGRP to
  // connect to a socket, S_IXGRP to enter a directory) it lacks.
  static std::string advice(const struct stat& st, mode_t group_bit, const char* verb) {
    const std::string group = group_name(st.st_gid);
    if ((st.st_mode & group_bit) == 0) {
      if ((st.st_mode & (group_bit << 3)) == 0) {
        return std::string("its mode lets only root ") + verb + ": run as root";
      }
      const std::string owner = user_name(st.st_uid);
      return std::string("only its owner may ") + verb + ": run as " + owner +
             (owner == "root" ? "" : " or root");
    }
    if (session_in_group(st.st_gid)) {
      return "you are in the group " + group + ", yet access is refused: ask an administrator " +
             "to check the mode and owners";
    }
    if (user_in_group(st.st_gid)) {
      return "your user is in the group " + group +
             ", but this login session is not yet: log in again (or run 'newgrp " + group + "')";
    }
    return "ask an administrator to add your user to the group " + group + ", or run as root";
  }

  static std::string file_kind(mode_t mode) {
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISFIFO(mode)) return "a named pipe";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    return "a file of another kind";
  }

  static std::string user_name(uid_t uid) {
    if (const passwd* pw = ::getpwuid(uid)) return pw->pw_name;
    return "uid " + std::to_string(uid);
  }
  static std::string group_name(gid_t gid) {
    if (const group* gr = ::getgrgid(gid)) return gr->gr_name;
    return "gid " + std::to_string(gid);
  }

  // The groups of this process, which the kernel checks.
  static bool session_in_group(gid_t gid) {
    if (::getegid() == gid) return true;
    const int n = ::getgroups(0, nullptr);
    if (n <= 0) return false;
    std::vector<gid_t> groups(static_cast<std::size_t>(n));
    const int got = ::getgroups(n, groups.data());
    return got > 0 && std::find(groups.begin(), groups.begin() + got, gid) != groups.begin() + got;
  }

  // The groups the user database gives the user now, which a new login
  // session would have.
  static bool user_in_group(gid_t gid) {
    const passwd* pw = ::getpwuid(::geteuid());
    if (pw == nullptr) return false;
    const std::string name = pw->pw_name;
    const gid_t primary = pw->pw_gid;
    int n = 64;
    std::vector<gid_t> groups;
    for (int attempt = 0; attempt < 2; ++attempt) {
      groups.resize(static_cast<std::size_t>(n));
      if (::getgrouplist(name.c_str(), primary, groups.data(), &n) >= 0) {
        groups.resize(static_cast<std::size_t>(n));
        return std::find(groups.begin(), groups.end(), gid) != groups.end();
      }
    }
    return false;
  }

  std::string m_path;
  asio::io_context m_io;
  asio::local::stream_protocol::socket m_socket;
  asio::streambuf m_buffer;
  int m_next_id = 1;
  bool m_usable = true;
};

// ---------------------------------------------------------------------------
// Subcommands

// What a subcommand runs with: its positional arguments, its parsed options,
// and the daemon, connected on first use.
class Context {
 public:
  Context(std::string socket_path, const cxxopts::ParseResult& opts, std::vector<std::string> args)
      : m_socket_path(std::move(socket_path)), m_opts(opts), m_args(std::move(args)) {}

  const std::vector<std::string>& args() const { return m_args; }
  bool json_output() const { return flag("json"); }
  bool flag(const char* name) const { return m_opts.count(name) > 0 && m_opts[name].as<bool>(); }
  std::optional<std::string> option(const char* name) const {
    if (m_opts.count(name) == 0) return std::nullopt;
    return m_opts[name].as<std::string>();
  }
  template <typename T>
  std::optional<T> option_as(const char* name) const {
    if (m_opts.count(name) == 0) return std::nullopt;
    return m_opts[name].as<T>();
  }
  std::vector<std::string> repeated(const char* name) const {
    if (m_opts.count(name) == 0) return {};
    return m_opts[name].as<std::vector<std::string>>();
  }

  // The connection to the daemon: made on first use, and again after the
  // daemon closed the last one.
  Connection& connection() {
    if (!m_connection || !m_connection->usable()) {
      m_connection.reset();
      m_connection = std::make_unique<Connection>(m_socket_path);
    }
    return *m_connection;
  }
  Reply try_call(const std::string& method, const json& params = nullptr) {
    return connection().call(method, params);
  }
  // The result of `method`; an error reply throws Failure{kFailed}.
  json call(const std::string& method, const json& params = nullptr) {
    Reply reply = try_call(method, params);
    if (!reply.ok()) {
      throw Failure{kFailed, method + ": " + describe(reply.error),
                    daemon_error(method, reply.error)};
    }
    return std::move(reply.result);
  }

 private:
  std::string m_socket_path;
  const cxxopts::ParseResult& m_opts;
  std::vector<std::string> m_args;
  std::unique_ptr<Connection> m_connection;
};

Failure usage(std::string message) { return Failure{kUsage, std::move(message)}; }

// "name=value" -> (name, value).
std::pair<std::string, std::string> split_assignment(const std::string& s, const char* what) {
  const auto eq = s.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw usage(std::string("expected ") + what + " as name=value, got '" + s + "'");
  }
  return {s.substr(0, eq), s.substr(eq + 1)};
}

// The one of `names` given as an option, as {name, value}. Usage error when
// none or several are given.
std::pair<std::string, std::string> exactly_one(const Context& ctx,
                                                std::vector<const char*> names) {
  std::string all;
  for (const char* name : names) all += std::string(all.empty() ? "" : ", ") + "--" + name;
  std::optional<std::pair<std::string, std::string>> found;
  for (const char* name : names) {
    const auto value = ctx.option(name);
    if (!value) continue;
    if (found) throw usage("give exactly one of " + all + ", not several");
    found.emplace(name, *value);
  }
  if (!found) throw usage("give exactly one of " + all);
  return *found;
}

int cmd_call(Context& ctx) {
  const auto& args = ctx.args();
  json params = nullptr;
  if (args.size() == 2) {
    params = json::parse(args[1], nullptr, /*allow_exceptions=*/false);
    if (params.is_discarded()) throw usage("the params are not valid JSON: " + args[1]);
  }
  return print_json(ctx.call(args[0], params));
}

int cmd_status(Context& ctx) {
  const json s = ctx.call("status");
  if (ctx.json_output()) return print_json(s);
  const json& policy = member(s, "policy");
  const json& records = member(s, "records");
  std::string paused = "no";
  if (!member(s, "paused").is_null()) {
    const json& pause = member(s, "pause");
    const bool clock = member(s, "paused") == "clock_guard";
    paused = text(member(s, "paused")) + ": " + text(member(pause, "newly_due")) +
             " newly due, guard " + text(member(pause, "guard")) +
             (clock ? ", clock jumped from " + text(member(pause, "last_seen")) + " to " + text(member(pause, "now")) +
                          " (check the clock, then 'retentionctl confirm-clock')"
                    : " (confirm with 'retentionctl reload --confirm')");
  }
  std::string last_sweep = "never";
  if (const json& sweep = member(s, "last_sweep"); !sweep.is_null()) {
    const json& at = member(sweep, "at");  // an addition of this daemon to the spec
    last_sweep = (at.is_null() ? "" : text(at) + ": ") + "archived " +
                 text(member(sweep, "archived")) + ", anonymised " +
                 text(member(sweep, "anonymised")) + ", purged " + text(member(sweep, "purged")) +
                 ", held " + text(member(sweep, "held")) + " (" +
                 text(member(sweep, "duration_ms")) + " ms)";
  }
  Table t;
  t.add({"version", text(member(s, "version"))});
  t.add({"now", text(member(s, "now"))});
  t.add({"started at", text(member(s, "started_at"))});
  t.add({"policy", text(member(policy, "hash"))});
  t.add({"categories", text(member(policy, "categories"))});
  t.add({"loaded at", text(member(policy, "loaded_at"))});
  t.add({"records", text(member(records, "active")) + " active, " +
                        text(member(records, "archived")) + " archived, " +
                        text(member(records, "anonymised")) + " anonymised"});
  t.add({"holds", text(member(s, "holds"))});
  t.add({"next due", text(member(s, "next_due"))});
  t.add({"backlog", text(member(s, "backlog"))});
  t.add({"paused", paused});
  t.add({"last sweep", last_sweep});
  // The store and the daemons on it (an older daemon sends no `store`).
  if (s.contains("store") && s["store"].is_object()) {
    const json& store = s["store"];
    std::string daemons;
    for (const auto& d : store.value("daemons", json::array())) {
      daemons += (daemons.empty() ? "" : ", ") + d.value("host", std::string("?")) + " pid " +
                 std::to_string(d.value("pid", std::int64_t{0}));
    }
    t.add({"store", store.value("backend", std::string("?")) + ", " +
                        std::to_string(store.value("daemons", json::array()).size()) + " daemon(s)" +
                        (daemons.empty() ? "" : ": " + daemons)});
  }
  t.print(std::cout);
  return kOk;
}

int cmd_put(Context& ctx) {
  const auto subject = ctx.option("subject");
  const auto category = ctx.option("category");
  if (!subject || !category) throw usage("put needs --subject and --category");
  json params = {{"key", ctx.args()[0]}, {"subject", *subject}, {"category", *category}};
  json fields = json::object();
  for (const auto& f : ctx.repeated("field")) {
    auto [name, value] = split_assignment(f, "a field");
    fields[name] = value;
  }
  json dates = json::object();
  for (const auto& d : ctx.repeated("date")) {
    auto [name, value] = split_assignment(d, "a date");
    dates[name] = value;
  }
  if (!fields.empty()) params["fields"] = fields;
  if (!dates.empty()) params["dates"] = dates;
  const json r = ctx.call("record.put", params);
  if (ctx.json_output()) return print_json(r);
  const json& next = member(r, "next");
  Table t({"KEY", "STATE", "NEXT", "DUE"});
  t.add({text(member(r, "key")), text(member(r, "state")),
         next.is_null() ? "none" : text(member(next, "action")),
         next.is_null() ? "-" : due_text(member(next, "due"), member(next, "waiting_for"))});
  t.print(std::cout);
  return kOk;
}

// The DONE cell of a phase in `explain`: when it ran; or "no", and what
// stands between it and its run. A phase runs at the later of its own due
// time and the run of the phase before it (runs_at), so its DUE column
// alone can promise a date that will not hold.
std::string phase_progress(const json& phase, bool held) {
  if (member(phase, "done") == true) {
    return member(phase, "done_at").is_null() ? "yes" : text(member(phase, "done_at"));
  }
  const json& due = member(phase, "due");
  const json& runs_at = member(phase, "runs_at");
  const json& index = member(phase, "index");
  const bool follows = index.is_number_unsigned() && index.get<std::size_t>() > 0;
  const std::string previous = follows ? std::to_string(index.get<std::size_t>() - 1) : "";
  if (member(phase, "overdue") == true) {
    // Due and not done: the next sweep runs it, unless a hold stops it.
    return held ? "no: overdue (held)" : "no: overdue";
  }
  if (!runs_at.is_null() && runs_at != due) {
    return "no: runs " + text(runs_at) + " (after phase " + previous + ")";
  }
  if (runs_at.is_null() && !due.is_null() && follows) {
    // An earlier phase has no due time yet, and this one waits for it.
    return "no: after phase " + previous;
  }
  return "no";
}

// record.explain's connector jobs, when the record has any.
void print_record_jobs(const json& e) {
  const auto it = e.find("connectors");
  if (it == e.end() || !it->is_array() || it->empty()) return;
  std::cout << '\n';
  Table t({"CONNECTOR", "ACTION", "PHASE", "JOB", "STATE", "ATTEMPTS", "LAST ERROR"});
  for (const auto& j : *it) {
    t.add({text(member(j, "connector")), text(member(j, "action")), text(member(j, "phase")), text(member(j, "job")),
           text(member(j, "state")), text(member(j, "attempts")), text(member(j, "last_error")).substr(0, 60)});
  }
  t.print(std::cout);
}

int cmd_explain(Context& ctx) {
  const json e = ctx.call("record.explain", {{"key", ctx.args()[0]}});
  if (ctx.json_output()) return print_json(e);
  Table about;
  about.add({"key", text(member(e, "key"))});
  about.add({"state", text(member(e, "state"))});
  if (member(e, "state") == "purged") {
    about.add({"purged at", text(member(e, "purged_at"))});
    about.add({"audit seq", text(member(e, "audit_seq"))});
    about.print(std::cout);
    print_record_jobs(e);
    return kOk;
  }
  const json& holds = member(e, "holds");
  about.add({"category", text(member(e, "category"))});
  about.add({"held", member(e, "held") == true ? "yes (holds " + join(holds, ", ") + ")" : "no"});
  about.print(std::cout);
  std::cout << '\n';
  Table phases({"#", "ACTION", "AT", "DUE", "DONE"});
  const bool held = member(e, "held") == true;
  for (const auto& p : member(e, "phases")) {
    phases.add({text(member(p, "index")), text(member(p, "action")), text(member(p, "at")),
                due_text(member(p, "due"), member(p, "missing")), phase_progress(p, held)});
  }
  phases.print(std::cout);
  print_record_jobs(e);
  return kOk;
}

int cmd_event(Context& ctx) {
  const auto [scope, target] = exactly_one(ctx, {"subject", "key"});
  const json r =
      ctx.call("event.record", {{"name", ctx.args()[0]}, {"at", ctx.args()[1]}, {scope, target}});
  if (ctx.json_output()) return print_json(r);
  std::cout << "updated " << count_of(member(r, "updated"), "record", "records") << '\n';
  return kOk;
}

int cmd_export(Context& ctx) {
  const json r = ctx.call("subject.export", {{"subject", ctx.args()[0]}});
  if (ctx.json_output()) return print_json(r);
  const json& records = member(r, "records");
  std::cout << "subject " << text(member(r, "subject")) << ": "
            << count_of(json(records.size()), "record", "records") << ", exported at "
            << text(member(r, "exported_at")) << '\n';
  if (records.empty()) return kOk;
  std::cout << '\n';
  Table t({"KEY", "CATEGORY", "STATE", "LEGAL BASIS", "NEXT", "DUE", "FIELDS"});
  for (const auto& rec : records) {
    const json& next = member(rec, "next");
    t.add({text(member(rec, "key")), text(member(rec, "category")), text(member(rec, "state")),
           text(member(rec, "legal_basis")), next.is_null() ? "none" : text(member(next, "action")),
           next.is_null() ? "-" : due_text(member(next, "due"), member(next, "waiting_for")),
           assignments(member(rec, "fields"))});
  }
  t.print(std::cout);
  return kOk;
}

// Writes `value` to `path` as one JSON document and a newline ("-":
// standard output); a failure is kFailed.
void write_json_file(const std::string& path, const json& value) {
  if (path == "-") {
    std::cout << value.dump() << '\n';
    return;
  }
  std::ofstream out(path, std::ios::trunc);
  out << value.dump() << '\n';
  out.flush();
  if (!out) throw Failure{kFailed, "cannot write " + path + ": " + std::strerror(errno)};
}

// The JSON documents of `path` ("-": standard input): one, or one per line.
std::vector<json> read_json_documents(const std::string& path) {
  std::ifstream file;
  if (path != "-") {
    file.open(path);
    if (!file) throw Failure{kFailed, "cannot read " + path + ": " + std::strerror(errno)};
  }
  std::istream& in = path == "-" ? std::cin : file;
  std::ostringstream text;
  text << in.rdbuf();
  std::vector<json> out;
  try {
    out.push_back(json::parse(text.str()));
  } catch (const json::parse_error&) {
    // Not one document: JSON lines.
    std::istringstream lines(text.str());
    std::string line;
    for (std::size_t n = 1; std::getline(lines, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      try {
        out.push_back(json::parse(line));
      } catch (const json::parse_error& e) {
        throw Failure{kFailed, path + ":" + std::to_string(n) + ": not JSON: " + e.what()};
      }
    }
  }
  return out;
}

// erase SUBJECT calls subject.erase, erase --key KEY record.erase; both
// answer with the same shape.
int cmd_erase(Context& ctx) {
  const auto key = ctx.option("key");
  const auto categories = ctx.repeated("category");
  if (ctx.args().empty() == !key.has_value()) {
    throw usage("give exactly one of SUBJECT and --key");
  }
  if (key && !categories.empty()) {
    throw usage(
        "--category goes with SUBJECT: --key erases that one record, whatever its category");
  }
  const auto reason = ctx.option("reason");
  if (!reason) throw usage("erase needs --reason (it goes into the audit log)");
  const bool dry_run = ctx.flag("dry-run");
  json params = {{"reason", *reason}, {"dry_run", dry_run}};
  if (key) {
    params["key"] = *key;
  } else {
    params["subject"] = ctx.args()[0];
    if (!categories.empty()) params["categories"] = categories;
  }
  const auto receipt_file = ctx.option("receipt");
  if (receipt_file && dry_run) throw usage("--receipt goes without --dry-run: a dry run erases nothing to prove");
  const json r = ctx.call(key ? "record.erase" : "subject.erase", params);
  if (receipt_file) write_json_file(*receipt_file, member(r, "receipt"));
  if (ctx.json_output()) return print_json(r);
  const json& erased = member(r, "erased");
  const json& retained = member(r, "retained");
  std::cout << (dry_run ? "dry run, nothing changed: would erase " : "erased ")
            << count_of(json(erased.size()), "record", "records") << ", retained "
            << retained.size() << '\n';
  if (erased.empty() && retained.empty()) return kOk;
  std::cout << '\n';
  // erased_records gives each erased key its category (erased: the keys alone).
  std::map<std::string, std::string> category_of;
  for (const auto& rec : member(r, "erased_records")) {
    category_of[text(member(rec, "key"))] = text(member(rec, "category"));
  }
  Table t({"KEY", "CATEGORY", "OUTCOME", "REASON", "UNTIL"});
  for (const auto& k : erased) {
    const auto category = category_of.find(text(k));
    t.add({text(k), category == category_of.end() ? "-" : category->second,
           dry_run ? "would erase" : "erased", "-", "-"});
  }
  for (const auto& rec : retained) {
    t.add({text(member(rec, "key")), text(member(rec, "category")), "retained",
           text(member(rec, "reason")), text(member(rec, "until"))});
  }
  t.print(std::cout);
  return kOk;
}

int cmd_hold(Context& ctx) {
  const auto [scope, target] = exactly_one(ctx, {"subject", "category", "key"});
  const auto reason = ctx.option("reason");
  if (!reason) throw usage("hold needs --reason");
  const json r = ctx.call("hold.place", {{scope, target}, {"reason", *reason}});
  if (ctx.json_output()) return print_json(r);
  std::cout << "placed hold " << text(member(r, "id")) << " on " << scope << " " << target << '\n';
  return kOk;
}

int cmd_release(Context& ctx) {
  const std::string& id_text = ctx.args()[0];
  char* end = nullptr;
  errno = 0;
  const long long id = std::strtoll(id_text.c_str(), &end, 10);
  if (id_text.empty() || *end != '\0' || errno != 0 || id < 1) {
    throw usage("the hold ID is a number, got '" + id_text + "'");
  }
  json params = {{"id", id}};
  if (const auto reason = ctx.option("reason")) params["reason"] = *reason;
  const json r = ctx.call("hold.release", params);
  if (ctx.json_output()) return print_json(r);
  std::cout << "released hold " << id << '\n';
  return kOk;
}

int cmd_restore(Context& ctx) {
  const auto reason = ctx.option("reason");
  if (!reason) throw usage("restore needs --reason");
  const json r = ctx.call("record.restore", {{"key", ctx.args()[0]}, {"reason", *reason}});
  if (ctx.json_output()) return print_json(r);
  std::cout << "restored " << text(member(r, "key")) << " (" << text(member(r, "state")) << ")\n";
  return kOk;
}

int cmd_holds(Context& ctx) {
  const json r = ctx.call("hold.list");
  if (ctx.json_output()) return print_json(r);
  const json& holds = member(r, "holds");
  if (holds.empty()) {
    std::cout << "no holds\n";
    return kOk;
  }
  Table t({"ID", "SCOPE", "TARGET", "PLACED AT", "PLACED BY", "REASON"});
  t.align_right(0);
  for (const auto& h : holds) {
    t.add({text(member(h, "id")), text(member(h, "scope")), text(member(h, "target")),
           text(member(h, "placed_at")), text(member(h, "placed_by")), text(member(h, "reason"))});
  }
  t.print(std::cout);
  return kOk;
}

int cmd_connectors(Context& ctx) {
  const json r = ctx.call("connector.list");
  if (ctx.json_output()) return print_json(r);
  const json& list = member(r, "connectors");
  if (list.empty()) {
    std::cout << "no connectors in the policy\n";
    return kOk;
  }
  Table t({"NAME", "KIND", "PENDING", "IN FLIGHT", "FAILED", "DONE", "DISCARDED", "OLDEST PENDING", "LAST ERROR"});
  for (std::size_t i = 2; i <= 6; ++i) t.align_right(i);
  for (const auto& c : list) {
    t.add({text(member(c, "name")), text(member(c, "kind")), text(member(c, "pending")), text(member(c, "in_flight")),
           text(member(c, "failed")), text(member(c, "done")), text(member(c, "discarded")), text(member(c, "oldest_pending")),
           text(member(c, "last_error")).substr(0, 60)});
  }
  t.print(std::cout);
  return kOk;
}

int cmd_jobs(Context& ctx) {
  json params = {{"connector", ctx.args()[0]}};
  if (auto state = ctx.option("state")) params["state"] = *state;
  if (auto limit = ctx.option_as<int>("limit")) params["limit"] = *limit;
  const json r = ctx.call("connector.jobs", params);
  if (ctx.json_output()) return print_json(r);
  const json& jobs = member(r, "jobs");
  if (jobs.empty()) {
    std::cout << "no jobs\n";
    return kOk;
  }
  // The subject is left out of the table: it is personal data (--json has it).
  Table t({"ID", "STATE", "ACTION", "KEY", "CATEGORY", "DECIDED AT", "ATTEMPTS", "LAST ERROR"});
  t.align_right(6);
  for (const auto& j : jobs) {
    t.add({text(member(j, "id")), text(member(j, "state")), text(member(j, "action")), text(member(j, "key")),
           text(member(j, "category")), text(member(j, "decided_at")), text(member(j, "attempts")),
           text(member(j, "last_error")).substr(0, 60)});
  }
  t.print(std::cout);
  return kOk;
}

int cmd_retry(Context& ctx) {
  const std::vector<std::string> ids(ctx.args().begin() + 1, ctx.args().end());
  const bool all = ctx.flag("all");
  if (all == !ids.empty()) throw usage("retry needs job ids or --all (not both)");
  json params = {{"connector", ctx.args()[0]}};
  if (all) params["all"] = true;
  else params["ids"] = ids;
  const json r = ctx.call("connector.retry", params);
  if (ctx.json_output()) return print_json(r);
  std::cout << "retried " << text(member(r, "retried")) << " failed job(s)\n";
  return kOk;
}

int cmd_discard(Context& ctx) {
  const auto reason = ctx.option("reason");
  if (!reason) throw usage("discard needs --reason");
  const std::vector<std::string> ids(ctx.args().begin() + 1, ctx.args().end());
  const json r = ctx.call("connector.discard", {{"connector", ctx.args()[0]}, {"ids", ids}, {"reason", *reason}});
  if (ctx.json_output()) return print_json(r);
  std::cout << "discarded " << text(member(r, "discarded")) << " job(s)\n";
  return kOk;
}

// The instant one year after `instant`, as the daemon writes instants
// ("2030-01-01T00:00:07Z"); 29 February becomes 28 February, as the
// daemon's "+ 1 year" does. Throws Failure{kFailed} for any other form.
std::string one_year_after(const std::string& instant) {
  const bool shape = instant.size() == 20 && instant[4] == '-' && instant[7] == '-' &&
                     instant[10] == 'T' && instant[19] == 'Z' &&
                     std::all_of(instant.begin(), instant.begin() + 4,
                                 [](char c) { return c >= '0' && c <= '9'; });
  if (!shape) {
    const std::string message = "plan: unexpected time from the daemon: " + instant;
    throw Failure{kFailed, message, client_error("bad_reply", message)};
  }
  const int year = std::stoi(instant.substr(0, 4)) + 1;
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  std::string out = instant;
  out.replace(0, 4, std::to_string(year));
  if (out.compare(5, 5, "02-29") == 0 && !leap) out.replace(8, 2, "28");
  return out;
}

int cmd_plan(Context& ctx) {
  auto from = ctx.option("from");
  auto until = ctx.option("until");
  if (!until) {
    // One year ahead of where the plan starts: the daemon's now, or --from
    // as the daemon reads it, which any plan from there returns. (With an
    // `until` of its own, a bad --from would be reported as a bad until.)
    if (from) {
      from = text(
          member(ctx.call("plan", {{"from", *from}, {"until", "9999-12-31T23:59:59Z"}}), "from"));
    } else {
      from = text(member(ctx.call("status"), "now"));
    }
    until = one_year_after(*from);
  }
  json params = {{"until", *until}};
  if (from) params["from"] = *from;
  if (auto candidate = ctx.option("policy")) {
    // The daemon reads the file: a path relative to here means nothing to it.
    std::error_code ec;
    const auto path = std::filesystem::absolute(*candidate, ec);
    params["policy"] = ec ? *candidate : path.lexically_normal().string();
  }
  const json r = ctx.call("plan", params);
  if (ctx.json_output()) return print_json(r);
  if (const json& c = member(r, "candidate"); c.is_object()) {
    std::cout << "candidate policy " << text(member(c, "hash")).substr(0, 12) << ": "
              << (member(c, "changed_categories").empty() ? std::string("no category changed")
                                                           : "changed " + join(member(c, "changed_categories"), ", "))
              << "\nnewly due on adoption: " << text(member(c, "newly_due")) << " (reload guard "
              << text(member(c, "guard")) << (member(c, "guard_trips") == true ? ": TRIPS, reload needs --confirm)" : ": passes)")
              << "\n\n";
    const json& diff = member(r, "diff");
    if (!diff.empty()) {
      Table t({"CATEGORY", "EARLIER", "LATER", "UNCHANGED", "NEWLY DUE"});
      for (std::size_t i = 1; i <= 4; ++i) t.align_right(i);
      for (const auto& d : diff) {
        t.add({text(member(d, "category")), text(member(d, "earlier")), text(member(d, "later")),
               text(member(d, "unchanged")), text(member(d, "newly_due"))});
      }
      t.print(std::cout);
      std::cout << "\nunder the candidate:\n";
    }
  }
  std::cout << "from " << text(member(r, "from")) << " until " << text(member(r, "until"))
            << "\n\n";
  const json& actions = member(r, "actions");
  if (actions.empty()) {
    std::cout << "nothing falls due\n";
  } else {
    Table t({"MONTH", "CATEGORY", "ACTION", "COUNT"});
    t.align_right(3);
    for (const auto& a : actions) {
      t.add({text(member(a, "month")), text(member(a, "category")), text(member(a, "action")),
             text(member(a, "count"))});
    }
    t.print(std::cout);
  }
  const json& totals = member(r, "totals");
  std::cout << "\ntotals: archive " << text(member(totals, "archive")) << ", anonymise "
            << text(member(totals, "anonymise")) << ", purge " << text(member(totals, "purge"))
            << "; waiting " << text(member(r, "waiting")) << ", held " << text(member(r, "held"))
            << '\n';
  return kOk;
}

// report --html FILE: what the daemon says about retention (status, the
// register of policy.table, plan, audit.verify, hold.list, and the audit
// log counted month by month) as one HTML page; daemon/report.hpp renders
// it. The plan starts at the daemon's now, so that the report describes one
// instant, and the audit log is read up to the entry audit.verify vouched
// for. A reader gets the report without the holds, which need an admin.
int cmd_report(Context& ctx) {
  const auto path = ctx.option("html");
  if (!path) throw usage("report needs --html FILE");
  json in = json::object();
  in["status"] = ctx.call("status");
  const std::string now = text(member(in["status"], "now"));
  const auto until = ctx.option("until");
  in["plan"] = ctx.call("plan", {{"from", now}, {"until", until ? *until : one_year_after(now)}});
  in["policy_table"] = member(ctx.call("policy.table", {{"format", "markdown"}}), "text");
  in["verify"] = ctx.call("audit.verify");
  Reply holds = ctx.try_call("hold.list");
  if (holds.ok()) {
    in["holds"] = std::move(holds.result);
  } else if (member(member(holds.error, "data"), "reason") == "forbidden") {
    in["holds"] = nullptr;
    in["holds_error"] = describe(holds.error);
  } else {
    throw Failure{kFailed, "hold.list: " + describe(holds.error),
                  daemon_error("hold.list", holds.error)};
  }
  // The records per category and state, from a daemon that has the metrics
  // method; without it, the report says the daemon does not give them.
  if (const Reply metrics = ctx.try_call("metrics"); metrics.ok()) {
    in["metrics"] = member(metrics.result, "text");
  }

  // audit.tail's largest page; pages over 250 entries are read off the
  // daemon's event loop, so they hold up no other caller.
  constexpr std::size_t kAuditPage = 10000;
  const json& head = member(in["verify"], "entries");
  const std::int64_t through = head.is_number_integer() ? head.get<std::int64_t>() : INT64_MAX;
  retentiond::report::AuditTally tally;
  for (std::int64_t after = 0; after < through;) {
    const json page = ctx.call("audit.tail", {{"after", after}, {"limit", kAuditPage}});
    const json& entries = member(page, "entries");
    std::int64_t last = after;
    for (const auto& e : entries) {
      const json& seq = member(e, "seq");
      if (!seq.is_number_integer() || seq.get<std::int64_t>() <= last) continue;
      if (seq.get<std::int64_t>() > through) break;
      tally.add(e);
      last = seq.get<std::int64_t>();
    }
    if (entries.size() < kAuditPage || last == after) break;
    after = last;
  }
  in["audit"] = tally.to_json();

  // Written beside the target and renamed, so that FILE is never half a report.
  const std::string html = retentiond::report::render_html(in);
  const std::string tmp = *path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << html;
    out.close();
    if (!out || std::rename(tmp.c_str(), path->c_str()) != 0) {
      const std::string message = "cannot write " + *path + ": " + std::strerror(errno);
      std::remove(tmp.c_str());
      throw Failure{kFailed, "report: " + message, client_error("cannot_write", message)};
    }
  }

  const json& plan = in["plan"];
  const json& totals = member(plan, "totals");
  const auto n = [](const json& v) { return v.is_number_unsigned() ? v.get<std::size_t>() : 0; };
  const std::size_t due =
      n(member(totals, "archive")) + n(member(totals, "anonymise")) + n(member(totals, "purge"));
  const bool intact = member(in["verify"], "ok") == true;
  if (ctx.json_output()) {
    print_json({{"html", *path},
                {"bytes", html.size()},
                {"generated_at", now},
                {"policy", member(member(in["status"], "policy"), "hash")},
                {"until", member(plan, "until")},
                {"due", due},
                {"audit_entries", member(in["audit"], "entries")},
                {"holds_listed", !in["holds"].is_null()},
                {"chain_ok", intact}});
  } else {
    std::cout << "wrote " << *path << ": " << due << " phases due before "
              << text(member(plan, "until")) << ", "
              << count_of(member(in["audit"], "entries"), "audit entry", "audit entries")
              << (intact ? ", audit chain intact" : ", audit chain BROKEN") << '\n';
    if (in["holds"].is_null()) {
      std::cerr << "retentionctl: report: the holds are not listed: " << text(in["holds_error"])
                << '\n';
    }
  }
  return intact ? kOk : kBrokenChain;
}

int cmd_metrics(Context& ctx) {
  const json r = ctx.call("metrics");
  if (ctx.json_output()) return print_json(r);
  std::cout << text(member(r, "text"));
  return kOk;
}

int cmd_sweep(Context& ctx) {
  const bool dry_run = ctx.flag("dry-run");
  const json r = ctx.call("sweep", {{"dry_run", dry_run}});
  if (ctx.json_output()) return print_json(r);
  std::cout << (dry_run ? "dry run, nothing changed: would have " : "") << "archived "
            << text(member(r, "archived")) << ", anonymised " << text(member(r, "anonymised"))
            << ", purged " << text(member(r, "purged")) << ", held " << text(member(r, "held"))
            << " (" << text(member(r, "duration_ms")) << " ms)\n";
  return kOk;
}

// audit checkpoint: the signed head.
int cmd_audit_checkpoint(Context& ctx) {
  const json r = ctx.call("audit.checkpoint");
  if (ctx.json_output()) return print_json(r);
  // The checkpoint itself, one line, as audit.verify --checkpoint reads it.
  std::cout << r.dump() << '\n';
  return kOk;
}

// audit --follow: every entry after --after (default 0: from the first),
// as it is appended, forever; JSON lines with --json. A daemon restart is
// waited out: the stream resumes after the last entry written.
int cmd_audit_follow(Context& ctx, json params) {
  std::int64_t after = params.value("after", std::int64_t{0});
  // The hash of the last entry of the copy: --after-hash when resuming a
  // copy, then that of each entry written.
  std::optional<std::string> after_hash = ctx.option("after-hash");
  bool waiting_for_daemon = false;
  bool check_position = after > 0;  // at start, after a reconnect, after an empty wait
  for (;;) {
    Reply reply;
    try {
      // The log must still hold the entry the copy ends with: after a
      // backup restore it does not (or holds another), and entries
      // appended then would not continue the copy's chain.
      if (check_position) {
        Reply at = ctx.try_call("audit.tail", {{"after", after - 1}, {"limit", 1}});
        if (!at.ok()) throw Failure{kFailed, "audit.tail: " + describe(at.error), daemon_error("audit.tail", at.error)};
        const json& e = member(at.result, "entries");
        if (e.empty() || member(e[0], "seq") != after || (after_hash && member(e[0], "hash") != *after_hash)) {
          throw Failure{kFailed, "the daemon's log no longer holds seq " + std::to_string(after) +
                                     " as this copy has it (was the database restored from a backup?): "
                                     "keep this copy for --replay-audit and start a new one"};
        }
        check_position = false;
      }
      params["after"] = after;
      params["limit"] = 1000;
      params["wait_ms"] = 30000;
      reply = ctx.try_call("audit.tail", params);
    } catch (const Failure& f) {
      if (f.code != kUnreachable) throw;
      if (!waiting_for_daemon) std::cerr << "retentionctl: " << f.message << "; retrying every second\n";
      waiting_for_daemon = true;
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    if (!reply.ok()) throw Failure{kFailed, "audit.tail: " + describe(reply.error), daemon_error("audit.tail", reply.error)};
    if (waiting_for_daemon) {
      std::cerr << "retentionctl: connected again; resuming after seq " << after << '\n';
      waiting_for_daemon = false;
      check_position = after > 0;
      if (check_position) continue;
    }
    const json& entries = member(reply.result, "entries");
    if (entries.empty()) check_position = after > 0;
    for (const auto& e : entries) {
      if (ctx.json_output()) {
        std::cout << e.dump() << '\n';
      } else {
        std::cout << text(member(e, "seq")) << '\t' << text(member(e, "at")) << '\t' << text(member(e, "action"))
                  << '\t' << text(member(e, "key")) << '\t' << text(member(e, "category")) << '\t'
                  << text(member(e, "actor")) << '\t' << text(member(e, "reason")) << '\n';
      }
      after = member(e, "seq").get<std::int64_t>();
      after_hash = member(e, "hash").get<std::string>();
    }
    std::cout.flush();
    if (!std::cout) return kFailed;  // the reader went away
  }
}

int cmd_audit(Context& ctx) {
  if (!ctx.args().empty()) {
    if (ctx.args()[0] != "checkpoint") throw usage("unknown audit subcommand '" + ctx.args()[0] + "' (checkpoint)");
    return cmd_audit_checkpoint(ctx);
  }
  json params = json::object();
  if (const auto limit = ctx.option_as<long>("limit")) params["limit"] = *limit;
  if (const auto after = ctx.option_as<long>("after")) params["after"] = *after;
  if (const auto key = ctx.option("key")) params["key"] = *key;
  if (const auto subject = ctx.option("subject")) params["subject"] = *subject;
  if (ctx.option("after-hash") && (!ctx.flag("follow") || !ctx.option_as<long>("after"))) {
    throw usage("--after-hash goes with --follow and --after: the hash of the entry the copy ends with");
  }
  if (ctx.flag("follow")) return cmd_audit_follow(ctx, std::move(params));
  const json r = ctx.call("audit.tail", params);
  if (ctx.json_output()) return print_json(r);
  const json& entries = member(r, "entries");
  if (entries.empty()) {
    std::cout << "no audit entries\n";
    return kOk;
  }
  Table t({"SEQ", "AT", "ACTION", "KEY", "CATEGORY", "PHASE", "ACTOR", "REASON"});
  t.align_right(0);
  for (const auto& e : entries) {
    t.add({text(member(e, "seq")), text(member(e, "at")), text(member(e, "action")),
           text(member(e, "key")), text(member(e, "category")), text(member(e, "phase")),
           text(member(e, "actor")), text(member(e, "reason"))});
  }
  t.print(std::cout);
  return kOk;
}

int cmd_verify(Context& ctx) {
  json params = json::object();
  if (ctx.flag("full")) params["full"] = true;
  for (const auto& file : ctx.repeated("checkpoint")) {
    for (auto& cp : read_json_documents(file)) params["checkpoints"].push_back(std::move(cp));
  }
  const json r = ctx.call("audit.verify", params);
  const bool ok = member(r, "ok") == true;
  if (ctx.json_output()) {
    print_json(r);
  } else if (ok) {
    std::cout << "audit chain intact: " << count_of(member(r, "entries"), "entry", "entries")
              << ", head " << text(member(r, "head")) << '\n';
  } else {
    if (!member(r, "first_bad").is_null()) {
      std::cout << "audit chain BROKEN: first bad entry is seq " << text(member(r, "first_bad"))
                << " (of " << count_of(member(r, "entries"), "entry", "entries") << ")\n";
    }
  }
  if (!ctx.json_output() && r.contains("checkpoints")) {
    for (const auto& cp : r["checkpoints"]) {
      const bool extended = member(cp, "extended") == true;
      std::cout << "checkpoint seq " << text(member(cp, "seq")) << ": "
                << (extended ? "extended by the present chain" : "NOT extended: the log was rewritten since")
                << (cp.contains("signature_valid") && cp["signature_valid"] != true ? " (its signature is NOT this daemon's)" : "")
                << '\n';
    }
  }
  return ok ? kOk : kBrokenChain;
}

int cmd_pubkey(Context& ctx) {
  const json r = ctx.call("status");
  const json& key = member(r, "signing_key");
  if (ctx.json_output()) return print_json(json{{"signing_key", key}});
  if (!key.is_string()) throw Failure{kFailed, "the daemon has no signing key"};
  std::cout << key.get<std::string>() << '\n';
  return kOk;
}

// receipt verify FILE: offline, with --pubkey (else the daemon's key);
// receipt get KEY: record.receipt.
int cmd_receipt(Context& ctx) {
  const std::string& what = ctx.args()[0];
  if (what == "get") {
    const json r = ctx.call("record.receipt", {{"key", ctx.args()[1]}});
    if (const auto out = ctx.option("out")) {
      write_json_file(*out, r);
      return kOk;
    }
    if (ctx.json_output()) return print_json(r);
    std::cout << r.dump() << '\n';
    return kOk;
  }
  if (what != "verify") throw usage("unknown receipt subcommand '" + what + "' (verify or get)");
  std::string key_b64;
  if (const auto given = ctx.option("pubkey")) {
    key_b64 = *given;
  } else {
    const json& key = member(ctx.call("status"), "signing_key");
    if (!key.is_string()) throw Failure{kFailed, "the daemon has no signing key; give --pubkey"};
    key_b64 = key.get<std::string>();
  }
  const auto public_key = retentiond::crypto::base64_decode(key_b64);
  if (!public_key || public_key->size() != retentiond::crypto::kEd25519PublicKeyBytes) {
    throw usage("--pubkey must be the base64 of a 32-byte Ed25519 public key");
  }
  const auto documents = read_json_documents(ctx.args()[1]);
  if (documents.size() != 1) throw Failure{kFailed, ctx.args()[1] + ": expected one receipt, found " + std::to_string(documents.size())};
  // A whole subject.erase answer is accepted too: its receipt is checked.
  const json& doc = documents[0];
  const json& receipt = doc.is_object() && doc.contains("receipt") ? doc["receipt"] : doc;
  const auto v = retentiond::proof::verify(receipt, *public_key);
  if (ctx.json_output()) {
    print_json(json{{"valid", v.valid}, {"problem", v.valid ? json(nullptr) : json(v.problem)}});
  } else if (v.valid) {
    std::cout << "receipt valid: signed by " << key_b64 << '\n';
  } else {
    std::cout << "receipt INVALID: " << v.problem << '\n';
  }
  return v.valid ? kOk : kBrokenChain;
}

int cmd_confirm_clock(Context& ctx) {
  const json r = ctx.call("clock.confirm");
  if (ctx.json_output()) return print_json(r);
  std::cout << "clock confirmed: disposal resumes at the daemon's present time\n";
  return kOk;
}

int cmd_reload(Context& ctx) {
  const json r = ctx.call("config.reload", {{"confirm", ctx.flag("confirm")}});
  if (ctx.json_output()) return print_json(r);
  const json& changed = member(r, "changed_categories");
  Table t;
  t.add({"policy", text(member(r, "hash"))});
  t.add({"changed categories", changed.empty() ? "none" : join(changed, ", ")});
  t.add({"newly due", text(member(r, "newly_due"))});
  std::cout << "policy reloaded\n";
  t.print(std::cout);
  return kOk;
}

// ---------------------------------------------------------------------------
// import

// The rejects file of `import --rejects FILE`: one JSON line per line of the
// import that was not stored, {"line": N, "error": {"code", "reason",
// "message"}, "text": "the line as read"}, in the order of the import file.
class Rejects {
 public:
  // Creates or empties `path`. Throws Failure{kFailed} when it cannot.
  explicit Rejects(std::string path) : m_path(std::move(path)), m_out(m_path, std::ios::trunc) {
    if (!m_out) fail("cannot create");
  }

  const std::string& path() const { return m_path; }
  std::size_t count() const { return m_written + m_pending.size(); }

  // Bad lines are found out of order (a line that is not JSON before the
  // batch around it is answered): they wait here until flush().
  void add(std::size_t line, ordered error, const std::string& text) {
    m_pending.push_back({line, std::move(error), text});
  }

  // Writes the pending rejects of lines before `before`, in line order, and
  // forgets the others (the import stopped before reaching them).
  void flush(std::size_t before = static_cast<std::size_t>(-1)) {
    std::stable_sort(m_pending.begin(), m_pending.end(),
                     [](const Entry& a, const Entry& b) { return a.line < b.line; });
    for (const auto& e : m_pending) {
      if (e.line >= before) break;
      ordered entry = {{"line", e.line}, {"error", e.error}, {"text", e.text}};
      // A line that is not UTF-8 is kept, with U+FFFD for its bad bytes.
      m_out << entry.dump(-1, ' ', false, ordered::error_handler_t::replace) << '\n';
      ++m_written;
    }
    m_pending.clear();
    m_out.flush();
    if (!m_out) fail("cannot write to");
  }

 private:
  struct Entry {
    std::size_t line;
    ordered error;
    std::string text;
  };

  [[noreturn]] void fail(const char* what) const {
    const std::string message =
        std::string(what) + " the rejects file " + m_path + ": " + std::strerror(errno);
    throw Failure{kFailed, "import: " + message, client_error("cannot_write", message)};
  }

  std::string m_path;
  std::ofstream m_out;
  std::vector<Entry> m_pending;
  std::size_t m_written = 0;
};

// Streams a JSON-lines file into record.put_many batches. Only the batch
// being built is in memory.
//
// A batch is all or nothing: the daemon refuses it whole for one bad
// record, naming the record in error.data.index. Without a rejects file the
// import stops there. With one, the bad record is written to it and the
// others are sent again: the records before it (which the daemon found
// good) in one call, the rest in two halves: a batch of n records, however
// many of them are bad, is then sent about log n times over, not n times.
class Importer {
 public:
  Importer(Context& ctx, std::string name, std::istream& in, std::size_t batch_size,
           std::optional<std::uintmax_t> total_bytes, Rejects* rejects)
      : m_ctx(ctx),
        m_name(std::move(name)),
        m_in(in),
        m_batch_size(batch_size),
        m_total_bytes(total_bytes),
        m_rejects(rejects),
        m_progress(::isatty(STDERR_FILENO) == 1) {}

  int run() {
    m_start = std::chrono::steady_clock::now();
    std::string line;
    while (std::getline(m_in, line)) {
      ++m_line_no;
      m_bytes_read += line.size() + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      add(line);
    }
    if (m_in.bad()) {
      const std::string message = "read error after line " + std::to_string(m_line_no);
      stop(m_name + ": " + message, first_unsent(), client_error("cannot_read", message));
    }
    if (!m_batch.empty()) send();
    if (m_rejects != nullptr) m_rejects->flush();
    const double seconds = elapsed_seconds();
    clear_progress();
    const std::size_t rejected = m_rejects != nullptr ? m_rejects->count() : 0;
    if (m_ctx.json_output()) {
      print_json({{"imported", m_imported},
                  {"rejected", rejected},
                  {"lines", m_line_no},
                  {"batches", m_batches},
                  {"seconds", seconds}});
    } else {
      char summary[128];
      std::snprintf(summary, sizeof summary, "imported %zu record%s in %.2f s (%.0f/s)", m_imported,
                    m_imported == 1 ? "" : "s", seconds,
                    static_cast<double>(m_imported) / std::max(seconds, 0.001));
      std::cout << summary;
      if (m_rejects != nullptr) {
        std::cout << ", rejected " << count_of(json(rejected), "line", "lines");
      }
      std::cout << '\n';
    }
    if (rejected == 0) return kOk;
    const std::string message = count_of(json(rejected), "line was", "lines were") + " rejected; " +
                                m_rejects->path() + " has their line numbers, errors and text";
    ordered error = client_error("rejected", message);
    error["rejected"] = rejected;
    error["rejects"] = m_rejects->path();
    throw Failure{kFailed, "import: " + message, error};
  }

 private:
  // A line on its way to the daemon.
  struct Pending {
    json record;
    std::size_t line;
    std::string text;  // the line as read; kept only for a rejects file
  };

  void add(const std::string& line) {
    json record;
    try {
      record = json::parse(line);
    } catch (const json::parse_error& e) {
      // The codes and reasons the daemon gives a line that is not JSON, or
      // params that are not an object.
      bad_line(m_line_no, line,
               client_line_error(-32700, "parse_error", "not valid JSON: " + parse_error_text(e)));
      return;
    }
    if (!record.is_object()) {
      bad_line(
          m_line_no, line,
          client_line_error(-32602, "invalid_params",
                            std::string("not a JSON object (got ") + record.type_name() + ")"));
      return;
    }
    if (!m_batch.empty() && m_batch_bytes + line.size() > kMaxBatchBytes) send();
    m_batch.push_back({std::move(record), m_line_no, m_rejects != nullptr ? line : std::string()});
    m_batch_bytes += line.size() + 1;
    if (m_batch.size() >= m_batch_size) send();
  }

  static ordered client_line_error(int code, const char* reason, const std::string& message) {
    return {{"code", code}, {"reason", reason}, {"message", message}};
  }

  // A line found bad before it is sent: into the rejects file, or the end
  // of the import, before the batch around it is sent.
  void bad_line(std::size_t line, const std::string& text, const ordered& error) {
    if (m_rejects != nullptr) {
      m_rejects->add(line, error, text);
      return;
    }
    stop(where(line) + ": " + error["message"].get<std::string>(), first_unsent(),
         with_line(error, line));
  }

  void send() {
    std::vector<Pending> batch = std::move(m_batch);
    m_batch.clear();
    m_batch_bytes = 0;
    put(std::move(batch));
    // Every line read so far is now stored or rejected.
    if (m_rejects != nullptr) m_rejects->flush();
    show_progress();
  }

  // Stores `items` (in file order) with record.put_many, setting bad
  // records aside as the class comment says.
  void put(std::vector<Pending> items) {
    if (items.empty()) return;
    json records = json::array();
    for (const auto& p : items) records.push_back(p.record);
    json params = json::object();
    params["records"] = std::move(records);
    Reply reply;
    try {
      reply = m_ctx.try_call("record.put_many", params);
    } catch (Failure& f) {
      // The connection is lost: say how far the import got.
      clear_progress();
      if (m_rejects != nullptr) m_rejects->flush(items.front().line);
      f.message += "\nretentionctl: import: stopped: " + outcome(items.front().line);
      throw;
    }
    if (reply.ok()) {
      m_imported += items.size();
      ++m_batches;
      return;
    }
    const json& data = member(reply.error, "data");
    const json& index = member(data, "index");
    if (index.is_number_unsigned() && index.get<std::size_t>() < items.size()) {
      const auto i = static_cast<std::ptrdiff_t>(index.get<std::size_t>());
      // The daemon counts within the batch; the operator needs the file's line.
      std::string message = text(member(reply.error, "message"));
      const std::string prefix = "records[" + index.dump() + "]: ";
      if (message.rfind(prefix, 0) == 0) message.erase(0, prefix.size());
      reject(items[static_cast<std::size_t>(i)], reply.error, message, items.front().line);
      std::vector<Pending> rest(std::make_move_iterator(items.begin() + i + 1),
                                std::make_move_iterator(items.end()));
      items.resize(static_cast<std::size_t>(i));
      put(std::move(items));  // found good: they go through
      put_halves(std::move(rest));
      return;
    }
    if (member(data, "reason") == "too_large") {
      // Over daemon.max_request_bytes or max_put_many: smaller batches may
      // pass; one record alone cannot.
      if (items.size() > 1) {
        put_halves(std::move(items));
        return;
      }
      reject(items.front(), reply.error, text(member(reply.error, "message")), items.front().line);
      return;
    }
    // Not about one line (storage_error, forbidden, busy...): nothing more
    // can be stored.
    const std::string lines = items.size() == 1
                                  ? where(items.front().line)
                                  : m_name + ": lines " + std::to_string(items.front().line) + "-" +
                                        std::to_string(items.back().line);
    stop(lines + ": record.put_many: " + describe(reply.error), items.front().line,
         daemon_error("record.put_many", reply.error));
  }

  void put_halves(std::vector<Pending> items) {
    if (items.size() <= 1) {
      put(std::move(items));
      return;
    }
    const auto half = static_cast<std::ptrdiff_t>(items.size() / 2);
    std::vector<Pending> second(std::make_move_iterator(items.begin() + half),
                                std::make_move_iterator(items.end()));
    items.resize(static_cast<std::size_t>(half));
    put(std::move(items));
    put(std::move(second));
  }

  // A record the daemon refused. `first_unsent_line`: the first line of the
  // refused call, where an import without a rejects file stops.
  void reject(const Pending& item, const json& error, const std::string& message,
              std::size_t first_unsent_line) {
    const json& reason = member(member(error, "data"), "reason");
    ordered e = {{"code", member(error, "code")}, {"reason", reason}, {"message", message}};
    if (m_rejects != nullptr) {
      m_rejects->add(item.line, std::move(e), item.text);
      return;
    }
    const std::string shown =
        message + (reason.is_string() ? " [" + reason.get<std::string>() + "]" : "");
    e["method"] = "record.put_many";
    stop(where(item.line) + ": record.put_many: " + shown, first_unsent_line,
         with_line(e, item.line));
  }

  ordered with_line(ordered error, std::size_t line) const {
    error["file"] = m_name;
    error["line"] = line;
    return error;
  }

  // The first line not stored when the import stops while building a batch.
  std::size_t first_unsent() const { return m_batch.empty() ? m_line_no : m_batch.front().line; }

  // What is stored when the import stops with line `first_unsent_line`.
  std::string outcome(std::size_t first_unsent_line) const {
    const std::string line = std::to_string(first_unsent_line);
    const std::size_t rejected = m_rejects != nullptr ? m_rejects->count() : 0;
    if (m_imported == 0 && rejected == 0) return "nothing was imported";
    std::string out;
    if (m_rejects == nullptr) {
      out = "the " + count_of(json(m_imported), "record", "records") + " before line " + line +
            (m_imported == 1 ? " was imported and stays" : " were imported and stay") +
            " committed";
    } else {
      out = "before line " + line + ", " +
            count_of(json(m_imported), "record was", "records were") +
            " imported and stay committed, and " +
            count_of(json(rejected), "line was", "lines were") + " rejected (see " +
            m_rejects->path() + ")";
    }
    return out + "; nothing from line " + line + " on was stored";
  }

  // Stops the import. What was sent stays committed; from
  // `first_unsent_line` on, nothing is stored.
  [[noreturn]] void stop(const std::string& what, std::size_t first_unsent_line, ordered error) {
    clear_progress();
    if (m_rejects != nullptr) m_rejects->flush(first_unsent_line);
    error["imported"] = m_imported;
    if (m_rejects != nullptr) error["rejected"] = m_rejects->count();
    error["first_unsent_line"] = first_unsent_line;
    throw Failure{
        kFailed,
        "import: " + what + "\nretentionctl: import: stopped: " + outcome(first_unsent_line),
        std::move(error)};
  }

  std::string where(std::size_t line) const { return m_name + ":" + std::to_string(line); }

  // nlohmann's message without its "[json.exception.parse_error.101] " tag,
  // and with "line 1" left out: the whole text is one line of the file.
  static std::string parse_error_text(const json::parse_error& e) {
    std::string message = e.what();
    if (const auto end = message.find("] ");
        message.rfind("[json.", 0) == 0 && end != std::string::npos) {
      message.erase(0, end + 2);
    }
    if (const auto at = message.find("at line 1, column"); at != std::string::npos) {
      message.erase(at + 3, std::string_view("line 1, ").size());
    }
    return message;
  }

  void show_progress() {
    if (!m_progress) return;
    std::string bar;
    if (m_total_bytes && *m_total_bytes > 0) {
      constexpr int kWidth = 30;
      const double done =
          std::min(1.0, static_cast<double>(m_bytes_read) / static_cast<double>(*m_total_bytes));
      const int filled = static_cast<int>(done * kWidth);
      bar = "[" + std::string(static_cast<std::size_t>(filled), '#') +
            std::string(static_cast<std::size_t>(kWidth - filled), '.') + "] " +
            std::to_string(static_cast<int>(done * 100)) + "%  ";
    }
    const double rate = static_cast<double>(m_imported) / std::max(elapsed_seconds(), 0.001);
    std::cerr << "\r" << bar << count_of(json(m_imported), "record", "records") << ", line "
              << m_line_no << ", " << static_cast<long>(rate) << "/s" << std::flush;
  }

  double elapsed_seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - m_start).count();
  }

  void clear_progress() {
    if (m_progress) std::cerr << "\r\033[K" << std::flush;
  }

  Context& m_ctx;
  std::string m_name;
  std::istream& m_in;
  std::size_t m_batch_size;
  std::optional<std::uintmax_t> m_total_bytes;
  Rejects* m_rejects;  // null: stop at the first bad line
  bool m_progress;
  std::vector<Pending> m_batch;
  std::size_t m_batch_bytes = 0;
  std::size_t m_line_no = 0;
  std::uintmax_t m_bytes_read = 0;
  std::size_t m_imported = 0;
  std::size_t m_batches = 0;
  std::chrono::steady_clock::time_point m_start;
};

int cmd_import(Context& ctx) {
  const long batch = ctx.option_as<long>("batch").value_or(kDefaultBatch);
  if (batch < 1 || batch > kMaxBatch) {
    throw usage("--batch must be 1.." + std::to_string(kMaxBatch));
  }
  const std::string& path = ctx.args()[0];
  const auto rejects_path = ctx.option("rejects");
  if (rejects_path) {
    std::error_code ec;
    if (path != "-" && std::filesystem::equivalent(path, *rejects_path, ec)) {
      throw usage("--rejects names the import file itself, which it would empty");
    }
  }
  ctx.connection();  // a missing daemon is reported before any file is opened
  std::ifstream file;
  std::optional<std::uintmax_t> size;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) {
      const std::string message = "cannot open " + path + ": " + std::strerror(errno);
      throw Failure{kFailed, "import: " + message, client_error("cannot_read", message)};
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      size = static_cast<std::uintmax_t>(st.st_size);
    }
  }
  std::optional<Rejects> rejects;
  if (rejects_path) rejects.emplace(*rejects_path);
  return Importer(ctx, path == "-" ? "stdin" : path, path == "-" ? std::cin : file,
                  static_cast<std::size_t>(batch), size, rejects ? &*rejects : nullptr)
      .run();
}

// ---------------------------------------------------------------------------
// The table of subcommands

using cxxopts::value;

void put_options(cxxopts::Options& o) {
  auto add = o.add_options();
  add("subject", "the record's subject", value<std::string>(), "S");
  add("category", "the record's category", value<std::string>(), "C");
  add("f,field", "a field, sent as a string (repeatable)", value<std::vector<std::string>>(),
      "NAME=VALUE");
  add("d,date", "a date (repeatable)", value<std::vector<std::string>>(), "NAME=TIME");
}

void event_options(cxxopts::Options& o) {
  auto add = o.add_options();
  add("subject", "every record of this subject", value<std::string>(), "S");
  add("key", "this record only", value<std::string>(), "K");
}

void erase_options(cxxopts::Options& o) {
  auto add = o.add_options();
  add("key", "erase this one record (instead of a subject's)", value<std::string>(), "KEY");
  add("category", "only the subject's records of this category (repeatable)",
      value<std::vector<std::string>>(), "NAME");
  add("reason", "why (required; written to the audit log)", value<std::string>(), "TEXT");
  add("dry-run", "show what would be erased and retained, change nothing");
  add("receipt", "write the signed erasure receipt to FILE (check it with `receipt verify FILE`)",
      value<std::string>(), "FILE");
}

void hold_options(cxxopts::Options& o) {
  auto add = o.add_options();
  add("subject", "hold every record of this subject", value<std::string>(), "S");
  add("category", "hold every record of this category", value<std::string>(), "C");
  add("key", "hold this record", value<std::string>(), "K");
  add("reason", "why (required; written to the audit log)", value<std::string>(), "TEXT");
}

void restore_options(cxxopts::Options& o) {
  o.add_options()("reason", "why (required; written to the audit log)", value<std::string>(), "TEXT");
}

void jobs_options(cxxopts::Options& o) {
  auto add = o.add_options();
  add("state", "only jobs in this state: pending, in_flight or failed", value<std::string>(), "S");
  add("limit", "at most N jobs (default 100)", value<int>(), "N");
}

void retry_options(cxxopts::Options& o) {
  o.add_options()("all", "every failed job of the connector");
}

void discard_options(cxxopts::Options& o) {
  o.add_options()("reason", "why (required; written to the audit log)", value<std::string>(), "TEXT");
}

void release_options(cxxopts::Options& o) {
  o.add_options()("reason", "why (written to the audit log)", value<std::string>(), "TEXT");
}

void plan_options(cxxopts::Options& o) {
  auto add = o.add_options();
  add("until", "count the phases due before this time (default: a year after the start)",
      value<std::string>(), "TIME");
  add("from", "start here (default: the daemon's now)", value<std::string>(), "TIME");
  add("policy", "plan under this candidate policy file and compare it with the adopted one (nothing is adopted)",
      value<std::string>(), "FILE");
}

void sweep_options(cxxopts::Options& o) {
  o.add_options()("dry-run", "count what would run, change nothing");
}

void audit_options(cxxopts::Options& o) {
  auto add = o.add_options();
  add("limit", "at most N entries (default 100, at most 10000)", value<long>(), "N");
  add("after", "the first entries after this sequence number", value<long>(), "SEQ");
  add("key", "only the entries of this record key", value<std::string>(), "K");
  add("subject", "only the entries of this subject", value<std::string>(), "S");
  add("follow", "stream every entry after --after SEQ (default: from the first) as it is appended, forever "
                "(JSON lines with --json): a copy of the log off the host");
  add("after-hash", "with --follow: the hash of entry SEQ as the copy has it; a log that no longer holds it "
                    "(restored from a backup) stops the stream",
      value<std::string>(), "HASH");
}

void verify_options(cxxopts::Options& o) {
  o.add_options()("full", "recompute the whole chain from entry 1 (administrators only), not only what was appended "
                          "since the daemon last checked it");
  o.add_options()("checkpoint", "also check that the chain extends the checkpoints in FILE (as `audit checkpoint` "
                                "prints them, one per line; repeatable)",
                  value<std::vector<std::string>>(), "FILE");
}

void receipt_options(cxxopts::Options& o) {
  o.add_options()("pubkey", "verify: the daemon's public key, base64 (as `pubkey` prints it); without it, the "
                            "daemon is asked",
                  value<std::string>(), "B64");
  o.add_options()("out", "get: write the receipt to FILE", value<std::string>(), "FILE");
}

void reload_options(cxxopts::Options& o) {
  o.add_options()("confirm", "apply the policy even when the reload guard trips");
}

void import_options(cxxopts::Options& o) {
  auto add = o.add_options();
  add("batch", "records per record.put_many (default 1000, at most 10000)", value<long>(), "N");
  add("rejects", "go on past bad lines, and write them with their errors to FILE (JSON lines)",
      value<std::string>(), "FILE");
}

void report_options(cxxopts::Options& o) {
  auto add = o.add_options();
  add("html", "write the report to FILE, one self-contained HTML page (required)",
      value<std::string>(), "FILE");
  add("until", "forecast the disposals due before this time (default: a year after now)",
      value<std::string>(), "TIME");
}

int cmd_help(Context& ctx);  // after the table of commands, which it lists

struct Command {
  const char* name;
  const char* synopsis;  // after "retentionctl "
  const char* summary;
  std::size_t min_args;
  std::size_t max_args;
  void (*add_options)(cxxopts::Options&);  // null: only the common options
  int (*run)(Context&);
};

// clang-format off
const Command kCommands[] = {
    {"status", "status",
     "the daemon's state: policy, records, next due time, backlog, last sweep",
     0, 0, nullptr, cmd_status},
    {"put", "put KEY --subject S --category C [-f NAME=VALUE]... [-d NAME=TIME]...",
     "store a record, or replace an active one (record.put)",
     1, 1, put_options, cmd_put},
    {"explain", "explain KEY",
     "a record's phases and when each is due, or the proof of its disposal",
     1, 1, nullptr, cmd_explain},
    {"event", "event NAME TIME (--subject S | --key K)",
     "set a date (left, contract_end...) on a subject's records or one record",
     2, 2, event_options, cmd_event},
    {"export", "export SUBJECT",
     "a subject's active and archived records, with their fields",
     1, 1, nullptr, cmd_export},
    {"erase", "erase (SUBJECT [--category NAME]... | --key KEY) --reason TEXT [--dry-run | --receipt FILE]",
     "erase a subject's records, or one record, except under legal obligation or hold",
     0, 1, erase_options, cmd_erase},
    {"hold", "hold (--subject S | --category C | --key K) --reason TEXT",
     "stop the disposal and erasure of records until released",
     0, 0, hold_options, cmd_hold},
    {"release", "release ID [--reason TEXT]",
     "release a hold",
     1, 1, release_options, cmd_release},
    {"restore", "restore KEY --reason TEXT",
     "bring back a record purged within the undo window (daemon.purge_grace)",
     1, 1, restore_options, cmd_restore},
    {"holds", "holds",
     "the holds in force",
     0, 0, nullptr, cmd_holds},
    {"connectors", "connectors",
     "each connector with its jobs pending, in flight, failed and done, and its last error",
     0, 0, nullptr, cmd_connectors},
    {"jobs", "jobs CONNECTOR [--state S] [--limit N]",
     "a connector's unfinished jobs (or those in one state)",
     1, 1, jobs_options, cmd_jobs},
    {"retry", "retry CONNECTOR (ID... | --all)",
     "make failed jobs pending again",
     1, 1001, retry_options, cmd_retry},
    {"discard", "discard CONNECTOR ID... --reason TEXT",
     "drop unfinished jobs (audited; their subjects are destroyed)",
     2, 1001, discard_options, cmd_discard},
    {"plan", "plan [--until TIME] [--from TIME] [--policy FILE]",
     "what will be archived, anonymised and purged, month by month",
     0, 0, plan_options, cmd_plan},
    {"sweep", "sweep [--dry-run]",
     "run every due phase now",
     0, 0, sweep_options, cmd_sweep},
    {"audit", "audit [checkpoint] [--limit N] [--after SEQ] [--key K] [--subject S] [--follow [--after-hash H]]",
     "audit log entries: the last N, or the first N after SEQ, or all as they come; or a signed checkpoint",
     0, 1, audit_options, cmd_audit},
    {"verify", "verify [--full] [--checkpoint FILE]",
     "check the audit log's hash chain: what was appended since the last check, or all of it (exit 4 when broken)",
     0, 0, verify_options, cmd_verify},
    {"metrics", "metrics",
     "the daemon's metrics in the Prometheus text format (counts, lateness, actions, sweeps)",
     0, 0, nullptr, cmd_metrics},
    {"reload", "reload [--confirm]",
     "reload the policy file",
     0, 0, reload_options, cmd_reload},
    {"pubkey", "pubkey",
     "the daemon's public key (base64): what receipts and checkpoints are verified with",
     0, 0, nullptr, cmd_pubkey},
    {"receipt", "receipt (verify FILE [--pubkey B64] | get KEY [--out FILE])",
     "check a signed erasure receipt offline, or get the receipt of a purged record",
     2, 2, receipt_options, cmd_receipt},
    {"confirm-clock", "confirm-clock",
     "accept the daemon's clock as it is now: lifts a clock guard pause",
     0, 0, nullptr, cmd_confirm_clock},
    {"import", "import FILE.jsonl|- [--batch N] [--rejects FILE]",
     "store the records of a JSON-lines file, one record.put params per line",
     1, 1, import_options, cmd_import},
    {"report", "report --html FILE [--until TIME]",
     "a retention report for people: register, records, disposal charts, holds, audit chain",
     0, 0, report_options, cmd_report},
    {"call", "call METHOD ['JSON params']",
     "call any method and print its result as JSON",
     1, 2, nullptr, cmd_call},
    {"help", "help [COMMAND]",
     "this list and the daemon's methods, or one command's arguments and options",
     0, 1, nullptr, cmd_help},
};
// clang-format on

const Command* find_command(std::string_view name) {
  for (const auto& c : kCommands) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

void add_common_options(cxxopts::Options& o) {
  auto add = o.add_options();
  add("s,socket",
      std::string("admin socket (default: $RETENTIOND_SOCKET, or ") + kDefaultSocket + ")",
      value<std::string>(), "PATH");
  add("json", "print the daemon's result as JSON");
  add("h,help", "print this help and exit");
}

// The option list of `o`, without cxxopts' own usage line.
std::string options_help(const cxxopts::Options& o) {
  std::string help = o.help({}, /*print_usage=*/false);
  help.erase(0, help.find_first_not_of('\n'));
  return help;
}

void print_general_help(std::ostream& out) {
  out << "usage: retentionctl [--socket PATH] [--json] COMMAND [ARGS...]\n\n"
         "Talk to retentiond over its admin socket.\n\nCommands:\n";
  Table commands;
  for (const auto& c : kCommands) commands.add({std::string("  ") + c.name, c.summary});
  commands.print(out);
  cxxopts::Options o("retentionctl");
  o.custom_help("").set_width(110);
  add_common_options(o);
  o.add_options()("version", "print the version and exit");
  out << "\nOptions:\n"
      << options_help(o)
      << "\nRun 'retentionctl help COMMAND' (or 'retentionctl COMMAND --help') for a command's\n"
         "arguments and options, and 'retentionctl help' for the daemon's methods as well.\n"
         "Exit codes: 0 ok, 1 the daemon answered with an error (or import stopped or\n"
         "rejected lines), 2 usage, 3 cannot reach the daemon, 4 verify found a broken audit\n"
         "chain.\n";
}

// The position of the command word in argv: the first word that is not an
// option, skipping the value of --socket. 0 when there is none.
int command_position(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-s" || arg == "--socket") {
      ++i;
    } else if (arg.empty() || arg[0] != '-' || arg == "-") {
      return i;
    }
  }
  return 0;
}

cxxopts::Options command_options(const Command& command) {
  cxxopts::Options options(std::string("retentionctl ") + command.name);
  options.custom_help("").set_width(110);
  if (command.add_options != nullptr) command.add_options(options);
  add_common_options(options);
  return options;
}

void print_command_help(const Command& command, std::ostream& out) {
  out << "usage: retentionctl " << command.synopsis << "\n\n"
      << command.summary << "\n\nOptions:\n"
      << options_help(command_options(command));
}

// `help`: what --help prints, and then the daemon's own list of methods
// (the `help` method), which `call` reaches and which the daemon's
// "unknown method" message points to. `help COMMAND` is `COMMAND --help`.
int cmd_help(Context& ctx) {
  if (ctx.args().size() == 1) {
    const Command* command = find_command(ctx.args()[0]);
    if (command == nullptr) {
      throw usage("help: there is no command '" + ctx.args()[0] + "' (see 'retentionctl help')");
    }
    print_command_help(*command, std::cout);
    return kOk;
  }
  json methods = nullptr;
  std::string unavailable;
  try {
    methods = member(ctx.call("help"), "methods");
  } catch (const Failure& f) {
    // The list of commands does not need the daemon; its methods do.
    unavailable = f.message.substr(0, f.message.find('\n'));
  }
  if (ctx.json_output()) {
    ordered commands = ordered::array();
    for (const auto& c : kCommands) {
      commands.push_back({{"name", c.name}, {"synopsis", c.synopsis}, {"summary", c.summary}});
    }
    ordered out = {{"commands", commands}, {"methods", methods}};
    if (!unavailable.empty()) out["methods_unavailable"] = unavailable;
    std::cout << out.dump(2) << '\n';
    return kOk;
  }
  print_general_help(std::cout);
  if (!unavailable.empty()) {
    std::cout << "\nThe daemon's methods are listed here when it answers; it did not: "
              << unavailable << "\n";
    return kOk;
  }
  std::cout << "\nMethods of the daemon, for 'retentionctl call METHOD ['JSON params']':\n";
  Table t;
  for (const auto& m : methods) {
    t.add({"  " + text(member(m, "name")), text(member(m, "role")), text(member(m, "summary"))});
  }
  t.print(std::cout);
  return kOk;
}

int run_command(const Command& command, int argc, char** argv) {
  cxxopts::Options options = command_options(command);
  const auto opts = options.parse(argc, argv);
  if (opts.count("help")) {
    print_command_help(command, std::cout);
    return kOk;
  }
  std::vector<std::string> args = opts.unmatched();
  if (!args.empty()) args.erase(args.begin());  // the command word itself
  if (args.size() < command.min_args || args.size() > command.max_args) {
    throw usage(
        std::string(command.name) + ": expected " +
        (command.min_args == command.max_args
             ? std::to_string(command.min_args)
             : std::to_string(command.min_args) + " to " + std::to_string(command.max_args)) +
        " argument" + (command.max_args == 1 ? "" : "s") + ", got " + std::to_string(args.size()));
  }
  std::string socket_path = kDefaultSocket;
  if (const char* env = std::getenv("RETENTIOND_SOCKET"); env != nullptr && *env != '\0') {
    socket_path = env;
  }
  if (opts.count("socket")) socket_path = opts["socket"].as<std::string>();
  Context ctx(socket_path, opts, std::move(args));
  return command.run(ctx);
}

// True when --json is among the options: errors are then reported as JSON
// too, even those found before the options are parsed.
bool json_requested(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-s" || arg == "--socket") {
      ++i;
    } else if (arg == "--json") {
      return true;
    }
  }
  return false;
}

// Prints a failure to standard error: for people, "retentionctl: " and the
// message, and after a usage error the command's usage line; with --json,
// one line {"error": {...}}. Returns the exit code.
int report(const Failure& f, const Command* command, bool as_json) {
  const std::string usage_line =
      std::string("retentionctl ") +
      (command != nullptr ? command->synopsis : "[--socket PATH] [--json] COMMAND [ARGS...]");
  if (as_json) {
    static const char* const kReasons[] = {"ok", "failed", "usage", "unreachable", "broken_chain"};
    ordered error = f.error;
    if (error.is_null()) {
      // The first line only: further lines are hints for people.
      error = client_error(kReasons[f.code], f.message.substr(0, f.message.find('\n')));
    }
    if (f.code == kUsage) error["usage"] = usage_line;
    std::cerr << ordered{{"error", error}}.dump() << '\n';
    return f.code;
  }
  std::cerr << "retentionctl: " << f.message << '\n';
  if (f.code == kUsage) std::cerr << "usage: " << usage_line << "  (see --help)\n";
  return f.code;
}

}  // namespace

int main(int argc, char** argv) {
  const int at = command_position(argc, argv);
  const Command* command = at > 0 ? find_command(argv[at]) : nullptr;
  const bool as_json = json_requested(argc, argv);
  try {
    if (at == 0) {
      for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--version") {
          std::cout << "retentionctl " << RETENTIOND_VERSION << '\n';
          return kOk;
        }
        if (arg == "-h" || arg == "--help") {
          print_general_help(std::cout);
          return kOk;
        }
      }
      throw usage("no command given");
    }
    if (command == nullptr) throw usage(std::string("unknown command '") + argv[at] + "'");
    return run_command(*command, argc, argv);
  } catch (const Failure& f) {
    return report(f, command, as_json);
  } catch (const cxxopts::exceptions::exception& e) {
    return report(usage(e.what()), command, as_json);
  } catch (const std::exception& e) {
    return report(Failure{kFailed, e.what(), client_error("failed", e.what())}, command, as_json);
  }
}
