// End-to-end, through the real daemon: the paths that used to keep personal
// data silently or leave no trace (issue 18) — a misspelt event name, phases
// that overtake each other, replacements that extend retention, events and
// exports without audit entries — and the erasure of one record or of a
// subject's records in some categories only.

#include <gtest/gtest.h>
#include <signal.h>

#include <array>
#include <cstdio>
#include <fstream>

#include "tests/support/daemon_process.hpp"

namespace retentiond::testing {
namespace {

using nlohmann::json;

// An erasure's answer without its signed receipt (tests/integration/proof_test.cpp
// checks receipts), which it must carry.
json without_receipt(json answer) {
  EXPECT_TRUE(answer.contains("receipt")) << answer.dump();
  answer.erase("receipt");
  return answer;
}

// Expected dates below are worked out by hand from each `at`.
constexpr const char* kPolicy = R"toml([daemon]
state_dir = "unused: the tests pass --state-dir"
fiscal_year_end = "12-31"

[[categories]]
name = "student"
purpose = "Student file"
legal_basis = "contract"
dates = ["left"]
phases = [ { action = "purge", at = "left + 5 years" } ]

[[categories]]
name = "newsletter"
purpose = "Newsletter"
legal_basis = "consent"
dates = ["consent_withdrawn"]
phases = [ { action = "purge", at = "min(collected + 3 years, consent_withdrawn)" } ]

[[categories]]
name = "invoice"
purpose = "Invoicing"
legal_basis = "legal_obligation"
dates = ["issued"]
phases = [ { action = "purge", at = "fiscal_year_end(issued) + 10 years" } ]

[[categories]]
name = "usage"
purpose = "Usage statistics"
legal_basis = "legitimate_interest"
phases = [
  { action = "anonymise", at = "collected + 3 years" },
  { action = "purge", at = "collected + 1 year" },
]
anonymise = { course = "keep" }
)toml";

class Accountability : public ::testing::Test {
 protected:
  void SetUp() override {
    m_config = m_dir.path() / "policy.toml";
    std::ofstream(m_config) << kPolicy;
    m_daemon = std::make_unique<DaemonProcess>(
        m_dir.path(), std::vector<std::string>{"--config", m_config.string(), "--now", "2030-01-01T00:00:00Z"});
    m_client = std::make_unique<Client>(m_daemon->socket());
  }

  json ok(const std::string& method, const json& params = nullptr) {
    const json reply = m_client->call(method, params);
    EXPECT_FALSE(reply.contains("error")) << method << ": " << reply.dump();
    return reply.value("result", json());
  }
  json error(const std::string& method, const json& params) {
    const json reply = m_client->call(method, params);
    EXPECT_TRUE(reply.contains("error")) << method << ": " << reply.dump();
    return reply.value("error", json());
  }
  // The audit entries after `seq`, without their hashes and times.
  json entries_after(std::int64_t seq) {
    json out = json::array();
    const json tail = ok("audit.tail", {{"after", seq}});
    for (auto e : tail["entries"]) {
      for (const char* volatile_field : {"hash", "at", "policy_hash"}) e.erase(volatile_field);
      out.push_back(e);
    }
    return out;
  }
  std::int64_t head() { return ok("audit.verify")["entries"].get<std::int64_t>(); }
  std::string ref(const std::string& subject) {
    // The subject_ref of `subject`, as the daemon computes it: read off an
    // entry that names the subject (audit.tail's subject filter matches it).
    const json entries = ok("audit.tail", {{"subject", subject}})["entries"];
    return entries.empty() ? std::string() : entries.back()["subject_ref"].get<std::string>();
  }

