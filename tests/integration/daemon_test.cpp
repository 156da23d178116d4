// End-to-end: the real retentiond binary on a temporary socket, spoken to
// in JSON-RPC lines, whole replies compared.

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>

#include "tests/support/daemon_process.hpp"

namespace retentiond::testing {
namespace {

using nlohmann::json;

const std::string kConfig = RETENTIOND_SOURCE_DIR "/config/retentiond.toml";

// The result member of a successful reply, checking the envelope.
// An erasure's answer without its signed receipt (tests/integration/proof_test.cpp
// checks receipts), which it must carry.
json without_receipt(json answer) {
  EXPECT_TRUE(answer.contains("receipt")) << answer.dump();
  answer.erase("receipt");
  return answer;
}

json result_of(const json& reply, int id) {
  EXPECT_EQ(reply.value("jsonrpc", ""), "2.0");
  EXPECT_EQ(reply["id"], id);
  EXPECT_FALSE(reply.contains("error")) << reply.dump();
  return reply.value("result", json());
}

TEST(Daemon, PutExplainSweepExplainPurged) {
  TempDir dir;
  DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2030-01-01T00:00:00Z"});
  Client client(daemon.socket());

  // 3 years after the later of collected (2025-01-31) and last_contact (2026-06-01).
  const json put = client.call("record.put", {{"key", "crm-42"},
                                              {"subject", "alice@example.com"},
                                              {"category", "l360.prospect"},
                                              {"fields", {{"email", "alice@example.com"}}},
                                              {"dates", {{"collected", "2025-01-31"}, {"last_contact", "2026-06-01"}}}});
  EXPECT_EQ(put, json::parse(R"({"jsonrpc":"2.0","id":1,"result":{"key":"crm-42","state":"active",
      "next":{"phase":0,"action":"purge","due":"2029-06-01T00:00:00Z","waiting_for":[]}}})"));

  const json explain = client.call("record.explain", {{"key", "crm-42"}});
  EXPECT_EQ(explain, json::parse(R"({"jsonrpc":"2.0","id":2,"result":{"key":"crm-42","category":"l360.prospect",
      "state":"active","held":false,"holds":[],
      "phases":[{"index":0,"action":"purge","at":"max(collected, last_contact) + 3 years",
                 "due":"2029-06-01T00:00:00Z","missing":[],"done":false,"done_at":null,
                 "runs_at":"2029-06-01T00:00:00Z","overdue":true}],
      "next":{"phase":0,"action":"purge","due":"2029-06-01T00:00:00Z","waiting_for":[]}}})"));

  json sweep = result_of(client.call("sweep"), 3);
  ASSERT_TRUE(sweep["duration_ms"].is_number_integer());
  EXPECT_GE(sweep["duration_ms"].get<int>(), 0);
  sweep.erase("duration_ms");
  EXPECT_EQ(sweep, json::parse(R"({"archived":0,"anonymised":0,"purged":1,"held":0})"));

  json purged = result_of(client.call("record.explain", {{"key", "crm-42"}}), 4);
  // The daemon's clock started at 2030-01-01T00:00:00Z and runs in real time.
  ASSERT_TRUE(purged["purged_at"].is_string());
  EXPECT_EQ(purged["purged_at"].get<std::string>().substr(0, 15), "2030-01-01T00:0");
  purged.erase("purged_at");
  EXPECT_EQ(purged, json::parse(R"({"key":"crm-42","state":"purged","audit_seq":1})"));

  const json status = result_of(client.call("status"), 5);
  EXPECT_EQ(status["records"], json::parse(R"({"active":0,"archived":0,"anonymised":0})"));
  EXPECT_EQ(status["last_sweep"]["purged"], 1);

  EXPECT_EQ(daemon.stop(SIGTERM), 0);
}

