// End-to-end, through the real daemon (issue 15): the clock guard — a clock
// that jumps years ahead over a full state pauses disposal until confirmed,
// a restart after a week's stop does not — and plan with a candidate policy,
// whose counts are those config.reload then reports. The daemon's clock is
// set with --now, as operators' what-if runs set it.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <fstream>

#include "tests/support/daemon_process.hpp"

namespace retentiond::testing {
namespace {

using nlohmann::json;

constexpr int kConfirmationRequired = -32004;
constexpr int kInvalidParams = -32602;

// reload_guard 10: a jump or a policy making more than 10 records due at
// once trips the guards. Expected dates are worked out by hand from each `at`.
constexpr const char* kPolicy = R"toml([daemon]
state_dir = "unused: the tests pass --state-dir"
reload_guard = 10

[[categories]]
name = "student"
purpose = "Student file"
legal_basis = "contract"
dates = ["left"]
phases = [ { action = "purge", at = "left + 5 years" } ]

[[categories]]
name = "cookie"
purpose = "Audience measurement"
legal_basis = "consent"
phases = [ { action = "purge", at = "collected + 13 months" } ]
)toml";

class Safety : public ::testing::Test {
 protected:
  void SetUp() override {
    m_config = m_dir.path() / "policy.toml";
    write(m_config, kPolicy);
  }

  static void write(const std::filesystem::path& path, const std::string& text) { std::ofstream(path) << text; }

  void start(const std::string& now, std::vector<std::string> extra = {}) {
    m_client.reset();
    m_daemon.reset();
    std::vector<std::string> args{"--config", m_config.string(), "--now", now};
    args.insert(args.end(), extra.begin(), extra.end());
    m_daemon = std::make_unique<DaemonProcess>(m_dir.path(), args);
    m_client = std::make_unique<Client>(m_daemon->socket());
  }
  void stop() {
    m_client.reset();
    ASSERT_EQ(m_daemon->stop(SIGTERM), 0);
    m_daemon.reset();
  }

  json ok(const std::string& method, const json& params = nullptr) {
    const json reply = m_client->call(method, params);
    EXPECT_FALSE(reply.contains("error")) << method << ": " << reply.dump();
    return reply.value("result", json());
  }
  json error(const std::string& method, const json& params = nullptr) {
    const json reply = m_client->call(method, params);
    EXPECT_TRUE(reply.contains("error")) << method << ": " << reply.dump();
    return reply.value("error", json());
  }
  void put_cookies(int n, const std::string& collected, const std::string& prefix) {
    for (int i = 0; i < n; ++i) {
      ok("record.put", {{"key", prefix + std::to_string(i)}, {"subject", "s" + std::to_string(i)},
                        {"category", "cookie"}, {"dates", {{"collected", collected}}}});
    }
  }
  void put_students(int n, const json& dates, const std::string& prefix) {
    for (int i = 0; i < n; ++i) {
      ok("record.put", {{"key", prefix + std::to_string(i)}, {"subject", "st" + std::to_string(i)},
                        {"category", "student"}, {"dates", dates}});
    }
  }
  std::int64_t active() { return ok("status")["records"]["active"].get<std::int64_t>(); }
  json last_entry(const std::string& action) {
    const json entries = ok("audit.tail", {{"limit", 1000}})["entries"];
    json found;
    for (const auto& e : entries) {
      if (e["action"] == action) found = e;
    }
    return found;
  }