  TempDir m_dir;
  std::filesystem::path m_config;
  std::unique_ptr<DaemonProcess> m_daemon;
  std::unique_ptr<Client> m_client;
};

TEST_F(Accountability, AnEventNameNoCategoryDeclaresIsRefusedAndChangesNothing) {
  ok("record.put", {{"key", "st-1"}, {"subject", "ann"}, {"category", "student"}});
  const auto before = head();
  const json e = error("event.record", {{"name", "lefft"}, {"at", "2030-01-01"}, {"subject", "ann"}});
  EXPECT_EQ(e["code"], -32602);
  EXPECT_EQ(e["data"]["reason"], "unknown_date");
  EXPECT_EQ(e["message"],
            "no category of the policy declares the date 'lefft'; nothing was changed (did you mean 'left'? the "
            "policy names: collected, consent_withdrawn, issued, left)");
  EXPECT_EQ(head(), before);
  EXPECT_EQ(ok("record.explain", {{"key", "st-1"}})["next"]["waiting_for"], json::array({"left"}));

  // The right name works, and is audited once, with the count.
  EXPECT_EQ(ok("event.record", {{"name", "left"}, {"at", "2030-01-01"}, {"subject", "ann"}})["updated"], 1);
  const json entries = entries_after(before);
  ASSERT_EQ(entries.size(), 1u) << entries.dump();
  EXPECT_EQ(entries[0]["action"], "event");
  EXPECT_EQ(entries[0]["key"], nullptr);
  EXPECT_EQ(entries[0]["reason"], "left = 2030-01-01T00:00:00Z: 1 record updated");
  EXPECT_EQ(entries[0]["subject_ref"], ref("ann"));
  EXPECT_EQ(ok("record.explain", {{"key", "st-1"}})["next"]["due"], "2035-01-01T00:00:00Z");
}

TEST_F(Accountability, AnEventOnOneKeyIsAuditedWithItsKeyAndCategory) {
  ok("record.put", {{"key", "st-1"}, {"subject", "ann"}, {"category", "student"}});
  const auto before = head();
  EXPECT_EQ(ok("event.record", {{"name", "left"}, {"at", "2031-02-03"}, {"key", "st-1"}})["updated"], 1);
  const json entries = entries_after(before);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0]["action"], "event");
  EXPECT_EQ(entries[0]["key"], "st-1");
  EXPECT_EQ(entries[0]["category"], "student");
  EXPECT_EQ(entries[0]["reason"], "left = 2031-02-03T00:00:00Z: 1 record updated");
}

TEST_F(Accountability, AReplacementThatExtendsRetentionIsAuditedAndOneThatChangesNothingIsNot) {
  // collected 2029-06-01: purge at min(2032-06-01, consent_withdrawn).
  ok("record.put", {{"key", "nl-1"}, {"subject", "bob"}, {"category", "newsletter"},
                    {"dates", {{"collected", "2029-06-01"}, {"consent_withdrawn", "2030-03-01"}}}});
  auto before = head();
  // The same record again: nothing to say.
  ok("record.put_many", {{"records", json::array({{{"key", "nl-1"}, {"subject", "bob"}, {"category", "newsletter"},
                                                   {"dates", {{"collected", "2029-06-01"}, {"consent_withdrawn", "2030-03-01"}}}}})}});
  EXPECT_EQ(head(), before);
  // Without the withdrawal: kept until 2032-06-01 instead of 2030-03-01.
  ok("record.put", {{"key", "nl-1"}, {"subject", "bob"}, {"category", "newsletter"},
                    {"dates", {{"collected", "2029-06-01"}}}});
  json entries = entries_after(before);
  ASSERT_EQ(entries.size(), 1u) << entries.dump();
  EXPECT_EQ(entries[0], json::parse(R"({"seq":)" + std::to_string(before + 1) + R"(,"action":"extend","key":"nl-1",
      "category":"newsletter","phase":0,"subject_ref":")" + ref("bob") + R"(","actor":"uid:)" +
                                    std::to_string(::getuid()) + R"(",
      "reason":"record.put replaced the record: next due 2030-03-01T00:00:00Z -> 2032-06-01T00:00:00Z"})"));
  // Shorter again: no entry (only a longer retention needs a trace).
  before = head();
  ok("record.put", {{"key", "nl-1"}, {"subject", "bob"}, {"category", "newsletter"},
                    {"dates", {{"collected", "2029-06-01"}, {"consent_withdrawn", "2030-02-01"}}}});
  EXPECT_EQ(head(), before);
  // A replacement that leaves it waiting for a date is later than any date.
  ok("record.put", {{"key", "st-9"}, {"subject", "bob"}, {"category", "student"}, {"dates", {{"left", "2029-01-01"}}}});
  before = head();
  ok("record.put", {{"key", "st-9"}, {"subject", "bob"}, {"category", "student"}});
  entries = entries_after(before);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0]["reason"],
            "record.put replaced the record: next due 2034-01-01T00:00:00Z -> none (waiting for a date, or no phase left)");
}

TEST_F(Accountability, AnExportIsAudited) {
  ok("record.put", {{"key", "st-1"}, {"subject", "ann"}, {"category", "student"}});
  ok("record.put", {{"key", "inv-1"}, {"subject", "ann"}, {"category", "invoice"}, {"dates", {{"issued", "2029-05-10"}}}});
  const auto before = head();
  EXPECT_EQ(ok("subject.export", {{"subject", "ann"}})["records"].size(), 2u);
  EXPECT_EQ(ok("subject.export", {{"subject", "nobody"}})["records"].size(), 0u);
  const json entries = entries_after(before);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0]["action"], "export");
  EXPECT_EQ(entries[0]["reason"], "2 records exported");
  EXPECT_EQ(entries[0]["subject_ref"], ref("ann"));
  EXPECT_EQ(entries[1]["reason"], "0 records exported");  // "nothing held" is an answer too
}