TEST(Daemon, EventBasedPhaseWaitsForItsDate) {
  TempDir dir;
  DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2030-01-01T00:00:00Z"});
  Client client(daemon.socket());
  const json put = result_of(client.call("record.put", {{"key", "st-1"}, {"subject", "bob"}, {"category", "oc.student_file"}}), 1);
  EXPECT_EQ(put["next"], json::parse(R"({"phase":0,"action":"purge","due":null,"waiting_for":["left"]})"));
  const json explain = result_of(client.call("record.explain", {{"key", "st-1"}}), 2);
  EXPECT_EQ(explain["phases"][0]["missing"], json::parse(R"(["left"])"));
  EXPECT_EQ(result_of(client.call("sweep"), 3)["purged"], 0);
  EXPECT_EQ(result_of(client.call("record.explain", {{"key", "st-1"}}), 4)["state"], "active");
}

TEST(Daemon, AnEventStartsTheClockOfAWaitingPhase) {
  TempDir dir;
  DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2030-01-01T00:00:00Z"});
  Client client(daemon.socket());
  result_of(client.call("record.put", {{"key", "st-1"}, {"subject", "bob"}, {"category", "oc.student_file"}}), 1);
  result_of(client.call("record.put", {{"key", "st-2"}, {"subject", "bob"}, {"category", "oc.student_file"}}), 2);
  // 5 years after leaving, counted from the event.
  EXPECT_EQ(result_of(client.call("event.record", {{"subject", "bob"}, {"name", "left"}, {"at", "2024-02-29T10:00:00+01:00"}}), 3),
            json::parse(R"({"updated":2})"));
  const json explain = result_of(client.call("record.explain", {{"key", "st-1"}}), 4);
  EXPECT_EQ(explain["next"], json::parse(R"({"phase":0,"action":"purge","due":"2029-02-28T09:00:00Z","waiting_for":[]})"));
  // By key, a date the category does not declare is an error.
  const json reply = client.call("event.record", {{"key", "st-1"}, {"name", "contract_end"}, {"at", "2024-01-01"}});
  EXPECT_EQ(reply["error"]["data"]["reason"], "unknown_date");
  EXPECT_EQ(result_of(client.call("sweep"), 6)["purged"], 2);
  const json got = client.call("record.get", {{"key", "st-1"}});
  EXPECT_EQ(got["error"]["code"], -32001);
}

TEST(Daemon, RecordGetReturnsTheWholeRecord) {
  TempDir dir;
  DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2030-01-01T00:00:00Z"});
  Client client(daemon.socket());
  result_of(client.call("record.put", {{"key", "c-1"}, {"subject", "carol"}, {"category", "l360.cookie"},
                                       {"fields", {{"id", "abc"}}}, {"dates", {{"collected", "2029-12-31T23:00:00Z"}}}}), 1);
  EXPECT_EQ(result_of(client.call("record.get", {{"key", "c-1"}}), 2), json::parse(R"({"key":"c-1","subject":"carol",
      "category":"l360.cookie","state":"active","fields":{"id":"abc"},"dates":{"collected":"2029-12-31T23:00:00Z"},
      "next":{"phase":0,"action":"purge","due":"2031-01-31T23:00:00Z","waiting_for":[]}})"));
}

