// End-to-end, through the real daemon (issue 14): connectors with real
// second processes. An exec connector (examples/connectors/app-db-erase.py)
// deletes rows of a SQLite "application database"; a real HTTP receiver on
// loopback (examples/connectors/http-receiver.py) fails the first three
// attempts; a pull consumer (examples/connectors/pull-consumer.py) claims
// and acknowledges over the admin socket; a daemon killed with SIGKILL in
// the middle of a delivery delivers the same job again after its restart.
// Every wait is on an event: audit.tail's wait_ms for the entries the
// daemon appends, inotify for files a connector writes.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>

#include "tests/ctl/run_ctl.hpp"
#include "tests/support/daemon_process.hpp"

namespace retentiond::testing {
namespace {

using nlohmann::json;

const std::string kExamples = std::string(RETENTIOND_SOURCE_DIR) + "/examples/connectors/";

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

// A helper process (the HTTP receiver) whose first stdout line is read.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe");
    m_pid = ::fork();
    if (m_pid == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(out[1]);
    m_out = out[0];
  }
  ~Child() {
    ::kill(m_pid, SIGTERM);
    int status = 0;
    ::waitpid(m_pid, &status, 0);
    ::close(m_out);
  }
  // The first line it prints (blocking read: it prints it once listening).
  std::string first_line() {
    std::string line;
    char c = 0;
    while (::read(m_out, &c, 1) == 1 && c != '\n') line.push_back(c);
    return line;
  }

 private:
  pid_t m_pid = -1;
  int m_out = -1;
};

class Connectors : public ::testing::Test {
 protected:
  void start(const std::string& policy) {
    m_config = m_dir.path() / "policy.toml";
    std::ofstream(m_config) << policy;
    restart();
  }
  void restart() {
    m_client.reset();
    m_daemon = std::make_unique<DaemonProcess>(m_dir.path(), std::vector<std::string>{"--config", m_config.string()});
    m_client = std::make_unique<Client>(m_daemon->socket());
  }
  json ok(const std::string& method, const json& params = nullptr) {
    const json reply = m_client->call(method, params);
    EXPECT_FALSE(reply.contains("error")) << method << ": " << reply.dump();
    return reply.value("result", json());
  }
  void put(const std::string& key, const std::string& subject, const std::string& closed) {
    ok("record.put", {{"key", key}, {"subject", subject}, {"category", "account"}, {"dates", {{"closed", closed}}}});
  }
  // Waits (audit.tail's wait_ms: the daemon answers when an entry is
  // appended) until `n` entries of `action` exist, at most `limit`.
  std::vector<json> wait_for_entries(const std::string& action, std::size_t n,
                                     std::chrono::seconds limit = std::chrono::seconds(60)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    std::vector<json> found;
    std::int64_t after = 0;
    while (found.size() < n && std::chrono::steady_clock::now() < deadline) {
      const json page = ok("audit.tail", {{"after", after}, {"limit", 1000}, {"wait_ms", 2000}});
      for (const auto& e : page["entries"]) {
        after = e["seq"].get<std::int64_t>();
        if (e["action"] == action) found.push_back(e);
      }
    }
    return found;
  }
  static std::string job_of(const json& entry) {
    const std::string reason = entry["reason"];
    const auto at = reason.find("job=");
    return reason.substr(at + 4, 32);
  }

  TempDir m_dir;
  std::filesystem::path m_config;
  std::unique_ptr<DaemonProcess> m_daemon;
  std::unique_ptr<Client> m_client;
};

constexpr const char* kCategory = R"toml(
[[categories]]
name = "account"
purpose = "Learner accounts"
legal_basis = "contract"
dates = ["closed"]
phases = [ { action = "purge", at = "closed + 1 year" } ]
)toml";

