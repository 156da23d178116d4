// retentionctl end to end: the real client binary against the real daemon
// on a temporary socket, whole outputs compared. The daemon's clock starts
// at 2030-01-01T00:00:00Z and runs on in real time, so the times it stamps
// (now, placed_at, audit entries...) are compared as 2030-01-01T00:mm:ssZ.

#include <cstring>
#include <fstream>
#include <regex>

#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/ctl/run_ctl.hpp"
#include "tests/support/daemon_process.hpp"

namespace retentiond::testing {
namespace {

using nlohmann::json;

constexpr const char* kPolicy = R"toml([daemon]
state_dir = "unused"

[[categories]]
name = "lead"
purpose = "Prospecting"
legal_basis = "legitimate_interest"
dates = ["collected", "last_contact"]
phases = [ { action = "purge", at = "max(collected, last_contact) + 3 years" } ]

[[categories]]
name = "invoice"
purpose = "Invoicing"
legal_basis = "legal_obligation"
dates = ["collected", "issued"]
phases = [
  { action = "archive", at = "fiscal_year_end(issued)" },
  { action = "purge",   at = "fiscal_year_end(issued) + 10 years" },
]

[[categories]]
name = "student"
purpose = "Student file"
legal_basis = "contract"
dates = ["collected", "left"]
phases = [ { action = "purge", at = "left + 5 years" } ]
)toml";

// Times the daemon stamps during the test, and durations, made comparable.
// Both keep their width, so column alignment is still checked.
std::string normalised(const std::string& s) {
  static const std::regex stamped("2030-01-01T00:[0-5][0-9]:[0-5][0-9]Z");
  static const std::regex duration(R"(\(\d+ ms\))");
  return std::regex_replace(std::regex_replace(s, stamped, "2030-01-01T00:mm:ssZ"), duration,
                            "(N ms)");
}

// An erasure's answer without its signed receipt (tests/integration/proof_test.cpp
// checks receipts), which it must carry.
json without_receipt(json answer) {
  EXPECT_TRUE(answer.contains("receipt")) << answer.dump();
  answer.erase("receipt");
  return answer;
}

json parsed(const CtlResult& r) {
  const json j = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  return j;
}

std::string uid() { return "uid:" + std::to_string(::getuid()); }

// `text` and blanks up to `width`: a cell of the client's tables, for a
// column as wide as its longest value (the actor's uid differs from one
// test run to another: uid:0 as root).
std::string cell(const std::string& text, std::size_t width) {
  return text + std::string(width > text.size() ? width - text.size() : 0, ' ');
}

CtlOptions with_env(std::string assignment) {
  CtlOptions o;
  o.env.push_back(std::move(assignment));
  return o;
}

CtlOptions with_stdin(std::filesystem::path file) {
  CtlOptions o;
  o.stdin_file = std::move(file);
  return o;
}

// kPolicy with `keys` added to its [daemon] table.
std::string policy_with_daemon_keys(const std::string& keys) {
  std::string policy = kPolicy;
  const std::string table = "[daemon]\n";
  policy.insert(policy.find(table) + table.size(), keys);
  return policy;
}

class CtlTest : public ::testing::Test {
 protected:
  explicit CtlTest(const std::string& policy = kPolicy)
      : m_policy(write_policy(m_dir.path(), policy)),
        m_daemon(m_dir.path(), {"--config", m_policy.string(), "--now", "2030-01-01T00:00:00Z"}),
        m_client(m_daemon.socket()) {}

  static std::filesystem::path write_policy(const std::filesystem::path& dir,
                                            const std::string& policy) {
    const auto path = dir / "policy.toml";
    std::ofstream(path) << policy;
    return path;
  }

  // retentionctl --socket <the daemon's> ARGS...
  CtlResult ctl(std::vector<std::string> args, const CtlOptions& options = {}) {
    args.insert(args.begin(), {"--socket", m_daemon.socket().string()});
    return run_ctl(args, options);
  }

  json call(const std::string& method, const json& params = nullptr) {
    const json reply = m_client.call(method, params);
    EXPECT_FALSE(reply.contains("error")) << reply.dump();
    return reply.value("result", json());
  }

  // alice has a lead; bob a student file (waiting for `left`) and an invoice.
  void seed() {
    call("record.put", {{"key", "crm-42"},
                        {"subject", "alice@example.com"},
                        {"category", "lead"},
                        {"fields", {{"email", "alice@example.com"}}},
                        {"dates", {{"collected", "2027-01-31"}, {"last_contact", "2028-06-01"}}}});
    call("record.put", {{"key", "st-1"},
                        {"subject", "bob"},
                        {"category", "student"},
                        {"fields", {{"name", "Bob"}}},
                        {"dates", {{"collected", "2025-09-01"}}}});
    call("record.put", {{"key", "inv-1"},
                        {"subject", "bob"},
                        {"category", "invoice"},
                        {"fields", {{"amount", "120.00"}}},
                        {"dates", {{"collected", "2030-05-10"}, {"issued", "2030-05-10"}}}});
  }

  std::filesystem::path write_file(const std::string& name, const std::string& content) {
    const auto path = m_dir.path() / name;
    std::ofstream(path) << content;
    return path;
  }

  // `count` lines of record.put params, keys imp-1..imp-<count>.
  static std::string records_jsonl(int first, int last) {
    std::string out;
    for (int i = first; i <= last; ++i) {
      out += json{{"key", "imp-" + std::to_string(i)},
                  {"subject", "s" + std::to_string(i % 7)},
                  {"category", "lead"},
                  {"fields", {{"n", std::to_string(i)}}},
                  {"dates", {{"collected", "2029-01-01"}}}}
                 .dump() +
             "\n";
    }
    return out;
  }

  TempDir m_dir;
  std::filesystem::path m_policy;
  DaemonProcess m_daemon;
  Client m_client;
};

// A daemon that takes request lines of at most 1024 bytes.
class CtlSmallLimitsTest : public CtlTest {
 protected:
  CtlSmallLimitsTest()
      : CtlTest(policy_with_daemon_keys("max_request_bytes = 1024\nmax_put_many = 3\n")) {}
};

// A category whose second phase can fall due before its first: it then runs
// with the first (the later of the two).
constexpr const char* kTicketCategory = R"toml(
[[categories]]
name = "ticket"
purpose = "Support"
legal_basis = "contract"
dates = ["opened", "closed"]
phases = [
  { action = "archive", at = "closed + 1 year" },
  { action = "purge",   at = "opened + 2 years" },
]
)toml";

class CtlTicketTest : public CtlTest {
 protected:
  CtlTicketTest() : CtlTest(std::string(kPolicy) + kTicketCategory) {}
};

// --- Help and usage (no daemon needed) ---