TEST(Daemon, AuditTailListsDisposalsAndVerifyNamesATamperedEntry) {
  TempDir dir;
  DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2030-01-01T00:00:00Z"});
  Client client(daemon.socket());
  for (const char* key : {"p1", "p2", "p3"}) {
    client.call("record.put", {{"key", key}, {"subject", "dave@example.com"}, {"category", "l360.cookie"},
                               {"fields", {{"secret", "do-not-log-me"}}}, {"dates", {{"collected", "2020-01-01"}}}});
  }
  EXPECT_EQ(result_of(client.call("sweep"), 4)["purged"], 3);

  const json tail = result_of(client.call("audit.tail", {{"subject", "dave@example.com"}, {"limit", 2}}), 5);
  ASSERT_EQ(tail["entries"].size(), 2u);
  EXPECT_EQ(tail["entries"][0]["seq"], 2);
  EXPECT_EQ(tail["entries"][1]["seq"], 3);
  EXPECT_EQ(tail["entries"][1]["action"], "purge");
  EXPECT_EQ(tail["entries"][1]["actor"], "uid:" + std::to_string(::getuid()));
  EXPECT_EQ(tail["entries"][1]["subject_ref"].get<std::string>().size(), 64u);
  EXPECT_EQ(tail["entries"][1]["subject_ref"], tail["entries"][0]["subject_ref"]);
  EXPECT_EQ(tail["entries"].dump().find("dave"), std::string::npos);  // never the raw subject
  EXPECT_EQ(tail["entries"].dump().find("do-not-log-me"), std::string::npos);  // never a value
  const json after = result_of(client.call("audit.tail", {{"after", 1}, {"key", "p3"}}), 6);
  ASSERT_EQ(after["entries"].size(), 1u);
  EXPECT_EQ(after["entries"][0]["key"], "p3");

  json verify = result_of(client.call("audit.verify"), 7);
  EXPECT_EQ(verify["ok"], true);
  EXPECT_EQ(verify["entries"], 3);
  EXPECT_EQ(verify["first_bad"], nullptr);
  EXPECT_EQ(verify["head"], tail["entries"][1]["hash"]);

  const auto db = daemon.state_dir() / "retention.db";
  ASSERT_EQ(run_command("sqlite3 " + db.string() + " \"UPDATE audit SET actor = 'uid:4242' WHERE seq = 2\"").exit_code, 0);
  // Entry 2 is inside the prefix the last call verified: the incremental
  // check looks only at what was appended since (nothing); the full one
  // finds it.
  verify = result_of(client.call("audit.verify"), 8);
  EXPECT_EQ(verify["ok"], true);
  EXPECT_EQ(verify["checked"], 0);
  verify = result_of(client.call("audit.verify", {{"full", true}}), 9);
  EXPECT_EQ(verify["ok"], false);
  EXPECT_EQ(verify["first_bad"], 2);
}

TEST(Daemon, ErasureSparesLegalObligationsAndHeldRecords) {
  TempDir dir;
  DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2026-01-01T00:00:00Z"});
  Client client(daemon.socket());
  result_of(client.call("record.put", {{"key", "lead-1"}, {"subject", "eve"}, {"category", "l360.prospect"},
                                       {"fields", {{"email", "eve@example.com"}}}}), 1);
  result_of(client.call("record.put", {{"key", "dip-1"}, {"subject", "eve"}, {"category", "oc.certificate"},
                                       {"dates", {{"issued", "2024-05-10"}}}}), 2);
  result_of(client.call("record.put", {{"key", "ck-1"}, {"subject", "eve"}, {"category", "oc.cookie"},
                                       {"dates", {{"collected", "2025-12-31"}}}}), 3);
  result_of(client.call("record.put", {{"key", "other"}, {"subject", "frank"}, {"category", "l360.prospect"}}), 4);
  const json hold = result_of(client.call("hold.place", {{"key", "ck-1"}, {"reason", "litigation"}}), 5);

  // Diploma: a legal obligation OpenClassrooms names, 50 years from 2024-05-10.
  const json expected = json::parse(R"({"erased":["lead-1"],
      "erased_records":[{"key":"lead-1","category":"l360.prospect"}],"retained":[
      {"key":"ck-1","category":"oc.cookie","reason":"hold","until":"2027-01-31T00:00:00Z"},
      {"key":"dip-1","category":"oc.certificate","reason":"legal_obligation","until":"2074-05-10T00:00:00Z"}]})");
  json dry = result_of(client.call("subject.erase", {{"subject", "eve"}, {"reason", "art. 17 request"}, {"dry_run", true}}), 6);
  EXPECT_EQ(dry["dry_run"], true);
  dry.erase("dry_run");
  EXPECT_EQ(dry, expected);
  EXPECT_EQ(result_of(client.call("record.explain", {{"key", "lead-1"}}), 7)["state"], "active");  // dry: nothing done

  EXPECT_EQ(without_receipt(result_of(client.call("subject.erase", {{"subject", "eve"}, {"reason", "art. 17 request"}}), 8)),
            expected);
  json proof = result_of(client.call("record.explain", {{"key", "lead-1"}}), 9);
  EXPECT_EQ(proof["state"], "purged");
  EXPECT_EQ(proof["audit_seq"], 2);  // after the hold's entry

  const json exported = result_of(client.call("subject.export", {{"subject", "eve"}}), 10);
  EXPECT_EQ(exported["subject"], "eve");
  EXPECT_EQ(exported["exported_at"].get<std::string>().substr(0, 15), "2026-01-01T00:0");
  ASSERT_EQ(exported["records"].size(), 2u);
  EXPECT_EQ(exported["records"][0]["key"], "ck-1");
  EXPECT_EQ(exported["records"][1]["key"], "dip-1");
  EXPECT_EQ(exported["records"][1]["legal_basis"], "legal_obligation");
  EXPECT_EQ(exported["records"][1]["purpose"], "Management of project validations, certificates and diplomas");
  // Someone else's records are untouched; the chain still verifies.
  EXPECT_EQ(result_of(client.call("record.explain", {{"key", "other"}}), 11)["state"], "active");
  EXPECT_EQ(result_of(client.call("audit.verify"), 12)["ok"], true);
  EXPECT_EQ(result_of(client.call("hold.list"), 13)["holds"][0]["id"], hold["id"]);
}