TEST_F(Connectors, AnExecConnectorDeletesTheRowsOfAnApplicationDatabaseAndADeadOneDelaysNothing) {
  const auto app = m_dir.path() / "app.db";
  ASSERT_EQ(run_command("python3 -c \"import sqlite3; db = sqlite3.connect('" + app.string() +
                        "'); db.execute('CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT, name TEXT)'); "
                        "db.executemany('INSERT INTO users VALUES (?, ?, ?)', [('u1', 'a@x', 'A'), ('u2', 'b@x', 'B'), "
                        "('u3', 'c@x', 'C')]); db.commit()\"")
                .exit_code,
            0);
  start(R"toml([daemon]
state_dir = "unused: the tests pass --state-dir"
[[connectors]]
name = "lms"
kind = "exec"
command = ["/usr/bin/python3", ")toml" + kExamples + R"toml(app-db-erase.py", "--sqlite", ")toml" + app.string() + R"toml("]
[[connectors]]
name = "crm"
kind = "http"
url = "http://127.0.0.1:1/retention"
timeout = "2 s"
)toml" + std::string(kCategory) + "connectors = [\"lms\", \"crm\"]\n");
  put("u1", "alice@example.com", "2020-01-01T00:00:00Z");
  put("u2", "bob@example.com", "2021-01-01T00:00:00Z");
  put("u3", "carol@example.com", "2099-01-01T00:00:00Z");
  EXPECT_EQ(ok("sweep")["purged"], 2);
  const auto done = wait_for_entries("connector.done", 2);
  ASSERT_EQ(done.size(), 2u);
  // The application's rows of the purged records are gone, the other stays,
  // and the connector recorded exactly the job ids the daemon audited.
  const auto left = run_command("python3 -c \"import sqlite3; db = sqlite3.connect('" + app.string() +
                                "'); print(sorted(r[0] for r in db.execute('SELECT id FROM users'))); "
                                "print(sorted(r[0] for r in db.execute('SELECT id FROM retentiond_jobs')))\"");
  ASSERT_EQ(left.exit_code, 0) << left.output;
  std::set<std::string> ids;
  for (const auto& e : done) {
    EXPECT_EQ(e["actor"], "scheduler");
    EXPECT_EQ(e["category"], "account");
    EXPECT_TRUE(e["reason"].get<std::string>().starts_with("connector=lms job=")) << e.dump();
    EXPECT_TRUE(e["reason"].get<std::string>().ends_with(" attempts=1")) << e.dump();
    ids.insert(job_of(e));
  }
  EXPECT_EQ(std::set<std::string>({done[0]["key"], done[1]["key"]}), std::set<std::string>({"u1", "u2"}));
  const auto out = lines_of(left.output);
  ASSERT_EQ(out.size(), 2u) << left.output;
  EXPECT_EQ(out[0], "['u3']");
  EXPECT_EQ(out[1], "['" + *ids.begin() + "', '" + *ids.rbegin() + "']");
  // The http connector's receiver is down: its jobs wait, with the error,
  // and delayed nothing of the exec connector's.
  const json list = ok("connector.list")["connectors"];
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["name"], "lms");
  EXPECT_EQ(list[0]["done"], 2);
  EXPECT_EQ(list[0]["pending"], 0);
  EXPECT_EQ(list[1]["name"], "crm");
  EXPECT_EQ(list[1]["done"], 0);
  EXPECT_EQ(list[1]["pending"].get<int>() + list[1]["in_flight"].get<int>(), 2);
  EXPECT_NE(list[1]["oldest_pending"], json(nullptr));
  // The same counts for Prometheus.
  const std::string metrics = ok("metrics")["text"];
  EXPECT_NE(metrics.find("retentiond_connector_jobs{connector=\"lms\",state=\"done\"} 2\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("retentiond_connector_jobs{connector=\"lms\",state=\"pending\"} 0\n"), std::string::npos);
  EXPECT_NE(metrics.find("retentiond_connector_jobs{connector=\"crm\",state=\"done\"} 0\n"), std::string::npos);
  const json status = ok("status");
  EXPECT_EQ(status["connectors"]["failed"], 0);
  EXPECT_EQ(status["connectors"]["pending"], 2);
  const json explained = ok("record.explain", {{"key", "u1"}});
  ASSERT_EQ(explained["connectors"].size(), 2u);
  for (const auto& j : explained["connectors"]) {
    EXPECT_EQ(j["action"], "purge");
    EXPECT_EQ(j["state"], j["connector"] == "lms" ? "done" : j["state"]);
  }
  // The subject reaches no one but the connector: never the audit log.
  const json entries = ok("audit.tail", {{"limit", 100}})["entries"];  // kept: the loop must not run over a temporary
  for (const auto& e : entries) {
    EXPECT_EQ(e.dump().find("example.com"), std::string::npos) << e.dump();
  }
}