  TempDir m_dir;
  std::filesystem::path m_config;
  std::unique_ptr<DaemonProcess> m_daemon;
  std::unique_ptr<Client> m_client;
};

// ---- the clock guard ------------------------------------------------------

TEST_F(Safety, AClockTwentyYearsAheadOverAFullStatePurgesNothingUntilConfirmed) {
  start("2030-01-01T00:00:00Z");
  put_cookies(20, "2030-01-01", "c-");        // purge 2031-02-01
  put_students(3, {{"left", "2030-01-03"}}, "s-");  // purge 2035-01-03
  put_students(2, json::object(), "w-");      // waiting for `left`: never due
  stop();

  start("2050-01-01T00:00:00Z");
  const json status = ok("status");
  EXPECT_EQ(status["paused"], "clock_guard");
  const json pause = status["pause"];
  EXPECT_EQ(pause["newly_due"], 23);
  EXPECT_EQ(pause["guard"], 10);
  EXPECT_EQ(pause["last_seen"].get<std::string>().substr(0, 15), "2030-01-01T00:0") << pause.dump();
  EXPECT_EQ(pause["now"].get<std::string>().substr(0, 15), "2050-01-01T00:0") << pause.dump();

  // Disposal is refused, reads keep working, nothing was purged.
  const json refused = error("sweep");
  EXPECT_EQ(refused["code"], kConfirmationRequired);
  EXPECT_EQ(refused["data"]["paused"], "clock_guard");
  EXPECT_EQ(refused["data"]["newly_due"], 23);
  EXPECT_EQ(ok("record.get", {{"key", "c-0"}})["key"], "c-0");
  EXPECT_EQ(active(), 25);
  EXPECT_NE(ok("metrics")["text"].get<std::string>().find("retentiond_paused{reason=\"clock_guard\"} 1"),
            std::string::npos);

  // Confirmed: the policy is then applied exactly, and the confirmation audited.
  EXPECT_EQ(ok("clock.confirm"), json({{"confirmed", true}}));
  EXPECT_EQ(ok("status")["paused"], nullptr);
  ok("sweep");
  EXPECT_EQ(active(), 2);  // the two waiting for `left`
  const json confirm = last_entry("clock.confirm");
  ASSERT_TRUE(confirm.is_object());
  EXPECT_EQ(confirm["actor"].get<std::string>().rfind("uid:", 0), 0u);
  const std::string reason = confirm["reason"];
  EXPECT_EQ(reason.rfind("clock jumped from 2030-01-01T00:0", 0), 0u) << reason;
  EXPECT_NE(reason.find("; newly due: 23; guard: 10"), std::string::npos) << reason;
  EXPECT_TRUE(ok("audit.verify")["ok"].get<bool>());

  // Confirmed once, a restart at the same time is not paused again.
  stop();
  start("2050-01-01T00:10:00Z");
  EXPECT_EQ(ok("status")["paused"], nullptr);
}

TEST_F(Safety, ARestartAfterAWeeksStopWithAHandfulDueIsNotPaused) {
  start("2031-01-01T00:00:00Z");
  put_cookies(3, "2029-12-03", "due-");   // purge 2031-01-03: due during the stop
  put_cookies(20, "2030-01-01", "later-");  // purge 2031-02-01
  stop();

  start("2031-01-08T00:00:00Z");
  EXPECT_EQ(ok("status")["paused"], nullptr);
  ok("sweep");
  EXPECT_EQ(active(), 20);
  EXPECT_FALSE(last_entry("clock.confirm").is_object());
}

TEST_F(Safety, ConfirmClockAtStartUpAcceptsTheJumpAndAuditsIt) {
  start("2030-01-01T00:00:00Z");
  put_cookies(12, "2030-01-01", "c-");
  stop();

  start("2050-01-01T00:00:00Z", {"--confirm-clock"});
  EXPECT_EQ(ok("status")["paused"], nullptr);
  ok("sweep");
  EXPECT_EQ(active(), 0);
  const json confirm = last_entry("clock.confirm");
  ASSERT_TRUE(confirm.is_object());
  EXPECT_EQ(confirm["actor"], "scheduler");
  const std::string reason = confirm["reason"];
  EXPECT_NE(reason.find("; newly due: 12; guard: 10; at start-up, confirmed with --confirm-clock"), std::string::npos)
      << reason;
}

TEST_F(Safety, AClockBehindWhatItHasShownUndoesNothingAndIsNotPaused) {
  start("2040-01-01T00:00:00Z");
  put_cookies(12, "2030-01-01", "c-");  // purge 2031-02-01: overdue
  ok("sweep");
  EXPECT_EQ(active(), 0);
  stop();

  start("2030-06-01T00:00:00Z");
  EXPECT_EQ(ok("status")["paused"], nullptr);
  EXPECT_EQ(active(), 0);
  EXPECT_EQ(ok("record.explain", {{"key", "c-0"}})["state"], "purged");
  // Back where it was and past it by less than the guard: steady.
  stop();
  start("2040-01-01T12:00:00Z");
  EXPECT_EQ(ok("status")["paused"], nullptr);
}

TEST_F(Safety, ALongerClockGuardLetsAJumpThrough) {
  write(m_config, std::string(kPolicy).replace(std::string(kPolicy).find("reload_guard = 10"), 17,
                                               "reload_guard = 10\nclock_guard = \"30 years\""));
  start("2030-01-01T00:00:00Z");
  put_cookies(12, "2030-01-01", "c-");
  stop();
  start("2050-01-01T00:00:00Z");
  EXPECT_EQ(ok("status")["paused"], nullptr);
}

TEST_F(Safety, ClockConfirmIsForAdministratorsAndTakesNoParams) {
  start("2030-01-01T00:00:00Z");
  const json e = error("clock.confirm", {{"force", true}});
  EXPECT_EQ(e["code"], kInvalidParams);
  // Nothing to confirm: still confirmed, and nothing audited.
  EXPECT_EQ(ok("clock.confirm"), json({{"confirmed", true}}));
  EXPECT_FALSE(last_entry("clock.confirm").is_object());
}

// ---- plan with a candidate policy -------------------------------------------

class Simulation : public Safety {
 protected:
  void SetUp() override {
    Safety::SetUp();
    start("2030-01-01T00:00:00Z");
    put_students(12, {{"left", "2026-06-01"}}, "s-");  // purge 2031-06-01
    put_students(3, json::object(), "w-");              // waiting for `left`
    put_cookies(5, "2030-01-01", "c-");                 // purge 2031-02-01
  }
  // The policy with the student phase's `at` replaced, and `extra` appended.
  std::filesystem::path candidate(const std::string& at, const std::string& extra = "") {
    std::string text = kPolicy;
    const std::string from = "left + 5 years";
    text.replace(text.find(from), from.size(), at);
    const auto path = m_dir.path() / "candidate.toml";
    write(path, text + extra);
    return path;
  }
};

constexpr const char* kSurvey = R"toml(
[[categories]]
name = "survey"
purpose = "Satisfaction survey"
legal_basis = "consent"
phases = [ { action = "purge", at = "collected + 1 year" } ]
)toml";