TEST(Daemon, PlanForecastsByMonthCategoryAndAction) {
  TempDir dir;
  DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2030-01-01T00:00:00Z"});
  Client client(daemon.socket());
  // Archive overdue (5 years after the last use of 2024-12-15 is 2029-12-15), so in the first month.
  result_of(client.call("record.put", {{"key", "th"}, {"subject", "a"}, {"category", "studi.training_history"},
                                       {"dates", {{"collected", "2024-01-01"}, {"last_use", "2024-12-15"}}}}), 1);
  // 13 months after 2029-03-15; and 13 months after 2029-12-31 is 2031-01-31: after `until`.
  result_of(client.call("record.put", {{"key", "c1"}, {"subject", "a"}, {"category", "oc.cookie"}, {"dates", {{"collected", "2029-03-15"}}}}), 2);
  result_of(client.call("record.put", {{"key", "c2"}, {"subject", "a"}, {"category", "oc.cookie"}, {"dates", {{"collected", "2029-12-31"}}}}), 3);
  result_of(client.call("record.put", {{"key", "c3"}, {"subject", "b"}, {"category", "oc.cookie"}, {"dates", {{"collected", "2029-04-01"}}}}), 4);
  result_of(client.call("record.put", {{"key", "st"}, {"subject", "a"}, {"category", "oc.student_file"}}), 5);
  result_of(client.call("hold.place", {{"subject", "b"}, {"reason", "dispute"}}), 6);
  EXPECT_EQ(result_of(client.call("plan", {{"until", "2031-01-01"}}), 7), json::parse(R"({
      "from":"2030-01-01T00:00:00Z","until":"2031-01-01T00:00:00Z",
      "actions":[{"month":"2030-01","category":"studi.training_history","action":"archive","count":1},
                 {"month":"2030-04","category":"oc.cookie","action":"purge","count":1}],
      "totals":{"archive":1,"anonymise":0,"purge":1},"waiting":1,"held":1})"));
  const json bad = client.call("plan", {{"until", "2020-01-01"}});
  EXPECT_EQ(bad["error"]["data"]["reason"], "bad_time");
}

TEST(Daemon, PolicyTableStatesEachRetentionInWords) {
  TempDir dir;
  DaemonProcess daemon(dir.path(), {"--config", kConfig});
  Client client(daemon.socket());
  const std::string table = result_of(client.call("policy.table"), 1)["text"];
  EXPECT_EQ(table.substr(0, 53), "| Category | Purpose | Legal basis | Retention |\n|---");
  EXPECT_NE(table.find("| l360.prospect | Management of a file of prospects | legitimate interest | "
                       "3 years after the later of collected and last_contact, then purged |"),
            std::string::npos) << table;
  EXPECT_NE(table.find("| oc.invoice | Management of invoicing and analysis of sessions attended by students in the "
                       "context of invoicing | contract | 10 years after the end of the financial year of issued, then "
                       "purged |"),
            std::string::npos) << table;
  const std::string text = result_of(client.call("policy.table", {{"format", "text"}}), 2)["text"];
  EXPECT_NE(text.find("l360.prospect\n  purpose:     Management of a file of prospects\n"), std::string::npos) << text;
  EXPECT_EQ(client.call("policy.table", {{"format", "html"}})["error"]["data"]["reason"], "invalid_params");
}

