// Tests for lib/policy/policy (shared/spec/policy.md, "The file", "Categories",
// "Errors"): loading the bundled policies, TOML/YAML equivalence and the
// policy hash, every class of configuration error with its file:line and key
// path, warnings, defaults and Category::allows_date. Expected values are
// literals worked out by hand from the spec and from the texts below; line
// and column numbers are counted by hand and noted next to the texts.

#include "lib/policy/policy.hpp"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace retentiond::policy {
namespace {

using Severity = Diagnostic::Severity;

LoadResult load_toml(std::string_view text) {
  return load_policy_text(text, ConfFormat::toml, "p.toml");
}
LoadResult load_yaml(std::string_view text) {
  return load_policy_text(text, ConfFormat::yaml, "p.yaml");
}

std::string source_file(std::string_view relative) {
  return std::string(RETENTIOND_SOURCE_DIR) + "/" + std::string(relative);
}

// Every diagnostic, one per line, for failure messages.
std::string dump(const LoadResult& r) {
  std::string out;
  for (const auto& d : r.diagnostics) out += "  " + d.to_string() + "\n";
  return out.empty() ? "  (no diagnostics)\n" : out;
}

std::vector<Diagnostic> of_severity(const LoadResult& r, Severity s) {
  std::vector<Diagnostic> out;
  for (const auto& d : r.diagnostics) {
    if (d.severity == s) out.push_back(d);
  }
  return out;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}
bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

// Expects the load to fail with exactly one error whose text starts with
// `prefix` ("p.toml:LINE:" or "p.toml:LINE:COL: "), whose key is `key` (and is
// named in the text), and whose message contains `words`.
void expect_one_error(const LoadResult& r, std::string_view prefix, std::string_view key,
                      std::string_view words) {
  EXPECT_FALSE(r.ok()) << dump(r);
  EXPECT_EQ(r.policy, nullptr);
  const auto errors = of_severity(r, Severity::error);
  ASSERT_EQ(errors.size(), 1u) << dump(r);
  const std::string text = errors[0].to_string();
  EXPECT_TRUE(starts_with(text, prefix)) << text << "\n  expected prefix: " << prefix;
  EXPECT_EQ(errors[0].key, key) << text;
  EXPECT_TRUE(contains(text, std::string(key) + ": ")) << text;
  EXPECT_TRUE(contains(errors[0].message, words)) << text << "\n  expected words: " << words;
  EXPECT_EQ(r.first_error(), text);
}

// Lines 1-5 of every category test below; the body starts on line 6.
constexpr std::string_view kTomlHead =
    "[daemon]\n"                     // 1
    "state_dir = \"/var/lib/rd\"\n"  // 2
    "socket = \"/run/rd.sock\"\n"    // 3
    "\n"                             // 4
    "[[categories]]\n";              // 5

std::string toml_category(std::string_view body) {
  return std::string(kTomlHead) + std::string(body);
}

// `text` with its one occurrence of `from` replaced by `to`.
std::string replaced(std::string text, std::string_view from, std::string_view to) {
  const auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << "'" << from << "' not in the text";
  if (at == std::string::npos) return text;
  EXPECT_EQ(text.find(from, at + 1), std::string::npos) << "'" << from << "' twice in the text";
  return text.replace(at, from.size(), to);
}

std::vector<std::string> names_of(const Policy& p) {
  std::vector<std::string> out;
  for (const auto& c : p.categories) out.push_back(c.name);
  return out;
}

// "action: canonical at; action: canonical at" for a category's phases.
std::string phases_of(const Category& c) {
  std::string out;
  for (const auto& ph : c.phases) {
    if (!out.empty()) out += "; ";
    out += std::string(to_string(ph.action)) + ": " + ph.at.canonical();
  }
  return out;
}

// The strategy a category gives `field`, or "(none)".
std::string strategy_of(const Category& c, std::string_view field) {
  for (const auto& [name, strategy] : c.anonymise) {
    if (name == field) return std::string(to_string(strategy));
  }
  return "(none)";
}

bool is_lower_hex_sha256(const std::string& h) {
  if (h.size() != 64) return false;
  for (char c : h) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// ---- the bundled policy ------------------------------------------------------

// The categories of config/retentiond.toml, in file order: one per rule of the
// table in shared/seeds/README.md (the "all: erase on request" row is
// subject.erase, not a category, and 1to1PROGRESS's "La réponse sera adressée
// dans le mois suivant la réception de la demande" is a deadline, not a
// retention, so it has none).
const std::vector<std::string> kBundledNames = {
    "l360.prospect",
    "l360.final_user",
    "l360.client_account",
    "l360.newsletter",
    "l360.cookie",
    "l360.cookie.required",
    "l360.id_copy",
    "moodle.personal_data",
    "moodle.course_data",
    "moodle.profile",
    "oc.application",
    "oc.invoice",
    "oc.student_file",
    "oc.account",
    "oc.recovery_email",
    "oc.certificate",
    "oc.rights_request",
    "oc.marketing",
    "oc.cookie_consent",
    "oc.cookie",
    "oc.complaint",
    "oc.statistics",
    "oc.connection_log",
    "onetoone.prospect",
    "onetoone.cookie._ga",
    "onetoone.cookie.__zlcmid",
    "onetoone.cookie.__zlcprivacy",
    "onetoone.cookie._gid",
    "onetoone.cookie.onetoonessid",
    "onetoone.cookie._gat",
    "studi.audience_cookie",
    "studi.marketing",
    "studi.training_history",
    "studi.certification_history",
    "studi.usage",
};

class BundledPolicy : public ::testing::TestWithParam<const char*> {};

TEST_P(BundledPolicy, LoadsWithoutAnyDiagnostic) {
  const auto r = load_policy_file(source_file(GetParam()));
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_TRUE(r.diagnostics.empty()) << dump(r);
  EXPECT_TRUE(is_lower_hex_sha256(r.policy->hash)) << r.policy->hash;
}

TEST_P(BundledPolicy, HasOneCategoryPerSeedRuleInOrder) {
  const auto r = load_policy_file(source_file(GetParam()));
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(r.policy->categories.size(), 35u);
  EXPECT_EQ(names_of(*r.policy), kBundledNames);
}

TEST_P(BundledPolicy, SeedRulesAreWrittenAsTheSeedsState) {
  const auto r = load_policy_file(source_file(GetParam()));
  ASSERT_TRUE(r.ok()) << dump(r);
  const Policy& p = *r.policy;
  struct Rule {
    const char* name;
    const char* phases;
  };
  // From the rule table of shared/seeds/README.md.
  const Rule rules[] = {
      {"l360.prospect", "purge: max(collected, last_contact) + 3 years"},
      {"l360.final_user", "purge: contract_end + 4 months 30 days"},
      {"l360.cookie", "purge: min(collected + 13 months, consent_withdrawn)"},
      {"l360.cookie.required", "purge: collected + 13 months"},
      {"moodle.personal_data", "purge: min(last_enrolment_ended, consent_withdrawn)"},
      {"moodle.course_data", "purge: min(course_closed + 6 months, consent_withdrawn)"},
      {"moodle.profile", "purge: min(account_deleted, consent_withdrawn)"},
      {"oc.invoice", "purge: fiscal_year_end(issued) + 10 years"},
      {"oc.student_file", "purge: left + 5 years"},
      {"oc.account", "purge: max(contract_end, suspended + 2 years)"},
      {"oc.recovery_email", "purge: deleted_by_member"},
      {"oc.certificate", "purge: issued + 50 years"},
      {"oc.rights_request", "purge: collected + 6 years"},
      {"oc.cookie_consent", "purge: min(collected + 13 months, consent_withdrawn)"},
      {"oc.cookie", "purge: collected + 13 months"},
      {"oc.connection_log", "purge: collected + 1 year"},
      {"onetoone.prospect", "purge: min(collected + 3 years, consent_withdrawn)"},
      {"onetoone.cookie._ga", "purge: min(collected + 2 years, consent_withdrawn)"},
      {"onetoone.cookie.__zlcmid", "purge: collected + 365 days"},
      {"onetoone.cookie.__zlcprivacy", "purge: collected + 365 days"},
      {"onetoone.cookie._gid", "purge: min(collected + 24 hours, consent_withdrawn)"},
      {"onetoone.cookie.onetoonessid", "purge: collected + 24 hours"},
      {"onetoone.cookie._gat", "purge: min(collected + 1 minute, consent_withdrawn)"},
      {"studi.audience_cookie", "purge: min(collected + 13 months, consent_withdrawn)"},
      {"studi.marketing",
       "archive: min(max(collected, last_interaction) + 3 years, consent_withdrawn); purge: consent_withdrawn"},
      {"studi.certification_history", "archive: max(collected, last_use) + 10 years"},
      {"studi.usage", "anonymise: erasure_requested"},
  };
  for (const auto& rule : rules) {
    const Category* c = p.find(rule.name);
    ASSERT_NE(c, nullptr) << rule.name;
    EXPECT_EQ(phases_of(*c), rule.phases) << rule.name;
  }
  EXPECT_TRUE(p.find("l360.client_account")->erasable);
  const Category* usage = p.find("studi.usage");
  EXPECT_TRUE(usage->has_anonymise);
  EXPECT_EQ(usage->anonymise.size(), 8u);
  // Anonymised, not pseudonymised (GDPR Recital 26): no keyed hash that the
  // controller, who holds the key, could match against known values, and
  // no part of an address.
  for (const auto& [field, strategy] : usage->anonymise) {
    EXPECT_NE(strategy, Strategy::hmac) << field;
    EXPECT_NE(strategy, Strategy::truncate_ip) << field;
  }
  EXPECT_EQ(strategy_of(*usage, "user_id"), "drop");
  EXPECT_EQ(strategy_of(*usage, "ip"), "drop");
  EXPECT_EQ(strategy_of(*usage, "visited_at"), "year_only");
  EXPECT_EQ(p.daemon.fiscal_year_end, (calendar::MonthDay{12, 31}));
  EXPECT_EQ(p.daemon.state_dir, "/var/lib/retentiond");
  EXPECT_EQ(p.daemon.socket, "/run/retentiond/admin.sock");
  EXPECT_EQ(p.daemon.socket_mode, 0660u);
  EXPECT_EQ(p.find("no.such.category"), nullptr);
}

// Every seed lets the person withdraw consent at any time. A withdrawal,
// recorded as the date consent_withdrawn, must end exactly the consent-based
// retention: each consent category declares it and its purge comes at it at
// the latest; no other category declares it, so the person's accounts,
// contracts and legitimate-interest data stay.
TEST_P(BundledPolicy, AConsentWithdrawalEndsExactlyTheConsentBasedCategories) {
  const auto r = load_policy_file(source_file(GetParam()));
  ASSERT_TRUE(r.ok()) << dump(r);
  std::vector<std::string> consent;
  for (const auto& c : r.policy->categories) {
    if (c.legal_basis != "consent") {
      EXPECT_FALSE(c.allows_date("consent_withdrawn")) << c.name;
      continue;
    }
    consent.push_back(c.name);
    EXPECT_TRUE(c.allows_date("consent_withdrawn")) << c.name;
    ASSERT_FALSE(c.phases.empty()) << c.name;
    const Phase& last = c.phases.back();
    EXPECT_EQ(last.action, Action::purge) << c.name;
    const std::string at = last.at.canonical();
    const std::string tail = ", consent_withdrawn)";
    const bool ends_at_withdrawal =
        at == "consent_withdrawn" ||
        (starts_with(at, "min(") && at.size() > tail.size() && at.substr(at.size() - tail.size()) == tail);
    EXPECT_TRUE(ends_at_withdrawal) << c.name << ": " << at;
  }
  const std::vector<std::string> expected = {
      "l360.cookie",         "moodle.personal_data", "moodle.course_data",    "moodle.profile",
      "oc.marketing",        "oc.cookie_consent",    "onetoone.prospect",     "onetoone.cookie._ga",
      "onetoone.cookie._gid", "onetoone.cookie._gat", "studi.audience_cookie", "studi.marketing"};
  EXPECT_EQ(consent, expected);
}

// Only what a seed states is a legal obligation: OpenClassrooms names two
// ("management of project validations, certificates and diplomas; management
// of requests to exercise rights"), and no other seed names any. Every other
// category may be erased on the person's request.
TEST_P(BundledPolicy, OnlyTheLegalObligationsASeedNamesRefuseErasure) {
  const auto r = load_policy_file(source_file(GetParam()));
  ASSERT_TRUE(r.ok()) << dump(r);
  std::vector<std::string> obligations;
  std::vector<std::string> not_erasable;
  for (const auto& c : r.policy->categories) {
    if (c.legal_basis == "legal_obligation") obligations.push_back(c.name);
    if (!c.erasable) not_erasable.push_back(c.name);
  }
  const std::vector<std::string> named = {"oc.certificate", "oc.rights_request"};
  EXPECT_EQ(obligations, named);
  EXPECT_EQ(not_erasable, named);
  // The three that had one the texts never name.
  EXPECT_TRUE(r.policy->find("l360.id_copy")->erasable);
  EXPECT_TRUE(r.policy->find("studi.certification_history")->erasable);
  EXPECT_TRUE(r.policy->find("oc.invoice")->erasable);
  EXPECT_EQ(r.policy->find("onetoone.rights_request"), nullptr);
}

INSTANTIATE_TEST_SUITE_P(TomlAndYaml, BundledPolicy,
                         ::testing::Values("config/retentiond.toml", "config/retentiond.yaml"));

TEST(BundledPolicyTwins, TomlAndYamlHaveTheSameHashAndCategories) {
  const auto t = load_policy_file(source_file("config/retentiond.toml"));
  const auto y = load_policy_file(source_file("config/retentiond.yaml"));
  ASSERT_TRUE(t.ok()) << dump(t);
  ASSERT_TRUE(y.ok()) << dump(y);
  EXPECT_EQ(t.policy->hash, y.policy->hash);
  EXPECT_EQ(names_of(*t.policy), names_of(*y.policy));
  EXPECT_TRUE(contains(t.policy->source_path, "retentiond.toml")) << t.policy->source_path;
}

// ---- TOML / YAML twins and the hash ---------------------------------------

TEST(PolicyHash, HandWrittenYamlTwinHashesLikeTheToml) {
  const auto t = load_policy_file(source_file("tests/policy/data/twin.toml"));
  const auto y = load_policy_file(source_file("tests/policy/data/twin.yaml"));
  ASSERT_TRUE(t.ok()) << dump(t);
  ASSERT_TRUE(y.ok()) << dump(y);
  EXPECT_TRUE(t.diagnostics.empty()) << dump(t);
  EXPECT_TRUE(y.diagnostics.empty()) << dump(y);
  EXPECT_TRUE(is_lower_hex_sha256(t.policy->hash)) << t.policy->hash;
  EXPECT_EQ(t.policy->hash, y.policy->hash);

  const std::vector<std::string> names = {"prospect", "invoice", "learning_analytics",
                                          "final_user"};
  EXPECT_EQ(names_of(*t.policy), names);
  EXPECT_EQ(names_of(*y.policy), names);
  for (const auto* p : {t.policy.get(), y.policy.get()}) {
    EXPECT_EQ(p->daemon.fiscal_year_end, (calendar::MonthDay{6, 30}));
    EXPECT_EQ(phases_of(p->categories[0]), "purge: max(collected, last_contact) + 3 years");
    EXPECT_EQ(phases_of(p->categories[1]),
              "archive: fiscal_year_end(issued); purge: fiscal_year_end(issued) + 10 years");
    EXPECT_EQ(phases_of(p->categories[2]), "anonymise: last_use + 5 years");
    EXPECT_EQ(phases_of(p->categories[3]), "purge: contract_end + 4 months 30 days");
    EXPECT_EQ(p->categories[0].source, "360Learning privacy policy, section 4");
    EXPECT_EQ(p->categories[1].dates, (std::vector<std::string>{"collected", "issued"}));
  }
}

// A TOML policy and its YAML twin written with other spellings.
constexpr std::string_view kHashToml = R"([daemon]
state_dir = "/var/lib/rd"
socket = "/run/rd.sock"
log_level = "info"
max_batch_records = 1000

[[categories]]
name = "prospect"
purpose = "Prospects"
legal_basis = "legitimate_interest"
dates = ["collected", "last_contact"]
phases = [ { action = "purge", at = "max(collected, last_contact) + 3 years" } ]
)";

constexpr std::string_view kHashYaml = R"(# comment
daemon: {state_dir: /somewhere/else, socket: /elsewhere.sock, log_level: debug}
categories:
- name: prospect
  purpose: "Prospects"     # quoted or not, same text
  legal_basis: legitimate_interest
  dates: [ collected , last_contact ]
  phases:
  - {action: purge, at: "max( collected,last_contact )+P3Y"}
)";

