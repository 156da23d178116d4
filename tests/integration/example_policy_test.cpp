// The bundled example policy (config/retentiond.toml) run by the real daemon
// against the sentences of the seed privacy policies it claims to state
// (shared/seeds/). Each test quotes its sentence; every expected date is a
// literal worked out by hand from that sentence, never computed by the code
// under test. Time moves only by restarting the daemon with a later --now.

#include <gtest/gtest.h>
#include <signal.h>

#include <string>

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

json result_of(const json& reply) {
  EXPECT_EQ(reply.value("jsonrpc", ""), "2.0");
  EXPECT_FALSE(reply.contains("error")) << reply.dump();
  return reply.value("result", json());
}

json put(Client& client, const std::string& key, const std::string& subject, const std::string& category,
         const json& dates, const json& fields = json::object()) {
  return result_of(client.call("record.put", {{"key", key},
                                              {"subject", subject},
                                              {"category", category},
                                              {"fields", fields},
                                              {"dates", dates}}));
}

// The record's next phase, as record.explain reports it.
json next_of(Client& client, const std::string& key) {
  return result_of(client.call("record.explain", {{"key", key}}))["next"];
}

std::string state_of(Client& client, const std::string& key) {
  return result_of(client.call("record.explain", {{"key", key}})).value("state", "");
}

// A sweep's counts, without its duration.
json sweep(Client& client) {
  json r = result_of(client.call("sweep"));
  r.erase("duration_ms");
  return r;
}

json purge_due(const char* due) {
  return {{"phase", 0}, {"action", "purge"}, {"due", due}, {"waiting_for", json::array()}};
}

// OpenClassrooms: "Duration of the contractual period 2 years from the date of
// suspension in the event that the User's account has been suspended or
// blocked in order to avoid any circumvention of the rules in force on the
// Site". A suspended account outlives its contract by the two years.
TEST(ExamplePolicy, ASuspendedOpenClassroomsAccountIsKeptTwoYearsFromTheSuspension) {
  TempDir dir;
  {
    DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2026-01-01T00:00:00Z"});
    Client client(daemon.socket());
    // Suspended 2025-03-10, contract ended 2025-06-30: kept until 2027-03-10.
    EXPECT_EQ(put(client, "acc-suspended", "mia", "oc.account",
                  {{"contract_end", "2025-06-30"}, {"suspended", "2025-03-10"}})["next"],
              purge_due("2027-03-10T00:00:00Z"));
    // Not suspended: the contractual period alone, over on 2025-06-30.
    EXPECT_EQ(put(client, "acc-plain", "max", "oc.account", {{"contract_end", "2025-06-30"}})["next"],
              purge_due("2025-06-30T00:00:00Z"));
    // Suspended 2025-03-10, contract running to 2028-01-31: the contract is later.
    EXPECT_EQ(put(client, "acc-long", "ned", "oc.account",
                  {{"contract_end", "2028-01-31"}, {"suspended", "2025-03-10"}})["next"],
              purge_due("2028-01-31T00:00:00Z"));

    EXPECT_EQ(sweep(client), json::parse(R"({"archived":0,"anonymised":0,"purged":1,"held":0})"));
    EXPECT_EQ(state_of(client, "acc-plain"), "purged");
    EXPECT_EQ(state_of(client, "acc-suspended"), "active");  // the contract ended, the account stays
    EXPECT_EQ(daemon.stop(SIGTERM), 0);
  }
  {
    // One day before the two years are up.
    DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2027-03-09T00:00:00Z"});
    Client client(daemon.socket());
    sweep(client);
    EXPECT_EQ(state_of(client, "acc-suspended"), "active");
    EXPECT_EQ(daemon.stop(SIGTERM), 0);
  }
  {
    DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2027-03-10T00:00:00Z"});
    Client client(daemon.socket());
    sweep(client);
    EXPECT_EQ(state_of(client, "acc-suspended"), "purged");
    EXPECT_EQ(state_of(client, "acc-long"), "active");
  }
}