// The invoice category of the spec's own example (shared/spec/policy.md, "The
// file"): archived at the end of the financial year, purged 10 years later.
// The example policy has no archive-then-purge rule (OpenClassrooms states no
// archive for its invoices), so the test brings its own.
TEST(Daemon, AnInvoiceIsArchivedThenPurgedAcrossRestartsDecadesApart) {
  TempDir dir;
  const auto config = (dir.path() / "invoice.toml").string();
  std::ofstream(config) << "[daemon]\nstate_dir = \"unused\"\n"
                           "[[categories]]\nname = \"invoice\"\npurpose = \"Invoicing\"\n"
                           "legal_basis = \"legal_obligation\"\ndates = [\"collected\", \"issued\"]\n"
                           "phases = [\n"
                           "  { action = \"archive\", at = \"fiscal_year_end(issued)\" },\n"
                           "  { action = \"purge\",   at = \"fiscal_year_end(issued) + 10 years\" },\n"
                           "]\n";
  {
    DaemonProcess daemon(dir.path(), {"--config", config, "--now", "2024-06-01T00:00:00Z"});
    Client client(daemon.socket());
    result_of(client.call("record.put", {{"key", "inv-7"}, {"subject", "acme"}, {"category", "invoice"},
                                         {"fields", {{"amount", "99.00"}}}, {"dates", {{"issued", "2024-05-10"}}}}), 1);
    EXPECT_EQ(result_of(client.call("sweep"), 2)["archived"], 0);
    EXPECT_EQ(daemon.stop(SIGTERM), 0);
  }
  {
    // Two years later: the fiscal year of issue ended on 2025-01-01; the start-up catch-up archives it.
    DaemonProcess daemon(dir.path(), {"--config", config, "--now", "2026-06-01T00:00:00Z"});
    Client client(daemon.socket());
    result_of(client.call("sweep"), 1);
    const json explain = result_of(client.call("record.explain", {{"key", "inv-7"}}), 2);
    EXPECT_EQ(explain["state"], "archived");
    EXPECT_EQ(explain["phases"][0]["done"], true);
    EXPECT_EQ(explain["next"], json::parse(R"({"phase":1,"action":"purge","due":"2035-01-01T00:00:00Z","waiting_for":[]})"));
    EXPECT_EQ(client.call("record.get", {{"key", "inv-7"}})["error"]["code"], -32001);
    const json got = result_of(client.call("record.get", {{"key", "inv-7"}, {"include_archived", true}}), 4);
    EXPECT_EQ(got["state"], "archived");
    EXPECT_EQ(got["fields"], json::parse(R"({"amount":"99.00"})"));
    EXPECT_EQ(result_of(client.call("status"), 5)["records"], json::parse(R"({"active":0,"archived":1,"anonymised":0})"));
    EXPECT_EQ(daemon.stop(SIGTERM), 0);
  }
  {
    DaemonProcess daemon(dir.path(), {"--config", config, "--now", "2086-01-01T00:00:00Z"});
    Client client(daemon.socket());
    result_of(client.call("sweep"), 1);
    const json explain = result_of(client.call("record.explain", {{"key", "inv-7"}}), 2);
    EXPECT_EQ(explain["state"], "purged");
    EXPECT_EQ(explain["audit_seq"], 2);
    const json tail = result_of(client.call("audit.tail", {{"key", "inv-7"}}), 3);
    ASSERT_EQ(tail["entries"].size(), 2u);
    EXPECT_EQ(tail["entries"][0]["action"], "archive");
    EXPECT_EQ(tail["entries"][1]["action"], "purge");
    EXPECT_EQ(result_of(client.call("audit.verify"), 4)["ok"], true);
  }
}