std::string hash_of(const LoadResult& r) {
  EXPECT_TRUE(r.ok()) << dump(r);
  return r.ok() ? r.policy->hash : "(failed)";
}

TEST(PolicyHash, YamlTwinWithOtherSpellingsHashesTheSame) {
  EXPECT_EQ(hash_of(load_toml(kHashToml)), hash_of(load_yaml(kHashYaml)));
}

TEST(PolicyHash, DurationSpellingAndWhitespaceDoNotChangeIt) {
  const std::string base = hash_of(load_toml(kHashToml));
  EXPECT_EQ(
      hash_of(load_toml(replaced(std::string(kHashToml), "max(collected, last_contact) + 3 years",
                                 "max(collected,last_contact)+3y"))),
      base);
  EXPECT_EQ(hash_of(load_toml(replaced(std::string(kHashToml), "+ 3 years", "+ P3Y"))), base);
  EXPECT_EQ(hash_of(load_toml("# leading comment\n\n" + std::string(kHashToml) + "\n# trailing\n")),
            base);
}

TEST(PolicyHash, ChangingAPurposeChangesIt) {
  EXPECT_NE(hash_of(load_toml(replaced(std::string(kHashToml), "\"Prospects\"", "\"Prospects.\""))),
            hash_of(load_toml(kHashToml)));
}

TEST(PolicyHash, ChangingADurationChangesIt) {
  EXPECT_NE(hash_of(load_toml(replaced(std::string(kHashToml), "+ 3 years", "+ 4 years"))),
            hash_of(load_toml(kHashToml)));
  EXPECT_NE(hash_of(load_toml(replaced(std::string(kHashToml), "+ 3 years", "+ 3 years 1 day"))),
            hash_of(load_toml(kHashToml)));
}

TEST(PolicyHash, ChangingTheRetentionMeaningChangesIt) {
  const std::string base = hash_of(load_toml(kHashToml));
  const std::string t(kHashToml);
  EXPECT_NE(hash_of(load_toml(replaced(t, "max(collected", "min(collected"))), base);
  EXPECT_NE(hash_of(load_toml(replaced(t, "legitimate_interest", "consent"))), base);
  EXPECT_NE(hash_of(load_toml(replaced(t, "\"purge\"", "\"archive\""))), base);
  EXPECT_NE(hash_of(load_toml(replaced(t, "name = \"prospect\"", "name = \"prospects\""))), base);
  EXPECT_NE(hash_of(load_toml(replaced(t, "log_level", "fiscal_year_end = \"06-30\"\nlog_level"))),
            base);
}

TEST(PolicyHash, OperationalDaemonSettingsDoNotChangeIt) {
  const std::string base = hash_of(load_toml(kHashToml));
  const std::string t(kHashToml);
  EXPECT_EQ(hash_of(load_toml(replaced(t, "/run/rd.sock", "/tmp/other.sock"))), base);
  EXPECT_EQ(hash_of(load_toml(replaced(t, "log_level = \"info\"", "log_level = \"debug\""))), base);
  EXPECT_EQ(hash_of(load_toml(replaced(t, "max_batch_records = 1000", "max_batch_records = 10"))),
            base);
  EXPECT_EQ(hash_of(load_toml(replaced(t, "/var/lib/rd", "/srv/rd"))), base);
}

// ---- configuration errors: categories (TOML) ---------------------------------

