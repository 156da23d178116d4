// retentionctl: the command-line client of retentiond's admin socket.
// `call METHOD [JSON]` reaches any method; the other subcommands print
// tables for people, or the raw result with --json.
//
// Exit codes: 0 success, 1 the daemon answered with an error, 2 usage,
// 3 cannot reach the daemon (socket missing, permission denied...).

#include <cstdlib>

// cxxopts splits vector values at ',' by default; JSON and field values
// contain commas, so splitting is turned off.
#define CXXOPTS_VECTOR_DELIMITER '\0'
#include <cxxopts.hpp>

#include "lib/util/asio.hpp"
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/version.hpp"

namespace asio = boost::asio;
using nlohmann::json;

namespace {

enum Exit { kOk = 0, kRpcError = 1, kUsage = 2, kUnreachable = 3 };

struct Failure {
  int code;
  std::string message;
};

json rpc(const std::string& socket_path, const std::string& method, const json& params) {
  asio::io_context io;
  asio::local::stream_protocol::socket socket(io);
  boost::system::error_code ec;
  socket.connect(asio::local::stream_protocol::endpoint(socket_path), ec);
  if (ec) {
    std::string hint;
    if (ec == boost::system::errc::no_such_file_or_directory || ec == asio::error::connection_refused) {
      hint = " (is retentiond running? the socket comes from --socket, RETENTIOND_SOCKET, or /run/retentiond/admin.sock)";
    } else if (ec == boost::system::errc::permission_denied) {
      hint = " (you need to be in the daemon's admin or reader group)";
    }
    throw Failure{kUnreachable, "cannot connect to " + socket_path + ": " + ec.message() + hint};
  }
  json request = {{"jsonrpc", "2.0"}, {"id", 1}, {"method", method}};
  if (!params.is_null()) request["params"] = params;
  const std::string line = request.dump() + "\n";
  asio::write(socket, asio::buffer(line), ec);
  if (ec) throw Failure{kUnreachable, "cannot send to " + socket_path + ": " + ec.message()};
  asio::streambuf buf;
  asio::read_until(socket, buf, '\n', ec);
  if (ec) throw Failure{kUnreachable, "no answer from " + socket_path + ": " + ec.message()};
  std::istream in(&buf);
  std::string reply;
  std::getline(in, reply);
  const json response = json::parse(reply);
  if (response.contains("error")) {
    const auto& e = response["error"];
    std::string message = e.value("message", "error");
    if (e.contains("data") && e["data"].contains("reason")) message += " [" + e["data"]["reason"].get<std::string>() + "]";
    throw Failure{kRpcError, message};
  }
  return response["result"];
}

std::string text(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

void print_status(const json& s) {
  std::cout << "version      " << text(s["version"]) << "\n"
            << "now          " << text(s["now"]) << "\n"
            << "started at   " << text(s["started_at"]) << "\n"
            << "policy       " << text(s["policy"]["hash"]).substr(0, 16) << "  (" << text(s["policy"]["categories"])
            << " categories)\n"
            << "records      active " << text(s["records"]["active"]) << ", archived " << text(s["records"]["archived"])
            << ", anonymised " << text(s["records"]["anonymised"]) << "\n"
            << "next due     " << text(s["next_due"]) << "\n"
            << "backlog      " << text(s["backlog"]) << "\n"
            << "paused       " << text(s["paused"]) << "\n";
}

void print_explain(const json& e) {
  std::cout << "key       " << text(e["key"]) << "\nstate     " << text(e["state"]) << "\n";
  if (e["state"] == "purged") {
    std::cout << "purged at " << text(e["purged_at"]) << "\naudit seq " << text(e["audit_seq"]) << "\n";
    return;
  }
  std::cout << "category  " << text(e["category"]) << "\nheld      " << text(e["held"]) << "\n\n";
  std::printf("%-3s %-10s %-22s %-6s %s\n", "#", "ACTION", "DUE", "DONE", "AT");
  for (const auto& p : e["phases"]) {
    std::string due = text(p["due"]);
    if (p["due"].is_null() && !p["missing"].empty()) {
      due = "waiting:";
      for (const auto& m : p["missing"]) due += " " + m.get<std::string>();
    }
    std::printf("%-3s %-10s %-22s %-6s %s\n", text(p["index"]).c_str(), text(p["action"]).c_str(), due.c_str(),
                p["done"].get<bool>() ? "yes" : "no", text(p["at"]).c_str());
  }
}

// "name=value" -> (name, value).
std::pair<std::string, std::string> split_assignment(const std::string& s, const char* what) {
  const auto eq = s.find('=');
  if (eq == std::string::npos || eq == 0) throw Failure{kUsage, std::string("expected ") + what + " as name=value, got '" + s + "'"};
  return {s.substr(0, eq), s.substr(eq + 1)};
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options("retentionctl", "Talk to retentiond over its admin socket.");
  options.positional_help("COMMAND [ARGS...]").show_positional_help();
  options.add_options()
      ("s,socket", "admin socket (default: $RETENTIOND_SOCKET or /run/retentiond/admin.sock)", cxxopts::value<std::string>())
      ("json", "print the raw JSON result")
      ("subject", "put: the record's subject", cxxopts::value<std::string>())
      ("category", "put: the record's category", cxxopts::value<std::string>())
      ("f,field", "put: a field, name=value (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("d,date", "put: a date, name=time (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("dry-run", "sweep: count what would happen, change nothing")
      ("version", "print the version and exit")
      ("h,help", "print this help and exit");
  // Positional words (COMMAND ARGS...) are left unmatched and read below.
  const std::string commands =
      "\nCommands:\n"
      "  call METHOD [JSON]      call any method, print its result as JSON\n"
      "  status                  daemon status\n"
      "  put KEY --subject S --category C [-f name=value]... [-d name=time]...\n"
      "  explain KEY             every phase of a record and when it is due\n"
      "  sweep [--dry-run]       run every due phase now\n";
  try {
    const auto opts = options.parse(argc, argv);
    if (opts.count("version")) {
      std::cout << "retentionctl " << RETENTIOND_VERSION << '\n';
      return kOk;
    }
    std::vector<std::string> words = opts.unmatched();
    if (opts.count("help") || words.empty()) {
      std::cout << options.help() << commands;
      return opts.count("help") ? kOk : kUsage;
    }
    std::string socket_path = "/run/retentiond/admin.sock";
    if (const char* env = std::getenv("RETENTIOND_SOCKET"); env != nullptr && *env != '\0') socket_path = env;
    if (opts.count("socket")) socket_path = opts["socket"].as<std::string>();
    const bool as_json = opts.count("json") > 0;
    const std::string command = words.front();
    const std::vector<std::string> args(words.begin() + 1, words.end());

    if (command == "call") {
      if (args.empty() || args.size() > 2) throw Failure{kUsage, "usage: retentionctl call METHOD ['JSON params']"};
      json params = nullptr;
      if (args.size() == 2) {
        try {
          params = json::parse(args[1]);
        } catch (const json::exception& e) {
          throw Failure{kUsage, std::string("the params are not valid JSON: ") + e.what()};
        }
      }
      std::cout << rpc(socket_path, args[0], params).dump(2) << '\n';
      return kOk;
    }
    if (command == "status") {
      const json r = rpc(socket_path, "status", nullptr);
      if (as_json) std::cout << r.dump(2) << '\n';
      else print_status(r);
      return kOk;
    }
    if (command == "explain") {
      if (args.size() != 1) throw Failure{kUsage, "usage: retentionctl explain KEY"};
      const json r = rpc(socket_path, "record.explain", {{"key", args[0]}});
      if (as_json) std::cout << r.dump(2) << '\n';
      else print_explain(r);
      return kOk;
    }
    if (command == "put") {
      if (args.size() != 1 || !opts.count("subject") || !opts.count("category")) {
        throw Failure{kUsage, "usage: retentionctl put KEY --subject S --category C [-f name=value]... [-d name=time]..."};
      }
      json params = {{"key", args[0]}, {"subject", opts["subject"].as<std::string>()},
                     {"category", opts["category"].as<std::string>()}, {"fields", json::object()}, {"dates", json::object()}};
      if (opts.count("field")) {
        for (const auto& f : opts["field"].as<std::vector<std::string>>()) {
          auto [n, v] = split_assignment(f, "a field");
          params["fields"][n] = v;
        }
      }
      if (opts.count("date")) {
        for (const auto& d : opts["date"].as<std::vector<std::string>>()) {
          auto [n, v] = split_assignment(d, "a date");
          params["dates"][n] = v;
        }
      }
      const json r = rpc(socket_path, "record.put", params);
      if (as_json) {
        std::cout << r.dump(2) << '\n';
      } else {
        const json& next = r["next"];
        std::cout << "stored " << text(r["key"]) << ": "
                  << (next.is_null() ? std::string("no phase")
                                     : text(next["action"]) + " due " +
                                           (next["due"].is_null() ? std::string("when ") + next["waiting_for"].dump() + " are recorded"
                                                                  : text(next["due"])))
                  << '\n';
      }
      return kOk;
    }
    if (command == "sweep") {
      const json r = rpc(socket_path, "sweep", {{"dry_run", opts.count("dry-run") > 0}});
      if (as_json) std::cout << r.dump(2) << '\n';
      else std::cout << "archived " << r["archived"] << ", anonymised " << r["anonymised"] << ", purged " << r["purged"]
                     << ", held " << r["held"] << " (" << r["duration_ms"] << " ms)\n";
      return kOk;
    }
    throw Failure{kUsage, "unknown command '" + command + "' (see --help)"};
  } catch (const Failure& f) {
    std::cerr << "retentionctl: " << f.message << '\n';
    return f.code;
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << "retentionctl: " << e.what() << " (see --help)\n";
    return kUsage;
  } catch (const std::exception& e) {
    std::cerr << "retentionctl: " << e.what() << '\n';
    return kRpcError;
  }
}