TEST_F(Simulation, ACandidateIsComparedWithTheAdoptedPolicyAndNothingIsAdopted) {
  const std::string adopted = ok("status")["policy"]["hash"];
  const auto path = candidate("left + 3 years", kSurvey);  // students: 2029-06-01, due at once
  const json r = ok("plan", {{"until", "2032-01-01"}, {"policy", path.string()}});
  const json c = r["candidate"];
  EXPECT_NE(c["hash"], adopted);
  EXPECT_EQ(c["changed_categories"], json({"student", "survey"}));
  EXPECT_EQ(c["newly_due"], 12);
  EXPECT_EQ(c["guard_trips"], true);
  EXPECT_EQ(r["diff"], json::parse(R"([
    {"category": "student", "earlier": 12, "later": 0, "unchanged": 3, "newly_due": 12},
    {"category": "survey", "earlier": 0, "later": 0, "unchanged": 0, "newly_due": 0}])"));
  // The actions are the candidate's: the students at once, the cookies as before.
  EXPECT_EQ(r["actions"], json::parse(R"([
    {"month": "2030-01", "category": "student", "action": "purge", "count": 12},
    {"month": "2031-02", "category": "cookie", "action": "purge", "count": 5}])"));
  EXPECT_EQ(ok("status")["policy"]["hash"], adopted);
  EXPECT_EQ(ok("record.explain", {{"key", "s-0"}})["next"]["due"], "2031-06-01T00:00:00Z");

  // Adopting it reports the same counts.
  std::filesystem::copy_file(path, m_config, std::filesystem::copy_options::overwrite_existing);
  const json refused = error("config.reload");
  EXPECT_EQ(refused["code"], kConfirmationRequired);
  EXPECT_EQ(refused["data"]["newly_due"], 12);
  const json reloaded = ok("config.reload", {{"confirm", true}});
  EXPECT_EQ(reloaded["hash"], c["hash"]);
  EXPECT_EQ(reloaded["newly_due"], c["newly_due"]);
  EXPECT_EQ(reloaded["changed_categories"], c["changed_categories"]);
}

TEST_F(Simulation, ALongerRetentionMovesDisposalLaterAndPassesTheGuard) {
  const json r = ok("plan", {{"until", "2032-01-01"}, {"policy", candidate("left + 7 years").string()}});
  EXPECT_EQ(r["candidate"]["changed_categories"], json({"student"}));
  EXPECT_EQ(r["candidate"]["newly_due"], 0);
  EXPECT_EQ(r["candidate"]["guard_trips"], false);
  EXPECT_EQ(r["diff"], json::parse(
                           R"([{"category": "student", "earlier": 0, "later": 12, "unchanged": 3, "newly_due": 0}])"));
  EXPECT_EQ(r["actions"], json::parse(R"([{"month": "2031-02", "category": "cookie", "action": "purge", "count": 5}])"));
  // The same file unchanged: nothing moves.
  const json same = ok("plan", {{"until", "2032-01-01"}, {"policy", m_config.string()}});
  EXPECT_EQ(same["candidate"]["changed_categories"], json::array());
  EXPECT_EQ(same["diff"], json::array());
  EXPECT_EQ(same["candidate"]["hash"], ok("status")["policy"]["hash"]);
}