TEST(PolicyErrors, MisspeltDateNameInAtNamesTheDeclaredDates) {
  // Line 10; the value's quote is column 37, the name starts at column 38.
  const auto r = load_toml(toml_category(
      "name = \"final_user\"\n"                                                              // 6
      "purpose = \"Final users\"\n"                                                          // 7
      "legal_basis = \"contract\"\n"                                                         // 8
      "dates = [\"contract_end\"]\n"                                                         // 9
      "phases = [ { action = \"purge\", at = \"contract_ende + 4 months 30 days\" } ]\n"));  // 10
  expect_one_error(r, "p.toml:10:", "categories[0].phases[0].at",
                   "unknown date name 'contract_ende'");
  ASSERT_FALSE(r.diagnostics.empty());
  EXPECT_EQ(r.first_error(),
            "p.toml:10:38: categories[0].phases[0].at: unknown date name 'contract_ende' "
            "(this category declares: collected, contract_end)");
}

TEST(PolicyErrors, MisspeltUnitInAtPointsAtTheDuration) {
  // "collected + " is 12 characters: the duration starts at column 38 + 12 = 50.
  const auto r = load_toml(
      toml_category("name = \"prospect\"\n"                                                   // 6
                    "purpose = \"Prospects\"\n"                                               // 7
                    "legal_basis = \"legitimate_interest\"\n"                                 // 8
                    "dates = [\"collected\"]\n"                                               // 9
                    "phases = [ { action = \"purge\", at = \"collected + 3 yeers\" } ]\n"));  // 10
  expect_one_error(r, "p.toml:10:50: ", "categories[0].phases[0].at", "yeers");
}

TEST(PolicyErrors, UnknownFunctionInAtIsNamed) {
  const auto r = load_toml(toml_category(
      "name = \"prospect\"\n"                                                            // 6
      "purpose = \"Prospects\"\n"                                                        // 7
      "legal_basis = \"legitimate_interest\"\n"                                          // 8
      "phases = [ { action = \"purge\", at = \"maxx(collected,last_contact)\" } ]\n"));  // 9
  expect_one_error(r, "p.toml:9:38: ", "categories[0].phases[0].at", "unknown function 'maxx'");
}

TEST(PolicyErrors, UnknownCategoryKeyIsReportedWhereTheKeyIs) {
  const auto r = load_toml(
      toml_category("name = \"prospect\"\n"                                                   // 6
                    "purpose = \"Prospects\"\n"                                               // 7
                    "purpse = \"Prospects, again\"\n"                                         // 8
                    "legal_basis = \"legitimate_interest\"\n"                                 // 9
                    "phases = [ { action = \"purge\", at = \"collected + 3 years\" } ]\n"));  // 10
  expect_one_error(r, "p.toml:8:1: ", "categories[0].purpse", "unknown key 'purpse'");
}

TEST(PolicyErrors, MissingPurposeIsReportedAtTheCategory) {
  const auto r = load_toml(
      toml_category("name = \"prospect\"\n"                                                   // 6
                    "legal_basis = \"legitimate_interest\"\n"                                 // 7
                    "phases = [ { action = \"purge\", at = \"collected + 3 years\" } ]\n"));  // 8
  expect_one_error(r, "p.toml:5:", "categories[0].purpose", "required");
}

TEST(PolicyErrors, MisspeltPurposeKeyGivesBothErrorsInLineOrder) {
  const auto r = load_toml(
      toml_category("name = \"prospect\"\n"                                                   // 6
                    "purpse = \"Prospects\"\n"                                                // 7
                    "legal_basis = \"legitimate_interest\"\n"                                 // 8
                    "phases = [ { action = \"purge\", at = \"collected + 3 years\" } ]\n"));  // 9
  const auto errors = of_severity(r, Severity::error);
  ASSERT_EQ(errors.size(), 2u) << dump(r);
  EXPECT_TRUE(starts_with(errors[0].to_string(), "p.toml:5:")) << dump(r);
  EXPECT_EQ(errors[0].key, "categories[0].purpose");
  EXPECT_TRUE(
      starts_with(errors[1].to_string(), "p.toml:7:1: categories[0].purpse: unknown key 'purpse'"))
      << dump(r);
}

TEST(PolicyErrors, UnknownLegalBasisListsTheSix) {
  const auto r = load_toml(
      toml_category("name = \"prospect\"\n"                                                   // 6
                    "purpose = \"Prospects\"\n"                                               // 7
                    "legal_basis = \"legitimate_interests\"\n"                                // 8
                    "phases = [ { action = \"purge\", at = \"collected + 3 years\" } ]\n"));  // 9
  expect_one_error(r, "p.toml:8:15: ", "categories[0].legal_basis",
                   "unknown legal basis 'legitimate_interests'");
  EXPECT_TRUE(contains(r.first_error(),
                       "consent, contract, legal_obligation, vital_interests, "
                       "public_task, legitimate_interest"))
      << r.first_error();
}

TEST(PolicyErrors, CategoryNameMustBeLowercase) {
  const auto r = load_toml(
      toml_category("name = \"Prospect\"\n"                                                   // 6
                    "purpose = \"Prospects\"\n"                                               // 7
                    "legal_basis = \"legitimate_interest\"\n"                                 // 8
                    "phases = [ { action = \"purge\", at = \"collected + 3 years\" } ]\n"));  // 9
  expect_one_error(r, "p.toml:6:8: ", "categories[0].name", "invalid category name 'Prospect'");
}

TEST(PolicyErrors, CategoryNameRulesFromTheSpec) {
  const auto body = [](std::string_view name) {
    return toml_category("name = \"" + std::string(name) +
                         "\"\npurpose = \"P\"\nlegal_basis = \"consent\"\n"
                         "phases = [ { action = \"purge\", at = \"collected + 1 day\" } ]\n");
  };
  EXPECT_TRUE(load_toml(body("a")).ok());
  EXPECT_TRUE(load_toml(body("a0_.-z")).ok());
  EXPECT_TRUE(load_toml(body(std::string(64, 'x'))).ok());
  EXPECT_FALSE(load_toml(body(std::string(65, 'x'))).ok());
  EXPECT_FALSE(load_toml(body("0abc")).ok());
  EXPECT_FALSE(load_toml(body(".abc")).ok());
  EXPECT_FALSE(load_toml(body("a b")).ok());
  EXPECT_FALSE(load_toml(body("")).ok());
}

TEST(PolicyErrors, DuplicateCategoryNameIsReportedAtTheSecond) {
  const auto r = load_toml(
      toml_category("name = \"prospect\"\n"                                                  // 6
                    "purpose = \"Prospects\"\n"                                              // 7
                    "legal_basis = \"legitimate_interest\"\n"                                // 8
                    "phases = [ { action = \"purge\", at = \"collected + 3 years\" } ]\n"    // 9
                    "\n"                                                                     // 10
                    "[[categories]]\n"                                                       // 11
                    "name = \"prospect\"\n"                                                  // 12
                    "purpose = \"Prospects again\"\n"                                        // 13
                    "legal_basis = \"consent\"\n"                                            // 14
                    "phases = [ { action = \"purge\", at = \"collected + 1 year\" } ]\n"));  // 15
  expect_one_error(r, "p.toml:12:8: ", "categories[1].name", "duplicate category name 'prospect'");
}

TEST(PolicyErrors, TwoPurgePhasesAreRejectedAtTheSecond) {
  const auto r =
      load_toml(toml_category("name = \"prospect\"\n"                                      // 6
                              "purpose = \"Prospects\"\n"                                  // 7
                              "legal_basis = \"legitimate_interest\"\n"                    // 8
                              "phases = [\n"                                               // 9
                              "  { action = \"purge\", at = \"collected + 3 years\" },\n"  // 10
                              "  { action = \"purge\", at = \"collected + 5 years\" },\n"  // 11
                              "]\n"));                                                     // 12
  expect_one_error(r, "p.toml:11:14: ", "categories[0].phases[1].action",
                   "at most one 'purge' phase");
}

TEST(PolicyErrors, PurgeMustBeTheLastPhase) {
  const auto r =
      load_toml(toml_category("name = \"prospect\"\n"                                       // 6
                              "purpose = \"Prospects\"\n"                                   // 7
                              "legal_basis = \"legitimate_interest\"\n"                     // 8
                              "phases = [\n"                                                // 9
                              "  { action = \"purge\", at = \"collected + 3 years\" },\n"   // 10
                              "  { action = \"archive\", at = \"collected + 1 year\" },\n"  // 11
                              "]\n"));                                                      // 12
  expect_one_error(r, "p.toml:10:", "categories[0].phases[0].action",
                   "'purge' must be the last phase");
}

// Regression (lib/policy/policy.cpp, read_phases): the "'purge' must be the
// last phase" check once indexed the phases that parsed (c.phases) but reports the key
// and position of v.items[i], the i-th phase *in the file*. When an earlier
// phase has its own error it is not in c.phases, so the purge error names the
// wrong phase: here "categories[0].phases[0].action" on line 10 (the phase with
// the bad action) instead of "categories[0].phases[1].action" on line 11.
TEST(PolicyErrors, PurgeNotLastNamesThePurgePhaseWhenAnEarlierPhaseIsInvalid) {
  const auto r =
      load_toml(toml_category("name = \"prospect\"\n"                                        // 6
                              "purpose = \"Prospects\"\n"                                    // 7
                              "legal_basis = \"legitimate_interest\"\n"                      // 8
                              "phases = [\n"                                                 // 9
                              "  { action = \"shred\", at = \"collected + 1 year\" },\n"     // 10
                              "  { action = \"purge\", at = \"collected + 3 years\" },\n"    // 11
                              "  { action = \"archive\", at = \"collected + 4 years\" },\n"  // 12
                              "]\n"));                                                       // 13
  const auto errors = of_severity(r, Severity::error);
  ASSERT_EQ(errors.size(), 2u) << dump(r);
  EXPECT_TRUE(starts_with(errors[0].to_string(),
                          "p.toml:10:14: categories[0].phases[0].action: "
                          "unknown action 'shred'"))
      << dump(r);
  EXPECT_TRUE(starts_with(errors[1].to_string(), "p.toml:11:")) << dump(r);
  EXPECT_EQ(errors[1].key, "categories[0].phases[1].action") << dump(r);
  EXPECT_TRUE(contains(errors[1].message, "'purge' must be the last phase")) << dump(r);
}