TEST_F(Connectors, AnHttpReceiverThatFailsTheFirstThreeAttemptsGetsTheJobUntilItSaysDone) {
  const auto received = m_dir.path() / "received.jsonl";
  Child receiver({"/usr/bin/python3", kExamples + "http-receiver.py", "--port", "0", "--fail-first", "3", "--state",
                  received.string()});
  const std::string line = receiver.first_line();
  ASSERT_TRUE(line.starts_with("listening on ")) << line;
  const std::string port = line.substr(std::string("listening on ").size());
  start(R"toml([daemon]
state_dir = "unused: the tests pass --state-dir"
[[connectors]]
name = "crm"
kind = "http"
url = "http://127.0.0.1:)toml" + port + R"toml(/retention"
max_attempts = 2
)toml" + std::string(kCategory) + "connectors = [\"crm\"]\n");
  put("u1", "alice@example.com", "2020-01-01T00:00:00Z");
  EXPECT_EQ(ok("sweep")["purged"], 1);
  const auto done = wait_for_entries("connector.done", 1);
  ASSERT_EQ(done.size(), 1u);
  // 503 three times (try later: not failed attempts, so max_attempts 2 is
  // not reached), then 200: the fourth delivery.
  EXPECT_TRUE(done[0]["reason"].get<std::string>().ends_with(" attempts=4")) << done[0].dump();
  const std::string id = job_of(done[0]);
  const auto lines = lines_of(slurp(received));
  ASSERT_EQ(lines.size(), 1u) << slurp(received);
  const json got = json::parse(lines[0]);
  EXPECT_EQ(got["id"], id);  // the receiver keeps the Idempotency-Key it saw, checked against the body's id
  const json explained = ok("record.explain", {{"key", "u1"}});
  ASSERT_EQ(explained["connectors"].size(), 1u);
  EXPECT_EQ(explained["connectors"][0]["state"], "done");
  EXPECT_EQ(explained["connectors"][0]["attempts"], 4);
  EXPECT_EQ(explained["connectors"][0]["last_error"].get<std::string>().substr(0, 8), "HTTP 503");
}

TEST_F(Connectors, APullConsumerClaimsOverTheSocketAndAcknowledges) {
  start(R"toml([daemon]
state_dir = "unused: the tests pass --state-dir"
[[connectors]]
name = "billing"
kind = "pull"
)toml" + std::string(kCategory) + "connectors = [\"billing\"]\n");
  put("u1", "alice@example.com", "2020-01-01T00:00:00Z");
  put("u2", "bob@example.com", "2020-01-01T00:00:00Z");
  EXPECT_EQ(ok("sweep")["purged"], 2);
  const json jobs = ok("connector.jobs", {{"connector", "billing"}})["jobs"];
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0]["subject"], "alice@example.com");
  EXPECT_EQ(jobs[0]["state"], "pending");
  const auto consumer = run_command("/usr/bin/python3 " + kExamples + "pull-consumer.py --socket " +
                                    m_daemon->socket().string() + " --connector billing --once 2>&1");
  ASSERT_EQ(consumer.exit_code, 0) << consumer.output;
  EXPECT_EQ(consumer.output.find("example.com"), std::string::npos) << "the consumer printed a subject: " << consumer.output;
  const auto done = wait_for_entries("connector.done", 2, std::chrono::seconds(10));
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(std::set<std::string>({job_of(done[0]), job_of(done[1])}),
            std::set<std::string>({jobs[0]["id"], jobs[1]["id"]}));
  EXPECT_TRUE(done[0]["actor"].get<std::string>().starts_with("uid:")) << done[0].dump();
  EXPECT_TRUE(ok("connector.jobs", {{"connector", "billing"}})["jobs"].empty());
  const json list = ok("connector.list")["connectors"];
  EXPECT_EQ(list[0]["done"], 2);
  EXPECT_EQ(list[0]["oldest_pending"], json(nullptr));
  // Nothing left to claim; an exec or unknown connector is not claimed.
  EXPECT_TRUE(ok("connector.claim", {{"connector", "billing"}})["jobs"].empty());
  const json unknown = m_client->call("connector.claim", {{"connector", "crm"}});
  EXPECT_EQ(unknown["error"]["data"]["reason"], "unknown_connector");
}

TEST_F(Connectors, ADaemonKilledMidDeliveryDeliversTheSameJobAgainAfterItsRestart) {
  // The connector records each job id it is given; the first time, it
  // then hangs (its pid in `blocked`) until the test kills it.
  const auto seen = m_dir.path() / "seen";
  const auto blocked = m_dir.path() / "blocked";
  const auto script = m_dir.path() / "connector.sh";
  std::ofstream(script) << "#!/bin/sh\n"
                           "id=$(python3 -c 'import json, sys; print(json.load(sys.stdin)[\"id\"])')\n"
                           "echo \"$id\" >> " << seen.string() << "\n"
                           "if [ ! -e " << blocked.string() << " ]; then echo $$ > " << blocked.string()
                        << ".tmp; mv " << blocked.string() << ".tmp " << blocked.string() << "; exec sleep 600; fi\n"
                           "exit 0\n";
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  start(R"toml([daemon]
state_dir = "unused: the tests pass --state-dir"
[[connectors]]
name = "lms"
kind = "exec"
command = [")toml" + script.string() + R"toml("]
)toml" + std::string(kCategory) + "connectors = [\"lms\"]\n");
  put("u1", "alice@example.com", "2020-01-01T00:00:00Z");
  EXPECT_EQ(ok("sweep")["purged"], 1);
  ASSERT_TRUE(wait_for_path(blocked, std::chrono::seconds(30)));
  EXPECT_EQ(ok("connector.list")["connectors"][0]["in_flight"], 1);
  m_client.reset();
  m_daemon->stop(SIGKILL);
  m_daemon.reset();
  const pid_t hung = std::stoi(slurp(blocked));
  ::kill(hung, SIGKILL);
  restart();
  const auto done = wait_for_entries("connector.done", 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0]["reason"].get<std::string>().ends_with(" attempts=2")) << done[0].dump();
  const auto ids = lines_of(slurp(seen));
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0], ids[1]);  // the same job, the same idempotency key
  EXPECT_EQ(ids[0], job_of(done[0]));
  EXPECT_EQ(wait_for_entries("connector.done", 2, std::chrono::seconds(3)).size(), 1u);  // done once
  const json verify = ok("audit.verify");
  EXPECT_EQ(verify["ok"], true);
}