// Three texts name no legal obligation for what they keep, so the person's
// erasure request takes it:
// - Studi: "10 years after your last use of our platform for the history of
//   your professional certification exams" and "Your personal data will be
//   deleted upon your simple request."
// - 360Learning: "Copy of the ID card ... 12 months", and "if you have
//   exercised your right to modify or erase these data, we shall erase these".
// - OpenClassrooms lists invoicing under "necessary for the execution of a
//   contract", kept "10 years from the end of the current financial year".
// OpenClassrooms does name one for "management of project validations,
// certificates and diplomas" (50 years): that record stays.
TEST(ExamplePolicy, DataWhoseTextNamesNoLegalObligationIsErasedOnRequest) {
  TempDir dir;
  DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2026-01-01T00:00:00Z"});
  Client client(daemon.socket());
  put(client, "cert-hist", "noa", "studi.certification_history", {{"collected", "2020-09-01"}, {"last_use", "2024-09-15"}});
  put(client, "id-copy", "noa", "l360.id_copy", {{"collected", "2025-11-20"}});
  put(client, "invoice", "noa", "oc.invoice", {{"issued", "2024-05-10"}});
  put(client, "diploma", "noa", "oc.certificate", {{"issued", "2024-05-10"}});
  // Archived 10 years after the last use, 2024-09-15.
  EXPECT_EQ(next_of(client, "cert-hist"),
            json::parse(R"({"phase":0,"action":"archive","due":"2034-09-15T00:00:00Z","waiting_for":[]})"));
  // 12 months from the request, 2025-11-20.
  EXPECT_EQ(next_of(client, "id-copy"), purge_due("2026-11-20T00:00:00Z"));
  // The financial year of 2024-05-10 ends on 2024-12-31; 10 years after it.
  EXPECT_EQ(next_of(client, "invoice"), purge_due("2035-01-01T00:00:00Z"));

  const json erased = result_of(client.call("subject.erase", {{"subject", "noa"}, {"reason", "simple request"}}));
  EXPECT_EQ(erased["erased"], json::parse(R"(["cert-hist","id-copy","invoice"])"));
  // 50 years from the diploma's issue, 2024-05-10.
  EXPECT_EQ(erased["retained"], json::parse(R"([{"key":"diploma","category":"oc.certificate",
      "reason":"legal_obligation","until":"2074-05-10T00:00:00Z"}])"));
  EXPECT_EQ(state_of(client, "cert-hist"), "purged");
  EXPECT_EQ(state_of(client, "id-copy"), "purged");
  EXPECT_EQ(state_of(client, "invoice"), "purged");
  EXPECT_EQ(state_of(client, "diploma"), "active");
}

// Every seed lets the person withdraw consent at any time; the withdrawal ends
// what rests on consent, and nothing else. 1to1PROGRESS: "avec votre
// consentement lorsqu'il est requis, nous pourrions utiliser les données ...
// pour vous adresser nos newsletters ... vous pouvez à tout moment vous
// désinscrire"; OpenClassrooms: "3 years from your last contact with us or
// unting the withdraw of your consent"; Studi: "requesting your prior consent
// before sending any advertising"; 1to1PROGRESS's _ga is "Facultatif".
TEST(ExamplePolicy, AConsentWithdrawalEndsTheNewsletterButNotTheAccount) {
  TempDir dir;
  DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2026-03-01T00:00:00Z"});
  Client client(daemon.socket());
  put(client, "newsletter", "lea", "onetoone.prospect", {{"collected", "2025-05-01"}});
  put(client, "marketing", "lea", "oc.marketing", {{"collected", "2025-01-15"}, {"last_contact", "2025-12-01"}});
  put(client, "ga", "lea", "onetoone.cookie._ga", {{"collected", "2026-02-01"}});
  put(client, "offers", "lea", "studi.marketing", {{"collected", "2025-06-01"}});
  put(client, "account", "lea", "oc.account", {{"collected", "2024-09-01"}});
  put(client, "client", "lea", "l360.client_account", {{"contract_end", "2025-12-31"}});
  // Before: at most 3 years from collection, 2025-05-01; 3 years from the last
  // contact, 2025-12-01; 2 years from placement, 2026-02-01.
  EXPECT_EQ(next_of(client, "newsletter"), purge_due("2028-05-01T00:00:00Z"));
  EXPECT_EQ(next_of(client, "marketing"), purge_due("2028-12-01T00:00:00Z"));
  EXPECT_EQ(next_of(client, "ga"), purge_due("2028-02-01T00:00:00Z"));

  const json updated = result_of(client.call(
      "event.record", {{"subject", "lea"}, {"name", "consent_withdrawn"}, {"at", "2026-02-20T09:30:00Z"}}));
  EXPECT_EQ(updated, json::parse(R"({"updated":4})"));
  EXPECT_EQ(next_of(client, "newsletter"), purge_due("2026-02-20T09:30:00Z"));
  EXPECT_EQ(next_of(client, "marketing"), purge_due("2026-02-20T09:30:00Z"));
  // The account waits for its contract to end; the client account for 2028-12-31.
  EXPECT_EQ(next_of(client, "account"),
            json::parse(R"({"phase":0,"action":"purge","due":null,"waiting_for":["contract_end","suspended"]})"));
  EXPECT_EQ(next_of(client, "client"), purge_due("2028-12-31T00:00:00Z"));

  // Studi's marketing data is archived and purged in the same pass.
  EXPECT_EQ(sweep(client), json::parse(R"({"archived":1,"anonymised":0,"purged":4,"held":0})"));
  for (const char* key : {"newsletter", "marketing", "ga", "offers"}) EXPECT_EQ(state_of(client, key), "purged") << key;
  EXPECT_EQ(state_of(client, "account"), "active");
  EXPECT_EQ(state_of(client, "client"), "active");
}