TEST(PolicyErrors, UnknownActionIsNamed) {
  const auto r = load_toml(
      toml_category("name = \"prospect\"\n"                                                    // 6
                    "purpose = \"Prospects\"\n"                                                // 7
                    "legal_basis = \"legitimate_interest\"\n"                                  // 8
                    "phases = [ { action = \"delete\", at = \"collected + 3 years\" } ]\n"));  // 9
  expect_one_error(r, "p.toml:9:23: ", "categories[0].phases[0].action", "unknown action 'delete'");
}

TEST(PolicyErrors, AnonymisePhaseWithoutTableIsRejectedAtTheCategory) {
  const auto r = load_toml(toml_category(
      "name = \"analytics\"\n"                                                      // 6
      "purpose = \"Statistics\"\n"                                                  // 7
      "legal_basis = \"legitimate_interest\"\n"                                     // 8
      "phases = [ { action = \"anonymise\", at = \"collected + 5 years\" } ]\n"));  // 9
  expect_one_error(r, "p.toml:5:", "categories[0].anonymise", "required");
}

TEST(PolicyErrors, UnknownStrategyIsReportedAtItsValue) {
  const auto r = load_toml(
      toml_category("name = \"analytics\"\n"                                                   // 6
                    "purpose = \"Statistics\"\n"                                               // 7
                    "legal_basis = \"legitimate_interest\"\n"                                  // 8
                    "phases = [ { action = \"anonymise\", at = \"collected + 5 years\" } ]\n"  // 9
                    "anonymise = { email = \"drop\", ip = \"shred\" }\n"));                    // 10
  expect_one_error(r, "p.toml:10:36: ", "categories[0].anonymise.ip", "unknown strategy 'shred'");
}

TEST(PolicyErrors, BothAnonymiseSpellingsAtOnceAreRejected) {
  const auto r = load_toml(
      toml_category("name = \"analytics\"\n"                                                   // 6
                    "purpose = \"Statistics\"\n"                                               // 7
                    "legal_basis = \"legitimate_interest\"\n"                                  // 8
                    "phases = [ { action = \"anonymise\", at = \"collected + 5 years\" } ]\n"  // 9
                    "anonymise = { email = \"drop\" }\n"                                       // 10
                    "anonymize = { email = \"hmac\" }\n"));                                    // 11
  expect_one_error(r, "p.toml:11:", "categories[0].anonymize", "both 'anonymise' and 'anonymize'");
}

TEST(PolicyErrors, DateListedTwiceOrReservedIsRejected) {
  const auto r = load_toml(
      toml_category("name = \"prospect\"\n"                                                   // 6
                    "purpose = \"Prospects\"\n"                                               // 7
                    "legal_basis = \"legitimate_interest\"\n"                                 // 8
                    "dates = [\"left\", \"left\"]\n"                                          // 9
                    "phases = [ { action = \"purge\", at = \"collected + 3 years\" } ]\n"));  // 10
  expect_one_error(r, "p.toml:9:", "categories[0].dates[1]", "listed twice");
  const auto reserved =
      load_toml(toml_category("name = \"p\"\npurpose = \"P\"\nlegal_basis = \"consent\"\ndates = "
                              "[\"end_of_day\"]\n"));  // 6-9
  expect_one_error(reserved, "p.toml:9:", "categories[0].dates[0]", "function name");
}

// Found by hand next to the fuzzers: std::regex_match recursed once per
// character of a date name, and a 200000-character name overflowed the stack.
TEST(PolicyErrors, VeryLongDateNamesAreCheckedWithoutRegexRecursion) {
  const std::string good(200000, 'a');
  const auto r = load_toml(toml_category("name = \"p\"\npurpose = \"P\"\nlegal_basis = \"consent\"\ndates = [\"" +
                                         good + "\"]\n"));  // 6-9
  ASSERT_TRUE(r.ok()) << r.first_error();
  EXPECT_EQ(r.policy->categories.at(0).dates.at(0).size(), good.size());
  const auto bad = load_toml(toml_category("name = \"p\"\npurpose = \"P\"\nlegal_basis = \"consent\"\ndates = [\"" +
                                           good + "-\"]\n"));
  expect_one_error(bad, "p.toml:9:", "categories[0].dates[0]", "invalid date name");
}

// ---- configuration errors: [daemon] (TOML) -------------------------------------

TEST(PolicyErrors, FebruaryTwentyNinthIsNotAFiscalYearEnd) {
  const auto r = load_toml(
      "[daemon]\n"                       // 1
      "state_dir = \"/var/lib/rd\"\n"    // 2
      "socket = \"/run/rd.sock\"\n"      // 3
      "fiscal_year_end = \"02-29\"\n");  // 4
  expect_one_error(r, "p.toml:4:19: ", "daemon.fiscal_year_end", "02-29");
}

TEST(PolicyErrors, OtherBadFiscalYearEndsAreRejected) {
  for (const char* bad : {"\"13-01\"", "\"04-31\"", "\"12/31\"", "\"1231\"", "\"\"", "1231"}) {
    SCOPED_TRACE(bad);
    const auto r =
        load_toml(std::string("[daemon]\nstate_dir = \"/d\"\nsocket = \"/s\"\nfiscal_year_end = ") +
                  bad + "\n");
    expect_one_error(r, "p.toml:4:", "daemon.fiscal_year_end", "");
  }
}

TEST(PolicyErrors, SocketModeMustBeAnOctalString) {
  for (const char* bad : {"\"0990\"", "\"rw-rw----\"", "\"66\"", "\"06600\"", "432"}) {
    SCOPED_TRACE(bad);
    const auto r = load_toml(std::string("[daemon]\n"            // 1
                                         "state_dir = \"/d\"\n"  // 2
                                         "socket = \"/s\"\n"     // 3
                                         "socket_mode = ") +     // 4
                             bad +
                             "\n");
    expect_one_error(r, "p.toml:4:15: ", "daemon.socket_mode", "");
  }
  const auto ok =
      load_toml("[daemon]\nstate_dir = \"/d\"\nsocket = \"/s\"\nsocket_mode = \"0600\"\n");
  ASSERT_TRUE(ok.ok()) << dump(ok);
  EXPECT_EQ(ok.policy->daemon.socket_mode, 0600u);
  const auto three =
      load_toml("[daemon]\nstate_dir = \"/d\"\nsocket = \"/s\"\nsocket_mode = \"640\"\n");
  ASSERT_TRUE(three.ok()) << dump(three);
  EXPECT_EQ(three.policy->daemon.socket_mode, 0640u);
}

TEST(PolicyErrors, MissingStateDirIsReportedAtTheDaemonTable) {
  const auto r = load_toml(
      "# a comment\n"                  // 1
      "[daemon]\n"                     // 2
      "socket = \"/run/rd.sock\"\n");  // 3
  expect_one_error(r, "p.toml:2:", "daemon.state_dir", "required");
}

TEST(PolicyErrors, MissingDaemonSectionIsAnError) {
  const auto r = load_toml(
      "[[categories]]\nname = \"p\"\npurpose = \"P\"\nlegal_basis = \"consent\"\n"
      "phases = [ { action = \"purge\", at = \"collected + 1 day\" } ]\n");
  expect_one_error(r, "p.toml:", "daemon", "missing [daemon] section");
}

TEST(PolicyErrors, ReloadGuardOfTheWrongTypeIsRejected) {
  const auto r = load_toml(
      "[daemon]\n"                     // 1
      "state_dir = \"/var/lib/rd\"\n"  // 2
      "socket = \"/run/rd.sock\"\n"    // 3
      "reload_guard = \"many\"\n");    // 4
  expect_one_error(r, "p.toml:4:16: ", "daemon.reload_guard", "expected an integer, got a string");
}

TEST(PolicyErrors, ClockGuardMustBeADurationLongerThanZero) {
  const auto word = load_toml(
      "[daemon]\n"                     // 1
      "state_dir = \"/var/lib/rd\"\n"  // 2
      "socket = \"/run/rd.sock\"\n"    // 3
      "clock_guard = \"soon\"\n");     // 4
  expect_one_error(word, "p.toml:4:15: ", "daemon.clock_guard", "soon");
  const auto zero = load_toml("[daemon]\nstate_dir = \"/d\"\nsocket = \"/s\"\nclock_guard = \"0 days\"\n");
  expect_one_error(zero, "p.toml:4:", "daemon.clock_guard", "must be longer than zero");
  const auto number = load_toml("[daemon]\nstate_dir = \"/d\"\nsocket = \"/s\"\nclock_guard = 86400\n");
  expect_one_error(number, "p.toml:4:", "daemon.clock_guard", "expected a string");
  const auto ok = load_toml("[daemon]\nstate_dir = \"/d\"\nsocket = \"/s\"\nclock_guard = \"36h\"\n");
  ASSERT_TRUE(ok.ok()) << dump(ok);
  EXPECT_EQ(ok.policy->daemon.clock_guard, (calendar::Duration{.hours = 36}));
  const auto defaults = load_toml("[daemon]\nstate_dir = \"/d\"\nsocket = \"/s\"\n");
  EXPECT_EQ(defaults.policy->daemon.clock_guard, (calendar::Duration{.days = 1}));
}

TEST(PolicyErrors, MaxBatchRecordsOutOfRangeIsRejected) {
  const auto zero = load_toml(
      "[daemon]\n"                     // 1
      "state_dir = \"/var/lib/rd\"\n"  // 2
      "socket = \"/run/rd.sock\"\n"    // 3
      "max_batch_records = 0\n");      // 4
  expect_one_error(zero, "p.toml:4:21: ", "daemon.max_batch_records",
                   "0 is out of range (1..100000)");
  const auto big =
      load_toml("[daemon]\nstate_dir = \"/d\"\nsocket = \"/s\"\nmax_batch_records = 100001\n");
  expect_one_error(big, "p.toml:4:", "daemon.max_batch_records",
                   "100001 is out of range (1..100000)");
  const auto edge =
      load_toml("[daemon]\nstate_dir = \"/d\"\nsocket = \"/s\"\nmax_batch_records = 100000\n");
  ASSERT_TRUE(edge.ok()) << dump(edge);
  EXPECT_EQ(edge.policy->daemon.max_batch_records, 100000);
}