TEST(Daemon, SighupDoesNotKillTheDaemon) {
  TempDir dir;
  DaemonProcess daemon(dir.path(), {"--config", kConfig});
  Client client(daemon.socket());
  daemon.signal(SIGHUP);
  // The reply to a request sent after the signal proves it was survived:
  // signals are handled on the same loop, in order.
  EXPECT_EQ(result_of(client.call("status"), 1)["records"]["active"], 0);
  EXPECT_EQ(result_of(client.call("status"), 2)["paused"], nullptr);
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
}

TEST(Daemon, BadRequestsGetPreciseErrorsAndTheConnectionKeepsServing) {
  TempDir dir;
  DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2030-01-01T00:00:00Z"});
  Client client(daemon.socket());

  client.send_line("this is not json");
  json reply = json::parse(client.read_line().value());
  EXPECT_EQ(reply["id"], nullptr);
  EXPECT_EQ(reply["error"]["code"], -32700);
  EXPECT_EQ(reply["error"]["data"]["reason"], "parse_error");

  reply = client.call("no.such.method");
  EXPECT_EQ(reply["error"]["code"], -32601);

  reply = client.call("record.put", {{"key", "k"}, {"subject", "s"}, {"category", "nope"}});
  EXPECT_EQ(reply["error"]["code"], -32602);
  EXPECT_EQ(reply["error"]["data"]["reason"], "unknown_category");

  reply = client.call("record.put", {{"key", "k"}, {"subject", "s"}, {"category", "l360.prospect"},
                                     {"dates", {{"collected", "2023-02-30"}}}});
  EXPECT_EQ(reply["error"]["data"]["reason"], "bad_time");
  EXPECT_NE(reply["error"]["message"].get<std::string>().find("2023-02-30 does not exist"), std::string::npos);

  reply = client.call("record.put", {{"key", "k"}, {"subject", "s"}, {"category", "l360.prospect"},
                                     {"dates", {{"last_contactt", "2023-02-01"}}}});
  EXPECT_EQ(reply["error"]["data"]["reason"], "unknown_date");

  reply = client.call("record.put_many", {{"records", json::array({
      {{"key", "a"}, {"subject", "s"}, {"category", "l360.prospect"}},
      {{"key", "b"}, {"subject", "s"}, {"category", "l360.prospect"}, {"dates", {{"collected", "yesterday"}}}}})}});
  EXPECT_EQ(reply["error"]["data"]["reason"], "bad_time");
  EXPECT_EQ(reply["error"]["data"]["index"], 1);
  // All or nothing: the valid first record was not stored either.
  reply = client.call("record.explain", {{"key", "a"}});
  EXPECT_EQ(reply["error"]["code"], -32001);

  reply = client.call("sweep", {{"dry_run", "yes"}});
  EXPECT_EQ(reply["error"]["data"]["reason"], "invalid_params");

  // A batch: a request, a notification (no reply) and a request.
  client.send_line(R"([{"jsonrpc":"2.0","id":"x","method":"help"},)"
                   R"({"jsonrpc":"2.0","method":"status"},)"
                   R"({"jsonrpc":"2.0","id":"y","method":"record.explain","params":{"key":"missing"}}])");
  reply = json::parse(client.read_line().value());
  ASSERT_TRUE(reply.is_array());
  ASSERT_EQ(reply.size(), 2u);
  EXPECT_EQ(reply[0]["id"], "x");
  EXPECT_EQ(reply[1]["id"], "y");
  EXPECT_EQ(reply[1]["error"]["data"]["reason"], "not_found");

  // A lone notification gets nothing; the next request is answered.
  client.send_line(R"({"jsonrpc":"2.0","method":"status"})");
  EXPECT_EQ(result_of(client.call("status"), 8)["records"]["active"], 0);
}