TEST(CtlHelp, ListsEverySubcommandOnOneLineEach) {
  const CtlResult r = run_ctl({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.err, "");
  for (const char* name :
       {"status", "put", "explain", "event", "export", "erase", "hold", "release", "holds", "plan",
        "sweep", "audit", "verify", "reload", "confirm-clock", "import", "report", "call", "help"}) {
    const std::regex line(std::string("\n  ") + name + " +[a-z][^\n]+\n");
    EXPECT_TRUE(std::regex_search(r.out, line)) << name << " missing from:\n" << r.out;
  }
}

TEST(CtlHelp, ASubcommandsHelpShowsItsOptions) {
  const CtlResult r = run_ctl({"erase", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out,
            "usage: retentionctl erase (SUBJECT [--category NAME]... | --key KEY) --reason TEXT "
            "[--dry-run | --receipt FILE]\n"
            "\n"
            "erase a subject's records, or one record, except under legal obligation or hold\n"
            "\n"
            "Options:\n"
            "      --key KEY        erase this one record (instead of a subject's)\n"
            "      --category NAME  only the subject's records of this category (repeatable)\n"
            "      --reason TEXT    why (required; written to the audit log)\n"
            "      --dry-run        show what would be erased and retained, change nothing\n"
            "      --receipt FILE   write the signed erasure receipt to FILE (check it with `receipt verify FILE`)\n"
            "  -s, --socket PATH    admin socket (default: $RETENTIOND_SOCKET, or "
            "/run/retentiond/admin.sock)\n"
            "      --json           print the daemon's result as JSON\n"
            "  -h, --help           print this help and exit\n");
}

// The daemon's "unknown method" message says "see 'help'": `help` is a
// command too, and lists the methods when the daemon answers.
TEST(CtlHelp, HelpIsACommandThatSaysWhyTheMethodsAreMissingWithoutADaemon) {
  TempDir dir;
  const std::string path = (dir.path() / "none.sock").string();
  const CtlResult r = run_ctl({"--socket", path, "help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out, run_ctl({"--help"}).out +
                       "\nThe daemon's methods are listed here when it answers; it did not: no "
                       "such file: " +
                       path +
                       " (is retentiond running? --socket or RETENTIOND_SOCKET must name its "
                       "admin socket, daemon.socket)\n");

  EXPECT_EQ(run_ctl({"help", "erase"}).out, run_ctl({"erase", "--help"}).out);
  const CtlResult bad = run_ctl({"help", "frobnicate"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_EQ(bad.err,
            "retentionctl: help: there is no command 'frobnicate' (see 'retentionctl help')\n"
            "usage: retentionctl help [COMMAND]  (see --help)\n");
}

TEST(CtlUsage, UsageErrorsExitTwoWithAUsageLine) {
  CtlResult r = run_ctl({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            "retentionctl: unknown command 'frobnicate'\n"
            "usage: retentionctl [--socket PATH] [--json] COMMAND [ARGS...]  (see --help)\n");

  r = run_ctl({});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "retentionctl: no command given\n"
            "usage: retentionctl [--socket PATH] [--json] COMMAND [ARGS...]  (see --help)\n");

  r = run_ctl({"explain"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "retentionctl: explain: expected 1 argument, got 0\n"
            "usage: retentionctl explain KEY  (see --help)\n");

  r = run_ctl({"erase", "bob"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "retentionctl: erase needs --reason (it goes into the audit log)\n"
            "usage: retentionctl erase (SUBJECT [--category NAME]... | --key KEY) --reason TEXT "
            "[--dry-run | --receipt FILE]  (see --help)\n");

  r = run_ctl({"hold", "--key", "k", "--subject", "s", "--reason", "r"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.substr(0, r.err.find('\n')),
            "retentionctl: give exactly one of --subject, --category, --key, not several");

  r = run_ctl({"audit", "--limit", "many"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.substr(r.err.find('\n') + 1),
            "usage: retentionctl audit [checkpoint] [--limit N] [--after SEQ] [--key K] [--subject S] "
            "[--follow [--after-hash H]]  (see --help)\n");

  r = run_ctl({"import", "x.jsonl", "--batch", "10001"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.substr(0, r.err.find('\n')), "retentionctl: --batch must be 1..10000");

  r = run_ctl({"call", "status", "{not json"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.substr(0, r.err.find('\n')),
            "retentionctl: the params are not valid JSON: {not json");
}

// --- Reaching the daemon ---

TEST(CtlConnection, AMissingSocketExitsThreeAndNamesThePath) {
  TempDir dir;
  const std::string path = (dir.path() / "none.sock").string();
  const std::string expected = "retentionctl: no such file: " + path +
                               " (is retentiond running? --socket or RETENTIOND_SOCKET must name "
                               "its admin socket, daemon.socket)\n";
  CtlResult r = run_ctl({"--socket", path, "status"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, expected);
  // The same from the environment.
  r = run_ctl({"status"}, with_env("RETENTIOND_SOCKET=" + path));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err, expected);
  // import reports it before reading its file.
  r = run_ctl({"--socket", path, "import", "-"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err, expected);
}

// The policy file passed where the socket goes: a mistake easy to make,
// since both are "the daemon's file".
TEST(CtlConnection, APathThatIsNotASocketSaysWhatItIs) {
  TempDir dir;
  const std::string file = (dir.path() / "policy.toml").string();
  std::ofstream(file) << "[daemon]\n";
  CtlResult r = run_ctl({"--socket", file, "status"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "retentionctl: not a socket: " + file +
                       " is a regular file (--socket or RETENTIOND_SOCKET must name the daemon's "
                       "admin socket, daemon.socket, not the policy file or another file)\n");

  r = run_ctl({"status"}, with_env("RETENTIOND_SOCKET=" + dir.path().string()));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err, "retentionctl: not a socket: " + dir.path().string() +
                       " is a directory (--socket or RETENTIOND_SOCKET must name the daemon's "
                       "admin socket, daemon.socket, not the directory it is in)\n");
}

// A socket file at `path`, bound, and listening when `listening`.
int bound_socket(const std::string& path, bool listening) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  EXPECT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  if (listening) {
    EXPECT_EQ(::listen(fd, 1), 0);
  }
  return fd;
}

// A bound socket that is not listening refuses connections, like one left
// behind by a daemon that died.
TEST(CtlConnection, ASocketNobodyListensOnExitsThree) {
  TempDir dir;
  const std::string path = (dir.path() / "dead.sock").string();
  const int fd = bound_socket(path, /*listening=*/false);
  const CtlResult r = run_ctl({"--socket", path, "status"});
  ::close(fd);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err, "retentionctl: nothing is listening on " + path +
                       " (a socket left behind by a daemon that is no longer running: is "
                       "retentiond running?)\n");
}

std::string group_of(gid_t gid) { return ::getgrgid(gid)->gr_name; }
std::string user_of(uid_t uid) { return ::getpwuid(uid)->pw_name; }

// The message says what the socket's mode and owners are and what follows
// from them, whatever groups the policy names.
TEST(CtlConnection, PermissionDeniedShowsTheSocketsModeAndOwnersAndWhatToDo) {
  TempDir dir;
  const std::string path = (dir.path() / "admin.sock").string();
  const int fd = bound_socket(path, /*listening=*/true);
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  if (::geteuid() != 0) {
    // Without root, a mode-000 socket of our own is all we can refuse ourselves.
    ASSERT_EQ(::chmod(path.c_str(), 0), 0);
    const CtlResult r = run_ctl({"--socket", path, "status"});
    ::close(fd);
    EXPECT_EQ(r.exit_code, 3);
    EXPECT_EQ(r.err, "retentionctl: permission denied on " + path + " (mode 0000, owner " +
                         user_of(::geteuid()) + ", group " + group_of(::getegid()) +
                         "): its mode lets only root connect: run as root\n");
    return;
  }
  // root may open anything: the client runs as nobody, who is in no group.
  CtlOptions nobody;
  nobody.as_nobody = true;
  ASSERT_EQ(::chmod(path.c_str(), 0660), 0);
  CtlResult r = run_ctl({"--socket", path, "status"}, nobody);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "retentionctl: permission denied on " + path +
                       " (mode 0660, owner root, group " + group_of(0) +
                       "): ask an administrator to add your user to the group " + group_of(0) +
                       ", or run as root\n");

  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  r = run_ctl({"--socket", path, "status"}, nobody);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err, "retentionctl: permission denied on " + path +
                       " (mode 0600, owner root, group " + group_of(0) +
                       "): only its owner may connect: run as root\n");

  // A directory on the way that may not be entered.
  ASSERT_EQ(::chmod(path.c_str(), 0666), 0);
  ASSERT_EQ(::chmod(dir.path().c_str(), 0750), 0);
  r = run_ctl({"--socket", path, "status"}, nobody);
  ::close(fd);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err, "retentionctl: permission denied on " + path + ": the directory " +
                       dir.path().string() + " (mode 0750, owner root, group " + group_of(0) +
                       ") may not be entered; ask an administrator to add your user to the group " +
                       group_of(0) + ", or run as root\n");
}

// --- Subcommands ---

TEST_F(CtlTest, StatusPrintsOneAlignedLinePerFieldAndJsonTheRawResult) {
  seed();
  const CtlResult j = ctl({"--json", "status"});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  const json s = parsed(j);
  EXPECT_EQ(s["records"], json::parse(R"({"active":3,"archived":0,"anonymised":0})"));
  EXPECT_EQ(s["policy"]["categories"], 3);
  EXPECT_EQ(s["next_due"], "2031-01-01T00:00:00Z");
  EXPECT_EQ(s["paused"], nullptr);

  const CtlResult r = ctl({"status"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(
      normalised(r.out),
      "version     " + s["version"].get<std::string>() +
          "\n"
          "now         2030-01-01T00:mm:ssZ\n"
          "started at  2030-01-01T00:mm:ssZ\n"
          "policy      " +
          s["policy"]["hash"].get<std::string>() +
          "\n"
          "categories  3\n"
          "loaded at   2030-01-01T00:mm:ssZ\n"
          "records     3 active, 0 archived, 0 anonymised\n"
          "holds       0\n"
          "next due    2031-01-01T00:00:00Z\n"
          "backlog     0\n"
          "paused      no\n"
          "last sweep  2030-01-01T00:mm:ssZ: archived 0, anonymised 0, purged 0, held 0 (N ms)\n"
          "store       " +
          s["store"]["backend"].get<std::string>() + ", 1 daemon(s): " +
          s["store"]["daemons"][0]["host"].get<std::string>() + " pid " +
          std::to_string(s["store"]["daemons"][0]["pid"].get<std::int64_t>()) + "\n");
  // The one daemon is the one answering.
  EXPECT_EQ(s["store"]["daemons"].size(), 1u);
  EXPECT_EQ(s["store"]["daemons"][0]["pid"], m_daemon.pid());
}

TEST_F(CtlTest, PutPrintsTheNextPhase) {
  CtlResult r = ctl({"put", "crm-42", "--subject", "alice@example.com", "--category", "lead", "-f",
                     "email=alice@example.com", "-f", "note=a, b=c", "-d", "collected=2027-01-31",
                     "--date", "last_contact=2028-06-01"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "KEY     STATE   NEXT   DUE\n"
            "crm-42  active  purge  2031-06-01T00:00:00Z\n");
  // Values keep their commas and everything after the first '='.
  const json got = call("record.get", {{"key", "crm-42"}});
  EXPECT_EQ(got["fields"], json::parse(R"({"email":"alice@example.com","note":"a, b=c"})"));
  EXPECT_EQ(
      got["dates"],
      json::parse(R"({"collected":"2027-01-31T00:00:00Z","last_contact":"2028-06-01T00:00:00Z"})"));

  r = ctl(
      {"put", "st-1", "--subject", "bob", "--category", "student", "-d", "collected=2025-09-01"});
  EXPECT_EQ(r.out,
            "KEY   STATE   NEXT   DUE\n"
            "st-1  active  purge  waiting for left\n");

  r = ctl({"--json", "put", "st-2", "--subject", "bob", "--category", "student"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(parsed(r), json::parse(R"({"key":"st-2","state":"active",
      "next":{"phase":0,"action":"purge","due":null,"waiting_for":["left"]}})"));
}

TEST_F(CtlTest, AnErrorReplyExitsOneNamingTheMethodAndReason) {
  CtlResult r = ctl({"put", "x", "--subject", "s", "--category", "nope"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "retentionctl: record.put: unknown category 'nope' [unknown_category]\n");
  r = ctl({"explain", "nope"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "retentionctl: record.explain: no record with key 'nope' [not_found]\n");
  r = ctl({"put", "x", "--subject", "s", "--category", "lead", "-f", "novalue"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.substr(0, r.err.find('\n')),
            "retentionctl: expected a field as name=value, got 'novalue'");
}

TEST_F(CtlTest, ExplainPrintsEachPhaseThenTheProofOfDisposal) {
  seed();
  CtlResult r = ctl({"explain", "inv-1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "key       inv-1\n"
            "state     active\n"
            "category  invoice\n"
            "held      no\n"
            "\n"
            "#  ACTION   AT                                  DUE                   DONE\n"
            "0  archive  fiscal_year_end(issued)             2031-01-01T00:00:00Z  no\n"
            "1  purge    fiscal_year_end(issued) + 10 years  2041-01-01T00:00:00Z  no\n");

  call("hold.place", {{"subject", "bob"}, {"reason", "case 9"}});
  r = ctl({"explain", "st-1"});
  EXPECT_EQ(r.out,
            "key       st-1\n"
            "state     active\n"
            "category  student\n"
            "held      yes (holds 1)\n"
            "\n"
            "#  ACTION  AT              DUE               DONE\n"
            "0  purge   left + 5 years  waiting for left  no\n");

  r = ctl({"--json", "explain", "st-1"});
  EXPECT_EQ(parsed(r), call("record.explain", {{"key", "st-1"}}));

  call("subject.erase", {{"subject", "alice@example.com"}, {"reason", "art. 17"}});
  r = ctl({"explain", "crm-42"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(normalised(r.out),
            "key        crm-42\n"
            "state      purged\n"
            "purged at  2030-01-01T00:mm:ssZ\n"
            "audit seq  2\n");
}

// The daemon's timer sweeps at start-up and then waits up to 60 s
// (docs/operations.md): the overdue records put here stay overdue until
// then, or for good when held.
TEST_F(CtlTicketTest, ExplainMarksOverduePhasesAndWhenAnOvertakenPhaseRuns) {
  call("record.put", {{"key", "crm-7"},
                      {"subject", "carol"},
                      {"category", "lead"},
                      {"dates", {{"collected", "2020-01-31"}, {"last_contact", "2021-06-01"}}}});
  CtlResult r = ctl({"explain", "crm-7"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(
      r.out,
      "key       crm-7\n"
      "state     active\n"
      "category  lead\n"
      "held      no\n"
      "\n"
      "#  ACTION  AT                                      DUE                   DONE\n"
      "0  purge   max(collected, last_contact) + 3 years  2024-06-01T00:00:00Z  no: overdue\n");

  // The purge is due in 2031-01, but runs after the archive, in 2031-06.
  call("record.put", {{"key", "t-1"},
                      {"subject", "dan"},
                      {"category", "ticket"},
                      {"dates", {{"opened", "2029-01-01"}, {"closed", "2030-06-01"}}}});
  r = ctl({"explain", "t-1"});
  EXPECT_EQ(r.out.substr(r.out.find("\n\n") + 2),
            "#  ACTION   AT                DUE                   DONE\n"
            "0  archive  closed + 1 year   2031-06-01T00:00:00Z  no\n"
            "1  purge    opened + 2 years  2031-01-01T00:00:00Z  no: runs 2031-06-01T00:00:00Z "
            "(after phase 0)\n");

  // Until the archive has a due time, the purge cannot say when it runs.
  call("record.put", {{"key", "t-2"},
                      {"subject", "dan"},
                      {"category", "ticket"},
                      {"dates", {{"opened", "2029-01-01"}}}});
  r = ctl({"explain", "t-2"});
  EXPECT_EQ(r.out.substr(r.out.find("\n\n") + 2),
            "#  ACTION   AT                DUE                   DONE\n"
            "0  archive  closed + 1 year   waiting for closed    no\n"
            "1  purge    opened + 2 years  2031-01-01T00:00:00Z  no: after phase 0\n");

  // Overdue but held: the sweep will not run it.
  call("record.put", {{"key", "t-3"},
                      {"subject", "erin"},
                      {"category", "ticket"},
                      {"dates", {{"opened", "2020-01-01"}, {"closed", "2021-01-01"}}}});
  call("hold.place", {{"key", "t-3"}, {"reason", "dispute"}});
  r = ctl({"explain", "t-3"});
  EXPECT_EQ(r.out,
            "key       t-3\n"
            "state     active\n"
            "category  ticket\n"
            "held      yes (holds 1)\n"
            "\n"
            "#  ACTION   AT                DUE                   DONE\n"
            "0  archive  closed + 1 year   2022-01-01T00:00:00Z  no: overdue (held)\n"
            "1  purge    opened + 2 years  2022-01-01T00:00:00Z  no: overdue (held)\n");

  const json e = parsed(ctl({"--json", "explain", "t-1"}));
  EXPECT_EQ(e["phases"][1]["runs_at"], "2031-06-01T00:00:00Z");
  EXPECT_EQ(e["phases"][1]["overdue"], false);
}

TEST_F(CtlTest, EventSetsADateAndCountsTheRecords) {
  seed();
  CtlResult r = ctl({"event", "left", "2029-06-30", "--subject", "bob"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "updated 1 record\n");  // the invoice does not declare `left`
  EXPECT_EQ(call("record.explain", {{"key", "st-1"}})["next"]["due"], "2034-06-30T00:00:00Z");

  r = ctl({"--json", "event", "left", "2029-07-31", "--key", "st-1"});
  EXPECT_EQ(parsed(r), json::parse(R"({"updated":1})"));
  EXPECT_EQ(call("record.explain", {{"key", "st-1"}})["next"]["due"], "2034-07-31T00:00:00Z");

  r = ctl({"event", "left", "2029-06-30", "--key", "crm-42"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "retentionctl: event.record: category 'lead' does not declare the date 'left' "
            "[unknown_date]\n");
}

TEST_F(CtlTest, ExportListsTheSubjectsRecordsWithTheirFields) {
  seed();
  CtlResult r = ctl({"export", "bob"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(
      normalised(r.out),
      "subject bob: 2 records, exported at 2030-01-01T00:mm:ssZ\n"
      "\n"
      "KEY    CATEGORY  STATE   LEGAL BASIS       NEXT     DUE                   FIELDS\n"
      "inv-1  invoice   active  legal_obligation  archive  2031-01-01T00:00:00Z  amount=120.00\n"
      "st-1   student   active  contract          purge    waiting for left      name=Bob\n");

  r = ctl({"--json", "export", "bob"});
  const json e = parsed(r);
  EXPECT_EQ(e["subject"], "bob");
  ASSERT_EQ(e["records"].size(), 2u);
  EXPECT_EQ(e["records"][0]["key"], "inv-1");
  EXPECT_EQ(e["records"][0]["purpose"], "Invoicing");
  EXPECT_EQ(e["records"][1]["fields"], json::parse(R"({"name":"Bob"})"));
  EXPECT_EQ(e["records"][1]["dates"], json::parse(R"({"collected":"2025-09-01T00:00:00Z"})"));

  r = ctl({"export", "nobody"});
  EXPECT_EQ(normalised(r.out), "subject nobody: 0 records, exported at 2030-01-01T00:mm:ssZ\n");
}

TEST_F(CtlTest, EraseShowsWhatIsErasedAndWhatIsRetainedAndWhy) {
  seed();
  call("record.put", {{"key", "lead-2"},
                      {"subject", "bob"},
                      {"category", "lead"},
                      {"dates", {{"collected", "2029-03-01"}}}});
  call("hold.place", {{"key", "st-1"}, {"reason", "litigation"}});

  CtlResult r = ctl({"erase", "bob", "--reason", "art. 17 request", "--dry-run"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "dry run, nothing changed: would erase 1 record, retained 2\n"
            "\n"
            "KEY     CATEGORY  OUTCOME      REASON            UNTIL\n"
            "lead-2  lead      would erase  -                 -\n"
            "inv-1   invoice   retained     legal_obligation  2041-01-01T00:00:00Z\n"
            "st-1    student   retained     hold              -\n");
  EXPECT_EQ(call("record.explain", {{"key", "lead-2"}})["state"], "active");

  r = ctl({"--json", "erase", "bob", "--reason", "art. 17 request"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(
      without_receipt(parsed(r)),
      json::parse(
          R"({"erased":["lead-2"],"erased_records":[{"key":"lead-2","category":"lead"}],"retained":[
      {"key":"inv-1","category":"invoice","reason":"legal_obligation","until":"2041-01-01T00:00:00Z"},
      {"key":"st-1","category":"student","reason":"hold","until":null}]})"));
  EXPECT_EQ(call("record.explain", {{"key", "lead-2"}})["state"], "purged");

  r = ctl({"erase", "alice@example.com", "--reason", "art. 17 request"});
  EXPECT_EQ(r.out,
            "erased 1 record, retained 0\n"
            "\n"
            "KEY     CATEGORY  OUTCOME  REASON  UNTIL\n"
            "crm-42  lead      erased   -       -\n");
  r = ctl({"erase", "alice@example.com", "--reason", "again"});
  EXPECT_EQ(r.out, "erased 0 records, retained 0\n");
}

TEST_F(CtlTest, EraseKeyErasesOneRecordAndCategoryNarrowsASubjectsErasure) {
  seed();
  call("record.put", {{"key", "lead-2"},
                      {"subject", "bob"},
                      {"category", "lead"},
                      {"dates", {{"collected", "2029-03-01"}}}});

  CtlResult r = ctl({"erase", "--key", "inv-1", "--reason", "art. 17 request"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "erased 0 records, retained 1\n"
            "\n"
            "KEY    CATEGORY  OUTCOME   REASON            UNTIL\n"
            "inv-1  invoice   retained  legal_obligation  2041-01-01T00:00:00Z\n");
  r = ctl({"erase", "--key", "crm-42", "--reason", "art. 17 request", "--dry-run"});
  EXPECT_EQ(r.out,
            "dry run, nothing changed: would erase 1 record, retained 0\n"
            "\n"
            "KEY     CATEGORY  OUTCOME      REASON  UNTIL\n"
            "crm-42  lead      would erase  -       -\n");
  EXPECT_EQ(call("record.explain", {{"key", "crm-42"}})["state"], "active");
  r = ctl({"--json", "erase", "--key", "crm-42", "--reason", "art. 17 request"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(without_receipt(parsed(r)), json::parse(R"({"erased":["crm-42"],"erased_records":)"
                                   R"([{"key":"crm-42","category":"lead"}],"retained":[]})"));
  EXPECT_EQ(call("record.explain", {{"key", "crm-42"}})["state"], "purged");
  r = ctl({"erase", "--key", "crm-42", "--reason", "again"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "retentionctl: record.erase: no record with key 'crm-42' [not_found]\n");

  // Of bob's student file, invoice and lead, only the lead.
  r = ctl({"erase", "bob", "--category", "lead", "--reason", "withdrew consent"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "erased 1 record, retained 0\n"
            "\n"
            "KEY     CATEGORY  OUTCOME  REASON  UNTIL\n"
            "lead-2  lead      erased   -       -\n");
  EXPECT_EQ(call("record.explain", {{"key", "st-1"}})["state"], "active");
  r = ctl({"erase", "bob", "--category", "student", "--category", "invoice", "--reason", "r",
           "--dry-run"});
  EXPECT_EQ(r.out,
            "dry run, nothing changed: would erase 1 record, retained 1\n"
            "\n"
            "KEY    CATEGORY  OUTCOME      REASON            UNTIL\n"
            "st-1   student   would erase  -                 -\n"
            "inv-1  invoice   retained     legal_obligation  2041-01-01T00:00:00Z\n");
  r = ctl({"erase", "bob", "--category", "nope", "--reason", "r"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "retentionctl: subject.erase: unknown category 'nope'; nothing was changed "
            "[unknown_category]\n");

  const std::string usage_line =
      "usage: retentionctl erase (SUBJECT [--category NAME]... | --key KEY) --reason TEXT "
      "[--dry-run | --receipt FILE]  (see --help)\n";
  r = ctl({"erase", "bob", "--key", "st-1", "--reason", "r"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "retentionctl: give exactly one of SUBJECT and --key\n" + usage_line);
  r = ctl({"erase", "--reason", "r"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "retentionctl: give exactly one of SUBJECT and --key\n" + usage_line);
  r = ctl({"erase", "--key", "st-1", "--category", "student", "--reason", "r"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            "retentionctl: --category goes with SUBJECT: --key erases that one record, whatever "
            "its category\n" +
                usage_line);
}

TEST_F(CtlTest, HoldHoldsAndReleaseManageHolds) {
  seed();
  CtlResult r = ctl({"holds"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "no holds\n");

  r = ctl({"hold", "--key", "st-1", "--reason", "litigation 2030-17"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "placed hold 1 on key st-1\n");
  r = ctl({"--json", "hold", "--category", "invoice", "--reason", "tax audit"});
  EXPECT_EQ(parsed(r), json::parse(R"({"id":2})"));

  r = ctl({"holds"});
  const std::size_t by = std::max(uid().size(), std::string("PLACED BY").size());
  EXPECT_EQ(normalised(r.out), "ID  SCOPE     TARGET   PLACED AT             " +
                                   cell("PLACED BY", by) +
                                   "  REASON\n"
                                   " 1  key       st-1     2030-01-01T00:mm:ssZ  " +
                                   cell(uid(), by) +
                                   "  litigation 2030-17\n"
                                   " 2  category  invoice  2030-01-01T00:mm:ssZ  " +
                                   cell(uid(), by) + "  tax audit\n");
  r = ctl({"--json", "holds"});
  const json holds = parsed(r)["holds"];
  ASSERT_EQ(holds.size(), 2u);
  EXPECT_EQ(holds[0]["scope"], "key");
  EXPECT_EQ(holds[0]["target"], "st-1");
  EXPECT_EQ(holds[1]["placed_by"], uid());

  r = ctl({"release", "1", "--reason", "case closed"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "released hold 1\n");
  r = ctl({"--json", "release", "2"});
  EXPECT_EQ(parsed(r), json::parse(R"({"released":true})"));
  EXPECT_EQ(ctl({"holds"}).out, "no holds\n");

  r = ctl({"release", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "retentionctl: hold.release: no hold with id 2 [not_found]\n");
  r = ctl({"release", "two"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.substr(0, r.err.find('\n')), "retentionctl: the hold ID is a number, got 'two'");
}

TEST_F(CtlTest, PlanCountsWhatFallsDueMonthByMonth) {
  seed();
  CtlResult r = ctl({"plan", "--from", "2030-02-01", "--until", "2032-01-01"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "from 2030-02-01T00:00:00Z until 2032-01-01T00:00:00Z\n"
            "\n"
            "MONTH    CATEGORY  ACTION   COUNT\n"
            "2031-01  invoice   archive      1\n"
            "2031-06  lead      purge        1\n"
            "\n"
            "totals: archive 1, anonymise 0, purge 1; waiting 1, held 0\n");

  r = ctl({"--json", "plan", "--from", "2030-02-01", "--until", "2031-03-01"});
  EXPECT_EQ(parsed(r), json::parse(R"({"from":"2030-02-01T00:00:00Z","until":"2031-03-01T00:00:00Z",
      "actions":[{"month":"2031-01","category":"invoice","action":"archive","count":1}],
      "totals":{"archive":1,"anonymise":0,"purge":0},"waiting":1,"held":0})"));

  r = ctl({"plan", "--from", "2030-02-01", "--until", "2030-03-01"});
  EXPECT_EQ(r.out,
            "from 2030-02-01T00:00:00Z until 2030-03-01T00:00:00Z\n"
            "\n"
            "nothing falls due\n"
            "\n"
            "totals: archive 0, anonymise 0, purge 0; waiting 1, held 0\n");
}

TEST_F(CtlTest, PlanWithACandidatePolicyShowsHowDisposalMovesThenTheCandidatesPlan) {
  seed();
  // Leads kept 1 year instead of 3: crm-42 (last contact 2028-06-01) is due at once.
  std::string candidate = kPolicy;
  const std::string three = "last_contact) + 3 years";
  candidate.replace(candidate.find(three), three.size(), "last_contact) + 1 year");
  const auto path = write_file("candidate.toml", candidate);
  CtlResult r = ctl({"plan", "--from", "2030-02-01", "--until", "2032-01-01", "--policy", path.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::string hash = parsed(ctl({"--json", "plan", "--until", "2032-01-01", "--policy", path.string()}))
                               ["candidate"]["hash"];
  EXPECT_EQ(r.out,
            "candidate policy " + hash.substr(0, 12) + ": changed lead\n"
            "newly due on adoption: 1 (reload guard 1000: passes)\n"
            "\n"
            "CATEGORY  EARLIER  LATER  UNCHANGED  NEWLY DUE\n"
            "lead            1      0          0          1\n"
            "\n"
            "under the candidate:\n"
            "from 2030-02-01T00:00:00Z until 2032-01-01T00:00:00Z\n"
            "\n"
            "MONTH    CATEGORY  ACTION   COUNT\n"
            "2030-02  lead      purge        1\n"
            "2031-01  invoice   archive      1\n"
            "\n"
            "totals: archive 1, anonymise 0, purge 1; waiting 1, held 0\n");
  // Nothing adopted.
  EXPECT_NE(call("status")["policy"]["hash"], hash);

  r = ctl({"plan", "--policy", (m_dir.path() / "missing.toml").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("missing.toml"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("[bad_config]"), std::string::npos) << r.err;
}

TEST_F(CtlTest, ConfirmClockAcceptsTheClock) {
  const CtlResult r = ctl({"confirm-clock"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "clock confirmed: disposal resumes at the daemon's present time\n");
  EXPECT_EQ(parsed(ctl({"--json", "confirm-clock"})), json({{"confirmed", true}}));
}

// Without --until, a plan covers a year: from the daemon's now (status.now),
// or from --from.
TEST_F(CtlTest, PlanWithoutUntilLooksOneYearAhead) {
  call("record.put", {{"key", "in"},
                      {"subject", "s"},
                      {"category", "lead"},
                      {"dates", {{"collected", "2027-06-01"}}}});
  call("record.put", {{"key", "out"},
                      {"subject", "s"},
                      {"category", "lead"},
                      {"dates", {{"collected", "2028-06-01"}}}});
  CtlResult r = ctl({"plan"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(r.out, m, std::regex("^from 2030-01-01T00:(\\d\\d:\\d\\d)Z until ")))
      << r.out;
  EXPECT_EQ(r.out, "from 2030-01-01T00:" + m[1].str() + "Z until 2031-01-01T00:" + m[1].str() +
                       "Z\n"
                       "\n"
                       "MONTH    CATEGORY  ACTION  COUNT\n"
                       "2030-06  lead      purge       1\n"
                       "\n"
                       "totals: archive 0, anonymise 0, purge 1; waiting 0, held 0\n");

  r = ctl({"plan", "--from", "2030-07-01"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "from 2030-07-01T00:00:00Z until 2031-07-01T00:00:00Z\n"
            "\n"
            "MONTH    CATEGORY  ACTION  COUNT\n"
            "2030-07  lead      purge       1\n"
            "2031-06  lead      purge       1\n"
            "\n"
            "totals: archive 0, anonymise 0, purge 2; waiting 0, held 0\n");

  // The daemon reads --from (here with an offset); a year after 29 February
  // is 28 February.
  const json j = parsed(ctl({"--json", "plan", "--from", "2032-02-29T01:00:00+01:00"}));
  EXPECT_EQ(j["from"], "2032-02-29T00:00:00Z");
  EXPECT_EQ(j["until"], "2033-02-28T00:00:00Z");

  r = ctl({"plan", "--from", "soon"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.substr(0, 28), "retentionctl: plan: 'from': ") << r.err;
}

// The daemon's timer sweeps at start-up and then waits up to 60 s
// (docs/operations.md): the overdue record put here is left to `sweep`.
TEST_F(CtlTest, SweepRunsWhatIsDueAndADryRunChangesNothing) {
  seed();
  call("record.put", {{"key", "old-1"},
                      {"subject", "carol"},
                      {"category", "lead"},
                      {"dates", {{"collected", "2020-01-01"}}}});
  call("hold.place", {{"key", "crm-42"}, {"reason", "keep"}});

  CtlResult r = ctl({"sweep", "--dry-run"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(
      normalised(r.out),
      "dry run, nothing changed: would have archived 0, anonymised 0, purged 1, held 0 (N ms)\n");
  EXPECT_EQ(call("record.explain", {{"key", "old-1"}})["state"], "active");

  r = ctl({"sweep"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(normalised(r.out), "archived 0, anonymised 0, purged 1, held 0 (N ms)\n");
  EXPECT_EQ(call("record.explain", {{"key", "old-1"}})["state"], "purged");

  json again = parsed(ctl({"--json", "sweep"}));
  ASSERT_TRUE(again["duration_ms"].is_number_integer());
  again.erase("duration_ms");
  EXPECT_EQ(again, json::parse(R"({"archived":0,"anonymised":0,"purged":0,"held":0})"));
}

TEST_F(CtlTest, AuditListsEntriesAndFilters) {
  seed();
  EXPECT_EQ(ctl({"audit"}).out, "no audit entries\n");
  call("hold.place", {{"key", "st-1"}, {"reason", "litigation"}});
  call("hold.release", {{"id", 1}});
  call("subject.erase", {{"subject", "alice@example.com"}, {"reason", "art. 17 request"}});

  CtlResult r = ctl({"audit"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::size_t actor = std::max(uid().size(), std::string("ACTOR").size());
  EXPECT_EQ(normalised(r.out),
            "SEQ  AT                    ACTION        KEY     CATEGORY  PHASE  " +
                cell("ACTOR", actor) +
                "  REASON\n"
                "  1  2030-01-01T00:mm:ssZ  hold.place    st-1    -         -      " +
                cell(uid(), actor) +
                "  hold 1: litigation\n"
                "  2  2030-01-01T00:mm:ssZ  hold.release  st-1    -         -      " +
                cell(uid(), actor) +
                "  hold 1\n"
                "  3  2030-01-01T00:mm:ssZ  erase         crm-42  lead      -      " +
                cell(uid(), actor) + "  art. 17 request\n");

  r = ctl({"audit", "--key", "crm-42"});
  EXPECT_EQ(normalised(r.out), "SEQ  AT                    ACTION  KEY     CATEGORY  PHASE  " +
                                   cell("ACTOR", actor) +
                                   "  REASON\n"
                                   "  3  2030-01-01T00:mm:ssZ  erase   crm-42  lead      -      " +
                                   cell(uid(), actor) + "  art. 17 request\n");

  r = ctl({"--json", "audit", "--after", "1", "--limit", "1"});
  const json entries = parsed(r)["entries"];
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0]["seq"], 2);
  EXPECT_EQ(entries[0]["action"], "hold.release");
  EXPECT_EQ(entries[0]["hash"].get<std::string>().size(), 64u);

  r = ctl({"--json", "audit", "--subject", "alice@example.com"});
  ASSERT_EQ(parsed(r)["entries"].size(), 1u);
  EXPECT_EQ(parsed(r)["entries"][0]["key"], "crm-42");
}

TEST_F(CtlTest, VerifyExitsFourWhenTheChainIsBroken) {
  seed();
  call("hold.place", {{"key", "st-1"}, {"reason", "one"}});
  call("hold.place", {{"key", "inv-1"}, {"reason", "two"}});
  const json tail = call("audit.tail");
  const std::string head = tail["entries"][1]["hash"];

  CtlResult r = ctl({"verify"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "audit chain intact: 2 entries, head " + head + "\n");
  r = ctl({"--json", "verify"});
  // Incremental: the second check recomputes nothing new.
  EXPECT_EQ(parsed(r),
            json({{"ok", true}, {"entries", 2}, {"first_bad", nullptr}, {"head", head}, {"checked", 0}}));

  // Inside the verified prefix: only a full check looks there again.
  const auto db = m_daemon.state_dir() / "retention.db";
  const std::string tamper =
      "sqlite3 " + db.string() + " \"UPDATE audit SET reason = 'hold 1: none' WHERE seq = 1\"";
  ASSERT_EQ(std::system(tamper.c_str()), 0);
  r = ctl({"verify", "--full"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.out, "audit chain BROKEN: first bad entry is seq 1 (of 2 entries)\n");
  r = ctl({"--json", "verify", "--full"});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(parsed(r)["first_bad"], 1);
}

TEST_F(CtlTest, CallReachesAnyMethod) {
  seed();
  CtlResult r = ctl({"call", "record.get", R"({"key":"st-1"})"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(parsed(r), call("record.get", {{"key", "st-1"}}));
  r = ctl({"call", "no.such.method"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.substr(0, 30), "retentionctl: no.such.method: ");
  EXPECT_NE(r.err.find("[method_not_found]\n"), std::string::npos) << r.err;
}

// A request line over max_request_bytes gets one too_large line, then the
// daemon closes the connection. A line much longer than the socket's buffer
// is still being sent then: the send fails, and the answer is what counts.
TEST_F(CtlSmallLimitsTest, ALineOverTheDaemonsLimitShowsItsAnswerAndExitsOne) {
  const json big = {{"key", "big"},
                    {"subject", "s"},
                    {"category", "lead"},
                    {"fields", {{"blob", std::string(1 << 20, 'x')}}}};
  const auto file = write_file("big.jsonl", big.dump() + "\n");
  CtlResult r = ctl({"import", file.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "retentionctl: import: " + file.string() +
                       ":1: record.put_many: request line longer than 1024 bytes [too_large]\n"
                       "retentionctl: import: stopped: nothing was imported\n");
  // A line that fits in the socket's buffer is sent whole before the answer.
  r = ctl({"call", "record.put", json({{"key", std::string(2000, 'k')}}).dump()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "retentionctl: record.put: request line longer than 1024 bytes [too_large]\n");
  EXPECT_EQ(call("status")["records"]["active"], 0);
}

TEST_F(CtlTest, HelpListsTheDaemonsMethodsAfterTheCommands) {
  const CtlResult r = ctl({"help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::string commands = run_ctl({"--help"}).out;
  ASSERT_EQ(r.out.substr(0, commands.size()), commands);
  const std::string methods = r.out.substr(commands.size());
  const std::string header =
      "\nMethods of the daemon, for 'retentionctl call METHOD ['JSON params']':\n";
  ASSERT_EQ(methods.substr(0, header.size()), header) << methods;
  const json listed = call("help")["methods"];
  ASSERT_GT(listed.size(), 10u);
  std::size_t lines = 0;
  for (const auto& m : listed) {
    const auto literal = [](const json& v) {
      return std::regex_replace(v.get<std::string>(), std::regex(R"([.^$|()\[\]{}*+?\\])"),
                                R"(\$&)");
    };
    const std::regex pattern("\n  " + literal(m["name"]) + " +" + literal(m["role"]) + " +" +
                             literal(m["summary"]) + "\n");
    EXPECT_TRUE(std::regex_search(methods, pattern)) << m.dump() << " not in\n" << methods;
    ++lines;
  }
  EXPECT_EQ(static_cast<std::size_t>(std::count(methods.begin(), methods.end(), '\n')),
            lines + 2);  // the blank line and the header

  const json j = parsed(ctl({"--json", "help"}));
  EXPECT_EQ(j["methods"], listed);
  ASSERT_EQ(j["commands"].size(), 27u);  // with metrics and report (issue 17), restore and confirm-clock (15),
                                         // pubkey and receipt (16), connectors, jobs, retry and discard (14)
  EXPECT_EQ(j["commands"][6], json::parse(R"({"name":"hold","synopsis":)"
                                          R"("hold (--subject S | --category C | --key K) )"
                                          R"(--reason TEXT","summary":"stop the disposal and )"
                                          R"(erasure of records until released"})"));
}

// With --json, a script reads errors as JSON too: one line on standard
// error, the daemon's code, reason and message, or a reason of the client's
// own with a null code. The exit codes are the same as without --json.
TEST_F(CtlTest, WithJsonErrorsAreOneJsonLineOnStandardError) {
  CtlResult r = ctl({"--json", "explain", "nope"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            R"({"error":{"code":-32001,"reason":"not_found","message":"no record with key 'nope'",)"
            R"("method":"record.explain"}})"
            "\n");

  // The rest of error.data comes along.
  r = ctl({"--json", "call", "record.put_many",
           R"({"records":[{"key":"a","subject":"s","category":"lead"},{"key":"b"}]})"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, R"({"error":{"code":-32602,"reason":"invalid_params","message":)"
                   R"("records[1]: missing parameter 'subject'","method":"record.put_many",)"
                   R"("data":{"index":1}}})"
                   "\n");

  r = ctl({"explain", "nope", "--json", "--bogus"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, R"({"error":{"code":null,"reason":"usage","message":)"
                   R"("Option ‘bogus’ does not exist","usage":"retentionctl explain KEY"}})"
                   "\n");
}

TEST(CtlJsonErrors, ClientSideFailuresHaveReasonsOfTheirOwn) {
  CtlResult r = run_ctl({"--json", "frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, R"({"error":{"code":null,"reason":"usage","message":"unknown command )"
                   R"('frobnicate'","usage":"retentionctl [--socket PATH] [--json] COMMAND )"
                   R"([ARGS...]"}})"
                   "\n");

  TempDir dir;
  const std::string path = (dir.path() / "none.sock").string();
  r = run_ctl({"--socket", path, "--json", "status"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err, R"({"error":{"code":null,"reason":"unreachable","message":"no such file: )" +
                       path +
                       R"( (is retentiond running? --socket or RETENTIOND_SOCKET must name its )"
                       R"x(admin socket, daemon.socket)"}})x"
                       "\n");
}

// --- import ---

TEST_F(CtlTest, ImportStreamsAFileInBatches) {
  const auto file =
      write_file("records.jsonl", records_jsonl(1, 1200) + "\n  \n" + records_jsonl(1201, 2500));
  CtlResult r = ctl({"import", file.string(), "--batch", "1000"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");  // no progress bar when stderr is not a terminal
  EXPECT_TRUE(
      std::regex_match(r.out, std::regex(R"(imported 2500 records in \d+\.\d\d s \(\d+/s\)\n)")))
      << r.out;

  EXPECT_EQ(call("status")["records"]["active"], 2500);
  const json got = call("record.get", {{"key", "imp-2500"}});
  EXPECT_EQ(got["subject"], "s1");
  EXPECT_EQ(got["fields"], json::parse(R"({"n":"2500"})"));
  EXPECT_EQ(call("record.explain", {{"key", "imp-1"}})["next"]["due"], "2032-01-01T00:00:00Z");

  // Again, from standard input, as JSON: the same keys are replaced.
  r = ctl({"--json", "import", "-", "--batch", "700"}, with_stdin(file));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  json summary = parsed(r);
  EXPECT_TRUE(summary["seconds"].is_number());
  summary.erase("seconds");
  EXPECT_EQ(summary, json::parse(R"({"imported":2500,"rejected":0,"lines":2502,"batches":4})"));
  EXPECT_EQ(call("status")["records"]["active"], 2500);
}

TEST_F(CtlTest, ImportStopsAtALineThatIsNotAJsonObjectAndKeepsEarlierBatches) {
  const auto file =
      write_file("bad.jsonl", records_jsonl(1, 1500) + "[1, 2]\n" + records_jsonl(1501, 1600));
  CtlResult r = ctl({"import", file.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(
      r.err,
      "retentionctl: import: " + file.string() +
          ":1501: not a JSON object (got array)\n"
          "retentionctl: import: stopped: the 1000 records before line 1001 were imported and "
          "stay committed; nothing from line 1001 on was stored\n");
  EXPECT_EQ(call("status")["records"]["active"], 1000);
  EXPECT_EQ(call("record.explain", {{"key", "imp-1000"}})["state"], "active");
  EXPECT_EQ(m_client.call("record.explain", {{"key", "imp-1001"}})["error"]["data"]["reason"],
            "not_found");

  const auto broken = write_file("broken.jsonl", records_jsonl(1, 3) + "{\"key\": \"x\",\n");
  r = ctl({"import", broken.string(), "--batch", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(
      r.err,
      "retentionctl: import: " + broken.string() +
          ":4: not valid JSON: parse error at column 13: syntax error while parsing object key - "
          "unexpected end of input; expected string literal\n"
          "retentionctl: import: stopped: the 2 records before line 3 were imported and stay "
          "committed; nothing from line 3 on was stored\n");
}

TEST_F(CtlTest, ImportNamesTheFileLineOfARecordTheDaemonRejects) {
  const std::string bad = R"({"key":"zz","subject":"s","category":"nope"})";
  const auto file =
      write_file("rejected.jsonl", records_jsonl(1, 1200) + bad + "\n" + records_jsonl(1201, 1300));
  CtlResult r = ctl({"import", file.string(), "--batch", "500"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(
      r.err,
      "retentionctl: import: " + file.string() +
          ":1201: record.put_many: unknown category 'nope' [unknown_category]\n"
          "retentionctl: import: stopped: the 1000 records before line 1001 were imported and "
          "stay committed; nothing from line 1001 on was stored\n");
  EXPECT_EQ(call("status")["records"]["active"], 1000);
}

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// --rejects: the bad lines go to a file with their errors, and the good
// ones are imported, though they share all-or-nothing batches with bad ones.
TEST_F(CtlTest, ImportWithRejectsStoresTheGoodLinesAndWritesTheBadOnesToAFile) {
  const std::string not_json = R"({"key": "x",)";
  const std::string unknown_category = R"({"key":"zz","subject":"s","category":"nope"})";
  const std::string not_object = "[1, 2]";
  const std::string bad_date =
      R"({"key":"bd","subject":"s","category":"lead","dates":{"collected":"yesterday"}})";
  const std::string lines = records_jsonl(1, 1) + not_json + "\n" + records_jsonl(2, 2) +
                            unknown_category + "\n" + not_object + "\n" + records_jsonl(3, 3) +
                            bad_date + "\n" + records_jsonl(4, 5);
  const auto file = write_file("mixed.jsonl", lines);
  const auto rejects = m_dir.path() / "rejects.jsonl";
  const std::string expected_rejects =
      R"({"line":2,"error":{"code":-32700,"reason":"parse_error","message":"not valid JSON: )"
      R"(parse error at column 13: syntax error while parsing object key - unexpected end of )"
      R"(input; expected string literal"},"text":"{\"key\": \"x\","})"
      "\n"
      R"({"line":4,"error":{"code":-32602,"reason":"unknown_category","message":"unknown )"
      R"(category 'nope'"},"text":"{\"key\":\"zz\",\"subject\":\"s\",\"category\":\"nope\"}"})"
      "\n"
      R"({"line":5,"error":{"code":-32602,"reason":"invalid_params","message":"not a JSON )"
      R"x(object (got array)"},"text":"[1, 2]"})x"
      "\n"
      R"({"line":7,"error":{"code":-32602,"reason":"bad_time","message":"date 'collected': )"
      R"x(expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), got )x"
      R"('yesterday'"},"text":"{\"key\":\"bd\",\"subject\":\"s\",)"
      R"(\"category\":\"lead\",\"dates\":{\"collected\":\"yesterday\"}}"})"
      "\n";

  CtlResult r = ctl({"import", file.string(), "--rejects", rejects.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(std::regex_match(
      r.out, std::regex(R"(imported 5 records in \d+\.\d\d s \(\d+/s\), rejected 4 lines\n)")))
      << r.out;
  EXPECT_EQ(r.err, "retentionctl: import: 4 lines were rejected; " + rejects.string() +
                       " has their line numbers, errors and text\n");
  EXPECT_EQ(slurp(rejects), expected_rejects);
  EXPECT_EQ(call("status")["records"]["active"], 5);
  EXPECT_EQ(call("record.get", {{"key", "imp-5"}})["fields"], json::parse(R"({"n":"5"})"));

  // In batches of two records, lines 4 and 7 open theirs: the good record
  // after each is sent again alone, so 4 calls store the 5 records. The same
  // file again, with --json: the rejects file starts afresh.
  r = ctl({"--json", "import", file.string(), "--rejects", rejects.string(), "--batch", "2"});
  EXPECT_EQ(r.exit_code, 1);
  json summary = parsed(r);
  summary.erase("seconds");
  EXPECT_EQ(summary, json::parse(R"({"imported":5,"rejected":4,"lines":9,"batches":4})"));
  EXPECT_EQ(r.err, R"({"error":{"code":null,"reason":"rejected","message":"4 lines were )"
                   R"(rejected; )" +
                       rejects.string() +
                       R"( has their line numbers, errors and text","rejected":4,"rejects":")" +
                       rejects.string() + R"("}})" + "\n");
  EXPECT_EQ(slurp(rejects), expected_rejects);

  // Nothing rejected: an empty file, exit 0.
  const auto good = write_file("good.jsonl", records_jsonl(1, 3));
  r = ctl({"import", good.string(), "--rejects", rejects.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::regex_match(
      r.out, std::regex(R"(imported 3 records in \d+\.\d\d s \(\d+/s\), rejected 0 lines\n)")))
      << r.out;
  EXPECT_EQ(slurp(rejects), "");

  r = ctl({"import", good.string(), "--rejects", good.string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.substr(0, r.err.find('\n')),
            "retentionctl: --rejects names the import file itself, which it would empty");
  EXPECT_EQ(slurp(good), records_jsonl(1, 3));
}

// The progress bar is drawn only when standard error is a terminal; script(1)
// gives the client one.
TEST_F(CtlTest, ImportProgressOnATerminalCountsOneRecordInTheSingular) {
  if (std::system("command -v script >/dev/null 2>&1") != 0) GTEST_SKIP() << "no script(1)";
  const auto file = write_file("one.jsonl", records_jsonl(1, 1));
  const auto out = m_dir.path() / "terminal.out";
  const std::string command = "script -qec '" + retentionctl_binary() + " --socket " +
                              m_daemon.socket().string() + " import " + file.string() +
                              "' /dev/null > " + out.string();
  ASSERT_EQ(std::system(command.c_str()), 0);
  const std::string terminal = slurp(out);
  EXPECT_TRUE(std::regex_match(terminal,
                               std::regex("\r\\[#{30}\\] 100%  1 record, line 1, \\d+/s\r\x1b\\[K"
                                          "imported 1 record in \\d+\\.\\d\\d s \\(\\d+/s\\)\r\n")))
      << terminal;
}

// Without --rejects the import stops at the first bad line; --json says
// where, in the error.
TEST_F(CtlTest, ImportWithJsonReportsWhereItStopped) {
  const auto file = write_file("stop.jsonl", records_jsonl(1, 3) +
                                                 R"({"key":"zz","subject":"s","category":"nope"})" +
                                                 "\n" + records_jsonl(4, 5));
  const CtlResult r = ctl({"--json", "import", file.string(), "--batch", "2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, R"({"error":{"code":-32602,"reason":"unknown_category","message":"unknown )"
                   R"(category 'nope'","method":"record.put_many","file":")" +
                       file.string() +
                       R"(","line":4,"imported":2,"first_unsent_line":3}})"
                       "\n");
  EXPECT_EQ(call("status")["records"]["active"], 2);
}

// Batches over the daemon's limits (1024 bytes, 3 records) are split until
// they pass; a record too large on its own is a bad line.
TEST_F(CtlSmallLimitsTest, ImportSplitsBatchesOverTheDaemonsLimitsAndRejectsARecordTooLarge) {
  const auto small = write_file("small.jsonl", records_jsonl(1, 30));
  CtlResult r = ctl({"import", small.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(
      std::regex_match(r.out, std::regex(R"(imported 30 records in \d+\.\d\d s \(\d+/s\)\n)")))
      << r.out;
  EXPECT_EQ(call("status")["records"]["active"], 30);

  const std::string big = json{{"key", "big"},
                               {"subject", "s"},
                               {"category", "lead"},
                               {"fields", {{"blob", std::string(1 << 20, 'x')}}}}
                              .dump();
  const auto file =
      write_file("big.jsonl", records_jsonl(31, 31) + big + "\n" + records_jsonl(32, 33));
  r = ctl({"import", file.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "retentionctl: import: " + file.string() +
                       ":2: record.put_many: request line longer than 1024 bytes [too_large]\n"
                       "retentionctl: import: stopped: the 1 record before line 2 was imported "
                       "and stays committed; nothing from line 2 on was stored\n");
  EXPECT_EQ(call("status")["records"]["active"], 31);

  const auto rejects = m_dir.path() / "rejects.jsonl";
  r = ctl({"import", file.string(), "--rejects", rejects.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(std::regex_match(
      r.out, std::regex(R"(imported 3 records in \d+\.\d\d s \(\d+/s\), rejected 1 line\n)")))
      << r.out;
  EXPECT_EQ(r.err, "retentionctl: import: 1 line was rejected; " + rejects.string() +
                       " has their line numbers, errors and text\n");
  EXPECT_EQ(slurp(rejects),
            R"({"line":2,"error":{"code":-32600,"reason":"too_large","message":"request line )"
            R"(longer than 1024 bytes"},"text":)" +
                json(big).dump() + "}\n");
  EXPECT_EQ(call("status")["records"]["active"], 33);
}

}  // namespace
}  // namespace retentiond::testing