TEST_F(Accountability, RecordEraseFollowsTheRulesOfSubjectErase) {
  ok("record.put", {{"key", "st-1"}, {"subject", "ann"}, {"category", "student"}});
  ok("record.put", {{"key", "st-2"}, {"subject", "ann"}, {"category", "student"}});
  ok("record.put", {{"key", "inv-1"}, {"subject", "ann"}, {"category", "invoice"}, {"dates", {{"issued", "2029-05-10"}}}});
  const auto hold = ok("hold.place", {{"key", "st-2"}, {"reason", "litigation"}});

  json dry = ok("record.erase", {{"key", "st-1"}, {"reason", "art. 17"}, {"dry_run", true}});
  EXPECT_EQ(dry, json::parse(R"({"erased":["st-1"],"erased_records":[{"key":"st-1","category":"student"}],
      "retained":[],"dry_run":true})"));
  EXPECT_EQ(ok("record.explain", {{"key", "st-1"}})["state"], "active");

  const auto before = head();
  EXPECT_EQ(without_receipt(ok("record.erase", {{"key", "st-1"}, {"reason", "art. 17"}})),
            json::parse(R"({"erased":["st-1"],"erased_records":[{"key":"st-1","category":"student"}],"retained":[]})"));
  const json entries = entries_after(before);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0]["action"], "erase");
  EXPECT_EQ(entries[0]["key"], "st-1");
  EXPECT_EQ(entries[0]["subject_ref"], ref("ann"));
  EXPECT_EQ(ok("record.explain", {{"key", "st-1"}})["state"], "purged");

  // fiscal_year_end(2029-05-10) = 2030-01-01, + 10 years.
  EXPECT_EQ(without_receipt(ok("record.erase", {{"key", "inv-1"}, {"reason", "art. 17"}})), json::parse(R"({"erased":[],"erased_records":[],
      "retained":[{"key":"inv-1","category":"invoice","reason":"legal_obligation","until":"2040-01-01T00:00:00Z"}]})"));
  EXPECT_EQ(without_receipt(ok("record.erase", {{"key", "st-2"}, {"reason", "art. 17"}})), json::parse(R"({"erased":[],"erased_records":[],
      "retained":[{"key":"st-2","category":"student","reason":"hold","until":null}]})"));
  EXPECT_EQ(error("record.erase", {{"key", "nope"}, {"reason", "art. 17"}})["data"]["reason"], "not_found");
  EXPECT_EQ(error("record.erase", {{"key", "st-2"}})["message"], "missing parameter 'reason'");
  EXPECT_EQ(head(), before + 1);
  ok("hold.release", {{"id", hold["id"]}});
}

TEST_F(Accountability, SubjectEraseWithCategoriesErasesOnlyThoseCategories) {
  ok("record.put", {{"key", "nl-1"}, {"subject", "cat"}, {"category", "newsletter"}});
  ok("record.put", {{"key", "st-1"}, {"subject", "cat"}, {"category", "student"}});
  ok("record.put", {{"key", "inv-1"}, {"subject", "cat"}, {"category", "invoice"}, {"dates", {{"issued", "2029-05-10"}}}});
  const auto before = head();
  const json e = error("subject.erase", {{"subject", "cat"}, {"reason", "objection"}, {"categories", {"newsletter", "nope"}}});
  EXPECT_EQ(e["data"]["reason"], "unknown_category");
  EXPECT_EQ(e["message"], "unknown category 'nope'; nothing was changed");
  EXPECT_EQ(head(), before);

  EXPECT_EQ(without_receipt(
                ok("subject.erase", {{"subject", "cat"}, {"reason", "art. 21(3) objection"}, {"categories", {"newsletter"}}})),
            json::parse(R"({"erased":["nl-1"],"erased_records":[{"key":"nl-1","category":"newsletter"}],"retained":[]})"));
  EXPECT_EQ(ok("record.explain", {{"key", "st-1"}})["state"], "active");
  EXPECT_EQ(ok("record.explain", {{"key", "inv-1"}})["state"], "active");
  // Only the named categories are reported as retained, too.
  EXPECT_EQ(ok("subject.erase", {{"subject", "cat"}, {"reason", "r"}, {"categories", {"invoice"}}, {"dry_run", true}})["retained"],
            json::parse(R"([{"key":"inv-1","category":"invoice","reason":"legal_obligation","until":"2040-01-01T00:00:00Z"}])"));
}