TEST(Daemon, LimitsGiveCleanErrors) {
  TempDir dir;
  const auto config = dir.path() / "small.toml";
  std::ofstream(config) << "[daemon]\nstate_dir = \"unused\"\nmax_request_bytes = 1024\nmax_json_depth = 8\n"
                           "max_put_many = 2\n"
                           "[[categories]]\nname = \"c\"\npurpose = \"p\"\nlegal_basis = \"consent\"\n"
                           "phases = [ { action = \"purge\", at = \"collected + 1 day\" } ]\n";
  DaemonProcess daemon(dir.path(), {"--config", config.string()});

  Client deep(daemon.socket());
  deep.send_line(std::string(20, '[') + std::string(20, ']'));
  json reply = json::parse(deep.read_line().value());
  EXPECT_EQ(reply, json::parse(R"({"jsonrpc":"2.0","id":null,"error":{"code":-32600,
      "message":"JSON nesting deeper than 8 levels","data":{"reason":"too_large"}}})"));
  EXPECT_EQ(result_of(deep.call("status"), 1)["records"]["active"], 0);  // still open

  json many = json::array();
  for (int i = 0; i < 3; ++i) many.push_back({{"key", "k" + std::to_string(i)}, {"subject", "s"}, {"category", "c"}});
  reply = deep.call("record.put_many", {{"records", many}});
  EXPECT_EQ(reply["error"]["code"], -32602);
  EXPECT_EQ(reply["error"]["data"]["reason"], "too_large");

  Client big(daemon.socket());
  big.send_line(std::string(4096, ' ') + "{}");
  reply = json::parse(big.read_line().value());
  EXPECT_EQ(reply["id"], nullptr);
  EXPECT_EQ(reply["error"]["data"]["reason"], "too_large");
  EXPECT_FALSE(big.read_line().has_value());  // and the connection is closed

  Client other(daemon.socket());  // nobody else noticed
  EXPECT_EQ(result_of(other.call("status"), 1)["records"]["active"], 0);
}

TEST(Daemon, CheckAcceptsBothBundledPoliciesWithTheSameHash) {
  const auto toml = run_command(retentiond_binary() + " --check --config " + kConfig);
  const auto yaml = run_command(retentiond_binary() + " --check --config " RETENTIOND_SOURCE_DIR "/config/retentiond.yaml");
  ASSERT_EQ(toml.exit_code, 0) << toml.output;
  ASSERT_EQ(yaml.exit_code, 0) << yaml.output;
  const auto hash_line = [](const std::string& out) {
    const auto at = out.find("policy hash ");
    return at == std::string::npos ? std::string() : out.substr(at, out.find('\n', at) - at);
  };
  EXPECT_EQ(hash_line(toml.output).size(), std::string("policy hash ").size() + 64);
  EXPECT_EQ(hash_line(toml.output), hash_line(yaml.output));
  EXPECT_NE(toml.output.find("35 categories"), std::string::npos);
  EXPECT_NE(toml.output.find("oc.invoice"), std::string::npos);
}

TEST(Daemon, CheckNamesFileAndLineOfEachProblemAndOpensNothing) {
  TempDir dir;
  const auto config = dir.path() / "bad.toml";
  std::ofstream(config) << "[daemon]\n"
                           "state_dir = \"" << (dir.path() / "state").string() << "\"\n"
                           "[[categories]]\n"
                           "name = \"contract\"\n"
                           "purpose = \"p\"\n"
                           "legal_basis = \"contract\"\n"
                           "dates = [\"contract_end\"]\n"
                           "phases = [ { action = \"purge\", at = \"contract_ende + 3 yeers\" } ]\n"
                           "[[categories]]\n"
                           "name = \"other\"\n"
                           "purpose = \"p\"\n"
                           "legal_basis = \"consent\"\n"
                           "phases = [ { action = \"purge\", at = \"maxx(collected, x)\" } ]\n";
  const auto r = run_command(retentiond_binary() + " --check --config " + config.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(config.string() + ":8:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("categories[0].phases[0].at"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(config.string() + ":13:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("unknown function 'maxx'"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "state"));  // no database was opened
}

TEST(Daemon, RefusesADatabaseNewerThanItself) {
  TempDir dir;
  {
    DaemonProcess first(dir.path(), {"--config", kConfig});
    EXPECT_EQ(first.stop(SIGTERM), 0);
  }
  const auto db = dir.path() / "state" / "retention.db";
  ASSERT_EQ(run_command("sqlite3 " + db.string() + " 'PRAGMA user_version = 999'").exit_code, 0);
  const auto r = run_command(retentiond_binary() + " --config " + kConfig + " --state-dir " +
                             (dir.path() / "state").string() + " --socket " + (dir.path() / "s.sock").string());
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.output.find("schema version 999 is newer"), std::string::npos) << r.output;
}