TEST(PolicyErrors, UnknownLogLevelIsRejected) {
  const auto r =
      load_toml("[daemon]\nstate_dir = \"/d\"\nsocket = \"/s\"\nlog_level = \"verbose\"\n");
  expect_one_error(r, "p.toml:4:", "daemon.log_level", "unknown level 'verbose'");
}

// Regression (config/retentiond.{toml,yaml} vs lib/policy): the bundled
// policy once documented log_level as "debug", "info", "warning" or
// "error", but policy.cpp accepted only trace, debug, info, warn, error, so an
// operator following the comment got "unknown level 'warning'". "warning" is
// now an alias, normalised to spdlog's "warn".
TEST(PolicyDaemon, LogLevelWarningAsDocumentedInTheBundledPolicyIsAccepted) {
  const auto r =
      load_toml("[daemon]\nstate_dir = \"/d\"\nsocket = \"/s\"\nlog_level = \"warning\"\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(r.policy->daemon.log_level, "warn");
}

TEST(PolicyErrors, UnknownDaemonKeyIsRejected) {
  const auto r = load_toml(
      "[daemon]\n"                     // 1
      "state_dir = \"/var/lib/rd\"\n"  // 2
      "socket = \"/run/rd.sock\"\n"    // 3
      "sokcet_mode = \"0660\"\n");     // 4
  expect_one_error(r, "p.toml:4:1: ", "daemon.sokcet_mode", "unknown key 'sokcet_mode'");
}

TEST(PolicyErrors, TomlSyntaxErrorReportsItsLine) {
  const auto r = load_toml(
      "[daemon]\n"                     // 1
      "state_dir = \"/var/lib/rd\"\n"  // 2
      "socket = \"/run/rd.sock\n"      // 3: unterminated string
      "log_level = \"info\"\n");       // 4
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 1u) << dump(r);
  EXPECT_EQ(r.diagnostics[0].severity, Severity::error);
  EXPECT_TRUE(starts_with(r.diagnostics[0].to_string(), "p.toml:3:")) << dump(r);
  EXPECT_FALSE(r.diagnostics[0].message.empty());

  const auto r2 = load_toml(
      "[daemon]\n"                       // 1
      "state_dir = \"/var/lib/rd\"\n"    // 2
      "\n"                               // 3
      "socket = = \"/run/rd.sock\"\n");  // 4
  ASSERT_EQ(r2.diagnostics.size(), 1u) << dump(r2);
  EXPECT_TRUE(starts_with(r2.first_error(), "p.toml:4:")) << dump(r2);
}

TEST(PolicyErrors, TopLevelUnknownKeyIsRejected) {
  const auto r = load_toml(
      "categorys = []\n"               // 1
      "[daemon]\n"                     // 2
      "state_dir = \"/var/lib/rd\"\n"  // 3
      "socket = \"/run/rd.sock\"\n");  // 4
  const auto errors = of_severity(r, Severity::error);
  ASSERT_EQ(errors.size(), 1u) << dump(r);
  EXPECT_TRUE(starts_with(errors[0].to_string(), "p.toml:1:1: categorys: unknown key 'categorys'"))
      << dump(r);
}

// ---- configuration errors: YAML ------------------------------------------------

TEST(PolicyErrorsYaml, MisspeltDateNameInAtNamesTheDeclaredDates) {
  // "        at: " is 12 characters: the plain value starts at column 13.
  const auto r = load_yaml(
      "daemon:\n"                                         // 1
      "  state_dir: /var/lib/rd\n"                        // 2
      "  socket: /run/rd.sock\n"                          // 3
      "categories:\n"                                     // 4
      "  - name: final_user\n"                            // 5
      "    purpose: Final users\n"                        // 6
      "    legal_basis: contract\n"                       // 7
      "    dates: [contract_end]\n"                       // 8
      "    phases:\n"                                     // 9
      "      - action: purge\n"                           // 10
      "        at: contract_ende + 4 months 30 days\n");  // 11
  expect_one_error(r, "p.yaml:11:", "categories[0].phases[0].at",
                   "unknown date name 'contract_ende'");
  EXPECT_EQ(r.first_error(),
            "p.yaml:11:13: categories[0].phases[0].at: unknown date name 'contract_ende' "
            "(this category declares: collected, contract_end)");
}

TEST(PolicyErrorsYaml, MisspeltDateNameInAQuotedFlowValue) {
  // "      - { action: purge, at: " is 29 characters: the quote is column 30.
  const auto r = load_yaml(
      "daemon:\n"                                                     // 1
      "  state_dir: /var/lib/rd\n"                                    // 2
      "  socket: /run/rd.sock\n"                                      // 3
      "categories:\n"                                                 // 4
      "  - name: final_user\n"                                        // 5
      "    purpose: Final users\n"                                    // 6
      "    legal_basis: contract\n"                                   // 7
      "    dates: [contract_end]\n"                                   // 8
      "    phases:\n"                                                 // 9
      "      - { action: purge, at: \"contract_ende + 1 day\" }\n");  // 10
  expect_one_error(r, "p.yaml:10:31: ", "categories[0].phases[0].at",
                   "unknown date name 'contract_ende'");
}

TEST(PolicyErrorsYaml, WrongTypeAndRangeReportTheValueLine) {
  const auto r = load_yaml(
      "daemon:\n"                   // 1
      "  state_dir: /var/lib/rd\n"  // 2
      "  socket: /run/rd.sock\n"    // 3
      "  reload_guard: many\n");    // 4
  expect_one_error(r, "p.yaml:4:17: ", "daemon.reload_guard", "expected an integer, got 'many'");
  const auto quoted = load_yaml("daemon:\n  state_dir: /d\n  socket: /s\n  reload_guard: \"12\"\n");
  expect_one_error(quoted, "p.yaml:4:", "daemon.reload_guard", "expected an integer");
  const auto range = load_yaml("daemon:\n  state_dir: /d\n  socket: /s\n  max_batch_records: -5\n");
  expect_one_error(range, "p.yaml:4:", "daemon.max_batch_records",
                   "-5 is out of range (1..100000)");
}

TEST(PolicyErrorsYaml, MissingPurposeIsReportedAtTheCategory) {
  const auto r = load_yaml(
      "daemon:\n"                                                  // 1
      "  state_dir: /var/lib/rd\n"                                 // 2
      "  socket: /run/rd.sock\n"                                   // 3
      "categories:\n"                                              // 4
      "  - name: prospect\n"                                       // 5
      "    legal_basis: consent\n"                                 // 6
      "    phases: [{action: purge, at: collected + 1 year}]\n");  // 7
  expect_one_error(r, "p.yaml:5:", "categories[0].purpose", "required");
}

TEST(PolicyErrorsYaml, SyntaxErrorReportsItsLine) {
  const auto r = load_yaml(
      "daemon:\n"                   // 1
      "  state_dir: /var/lib/rd\n"  // 2
      "  socket: /run/rd.sock\n"    // 3
      " log_level: info\n");        // 4: bad indentation
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 1u) << dump(r);
  EXPECT_EQ(r.diagnostics[0].severity, Severity::error);
  EXPECT_TRUE(starts_with(r.diagnostics[0].to_string(), "p.yaml:4:")) << dump(r);
}

TEST(PolicyErrorsYaml, DuplicateKeyIsAnErrorAtTheSecondKey) {
  const auto r = load_yaml(
      "daemon:\n"                   // 1
      "  state_dir: /var/lib/rd\n"  // 2
      "  socket: /run/rd.sock\n"    // 3
      "  state_dir: /tmp\n");       // 4
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(of_severity(r, Severity::error).size(), 1u) << dump(r);
  EXPECT_TRUE(starts_with(r.first_error(), "p.yaml:4:3: ")) << dump(r);
  EXPECT_TRUE(contains(r.first_error(), "duplicate key 'state_dir'")) << dump(r);
}

// Found by fuzz_policy_yaml: yaml-cpp passes bytes that are not UTF-8 (a
// file saved as Latin-1) through, and hashing the policy then threw out of
// the loader (retentiond --check and a SIGHUP reload died). Both formats now
// report the first such byte as a syntax error.
TEST(PolicyErrors, TextThatIsNotUtf8IsASyntaxErrorAtItsByte) {
  const std::string yaml =
      "daemon: {state_dir: /var/lib/rd}\n"                            // 1
      "categories:\n"                                                 // 2
      "  - name: prospect\n"                                          // 3
      "    purpose: Donn\xe9" "es\n"                                  // 4: Latin-1 e acute
      "    legal_basis: consent\n"                                    // 5
      "    phases: [{action: purge, at: collected + 1 year}]\n";      // 6
  const auto y = load_yaml(yaml);
  EXPECT_FALSE(y.ok());
  ASSERT_EQ(y.diagnostics.size(), 1u) << dump(y);
  EXPECT_EQ(y.first_error(), "p.yaml:4:18: not valid UTF-8 (byte 0xE9): the policy file must be UTF-8");

  const auto t = load_toml("[daemon]\nstate_dir = \"/var/lib/rd\"\n# caf\xc3\xa9 \xed\xa0\x80\n");  // a surrogate
  EXPECT_FALSE(t.ok());
  EXPECT_EQ(t.first_error(), "p.toml:3:8: not valid UTF-8 (byte 0xED): the policy file must be UTF-8");

  // Well-formed UTF-8, up to four bytes, is text like any other.
  const auto ok = load_yaml(std::string(yaml).replace(yaml.find("Donn\xe9"), 5, "Donn\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\x81 "));
  EXPECT_TRUE(ok.ok()) << dump(ok);
}

// An alias inside its own anchor made the tree infinite (a stack overflow,
// in --check and at a SIGHUP reload), and aliases of aliases a billion
// values. Both are errors now; plain aliases still work.
TEST(PolicyErrorsYaml, AnAliasInsideItsOwnAnchorIsAnError) {
  const auto r = load_yaml("daemon: &a {state_dir: /x, again: *a}\n");
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 1u) << dump(r);
  EXPECT_TRUE(contains(r.first_error(), "nested deeper than 64 levels")) << dump(r);
}