TEST_F(Accountability, ExplainTellsWhenAnOvertakenPhaseWillActuallyRun) {
  // usage: anonymise at collected + 3 years, purge at collected + 1 year:
  // the purge waits for the anonymisation.
  ok("record.put", {{"key", "u-1"}, {"subject", "dan"}, {"category", "usage"}, {"dates", {{"collected", "2028-03-15"}}}});
  const json phases = ok("record.explain", {{"key", "u-1"}})["phases"];
  ASSERT_EQ(phases.size(), 2u);
  EXPECT_EQ(phases[0]["due"], "2031-03-15T00:00:00Z");
  EXPECT_EQ(phases[0]["runs_at"], "2031-03-15T00:00:00Z");
  EXPECT_EQ(phases[0]["overdue"], false);
  EXPECT_EQ(phases[1]["due"], "2029-03-15T00:00:00Z");
  EXPECT_EQ(phases[1]["runs_at"], "2031-03-15T00:00:00Z");
  EXPECT_EQ(phases[1]["overdue"], false);
}

TEST_F(Accountability, CheckWarnsOfPhasesThatOvertakeEachOther) {
  const auto r = run_command(retentiond_binary() + " --check --config " + m_config.string());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // The usage category's second phase is on line 32 of kPolicy.
  EXPECT_NE(r.output.find(m_config.string() + ":32:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("warning: categories[3].phases[1].at: phase 1 (purge at collected + 1 year) falls 730 days "
                          "(about 2 years) before phase 0 (anonymise at collected + 3 years) for a record whose dates "
                          "are all the same day"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("categories[1]"), std::string::npos) << r.output;  // min(...) with a missing date: no warning
}

}  // namespace
}  // namespace retentiond::testing

namespace retentiond::testing {
namespace {

// audit.verify is incremental: a call recomputes what was appended since
// the last verified entry; `full` recomputes from entry 1 (issue 19).
class AuditVerify : public Accountability {
 protected:
  // Appends two entries: a hold placed and released.
  void two_entries() {
    const json hold = ok("hold.place", {{"category", "student"}, {"reason", "r"}});
    ok("hold.release", {{"id", hold["id"]}});
  }
  void tamper(std::int64_t seq) {
    const auto db = m_daemon->state_dir() / "retention.db";
    const auto r = run_command("sqlite3 " + db.string() + " \"UPDATE audit SET actor = 'uid:4242' WHERE seq = " +
                               std::to_string(seq) + "\"");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
};

TEST_F(AuditVerify, EachCallChecksWhatWasAppendedSinceTheLast) {
  for (int i = 0; i < 10; ++i) two_entries();
  json v = ok("audit.verify");
  EXPECT_EQ(v["ok"], true);
  EXPECT_EQ(v["entries"], 20);
  EXPECT_EQ(v["checked"], 20);
  v = ok("audit.verify");
  EXPECT_EQ(v["entries"], 20);
  EXPECT_EQ(v["checked"], 0);
  const std::string head = v["head"];
  two_entries();
  v = ok("audit.verify");
  EXPECT_EQ(v["ok"], true);
  EXPECT_EQ(v["entries"], 22);
  EXPECT_EQ(v["checked"], 2);
  EXPECT_NE(v["head"], head);
  // full: from entry 1, the same chain.
  v = ok("audit.verify", {{"full", true}});
  EXPECT_EQ(v["ok"], true);
  EXPECT_EQ(v["entries"], 22);
  EXPECT_EQ(v["checked"], 22);
  EXPECT_EQ(error("audit.verify", {{"full", "yes"}})["message"], "'full' must be true or false");
}

TEST_F(AuditVerify, AnEntryTamperedWithPastTheVerifiedPrefixIsFound) {
  for (int i = 0; i < 5; ++i) two_entries();
  ASSERT_EQ(ok("audit.verify")["checked"], 10);
  for (int i = 0; i < 3; ++i) two_entries();
  tamper(13);
  const json v = ok("audit.verify");
  EXPECT_EQ(v["ok"], false);
  EXPECT_EQ(v["first_bad"], 13);
  EXPECT_EQ(v["checked"], 6);
  // Found again by the next call: a broken chain is never taken as verified.
  EXPECT_EQ(ok("audit.verify")["first_bad"], 13);
}

TEST_F(AuditVerify, ARewrittenPrefixIsFoundAtItsEndAtOnceAndInsideItByAFullCheck) {
  for (int i = 0; i < 5; ++i) two_entries();
  ASSERT_EQ(ok("audit.verify")["ok"], true);
  // Inside the verified prefix: a call that checks what was appended since
  // does not look at it; the full check does.
  tamper(4);
  json v = ok("audit.verify");
  EXPECT_EQ(v["ok"], true);
  EXPECT_EQ(v["checked"], 0);
  v = ok("audit.verify", {{"full", true}});
  EXPECT_EQ(v["ok"], false);
  EXPECT_EQ(v["first_bad"], 4);
  // The prefix's last entry itself is compared on every call.
  tamper(10);
  v = ok("audit.verify");
  EXPECT_EQ(v["ok"], false);
  EXPECT_EQ(v["first_bad"], 10);
}

}  // namespace
}  // namespace retentiond::testing