// Studi: "Your personal data will be deleted upon your simple request. In this
// context, we retain certain information in anonymized or aggregated form,
// particularly information relating to browsing and use of the services
// offered". Anonymised at the request, and anonymous: no user id, not even a
// keyed hash of it, no address, no free text.
TEST(ExamplePolicy, StudiUsageIsAnonymisedAtTheErasureRequestWithNothingLeftToIdentify) {
  TempDir dir;
  DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2026-01-01T00:00:00Z"});
  Client client(daemon.socket());
  put(client, "visit-1", "tom", "studi.usage", {{"collected", "2025-11-03T14:22:05Z"}},
      {{"user_id", "tom-42"},
       {"ip", "203.0.113.7"},
       {"visited_at", "2025-11-03T14:22:05Z"},
       {"page", "/formations/comptabilite"},
       {"duration_s", 95},
       {"search_terms", "tom dupont bts"},
       {"referrer", "https://mail.example/tom"},
       {"user_agent", "Mozilla/5.0"}});
  put(client, "history", "tom", "studi.training_history", {{"collected", "2024-09-01"}});
  // No term of its own: it waits for the request.
  EXPECT_EQ(next_of(client, "visit-1"),
            json::parse(R"({"phase":0,"action":"anonymise","due":null,"waiting_for":["erasure_requested"]})"));
  EXPECT_EQ(sweep(client)["anonymised"], 0);

  EXPECT_EQ(result_of(client.call("event.record", {{"subject", "tom"}, {"name", "erasure_requested"}, {"at", "2025-12-31"}})),
            json::parse(R"({"updated":1})"));
  EXPECT_EQ(sweep(client), json::parse(R"({"archived":0,"anonymised":1,"purged":0,"held":0})"));
  const json got = result_of(client.call("record.get", {{"key", "visit-1"}}));
  EXPECT_EQ(got["state"], "anonymised");
  EXPECT_EQ(got["subject"], nullptr);
  EXPECT_EQ(got["fields"], json::parse(R"({"page":"/formations/comptabilite","duration_s":95,"visited_at":"2025"})"));

  // Then the rest goes with the erasure; the anonymised visit is no one's data.
  const json erased = result_of(client.call("subject.erase", {{"subject", "tom"}, {"reason", "simple request"}}));
  EXPECT_EQ(without_receipt(erased), json::parse(R"({"erased":["history"],
      "erased_records":[{"key":"history","category":"studi.training_history"}],"retained":[]})"));
  EXPECT_EQ(result_of(client.call("subject.export", {{"subject", "tom"}}))["records"], json::array());
  EXPECT_EQ(state_of(client, "visit-1"), "anonymised");
}

// The three rules the example policy had left out.
TEST(ExamplePolicy, TheRulesItHadLeftOutRunAsTheirSentencesSay) {
  TempDir dir;
  DaemonProcess daemon(dir.path(), {"--config", kConfig, "--now", "2026-01-10T00:00:00Z"});
  Client client(daemon.socket());
  // 1to1PROGRESS: "__zlcprivacy : store visitor's decision on CookieLaw
  // Javascript API (365 days)". 365 days from 2027-03-01 cross 2028-02-29:
  // 2028-02-29, one day short of a calendar year.
  put(client, "zlc", "ugo", "onetoone.cookie.__zlcprivacy", {{"collected", "2027-03-01"}});
  EXPECT_EQ(next_of(client, "zlc"), purge_due("2028-02-29T00:00:00Z"));

  // OpenClassrooms: "your email is kept for reasons of security. However, it is
  // possible to delete it by amending the information in their profile". No
  // term: kept until the member deletes it.
  put(client, "recovery", "ugo", "oc.recovery_email", {{"collected", "2019-04-02"}}, {{"email", "ugo@example.com"}});
  EXPECT_EQ(next_of(client, "recovery"),
            json::parse(R"({"phase":0,"action":"purge","due":null,"waiting_for":["deleted_by_member"]})"));

  // Moodle: "Your personal data is stored for as long as you are registered in
  // one or more of the site's online courses. The data for each course is
  // destroyed 6 months after the closing date of the course".
  put(client, "moodle", "ugo", "moodle.personal_data", {{"collected", "2024-09-01"}});
  put(client, "course", "ugo", "moodle.course_data", {{"course_closed", "2025-12-19"}});
  EXPECT_EQ(next_of(client, "course"), purge_due("2026-06-19T00:00:00Z"));

  EXPECT_EQ(sweep(client)["purged"], 0);
  EXPECT_EQ(result_of(client.call("event.record",
                                  {{"key", "recovery"}, {"name", "deleted_by_member"}, {"at", "2026-01-05T17:00:00Z"}})),
            json::parse(R"({"updated":1})"));
  EXPECT_EQ(result_of(client.call("event.record",
                                  {{"subject", "ugo"}, {"name", "last_enrolment_ended"}, {"at", "2025-12-19"}})),
            json::parse(R"({"updated":1})"));
  EXPECT_EQ(next_of(client, "recovery"), purge_due("2026-01-05T17:00:00Z"));
  EXPECT_EQ(next_of(client, "moodle"), purge_due("2025-12-19T00:00:00Z"));
  EXPECT_EQ(sweep(client)["purged"], 2);
  EXPECT_EQ(state_of(client, "recovery"), "purged");
  EXPECT_EQ(state_of(client, "moodle"), "purged");
  EXPECT_EQ(state_of(client, "course"), "active");
  EXPECT_EQ(state_of(client, "zlc"), "active");
}

}  // namespace
}  // namespace retentiond::testing