TEST(PolicyErrorsYaml, AliasesExpandingToTooManyValuesAreAnError) {
  std::string text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'i'; ++c) {  // 10^9 values
    const std::string prev(1, static_cast<char>(c - 1));
    text += std::string(1, c) + ": &" + std::string(1, c) + " [";
    for (int i = 0; i < 10; ++i) text += (i ? ", *" : "*") + prev;
    text += "]\n";
  }
  const auto r = load_yaml(text);
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 1u) << dump(r);
  EXPECT_TRUE(contains(r.first_error(), "more than 100000 values")) << dump(r);
}

// Found by fuzz_policy_yaml: an error inside an anchor was reported again at
// every alias of it, and errors came out of file order.
TEST(PolicyErrorsYaml, AnErrorInsideAnAliasedAnchorIsReportedOnceInFileOrder) {
  const auto r = load_yaml(
      "a: &a {k: 1, k: 2}\n"  // 1: the duplicate key, visited three times
      "b: [*a, *a]\n"         // 2
      "b: 3\n");              // 3
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 2u) << dump(r);
  EXPECT_EQ(r.diagnostics[0].to_string(), "p.yaml:1:14: duplicate key 'k'");
  EXPECT_EQ(r.diagnostics[1].to_string(), "p.yaml:3:1: duplicate key 'b'");
}

TEST(PolicyYaml, AliasesShareAValue) {
  const auto r = load_yaml(
      "daemon: {state_dir: /x}\n"
      "categories:\n"
      "  - {name: a, purpose: p, legal_basis: consent, phases: &phases [{action: purge, at: collected + 1 year}]}\n"
      "  - {name: b, purpose: p, legal_basis: consent, phases: *phases}\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  ASSERT_EQ(r.policy->categories.size(), 2u);
  EXPECT_EQ(r.policy->categories[1].phases.at(0).at.canonical(), "collected + 1 year");
}

TEST(PolicyErrorsYaml, TopLevelMustBeAMapping) {
  const auto r = load_yaml("- a\n- b\n");
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.first_error(), "top level")) << dump(r);
}

// ---- several errors -----------------------------------------------------------

TEST(PolicyErrors, EveryErrorIsReportedSortedByLine) {
  // [daemon] comes after the category, so the order in which the loader finds
  // the problems (daemon first) is not the line order.
  const auto r = load_toml(
      "[[categories]]\n"                                                     // 1
      "name = \"Prospect\"\n"                                                // 2: invalid name
      "purpose = \"Prospects\"\n"                                            // 3
      "legal_basis = \"legit\"\n"                                            // 4: bad legal basis
      "dates = [\"collected\"]\n"                                            // 5
      "phases = [ { action = \"purge\", at = \"collected + 3 yeers\" } ]\n"  // 6: bad unit
      "\n"                                                                   // 7
      "[daemon]\n"                     // 8: (no socket: warning)
      "state_dir = \"/var/lib/rd\"\n"  // 9
      "socket_mode = \"0999\"\n"       // 10: bad mode
      "reload_guard = \"many\"\n"      // 11: wrong type
      "colour = \"blue\"\n");          // 12: unknown key
  EXPECT_FALSE(r.ok());
  const auto errors = of_severity(r, Severity::error);
  ASSERT_EQ(errors.size(), 6u) << dump(r);
  const int lines[] = {2, 4, 6, 10, 11, 12};
  const char* keys[] = {"categories[0].name",         "categories[0].legal_basis",
                        "categories[0].phases[0].at", "daemon.socket_mode",
                        "daemon.reload_guard",        "daemon.colour"};
  for (std::size_t i = 0; i < errors.size(); ++i) {
    EXPECT_EQ(errors[i].pos.line, lines[i]) << dump(r);
    EXPECT_EQ(errors[i].key, keys[i]) << dump(r);
  }
  // The warning sits in line order among them.
  ASSERT_EQ(r.diagnostics.size(), 7u) << dump(r);
  EXPECT_EQ(r.diagnostics[3].severity, Severity::warning) << dump(r);
  EXPECT_EQ(r.diagnostics[3].key, "daemon.socket");
  EXPECT_EQ(r.diagnostics[3].pos.line, 8);
  EXPECT_TRUE(starts_with(r.first_error(), "p.toml:2:8: categories[0].name: ")) << r.first_error();
}

// Regression (lib/policy/policy.cpp, read_phases): the column of an unknown
// date name once came from at_text.find(name), the first occurrence of the name as a
// substring, not the token that was rejected. For
// at = "max(last_contact, contact) + 3 years" with dates = ["last_contact"],
// 'contact' is reported at offset 9 (inside "last_contact", column 47) instead
// of offset 18 (column 56).
TEST(PolicyErrors, UnknownDateNameColumnPointsAtTheNameItself) {
  const auto r =
      load_toml(toml_category("name = \"prospect\"\n"                    // 6
                              "purpose = \"Prospects\"\n"                // 7
                              "legal_basis = \"legitimate_interest\"\n"  // 8
                              "dates = [\"last_contact\"]\n"             // 9
                              "phases = [ { action = \"purge\", at = \"max(last_contact, contact) "
                              "+ 3 years\" } ]\n"));  // 10
  expect_one_error(r, "p.toml:10:56: ", "categories[0].phases[0].at",
                   "unknown date name 'contact'");
}

// Regression (lib/policy/policy.cpp, Builder::inside): the column inside a
// string value once added 1 for "a quoted scalar", but a TOML multi-line string opens with
// three quotes. For at = """contract_ende""" with the quotes at column 37, the
// name starts at column 40 but is reported at column 38.
TEST(PolicyErrors, ColumnInsideATripleQuotedTomlStringSkipsAllThreeQuotes) {
  const auto r = load_toml(toml_category(
      "name = \"final_user\"\n"                                                   // 6
      "purpose = \"Final users\"\n"                                               // 7
      "legal_basis = \"contract\"\n"                                              // 8
      "dates = [\"contract_end\"]\n"                                              // 9
      "phases = [ { action = \"purge\", at = \"\"\"contract_ende\"\"\" } ]\n"));  // 10
  expect_one_error(r, "p.toml:10:40: ", "categories[0].phases[0].at",
                   "unknown date name 'contract_ende'");
}

TEST(PolicyErrors, ColumnInsideALiteralTomlStringSkipsItsQuote) {
  const auto r = load_toml(
      toml_category("name = \"final_user\"\n"                                                 // 6
                    "purpose = \"Final users\"\n"                                             // 7
                    "legal_basis = \"contract\"\n"                                            // 8
                    "dates = [\"contract_end\"]\n"                                            // 9
                    "phases = [ { action = \"purge\", at = 'contract_ende + 1 day' } ]\n"));  // 10
  expect_one_error(r, "p.toml:10:38: ", "categories[0].phases[0].at",
                   "unknown date name 'contract_ende'");
}

TEST(PolicyErrors, EachUnknownDateNameIsReported) {
  const auto r = load_toml(toml_category(
      "name = \"prospect\"\n"                                                                // 6
      "purpose = \"Prospects\"\n"                                                            // 7
      "legal_basis = \"legitimate_interest\"\n"                                              // 8
      "dates = [\"collected\", \"last_contact\"]\n"                                          // 9
      "phases = [ { action = \"purge\", at = \"max(lst_contact, left) + 3 years\" } ]\n"));  // 10
  const auto errors = of_severity(r, Severity::error);
  ASSERT_EQ(errors.size(), 2u) << dump(r);
  EXPECT_EQ(errors[0].to_string(),
            "p.toml:10:42: categories[0].phases[0].at: unknown date name 'lst_contact' "
            "(this category declares: collected, last_contact)");
  EXPECT_EQ(errors[1].to_string(),
            "p.toml:10:55: categories[0].phases[0].at: unknown date name 'left' "
            "(this category declares: collected, last_contact)");
}

// ---- warnings ---------------------------------------------------------------

TEST(PolicyWarnings, CategoryWithoutPhasesLoadsWithAWarning) {
  const auto r =
      load_toml(toml_category("name = \"forever\"\n"            // 6
                              "purpose = \"Kept\"\n"            // 7
                              "legal_basis = \"consent\"\n"));  // 8
  ASSERT_TRUE(r.ok()) << dump(r);
  ASSERT_EQ(r.diagnostics.size(), 1u) << dump(r);
  EXPECT_EQ(r.diagnostics[0].severity, Severity::warning);
  EXPECT_EQ(r.diagnostics[0].key, "categories[0].phases");
  EXPECT_TRUE(starts_with(r.diagnostics[0].to_string(), "p.toml:5:")) << dump(r);
  EXPECT_TRUE(contains(r.diagnostics[0].to_string(), ": warning: categories[0].phases: "))
      << dump(r);
  EXPECT_EQ(r.first_error(), "");
  EXPECT_TRUE(r.policy->categories[0].phases.empty());
}

TEST(PolicyWarnings, UnusedAnonymiseTableLoadsWithAWarning) {
  const auto r = load_toml(
      toml_category("name = \"prospect\"\n"                                                // 6
                    "purpose = \"Prospects\"\n"                                            // 7
                    "legal_basis = \"legitimate_interest\"\n"                              // 8
                    "phases = [ { action = \"purge\", at = \"collected + 3 years\" } ]\n"  // 9
                    "anonymise = { email = \"drop\" }\n"));                                // 10
  ASSERT_TRUE(r.ok()) << dump(r);
  ASSERT_EQ(r.diagnostics.size(), 1u) << dump(r);
  EXPECT_EQ(r.diagnostics[0].severity, Severity::warning);
  EXPECT_EQ(r.diagnostics[0].key, "categories[0].anonymise");
  EXPECT_TRUE(starts_with(r.diagnostics[0].to_string(), "p.toml:10:")) << dump(r);
  EXPECT_TRUE(contains(r.diagnostics[0].message, "unused")) << dump(r);
}