// retentionctl's tables and repairs: a pull job failed for good (its
// max_attempts reached through connector.ack), listed, retried, discarded.
TEST_F(Connectors, RetentionctlListsConnectorsAndJobsRetriesAndDiscards) {
  start(R"toml([daemon]
state_dir = "unused: the tests pass --state-dir"
[[connectors]]
name = "billing"
kind = "pull"
max_attempts = 1
)toml" + std::string(kCategory) + "connectors = [\"billing\"]\n");
  put("u1", "alice@example.com", "2020-01-01T00:00:00Z");
  put("u2", "bob@example.com", "2020-01-01T00:00:00Z");
  EXPECT_EQ(ok("sweep")["purged"], 2);
  const json claimed = ok("connector.claim", {{"connector", "billing"}})["jobs"];
  ASSERT_EQ(claimed.size(), 2u);
  const std::string id1 = claimed[0]["id"], id2 = claimed[1]["id"];
  EXPECT_EQ(ok("connector.ack", {{"connector", "billing"}, {"ids", {id1, id2}}, {"outcome", "failed"},
                                 {"message", "no such account"}})["acknowledged"],
            2);
  const std::vector<std::string> socket{"--socket", m_daemon->socket().string()};
  const auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), socket.begin(), socket.end());
    return run_ctl(args);
  };
  const CtlResult list = ctl({"connectors"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(list.out,
            "NAME     KIND  PENDING  IN FLIGHT  FAILED  DONE  DISCARDED  OLDEST PENDING  LAST ERROR\n"
            "billing  pull        0          0       2     0          0  -               no such account\n");
  const CtlResult jobs = ctl({"jobs", "billing", "--state", "failed"});
  ASSERT_EQ(jobs.exit_code, 0) << jobs.err;
  EXPECT_NE(jobs.out.find(id1 + "  failed  purge   u1"), std::string::npos) << jobs.out;
  EXPECT_NE(jobs.out.find(id2 + "  failed  purge   u2"), std::string::npos) << jobs.out;
  EXPECT_EQ(jobs.out.find("example.com"), std::string::npos) << "the table shows no subject: " << jobs.out;
  const CtlResult both = ctl({"retry", "billing", id1, "--all"});
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_NE(both.err.find("retry needs job ids or --all (not both)"), std::string::npos) << both.err;
  const CtlResult retried = ctl({"retry", "billing", id1});
  ASSERT_EQ(retried.exit_code, 0) << retried.err;
  EXPECT_EQ(retried.out, "retried 1 failed job(s)\n");
  const CtlResult discarded = ctl({"discard", "billing", id2, "--reason", "account closed in billing"});
  ASSERT_EQ(discarded.exit_code, 0) << discarded.err;
  EXPECT_EQ(discarded.out, "discarded 1 job(s)\n");
  const json entry = ok("audit.tail", {{"limit", 1}})["entries"][0];
  EXPECT_EQ(entry["action"], "connector.discard");
  EXPECT_EQ(entry["key"], "u2");
  EXPECT_EQ(entry["reason"], "connector=billing job=" + id2 + " attempts=1: account closed in billing");
  const json left = ok("connector.jobs", {{"connector", "billing"}})["jobs"];
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0]["id"], id1);
  EXPECT_EQ(left[0]["state"], "pending");
  EXPECT_EQ(left[0]["attempts"], 0);
  const CtlResult explained = ctl({"explain", "u2"});
  ASSERT_EQ(explained.exit_code, 0) << explained.err;
  EXPECT_NE(explained.out.find("billing    purge   0      " + id2 + "  discarded  1"), std::string::npos) << explained.out;
}

}  // namespace
}  // namespace retentiond::testing