TEST(Daemon, SecondDaemonOnALiveSocketIsRefused) {
  TempDir dir;
  DaemonProcess daemon(dir.path(), {"--config", kConfig});
  const auto r = run_command(retentiond_binary() + " --config " + kConfig + " --state-dir " +
                             (dir.path() / "state2").string() + " --socket " + daemon.socket().string());
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.output.find("another daemon is answering"), std::string::npos) << r.output;
  Client client(daemon.socket());  // the first one still serves
  EXPECT_EQ(result_of(client.call("status"), 1)["records"]["active"], 0);
}

// Two daemons on one state directory would both append to the audit chain
// and hand out the same key slots: the second is refused before it opens
// anything, and names the directory and the holder's PID.
TEST(Daemon, SecondDaemonOnAHeldStateDirectoryIsRefusedAndChangesNothing) {
  TempDir dir;
  DaemonProcess daemon(dir.path(), {"--config", kConfig});
  Client client(daemon.socket());
  ASSERT_FALSE(client.call("record.put", {{"key", "k1"}, {"subject", "a@example.com"}, {"category", "l360.prospect"}})
                   .contains("error"));
  const auto listing = [&] {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(daemon.state_dir())) {
      out.push_back(e.path().filename().string() + ":" + std::to_string(std::filesystem::file_size(e.path())));
    }
    std::sort(out.begin(), out.end());
    return out;
  };
  const auto before = listing();
  const auto second_socket = dir.path() / "second.sock";
  for (const std::string extra : {"", " --now 2040-01-01"}) {  // a what-if run that forgot --state-dir
    const auto r = run_command(retentiond_binary() + " --config " + kConfig + " --state-dir " +
                               daemon.state_dir().string() + " --socket " + second_socket.string() + extra);
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find("the state directory " + daemon.state_dir().string() +
                            " is in use by another retentiond (pid " + std::to_string(daemon.pid()) + ")"),
              std::string::npos)
        << r.output;
    EXPECT_FALSE(std::filesystem::exists(second_socket));
  }
  EXPECT_EQ(listing(), before);
  // The first daemon keeps working.
  ASSERT_FALSE(client.call("record.put", {{"key", "k2"}, {"subject", "b@example.com"}, {"category", "l360.prospect"}})
                   .contains("error"));
  const auto status = client.call("status");
  EXPECT_EQ(status["result"]["records"]["active"], 2) << status.dump();
  EXPECT_EQ(client.call("audit.verify")["result"]["ok"], true);
}

// The lock is the kernel's (flock): a daemon killed with SIGKILL leaves the
// lock file behind but not the lock, so a restart is not blocked.
TEST(Daemon, AKilledDaemonsLockIsReleasedByTheKernel) {
  TempDir dir;
  std::filesystem::path state;
  {
    DaemonProcess daemon(dir.path(), {"--config", kConfig});
    state = daemon.state_dir();
    Client client(daemon.socket());
    ASSERT_FALSE(client.call("record.put", {{"key", "k1"}, {"subject", "a@example.com"}, {"category", "l360.prospect"}})
                     .contains("error"));
    EXPECT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
  }
  EXPECT_TRUE(std::filesystem::exists(state / "lock"));
  DaemonProcess again(dir.path(), {"--config", kConfig});
  Client client(again.socket());
  EXPECT_EQ(client.call("status")["result"]["records"]["active"], 1);
}

}  // namespace
}  // namespace retentiond::testing