TEST(PolicyWarnings, MissingSocketAndCategoriesAreWarningsOnly) {
  const auto r = load_toml("[daemon]\nstate_dir = \"/var/lib/rd\"\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(of_severity(r, Severity::warning).size(), 2u) << dump(r);
  EXPECT_TRUE(r.policy->categories.empty());
  EXPECT_EQ(r.policy->daemon.socket, "");
}

// ---- spellings and defaults ------------------------------------------------------

TEST(PolicyCategories, AnonymizeSpellingIsAcceptedForActionAndTable) {
  const std::string us = toml_category(
      "name = \"analytics\"\n"
      "purpose = \"Statistics\"\n"
      "legal_basis = \"legitimate_interest\"\n"
      "phases = [ { action = \"anonymize\", at = \"last_use + 5 years\" } ]\n"
      "anonymize = { email = \"drop\", ip = \"truncate_ip\" }\n");
  const auto r = load_toml(us);
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_TRUE(r.diagnostics.empty()) << dump(r);
  const Category& c = r.policy->categories[0];
  ASSERT_EQ(c.phases.size(), 1u);
  EXPECT_EQ(c.phases[0].action, Action::anonymise);
  EXPECT_EQ(c.phases[0].at_text, "last_use + 5 years");
  EXPECT_TRUE(c.has_anonymise);
  ASSERT_EQ(c.anonymise.size(), 2u);
  EXPECT_EQ(strategy_of(c, "ip"), "truncate_ip");
  EXPECT_EQ(strategy_of(c, "email"), "drop");

  // The spelling is not part of the meaning: same hash as the UK spelling.
  const auto uk = load_toml(
      replaced(replaced(us, "\"anonymize\"", "\"anonymise\""), "anonymize =", "anonymise ="));
  ASSERT_TRUE(uk.ok()) << dump(uk);
  EXPECT_EQ(uk.policy->hash, r.policy->hash);
}

TEST(PolicyCategories, ErasableDefaultsFollowTheLegalBasis) {
  const auto r = load_toml(
      "[daemon]\nstate_dir = \"/d\"\nsocket = \"/s\"\n"
      "[[categories]]\nname = \"a\"\npurpose = \"P\"\nlegal_basis = \"legal_obligation\"\n"
      "[[categories]]\nname = \"b\"\npurpose = \"P\"\nlegal_basis = \"consent\"\n"
      "[[categories]]\nname = \"c\"\npurpose = \"P\"\nlegal_basis = \"contract\"\n"
      "[[categories]]\nname = \"d\"\npurpose = \"P\"\nlegal_basis = \"vital_interests\"\n"
      "[[categories]]\nname = \"e\"\npurpose = \"P\"\nlegal_basis = \"public_task\"\n"
      "[[categories]]\nname = \"f\"\npurpose = \"P\"\nlegal_basis = \"legitimate_interest\"\n"
      "[[categories]]\nname = \"g\"\npurpose = \"P\"\nlegal_basis = \"legal_obligation\"\nerasable "
      "= true\n"
      "[[categories]]\nname = \"h\"\npurpose = \"P\"\nlegal_basis = \"consent\"\nerasable = "
      "false\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  const auto& cs = r.policy->categories;
  ASSERT_EQ(cs.size(), 8u);
  EXPECT_FALSE(cs[0].erasable);  // legal_obligation
  EXPECT_TRUE(cs[1].erasable);   // consent
  EXPECT_TRUE(cs[2].erasable);   // contract
  EXPECT_TRUE(cs[3].erasable);   // vital_interests
  EXPECT_TRUE(cs[4].erasable);   // public_task
  EXPECT_TRUE(cs[5].erasable);   // legitimate_interest
  EXPECT_TRUE(cs[6].erasable);   // legal_obligation, erasable = true
  EXPECT_FALSE(cs[7].erasable);  // consent, erasable = false
}

TEST(PolicyCategories, ErasableMustBeABoolean) {
  const auto r = load_yaml(
      "daemon: {state_dir: /d, socket: /s}\n"  // 1
      "categories:\n"                          // 2
      "  - name: a\n"                          // 3
      "    purpose: P\n"                       // 4
      "    legal_basis: consent\n"             // 5
      "    erasable: \"false\"\n");            // 6
  expect_one_error(r, "p.yaml:6:", "categories[0].erasable", "expected true or false");
  const auto plain = load_yaml(
      "daemon: {state_dir: /d, socket: /s}\ncategories:\n  - name: a\n"
      "    purpose: P\n    legal_basis: consent\n    erasable: false\n");
  ASSERT_TRUE(plain.ok()) << dump(plain);
  EXPECT_FALSE(plain.policy->categories[0].erasable);
}

TEST(PolicyCategories, DaemonSettingsAreRead) {
  const auto r = load_toml(
      "[daemon]\nstate_dir = \"/var/lib/rd\"\nsocket = \"/run/rd.sock\"\nsocket_mode = \"0600\"\n"
      "admin_group = \"adm\"\nreader_group = \"rd\"\nfiscal_year_end = \"03-31\"\n"
      "secret_file = \"/etc/rd/secret\"\nreload_guard = 50\nlog_level = \"debug\"\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  const auto& d = r.policy->daemon;
  EXPECT_EQ(d.state_dir, "/var/lib/rd");
  EXPECT_EQ(d.socket, "/run/rd.sock");
  EXPECT_EQ(d.socket_mode, 0600u);
  EXPECT_EQ(d.admin_group, "adm");
  EXPECT_EQ(d.reader_group, "rd");
  EXPECT_EQ(d.fiscal_year_end, (calendar::MonthDay{3, 31}));
  EXPECT_EQ(d.secret_file, "/etc/rd/secret");
  EXPECT_EQ(d.reload_guard, 50);
  EXPECT_EQ(d.log_level, "debug");

  const auto defaults = load_toml("[daemon]\nstate_dir = \"/d\"\nsocket = \"/s\"\n");
  ASSERT_TRUE(defaults.ok()) << dump(defaults);
  EXPECT_EQ(defaults.policy->daemon.socket_mode, 0660u);
  EXPECT_EQ(defaults.policy->daemon.fiscal_year_end, (calendar::MonthDay{12, 31}));
  EXPECT_EQ(defaults.policy->daemon.reload_guard, 1000);
  EXPECT_EQ(defaults.policy->daemon.secret_file, "");
}

// Regression (lib/policy/conf_tree.cpp, from_toml): toml++ tables are sorted
// maps, so a TOML file's keys once reached the Builder in alphabetical order, not file order.
// Category::anonymise is documented "in file order", and the spec says a TOML
// file and its YAML twin load to the same in-memory policy; for
// anonymise = { user_id = "hmac", ip = "truncate_ip", email = "drop" } the TOML
// load gives the fields as email, ip, user_id while the YAML twin gives
// user_id, ip, email.
TEST(PolicyCategories, AnonymiseTableKeepsFileOrderInToml) {
  const auto r = load_toml(toml_category(
      "name = \"analytics\"\npurpose = \"Statistics\"\nlegal_basis = \"legitimate_interest\"\n"
      "phases = [ { action = \"anonymise\", at = \"collected + 5 years\" } ]\n"
      "anonymise = { user_id = \"hmac\", ip = \"truncate_ip\", email = \"drop\" }\n"));
  ASSERT_TRUE(r.ok()) << dump(r);
  const auto& a = r.policy->categories[0].anonymise;
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].first, "user_id");
  EXPECT_EQ(a[1].first, "ip");
  EXPECT_EQ(a[2].first, "email");
}

TEST(PolicyCategories, AnonymiseTableKeepsFileOrderInYaml) {
  const auto r = load_yaml(
      "daemon: {state_dir: /d, socket: /s}\n"
      "categories:\n"
      "  - name: analytics\n"
      "    purpose: Statistics\n"
      "    legal_basis: legitimate_interest\n"
      "    phases: [{action: anonymise, at: collected + 5 years}]\n"
      "    anonymise: {user_id: hmac, ip: truncate_ip, email: drop, born: year_only, note: redact, "
      "page: keep}\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  const auto& a = r.policy->categories[0].anonymise;
  ASSERT_EQ(a.size(), 6u);
  EXPECT_EQ(a[0], (std::pair<std::string, Strategy>{"user_id", Strategy::hmac}));
  EXPECT_EQ(a[1], (std::pair<std::string, Strategy>{"ip", Strategy::truncate_ip}));
  EXPECT_EQ(a[2], (std::pair<std::string, Strategy>{"email", Strategy::drop}));
  EXPECT_EQ(a[3], (std::pair<std::string, Strategy>{"born", Strategy::year_only}));
  EXPECT_EQ(a[4], (std::pair<std::string, Strategy>{"note", Strategy::redact}));
  EXPECT_EQ(a[5], (std::pair<std::string, Strategy>{"page", Strategy::keep}));
}

// ---- Category::allows_date ------------------------------------------------------

TEST(CategoryAllowsDate, DeclaredDatesPlusCollectedAreAllowed) {
  Category c;
  c.declares_dates = true;
  c.dates = {"contract_end"};
  EXPECT_TRUE(c.allows_date("collected"));
  EXPECT_TRUE(c.allows_date("contract_end"));
  EXPECT_FALSE(c.allows_date("contract_ende"));
  EXPECT_FALSE(c.allows_date("left"));
  EXPECT_FALSE(c.allows_date(""));
}

TEST(CategoryAllowsDate, WithoutDeclaredDatesAnythingIsAllowed) {
  Category c;
  EXPECT_TRUE(c.allows_date("collected"));
  EXPECT_TRUE(c.allows_date("left"));
  EXPECT_TRUE(c.allows_date("anything_at_all"));
}

TEST(CategoryAllowsDate, LoadedCategoriesFollowTheirDatesKey) {
  const auto r = load_toml(
      "[daemon]\nstate_dir = \"/d\"\nsocket = \"/s\"\n"
      "[[categories]]\nname = \"declared\"\npurpose = \"P\"\nlegal_basis = \"contract\"\n"
      "dates = [\"contract_end\"]\n"
      "[[categories]]\nname = \"open\"\npurpose = \"P\"\nlegal_basis = \"contract\"\n"
      "[[categories]]\nname = \"empty\"\npurpose = \"P\"\nlegal_basis = \"contract\"\ndates = "
      "[]\n");
  ASSERT_TRUE(r.ok()) << dump(r);
  const Category* declared = r.policy->find("declared");
  const Category* open = r.policy->find("open");
  const Category* empty = r.policy->find("empty");
  ASSERT_NE(declared, nullptr);
  ASSERT_NE(open, nullptr);
  ASSERT_NE(empty, nullptr);
  EXPECT_TRUE(declared->declares_dates);
  EXPECT_TRUE(declared->allows_date("collected"));
  EXPECT_TRUE(declared->allows_date("contract_end"));
  EXPECT_FALSE(declared->allows_date("left"));
  EXPECT_FALSE(open->declares_dates);
  EXPECT_TRUE(open->allows_date("left"));
  // dates = [] declares the empty list: only collected.
  EXPECT_TRUE(empty->declares_dates);
  EXPECT_TRUE(empty->allows_date("collected"));
  EXPECT_FALSE(empty->allows_date("left"));
}

// ---- load_policy_file --------------------------------------------------------------

TEST(PolicyFile, UnknownExtensionIsRejectedByName) {
  const std::string path = source_file("tests/policy/data/policy.json");
  const auto r = load_policy_file(path);
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 1u) << dump(r);
  EXPECT_EQ(r.diagnostics[0].severity, Severity::error);
  EXPECT_EQ(r.diagnostics[0].file, path);
  EXPECT_TRUE(contains(r.first_error(), "'.json'")) << r.first_error();
  EXPECT_TRUE(contains(r.first_error(), ".toml, .yaml or .yml")) << r.first_error();
}

TEST(PolicyFile, MissingFileIsAnErrorNamingTheFile) {
  const std::string path = source_file("tests/policy/data/does_not_exist.toml");
  const auto r = load_policy_file(path);
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 1u) << dump(r);
  EXPECT_TRUE(starts_with(r.first_error(), path + ": ")) << r.first_error();
  EXPECT_TRUE(contains(r.first_error(), "cannot open")) << r.first_error();
}