TEST_F(Simulation, ACandidateThatDoesNotValidateIsABadConfigWithItsLine) {
  const std::string adopted = ok("status")["policy"]["hash"];
  const json e = error("plan", {{"until", "2032-01-01"}, {"policy", candidate("left + 5 yeers").string()}});
  EXPECT_EQ(e["code"], kInvalidParams);
  EXPECT_EQ(e["data"]["reason"], "bad_config");
  const std::string message = e["message"];
  EXPECT_NE(message.find("candidate.toml:10:"), std::string::npos) << message;
  EXPECT_NE(message.find("yeers"), std::string::npos) << message;

  const json missing = error("plan", {{"until", "2032-01-01"}, {"policy", (m_dir.path() / "nope.toml").string()}});
  EXPECT_EQ(missing["data"]["reason"], "bad_config");
  EXPECT_NE(missing["message"].get<std::string>().find("nope.toml"), std::string::npos) << missing.dump();

  // Anything but a regular file is refused before it is opened: a FIFO
  // would block the read for ever.
  const auto fifo = m_dir.path() / "fifo.toml";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const json not_a_file = error("plan", {{"until", "2032-01-01"}, {"policy", fifo.string()}});
  EXPECT_EQ(not_a_file["data"]["reason"], "bad_config");
  EXPECT_NE(not_a_file["message"].get<std::string>().find("not a regular file"), std::string::npos);

  const json bad_type = error("plan", {{"until", "2032-01-01"}, {"policy", 7}});
  EXPECT_EQ(bad_type["code"], kInvalidParams);

  // A candidate dropping a category that still holds records is refused as
  // config.reload would refuse it.
  std::string without_cookie = kPolicy;
  without_cookie.erase(without_cookie.find("[[categories]]\nname = \"cookie\""));
  write(m_dir.path() / "dropped.toml", without_cookie);
  const json dropped = error("plan", {{"until", "2032-01-01"}, {"policy", (m_dir.path() / "dropped.toml").string()}});
  EXPECT_EQ(dropped["data"]["reason"], "bad_config");
  EXPECT_EQ(dropped["data"]["category"], "cookie");
  EXPECT_EQ(ok("status")["policy"]["hash"], adopted);
}

// ---- the undo window ----------------------------------------------------

class UndoWindow : public Safety {
 protected:
  void SetUp() override {
    Safety::SetUp();
    std::string text = kPolicy;
    text.replace(text.find("reload_guard = 10"), 17, "reload_guard = 10\npurge_grace = \"30 days\"");
    write(m_config, text);
    start("2031-03-01T00:00:00Z");
  }
};