TEST(PolicyFile, LoadedPolicyRemembersItsSourcePath) {
  const auto r = load_policy_file(source_file("tests/policy/data/twin.yaml"));
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(r.policy->source_path, source_file("tests/policy/data/twin.yaml"));
}

}  // namespace
}  // namespace retentiond::policy

namespace retentiond::policy {
namespace {

TEST(PolicyDaemon, AnEmptyLogLevelIsRejectedRatherThanSilencingTheLog) {
  const auto r = load_policy_text("[daemon]\nstate_dir = \"/d\"\nlog_level = \"\"\n", ConfFormat::toml, "p.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.first_error().find("p.toml:3:"), std::string::npos) << r.first_error();
  EXPECT_NE(r.first_error().find("daemon.log_level: unknown level ''"), std::string::npos) << r.first_error();
}

TEST(PolicyWarnings, AnEmptyPhaseListWarnsLikeAMissingOne) {
  const auto r = load_policy_text(
      "[daemon]\nstate_dir = \"/d\"\n[[categories]]\nname = \"c\"\npurpose = \"p\"\nlegal_basis = \"consent\"\nphases = []\n",
      ConfFormat::toml, "p.toml");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.diagnostics.size(), 2u);  // no socket, and no phases
  EXPECT_NE(r.diagnostics[1].to_string().find("has no phases"), std::string::npos) << r.diagnostics[1].to_string();
}

}  // namespace
}  // namespace retentiond::policy

namespace retentiond::policy {
namespace {

TEST(ListenAddress, HostAndPortAreSplitAndChecked) {
  std::string host;
  std::uint16_t port = 0;
  EXPECT_EQ(parse_listen_address("127.0.0.1:9464", host, port), std::nullopt);
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 9464);
  EXPECT_EQ(parse_listen_address("[::1]:80", host, port), std::nullopt);
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 80);
  EXPECT_EQ(parse_listen_address("localhost:1", host, port), std::nullopt);
  EXPECT_EQ(host, "localhost");
  for (const char* bad : {"", "127.0.0.1", ":9464", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:9x",
                          "::1:9464", "[::1]", "[::1]9464", "[127.0.0.1]:80", "example.com:80", "127.0.0.1:1234567"}) {
    EXPECT_NE(parse_listen_address(bad, host, port), std::nullopt) << bad;
  }
  EXPECT_TRUE(is_loopback_host("127.0.0.1"));
  EXPECT_TRUE(is_loopback_host("127.8.9.10"));
  EXPECT_TRUE(is_loopback_host("::1"));
  EXPECT_TRUE(is_loopback_host("localhost"));
  EXPECT_FALSE(is_loopback_host("0.0.0.0"));
  EXPECT_FALSE(is_loopback_host("192.168.1.2"));
  EXPECT_FALSE(is_loopback_host("::"));
}

// ---- [[connectors]] (issue 14) ------------------------------------------

// Lines: 1 [daemon], 2 state_dir, 3 [[connectors]], 4 name, 5 kind, 6 the
// connector's own key(s) from `extra` (one line), 7 [[categories]], 8 name,
// 9 purpose, 10 legal_basis, 11 phases, 12 connectors.
std::string connector_policy(const std::string& kind, const std::string& extra, const std::string& category_connectors) {
  return "[daemon]\n"
         "state_dir = \"/tmp/x\"\n"
         "[[connectors]]\n"
         "name = \"lms\"\n"
         "kind = \"" + kind + "\"\n" +
         extra + "\n"
         "[[categories]]\n"
         "name = \"account\"\n"
         "purpose = \"accounts\"\n"
         "legal_basis = \"contract\"\n"
         "phases = [ { action = \"purge\", at = \"collected + 1 year\" } ]\n"
         "connectors = " + category_connectors + "\n";
}

TEST(PolicyConnectors, EveryKindLoadsWithItsSettingsAndDefaults) {
  const auto exec = load_toml(connector_policy("exec", R"(command = ["/usr/local/lib/lms-erase", "--verbose"])", R"(["lms"])"));
  ASSERT_TRUE(exec.ok()) << dump(exec);
  ASSERT_EQ(exec.policy->connectors.size(), 1u);
  const Connector& c = exec.policy->connectors[0];
  EXPECT_EQ(c.name, "lms");
  EXPECT_EQ(c.kind, ConnectorKind::exec);
  EXPECT_EQ(c.command, (std::vector<std::string>{"/usr/local/lib/lms-erase", "--verbose"}));
  EXPECT_EQ(c.timeout_s, 30);
  EXPECT_EQ(c.max_attempts, 10);
  EXPECT_EQ(exec.policy->categories[0].connectors, std::vector<std::string>{"lms"});

  const auto http2 = load_toml(connector_policy("http", "url = \"http://127.0.0.1:8080/retention?x=1\"\ntimeout = \"5 s\"\nmax_attempts = 3", R"(["lms"])"));
  ASSERT_TRUE(http2.ok()) << dump(http2);
  const Connector& h = http2.policy->connectors[0];
  EXPECT_EQ(h.host, "127.0.0.1");
  EXPECT_EQ(h.port, 8080);
  EXPECT_EQ(h.target, "/retention?x=1");
  EXPECT_EQ(h.timeout_s, 5);
  EXPECT_EQ(h.max_attempts, 3);

  const auto pull = load_toml(connector_policy("pull", "", R"(["lms"])"));
  ASSERT_TRUE(pull.ok()) << dump(pull);
  EXPECT_EQ(pull.policy->connectors[0].kind, ConnectorKind::pull);
}

TEST(PolicyConnectors, AnUnknownConnectorNameInACategoryIsAnErrorAtItsLine) {
  expect_one_error(load_toml(connector_policy("pull", "", R"(["lms", "crm"])")), "p.toml:12:", "categories[0].connectors[1]",
                   "unknown connector 'crm' (defined: lms)");
}

TEST(PolicyConnectors, AnExecPathThatIsNotAbsoluteIsAnError) {
  expect_one_error(load_toml(connector_policy("exec", R"(command = ["lms-erase"])", R"(["lms"])")), "p.toml:6:",
                   "connectors[0].command[0]", "is not an absolute path");
}

TEST(PolicyConnectors, AUrlThatIsNotHttpIsAnError) {
  expect_one_error(load_toml(connector_policy("http", R"(url = "https://127.0.0.1/retention")", R"(["lms"])")), "p.toml:6:",
                   "connectors[0].url", "is not an http:// URL");
}

TEST(PolicyConnectors, ARemoteHostNeedsAllowRemote) {
  expect_one_error(load_toml(connector_policy("http", R"(url = "http://crm.example.com/retention")", R"(["lms"])")),
                   "p.toml:6:", "connectors[0].url", "is not a loopback address");
  const auto allowed =
      load_toml(connector_policy("http", "url = \"http://crm.example.com/retention\"\nallow_remote = true", R"(["lms"])"));
  ASSERT_TRUE(allowed.ok()) << dump(allowed);
  EXPECT_EQ(allowed.policy->connectors[0].port, 80);
  const auto v6 = load_toml(connector_policy("http", R"(url = "http://[::1]:9000")", R"(["lms"])"));
  ASSERT_TRUE(v6.ok()) << dump(v6);
  EXPECT_EQ(v6.policy->connectors[0].host, "::1");
  EXPECT_EQ(v6.policy->connectors[0].target, "/");
}

TEST(PolicyConnectors, AnUnknownKindAndAMissingCommandAreErrors) {
  expect_one_error(load_toml(connector_policy("smtp", "", R"([])")), "p.toml:5:", "connectors[0].kind",
                   "unknown kind 'smtp' (expected exec, http or pull)");
  const auto r = load_toml(connector_policy("exec", "", R"(["lms"])"));
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.first_error(), "connectors[0].command: required for an exec connector")) << dump(r);
}

TEST(PolicyConnectors, ConnectorsChangeTheHashOnlyWhenACategoryNamesThem) {
  const auto without = load_toml(connector_policy("pull", "", R"([])"));
  const auto with = load_toml(connector_policy("pull", "", R"(["lms"])"));
  ASSERT_TRUE(without.ok()) << dump(without);
  ASSERT_TRUE(with.ok()) << dump(with);
  EXPECT_NE(without.policy->hash, with.policy->hash);
  // Without connectors, a category hashes as it did before they existed.
  EXPECT_FALSE(canonical_json(without.policy->categories[0]).contains("connectors"));
}

}  // namespace
}  // namespace retentiond::policy