TEST_F(UndoWindow, APurgedRecordIsGoneForReadersRestorableForThirtyDaysThenDestroyed) {
  // Collected 2030-01-01: purge due 2031-02-01, overdue.
  ok("record.put", {{"key", "c-1"}, {"subject", "ann"}, {"category", "cookie"}, {"fields", {{"id", "abc"}}},
                    {"dates", {{"collected", "2030-01-01"}}}});
  ok("record.put", {{"key", "c-2"}, {"subject", "ann"}, {"category", "cookie"}, {"dates", {{"collected", "2030-01-01"}}}});
  EXPECT_EQ(ok("sweep")["purged"], 2);

  // At once, for every reader.
  EXPECT_EQ(error("record.get", {{"key", "c-1"}})["data"]["reason"], "not_found");
  EXPECT_EQ(ok("subject.export", {{"subject", "ann"}})["records"], json::array());
  EXPECT_EQ(active(), 0);
  const json explained = ok("record.explain", {{"key", "c-1"}});
  EXPECT_EQ(explained["state"], "purged");
  const std::string purged_at = explained["purged_at"];
  EXPECT_EQ(purged_at.substr(0, 15), "2031-03-01T00:0");
  const std::string until = explained["restorable_until"];
  EXPECT_EQ(until.substr(0, 15), "2031-03-31T00:0");
  EXPECT_EQ(until.substr(10), purged_at.substr(10));  // 30 days later to the second

  // Restored as it was, audited; due again, it waits for the next check.
  EXPECT_EQ(ok("record.restore", {{"key", "c-1"}, {"reason", "purged by mistake"}}),
            json({{"key", "c-1"}, {"state", "active"}}));
  EXPECT_EQ(ok("record.get", {{"key", "c-1"}})["fields"], json({{"id", "abc"}}));
  EXPECT_EQ(ok("record.explain", {{"key", "c-1"}})["next"]["due"], "2031-02-01T00:00:00Z");
  const json restore = last_entry("restore");
  ASSERT_TRUE(restore.is_object());
  EXPECT_EQ(restore["key"], "c-1");
  EXPECT_EQ(restore["category"], "cookie");
  EXPECT_EQ(restore["reason"].get<std::string>().rfind("purged by mistake (purged 2031-03-01T00:0", 0), 0u)
      << restore.dump();
  // A hold keeps it this time.
  ok("hold.place", {{"key", "c-1"}, {"reason", "keep it"}});
  EXPECT_EQ(ok("sweep")["purged"], 0);

  // A key stored again since its purge cannot be restored over.
  ok("record.put", {{"key", "c-2"}, {"subject", "bob"}, {"category", "cookie"}});
  EXPECT_EQ(error("record.restore", {{"key", "c-2"}, {"reason", "x"}})["data"]["reason"], "conflict");
  EXPECT_EQ(error("record.restore", {{"key", "never"}, {"reason", "x"}})["data"]["reason"], "not_found");
  EXPECT_EQ(error("record.restore", {{"key", "c-1"}})["data"]["reason"], "invalid_params");

  // The plan and the register disclose the window.
  EXPECT_EQ(ok("plan", {{"until", "2032-01-01"}})["purge_grace"], "30 days");
  const std::string table = ok("policy.table", {{"format", "text"}})["text"];
  EXPECT_NE(table.find("after collected, then purged, then destroyed 30 days later"), std::string::npos) << table;

  // 31 days later: destroyed, audited, no longer restorable.
  stop();
  start("2031-04-01T00:00:00Z");
  ok("sweep");
  const json destroy = last_entry("destroy");
  ASSERT_TRUE(destroy.is_object());
  EXPECT_EQ(destroy["key"], "c-2");
  EXPECT_EQ(destroy["actor"], "scheduler");
  EXPECT_EQ(destroy["reason"].get<std::string>().rfind("undo window ended (purged 2031-03-01T00:0", 0), 0u)
      << destroy.dump();
  EXPECT_EQ(error("record.restore", {{"key", "c-2"}, {"reason", "too late"}})["data"]["reason"], "not_found");
  const json gone = ok("record.explain", {{"key", "c-1"}});
  EXPECT_EQ(gone["state"], "active");  // the restored one, held
  EXPECT_TRUE(ok("audit.verify")["ok"].get<bool>());
}

TEST_F(UndoWindow, ARecordWhoseCategoryWasRemovedIsNotRestored) {
  ok("record.put", {{"key", "c-1"}, {"subject", "ann"}, {"category", "cookie"}, {"dates", {{"collected", "2030-01-01"}}}});
  EXPECT_EQ(ok("sweep")["purged"], 1);
  // The cookie category dropped: it holds no live record any more.
  std::string text = kPolicy;
  text.erase(text.find("[[categories]]\nname = \"cookie\""));
  text.replace(text.find("reload_guard = 10"), 17, "reload_guard = 10\npurge_grace = \"30 days\"");
  write(m_config, text);
  ok("config.reload");
  const json e = error("record.restore", {{"key", "c-1"}, {"reason", "x"}});
  EXPECT_EQ(e["data"]["reason"], "unknown_category") << e.dump();
  EXPECT_EQ(ok("record.explain", {{"key", "c-1"}})["state"], "purged");  // still in its window
}

TEST_F(UndoWindow, AnErasureIsRestorableToo) {
  ok("record.put", {{"key", "s-1"}, {"subject", "zoe"}, {"category", "student"}, {"fields", {{"name", "Zoe"}}}});
  const json erased = ok("subject.erase", {{"subject", "zoe"}, {"reason", "request"}});
  EXPECT_EQ(erased["erased"], json::array({"s-1"}));
  EXPECT_EQ(ok("subject.export", {{"subject", "zoe"}})["records"], json::array());
  EXPECT_TRUE(ok("record.explain", {{"key", "s-1"}}).contains("restorable_until"));
  EXPECT_EQ(ok("record.restore", {{"key", "s-1"}, {"reason", "wrong subject"}})["state"], "active");
  EXPECT_EQ(ok("subject.export", {{"subject", "zoe"}})["records"][0]["fields"], json({{"name", "Zoe"}}));
}

}  // namespace
}  // namespace retentiond::testing
