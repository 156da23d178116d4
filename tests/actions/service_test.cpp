#include <gtest/gtest.h>

#include "lib/actions/reload.hpp"
#include "lib/actions/service.hpp"
#include "lib/protocol/decode.hpp"
#include "lib/store/sqlite/sqlite_store.hpp"
#include "lib/vault/key_file.hpp"
#include "tests/support/daemon_process.hpp"

namespace retentiond::actions {
namespace {

using nlohmann::json;
using policy::Strategy;

const std::string kSecret(32, 'k');

TEST(Anonymise, StrategiesGiveTheSpecifiedValues) {
  EXPECT_EQ(anonymise_value("x", Strategy::keep, kSecret), json("x"));
  EXPECT_FALSE(anonymise_value("x", Strategy::drop, kSecret).has_value());
  EXPECT_EQ(anonymise_value("x", Strategy::redact, kSecret), json("[redacted]"));
  // Expected values from Python's hmac module, an independent implementation.
  EXPECT_EQ(anonymise_value("alice@example.com", Strategy::hmac, kSecret),
            json("0d8b3da1ccc85d32dd2c1a1863a4bd48217a82e7eeab7033dd57fe32f560c133"));
  EXPECT_EQ(anonymise_value(42, Strategy::hmac, kSecret),
            json("09b9733fee8d8c0058bb9267ee6883b71d107741f7dce72efc707782121c7a49"));
  EXPECT_EQ(anonymise_value("192.168.17.42", Strategy::truncate_ip, kSecret), json("192.168.17.0"));
  EXPECT_EQ(anonymise_value("2001:db8:85a3:8d3:1319:8a2e:370:7348", Strategy::truncate_ip, kSecret),
            json("2001:db8:85a3::"));
  EXPECT_EQ(anonymise_value("not an ip", Strategy::truncate_ip, kSecret), json("[redacted]"));
  EXPECT_EQ(anonymise_value("1984-07-14", Strategy::year_only, kSecret), json("1984"));
  EXPECT_EQ(anonymise_value("2024-02-29T13:00:00+02:00", Strategy::year_only, kSecret), json("2024"));
  EXPECT_EQ(anonymise_value("last summer", Strategy::year_only, kSecret), json("[redacted]"));
  EXPECT_EQ(anonymise_value("1950-03-02", Strategy::year_only, kSecret), json("1950"));  // birth dates predate 1970
  EXPECT_EQ(anonymise_value("2024-02-29T13:00:00", Strategy::year_only, kSecret), json("2024"));  // no offset
  EXPECT_EQ(anonymise_value("2023-02-30", Strategy::year_only, kSecret), json("[redacted]"));  // no such day
  EXPECT_EQ(anonymise_value(1984, Strategy::year_only, kSecret), json("[redacted]"));
  EXPECT_EQ(anonymise_value("2024-02-29X", Strategy::year_only, kSecret), json("[redacted]"));
  EXPECT_EQ(anonymise_value("2024-2-29", Strategy::year_only, kSecret), json("[redacted]"));
  // A long value (found by fuzz_protocol: the regex this replaced recursed
  // once per character and overflowed the stack).
  EXPECT_EQ(anonymise_value("2024-01-01T" + std::string(200000, 'x'), Strategy::year_only, kSecret), json("2024"));
}

// A store that fails one kind of call on demand (leveldb's SpecialEnv idea):
// everything else goes to the real store.
class FaultyStore final : public store::Store {
 public:
  explicit FaultyStore(store::Store& real) : m_real(real) {}
  bool fail_active_remove = false;
  bool fail_insert_job = false;

  Status read(const std::function<Status()>& work) override { return m_real.read(work); }
  Result<std::optional<store::StoredRecord>> get(const std::string& key) override { return m_real.get(key); }
  Result<std::optional<store::StoredRecord>> schedule_of(const std::string& key) override { return m_real.schedule_of(key); }
  Result<std::vector<store::StoredRecord>> due(calendar::Instant now, std::size_t limit,
                                               const std::optional<DueCursor>& after) override {
    return m_real.due(now, limit, after);
  }
  Result<std::optional<calendar::Instant>> next_due(std::optional<calendar::Instant> after) override {
    return m_real.next_due(after);
  }
  Result<std::vector<store::StoredRecord>> undue(std::size_t limit, const std::string& after) override {
    return m_real.undue(limit, after);
  }
  Result<std::vector<store::StoredRecord>> schedules(const std::string& c, std::size_t limit,
                                                     const std::string& after) override {
    return m_real.schedules(c, limit, after);
  }
  Result<std::int64_t> count_category(const std::string& c) override { return m_real.count_category(c); }
  Result<std::vector<store::StoredRecord>> by_subject_ref(const std::string& r) override { return m_real.by_subject_ref(r); }
  Result<store::RecordCounts> counts() override { return m_real.counts(); }
  Result<std::map<std::string, store::RecordCounts>> counts_by_category() override {
    return m_real.counts_by_category();
  }
  Result<std::vector<store::DueDay>> due_days(calendar::Instant now) override { return m_real.due_days(now); }
  Result<std::map<std::string, std::int64_t>> due_by_category(calendar::Instant now) override {
    return m_real.due_by_category(now);
  }
  Result<std::optional<store::AuditRow>> last_audit() override { return m_real.last_audit(); }
  Result<std::vector<store::AuditRow>> audit_entries(const AuditQuery& q) override { return m_real.audit_entries(q); }
  Result<std::optional<store::AuditRow>> find_disposal(const std::string& key) override { return m_real.find_disposal(key); }
  Result<std::vector<store::StoredHold>> holds() override { return m_real.holds(); }
  Result<std::vector<store::DaemonSeen>> daemons() override { return m_real.daemons(); }
  Result<std::optional<std::string>> get_meta(const std::string& n) override { return m_real.get_meta(n); }
  Result<std::optional<store::RetiredRecord>> retired(const std::string& key) override { return m_real.retired(key); }
  Result<std::vector<store::RetiredRecord>> retired_due(calendar::Instant now, std::size_t limit) override {
    return m_real.retired_due(now, limit);
  }
  Result<bool> retire(const std::string& key, store::Location where, calendar::Instant purged_at,
                      calendar::Instant destroy_at) override {
    return m_real.retire(key, where, purged_at, destroy_at);
  }
  Result<bool> unretire(const std::string& key) override { return m_real.unretire(key); }
  Result<std::int64_t> count_retired(calendar::Instant after, calendar::Instant until) override {
    return m_real.count_retired(after, until);
  }
  Result<std::optional<std::int64_t>> drop_retired(const std::string& key) override { return m_real.drop_retired(key); }
  Result<std::optional<store::StoredJob>> job(const std::string& id) override { return m_real.job(id); }
  Result<std::vector<store::StoredJob>> jobs(const std::string& c, store::JobState s, std::size_t limit,
                                             std::int64_t after) override {
    return m_real.jobs(c, s, limit, after);
  }
  Result<std::vector<store::StoredJob>> jobs_ready(const std::string& c, store::JobState s, calendar::Instant now,
                                                   std::size_t limit) override {
    return m_real.jobs_ready(c, s, now, limit);
  }
  Result<std::optional<calendar::Instant>> next_job_at(const std::string& c, store::JobState s) override {
    return m_real.next_job_at(c, s);
  }
  Result<std::vector<store::StoredJob>> jobs_of_key(const std::string& key) override { return m_real.jobs_of_key(key); }
  Result<std::vector<store::ConnectorStats>> connector_stats() override { return m_real.connector_stats(); }
  Status insert_job(const store::StoredJob& j) override {
    if (fail_insert_job) return Error::storage("injected: disk I/O error");
    return m_real.insert_job(j);
  }
  Result<std::optional<std::int64_t>> update_job(const store::JobUpdate& u) override { return m_real.update_job(u); }
  Status transaction(const std::function<Status()>& work) override { return m_real.transaction(work); }
  Status insert(const store::StoredRecord& row) override { return m_real.insert(row); }
  Result<bool> insert_new(const store::StoredRecord& row) override { return m_real.insert_new(row); }
  Status update_schedule(const store::Schedule& row) override { return m_real.update_schedule(row); }
  Result<std::optional<std::int64_t>> remove(const std::string& key, store::Location where) override {
    if (fail_active_remove && where == store::Location::active) return Error::storage("injected: disk I/O error");
    return m_real.remove(key, where);
  }
  Status append_audit(const store::AuditRow& row) override { return m_real.append_audit(row); }
  Result<std::int64_t> add_hold(const store::StoredHold& h) override { return m_real.add_hold(h); }
  Result<std::optional<std::int64_t>> remove_hold(std::int64_t id) override { return m_real.remove_hold(id); }
  Status set_meta(const std::string& n, const std::string& v) override { return m_real.set_meta(n, v); }
  Result<store::KeySlotState> key_slots() override { return m_real.key_slots(); }
  Result<std::optional<std::int64_t>> save_key_slots(const store::KeySlotChanges& c) override {
    return m_real.save_key_slots(c);
  }
  Result<store::LegacyPlaintext> legacy_plaintext() override { return m_real.legacy_plaintext(); }
  Status replace_legacy_plaintext(const std::vector<store::StoredRecord>& rows,
                                  const std::vector<store::StoredHold>& holds) override {
    return m_real.replace_legacy_plaintext(rows, holds);
  }
  Status scrub_after_upgrade() override { return m_real.scrub_after_upgrade(); }

 private:
  store::Store& m_real;
};

// The service tests' policy: invoices (archived at the fiscal year end,
// purged ten years later) and usage data (anonymised after a year, purged
// after five). `connectors` goes first (its [[connectors]] tables); each
// category's extra lines follow it.
std::string service_policy(const std::string& connectors = "", const std::string& invoice_extra = "",
                           const std::string& usage_extra = "") {
  return "[daemon]\nstate_dir = \"unused\"\n" + connectors + R"toml(
[[categories]]
name = "invoice"
purpose = "invoicing"
legal_basis = "legal_obligation"
dates = ["issued"]
phases = [ { action = "archive", at = "fiscal_year_end(issued)" }, { action = "purge", at = "fiscal_year_end(issued) + 10 years" } ]
)toml" + invoice_extra + R"toml(
[[categories]]
name = "usage"
purpose = "statistics"
legal_basis = "legitimate_interest"
dates = ["last_use"]
phases = [ { action = "anonymise", at = "last_use + 1 year" }, { action = "purge", at = "last_use + 5 years" } ]
anonymise = { ip = "truncate_ip", page = "keep", user = "hmac" }
)toml" + usage_extra;
}

class ServiceTest : public ::testing::Test {
 protected:
  ServiceTest() : m_clock(calendar::Instant{1893456000}) {}  // 2030-01-01T00:00:00Z

  void SetUp() override {
    const auto loaded = policy::load_policy_text(service_policy(), policy::ConfFormat::toml, "t.toml");
    ASSERT_TRUE(loaded.ok()) << loaded.first_error();
    auto keys = vault::KeyFile::open(m_dir.path() / "keys");
    ASSERT_TRUE(keys);
    m_keys = std::make_unique<vault::KeyFile>(std::move(*keys));
    auto store = store::open_sqlite_store(m_dir.path() / "retention.db");
    ASSERT_TRUE(store) << store.error().message;
    m_store = std::move(store).value();
    m_faulty = std::make_unique<FaultyStore>(*m_store);
    m_vault = std::make_unique<vault::Vault>(*m_faulty, *m_keys, kSecret);
    ASSERT_TRUE(m_vault->open());
    m_audit = std::make_unique<audit::AuditLog>(*m_faulty);
    // One thread: the vault serves as the reader too.
    m_service = std::make_unique<Service>(*m_vault, *m_vault, *m_audit, m_clock, loaded.policy);
  }

  // The protocol's decoders turn the JSON params into typed requests.
  Result<vault::Record> put(const json& params) {
    auto r = protocol::decode::put(params);
    if (!r) return std::move(r).error();
    return m_service->put(*r, Actor{"uid:0"});
  }
  Result<std::int64_t> event(const json& params) {
    auto r = protocol::decode::event(params);
    if (!r) return std::move(r).error();
    return m_service->record_event(*r, Actor{"uid:0"});
  }
  Result<std::int64_t> place_hold(const json& params, const Actor& actor) {
    auto r = protocol::decode::hold_place(params);
    if (!r) return std::move(r).error();
    return m_service->place_hold(*r, actor);
  }
  Status release_hold(const json& params, const Actor& actor) {
    auto r = protocol::decode::hold_release(params);
    if (!r) return std::move(r).error();
    return m_service->release_hold(*r, actor);
  }
  // The record as stored, with its values.
  std::optional<vault::Record> stored(const std::string& key) { return *m_vault->get(key); }

  // One batch from the start of the due range.
  Result<SweepCounts> sweep() {
    SweepCursor cursor;
    return m_service->sweep_batch(100, Actor{"scheduler"}, cursor);
  }

  testing::TempDir m_dir;
  calendar::ManualClock m_clock;
  std::unique_ptr<vault::KeyFile> m_keys;
  std::unique_ptr<store::Store> m_store;
  std::unique_ptr<FaultyStore> m_faulty;
  std::unique_ptr<vault::Vault> m_vault;
  std::unique_ptr<audit::AuditLog> m_audit;
  std::unique_ptr<Service> m_service;
};

TEST_F(ServiceTest, AnonymiseRewritesFieldsDropsUnlistedOnesAndRemovesTheSubject) {
  ASSERT_TRUE(put({{"key", "u1"}, {"subject", "alice"}, {"category", "usage"},
                              {"fields", {{"ip", "10.1.2.3"}, {"page", "/home"}, {"email", "a@x"}, {"user", "alice"}}},
                              {"dates", {{"last_use", "2028-06-01"}}}}));
  const auto counts = sweep();
  ASSERT_TRUE(counts);
  EXPECT_EQ(counts->anonymised, 1);
  EXPECT_EQ(counts->purged, 0);
  const auto row = *stored("u1");
  EXPECT_EQ(row.state, store::RecordState::anonymised);
  EXPECT_FALSE(row.subject.has_value());
  // hmac of "alice" under the test secret, from Python's hmac module.
  EXPECT_EQ(row.fields, json({{"ip", "10.1.2.0"}, {"page", "/home"},
                              {"user", "6664a42048c6d6d7fe3657e39b14155c099246385212db085614c81f5b9c938d"}}));
  EXPECT_EQ(row.fields["ip"], "10.1.2.0");
  EXPECT_EQ(row.fields["page"], "/home");
  EXPECT_FALSE(row.fields.contains("email"));
  EXPECT_EQ(row.next_phase, 1);
  EXPECT_EQ(row.due, calendar::parse_instant("2033-06-01").value());
  // The anonymise entry is in the audit log, with an HMAC of the subject.
  const auto entry = **m_store->last_audit();
  EXPECT_EQ(entry.action, "anonymise");
  EXPECT_EQ(entry.key, "u1");
  EXPECT_EQ(entry.subject_ref, m_vault->subject_ref("alice"));
  EXPECT_NE(entry.subject_ref, std::optional<std::string>("alice"));
}

TEST_F(ServiceTest, AllDuePhasesRunInTheSameSweep) {
  ASSERT_TRUE(put({{"key", "old"}, {"subject", "bob"}, {"category", "usage"},
                              {"dates", {{"last_use", "2020-01-01"}}}}));
  const auto counts = sweep();
  ASSERT_TRUE(counts);
  EXPECT_EQ(counts->anonymised, 1);
  EXPECT_EQ(counts->purged, 1);
  EXPECT_FALSE(stored("old").has_value());
  const auto explained = m_service->explain("old");
  ASSERT_TRUE(explained);
  const auto& disposal = std::get<Disposal>(*explained);
  EXPECT_EQ(disposal.audit_seq, 2);
  EXPECT_EQ(disposal.purged_at, m_clock.now());
}

TEST_F(ServiceTest, AnEventDoesNotTouchAnAnonymisedRecord) {
  ASSERT_TRUE(put({{"key", "u1"}, {"subject", "a"}, {"category", "usage"}, {"dates", {{"last_use", "2028-06-01"}}}}));
  ASSERT_EQ(sweep()->anonymised, 1);
  const auto updated = event({{"key", "u1"}, {"name", "last_use"}, {"at", "2029-12-01"}});
  ASSERT_TRUE(updated);
  EXPECT_EQ(*updated, 0);
  EXPECT_EQ((*stored("u1")).dates.at("last_use"), calendar::parse_instant("2028-06-01").value());
}

TEST_F(ServiceTest, PutOnAnAnonymisedKeyIsAConflict) {
  ASSERT_TRUE(put({{"key", "u1"}, {"subject", "a"}, {"category", "usage"}, {"dates", {{"last_use", "2028-06-01"}}}}));
  ASSERT_TRUE(sweep());
  const auto again = put({{"key", "u1"}, {"subject", "a"}, {"category", "usage"}});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::conflict);
}

TEST_F(ServiceTest, NothingRunsBeforeItsDueTime) {
  ASSERT_TRUE(put({{"key", "u1"}, {"subject", "a"}, {"category", "usage"}, {"dates", {{"last_use", "2029-06-01"}}}}));
  EXPECT_EQ(sweep()->actions(), 0);
  m_clock.set(calendar::parse_instant("2030-06-01").value());
  EXPECT_EQ(sweep()->anonymised, 1);
}

TEST_F(ServiceTest, ArchiveMovesTheRecordAndALaterPurgeDestroysItThere) {
  ASSERT_TRUE(put({{"key", "inv"}, {"subject", "acme"}, {"category", "invoice"},
                              {"fields", {{"amount", "120.00"}}}, {"dates", {{"issued", "2029-05-10"}}}}));
  ASSERT_EQ(sweep()->archived, 1);  // the fiscal year ended 2030-01-01
  auto row = *stored("inv");
  EXPECT_EQ(row.location, store::Location::archive);
  EXPECT_EQ(row.state, store::RecordState::archived);
  EXPECT_EQ(row.subject, "acme");
  EXPECT_EQ(row.fields, json({{"amount", "120.00"}}));
  EXPECT_EQ(row.next_phase, 1);
  EXPECT_EQ(row.due, calendar::parse_instant("2040-01-01").value());
  EXPECT_EQ(m_store->counts()->active, 0);
  EXPECT_EQ(m_store->counts()->archived, 1);
  // A record that is archived can no longer be replaced.
  EXPECT_EQ(put({{"key", "inv"}, {"subject", "acme"}, {"category", "invoice"}}).error().code,
            ErrorCode::conflict);

  m_clock.set(calendar::parse_instant("2040-01-01").value());
  ASSERT_EQ(sweep()->purged, 1);
  EXPECT_FALSE(stored("inv").has_value());
  const auto rows = m_store->audit_entries({});
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].action, "archive");
  EXPECT_EQ((*rows)[1].action, "purge");
  EXPECT_EQ((*rows)[1].phase, 1);
}

TEST_F(ServiceTest, ARestartDecadesLaterArchivesAndPurgesInOneSweep) {
  ASSERT_TRUE(put({{"key", "inv"}, {"subject", "acme"}, {"category", "invoice"}, {"dates", {{"issued", "2029-05-10"}}}}));
  m_clock.set(calendar::parse_instant("2090-01-01").value());
  const auto counts = sweep();
  ASSERT_TRUE(counts);
  EXPECT_EQ(counts->archived, 1);
  EXPECT_EQ(counts->purged, 1);
  EXPECT_FALSE(stored("inv").has_value());
}

TEST_F(ServiceTest, AnArchiveMoveFailingBetweenItsHalvesLeavesTheRecordInOnePlaceAndNoEntry) {
  ASSERT_TRUE(put({{"key", "inv"}, {"subject", "acme"}, {"category", "invoice"}, {"dates", {{"issued", "2029-05-10"}}}}));
  m_faulty->fail_active_remove = true;  // the copy into the archive is written, the delete fails
  const auto failed = sweep();
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, ErrorCode::storage_error);
  const auto row = *stored("inv");
  EXPECT_EQ(row.location, store::Location::active);
  EXPECT_EQ(m_store->counts()->archived, 0);
  EXPECT_EQ(m_store->counts()->active, 1);
  EXPECT_TRUE(m_store->audit_entries({})->empty());
  // And it recovers once the fault clears.
  m_faulty->fail_active_remove = false;
  EXPECT_EQ(sweep()->archived, 1);
  EXPECT_EQ((*stored("inv")).location, store::Location::archive);
  EXPECT_TRUE(audit::verify(*m_store)->ok);
}

TEST_F(ServiceTest, HeldRecordsAreSkippedAndCountedAndRunAfterRelease) {
  for (const char* key : {"a", "b", "c"}) {
    ASSERT_TRUE(put({{"key", key}, {"subject", std::string("s-") + key}, {"category", "usage"},
                                {"dates", {{"last_use", "2020-01-01"}}}}));
  }
  const auto key_hold = place_hold({{"key", "a"}, {"reason", "litigation"}}, Actor{"uid:0"});
  ASSERT_TRUE(key_hold);
  ASSERT_TRUE(place_hold({{"subject", "s-b"}, {"reason", "dispute"}}, Actor{"uid:0"}));
  // A batch of 1 still reaches the unheld record behind two held ones.
  SweepCursor cursor;
  SweepCounts total;
  while (!cursor.done) {
    auto batch = m_service->sweep_batch(1, Actor{"scheduler"}, cursor);
    ASSERT_TRUE(batch);
    total += *batch;
  }
  EXPECT_EQ(total.held, 2);
  EXPECT_EQ(total.purged, 1);
  EXPECT_TRUE(stored("a").has_value());
  EXPECT_TRUE(stored("b").has_value());
  EXPECT_FALSE(stored("c").has_value());
  EXPECT_EQ(*m_service->backlog(), 0);

  const auto explained = m_service->explain("a");
  ASSERT_TRUE(explained);
  EXPECT_EQ(std::get<Explanation>(*explained).holds, std::vector<std::int64_t>{*key_hold});

  ASSERT_TRUE(release_hold({{"id", *key_hold}}, Actor{"uid:0"}));
  EXPECT_EQ(*m_service->backlog(), 1);
  EXPECT_EQ(sweep()->purged, 1);
  EXPECT_FALSE(stored("a").has_value());
  const auto again = release_hold({{"id", *key_hold}}, Actor{"uid:0"});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::not_found);
}

// status.backlog counts without walking the due range; the walk (what a
// dry-run sweep counts) is the reference, with holds that overlap.
TEST_F(ServiceTest, BacklogMatchesTheWalkUnderOverlappingHolds) {
  for (int i = 0; i < 12; ++i) {
    const std::string key = "u" + std::to_string(i);
    ASSERT_TRUE(put({{"key", key}, {"subject", "s" + std::to_string(i % 4)}, {"category", "usage"},
                                {"dates", {{"last_use", i < 10 ? "2020-01-01" : "2031-01-01"}}}}));
  }
  ASSERT_TRUE(put({{"key", "i1"}, {"subject", "s0"}, {"category", "invoice"}, {"dates", {{"issued", "2015-03-01"}}}}));
  const auto walk = [&] { return m_service->count_due()->due_records; };
  EXPECT_EQ(*m_service->backlog(), 11);  // 10 usage records and the invoice; two usage records not yet due
  EXPECT_EQ(*m_service->backlog(), walk());
  ASSERT_TRUE(place_hold({{"key", "u0"}, {"reason", "r"}}, Actor{"uid:0"}));
  ASSERT_TRUE(place_hold({{"subject", "s0"}, {"reason", "r"}}, Actor{"uid:0"}));  // u0, u4, u8 and i1
  ASSERT_TRUE(place_hold({{"key", "u10"}, {"reason", "r"}}, Actor{"uid:0"}));    // not due: no change
  EXPECT_EQ(*m_service->backlog(), 7);
  EXPECT_EQ(*m_service->backlog(), walk());
  ASSERT_TRUE(place_hold({{"category", "usage"}, {"reason", "r"}}, Actor{"uid:0"}));
  EXPECT_EQ(*m_service->backlog(), 0);
  EXPECT_EQ(*m_service->backlog(), walk());
}

// The value under `key`, or a value-initialised one when absent (so that a
// failing expectation prints 0 instead of throwing).
template <typename Map, typename Key>
typename Map::mapped_type value_or_zero(const Map& map, const Key& key) {
  const auto found = map.find(key);
  return found == map.end() ? typename Map::mapped_type{} : found->second;
}

// Deletion lateness: the age of the oldest unheld record past its due time,
// following holds placed and released and sweeps; action counts start at
// the head and follow the audit log.
TEST_F(ServiceTest, MetricsFollowLatenessHoldsAndActions) {
  ASSERT_TRUE(m_service->start_action_counts());
  // usage: anonymised at last_use + 1 year. u-old due 2029-03-01, u-mid
  // 2029-09-01, u-new 2031-01-01 (not due on 2030-01-01).
  ASSERT_TRUE(put({{"key", "u-old"}, {"subject", "s1"}, {"category", "usage"}, {"dates", {{"last_use", "2028-03-01"}}}}));
  ASSERT_TRUE(put({{"key", "u-mid"}, {"subject", "s2"}, {"category", "usage"}, {"dates", {{"last_use", "2028-09-01"}}}}));
  ASSERT_TRUE(put({{"key", "u-new"}, {"subject", "s3"}, {"category", "usage"}, {"dates", {{"last_use", "2030-01-01"}}}}));
  // invoice: archived at the end of the fiscal year 2029, i.e. due
  // 2030-01-01T00:00:00Z (the day after 12-31), which is now.
  ASSERT_TRUE(put({{"key", "inv"}, {"subject", "s1"}, {"category", "invoice"}, {"dates", {{"issued", "2029-05-01"}}}}));
  const auto seconds = [](const char* t) { return calendar::parse_instant(t).value().seconds; };
  const std::int64_t now = m_clock.now().seconds;

  auto m = m_service->metrics();
  ASSERT_TRUE(m) << m.error().message;
  ASSERT_TRUE(m->oldest_due);
  EXPECT_EQ(m->oldest_due->seconds, seconds("2029-03-01"));
  EXPECT_EQ(now - m->oldest_due->seconds, 306 * 86400);  // 2029-03-01 to 2030-01-01
  EXPECT_FALSE(m->lateness_bounded);
  EXPECT_EQ(m->backlog, 3);
  EXPECT_EQ(value_or_zero(m->due, "usage"), 2);
  EXPECT_EQ(value_or_zero(m->due, "invoice"), 1);
  EXPECT_EQ(value_or_zero(m->records, "usage").active, 3);
  EXPECT_EQ(value_or_zero(m->records, "invoice").active, 1);
  EXPECT_TRUE(m->actions.empty());  // puts are not audited

  // Held by key, then by subject: the next unheld record is the oldest.
  ASSERT_TRUE(place_hold({{"key", "u-old"}, {"reason", "litigation"}}, Actor{"uid:0"}));
  m = m_service->metrics();
  EXPECT_EQ(m->oldest_due->seconds, seconds("2029-09-01"));
  EXPECT_EQ(value_or_zero(m->holds, "key"), 1);
  ASSERT_TRUE(place_hold({{"subject", "s2"}, {"reason", "dispute"}}, Actor{"uid:0"}));
  m = m_service->metrics();
  EXPECT_EQ(m->oldest_due->seconds, now);  // due this instant: lateness 0
  // The invoice category held too: nothing unheld is late any more.
  ASSERT_TRUE(place_hold({{"category", "invoice"}, {"reason", "audit"}}, Actor{"uid:0"}));
  m = m_service->metrics();
  EXPECT_FALSE(m->oldest_due.has_value());
  EXPECT_EQ(m->backlog, 0);
  EXPECT_EQ(value_or_zero(m->due, "usage"), 2);  // held ones are still due
  EXPECT_EQ(value_or_zero(m->actions, std::pair<std::string, std::string>{"hold.place", "invoice"}), 1);
  EXPECT_EQ(value_or_zero(m->actions, std::pair<std::string, std::string>{"hold.place", ""}), 2);  // a key's and a subject's hold name no category
  EXPECT_EQ(m->audit_seq, 3);

  // Released, and swept: the late records are acted on and lateness is 0.
  const auto holds = m_service->holds();
  ASSERT_TRUE(holds);
  for (const auto& h : *holds) ASSERT_TRUE(release_hold({{"id", h.id}}, Actor{"uid:0"}));
  EXPECT_EQ(m_service->metrics()->oldest_due->seconds, seconds("2029-03-01"));
  ASSERT_TRUE(sweep());
  m = m_service->metrics();
  EXPECT_FALSE(m->oldest_due.has_value());
  EXPECT_EQ(value_or_zero(m->actions, std::pair<std::string, std::string>{"anonymise", "usage"}), 2);
  EXPECT_EQ(value_or_zero(m->actions, std::pair<std::string, std::string>{"archive", "invoice"}), 1);
  EXPECT_EQ(value_or_zero(m->actions, std::pair<std::string, std::string>{"hold.release", "invoice"}), 1);
  EXPECT_EQ(value_or_zero(m->actions, std::pair<std::string, std::string>{"hold.release", ""}), 2);
  EXPECT_EQ(value_or_zero(m->records, "usage").anonymised, 2);
  EXPECT_EQ(value_or_zero(m->records, "usage").active, 1);
  EXPECT_EQ(value_or_zero(m->records, "invoice").archived, 1);
  EXPECT_EQ(value_or_zero(m->records, "invoice").active, 0);
}

TEST_F(ServiceTest, HoldsAreAuditedWithoutTheRawSubject) {
  const auto id = place_hold({{"subject", "erin"}, {"reason", "court order 12"}}, Actor{"uid:7"});
  ASSERT_TRUE(id);
  ASSERT_TRUE(release_hold({{"id", *id}, {"reason", "case closed"}}, Actor{"uid:8"}));
  store::StoreReader::AuditQuery q;
  const auto rows = m_store->audit_entries(q);
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].action, "hold.place");
  EXPECT_EQ((*rows)[0].actor, "uid:7");
  EXPECT_EQ((*rows)[0].subject_ref, m_vault->subject_ref("erin"));
  EXPECT_EQ((*rows)[1].action, "hold.release");
  EXPECT_EQ((*rows)[1].reason, "hold " + std::to_string(*id) + ": case closed");
  EXPECT_TRUE(audit::verify(*m_store)->ok);
}

TEST_F(ServiceTest, HoldParametersAreChecked) {
  EXPECT_EQ(place_hold({{"reason", "x"}}, Actor{"uid:0"}).error().reason, "invalid_params");
  EXPECT_EQ(place_hold({{"key", "k"}, {"subject", "s"}, {"reason", "x"}}, Actor{"uid:0"}).error().reason,
            "invalid_params");
  EXPECT_EQ(place_hold({{"category", "nope"}, {"reason", "x"}}, Actor{"uid:0"}).error().reason,
            "unknown_category");
  EXPECT_EQ(place_hold({{"key", "absent"}, {"reason", "x"}}, Actor{"uid:0"}).error().code,
            ErrorCode::not_found);
  EXPECT_TRUE(m_service->holds()->empty());  // nothing half-done
}

}  // namespace
}  // namespace retentiond::actions

namespace retentiond::actions {
namespace {

// An archived invoice under a policy that drops the archive phase: the
// record is past the end of the new category's phases and goes back to its
// purge, a change of next_phase alone (the purge's due time is the same),
// which the reload must store.
TEST_F(ServiceTest, AReloadThatOnlyMovesTheNextPhaseStoresIt) {
  ASSERT_TRUE(put({{"key", "inv"}, {"subject", "acme"}, {"category", "invoice"}, {"dates", {{"issued", "2029-05-10"}}}}));
  ASSERT_TRUE(sweep());  // fiscal_year_end(2029-05-10) = 2030-01-01: archived now
  ASSERT_EQ(stored("inv")->state, store::RecordState::archived);
  const auto shortened = policy::load_policy_text(R"toml(
[daemon]
state_dir = "unused"
[[categories]]
name = "invoice"
purpose = "invoicing"
legal_basis = "legal_obligation"
dates = ["issued"]
phases = [ { action = "purge", at = "fiscal_year_end(issued) + 10 years" } ]
[[categories]]
name = "usage"
purpose = "statistics"
legal_basis = "legitimate_interest"
dates = ["last_use"]
phases = [ { action = "anonymise", at = "last_use + 1 year" }, { action = "purge", at = "last_use + 5 years" } ]
anonymise = { ip = "truncate_ip", page = "keep", user = "hmac" }
)toml", policy::ConfFormat::toml, "t2.toml");
  ASSERT_TRUE(shortened.ok()) << shortened.first_error();
  PolicyChange change(*m_service, *m_vault, *m_audit);
  ASSERT_TRUE(change.adopt(m_service->policy(), PolicyAssessment{}, Actor{"test"}, "first"));
  auto assessment = change.assess(*shortened.policy);
  ASSERT_TRUE(assessment) << assessment.error().message;
  EXPECT_EQ(assessment->rescheduled, 1);
  ASSERT_TRUE(change.adopt(shortened.policy, *assessment, Actor{"test"}, ""));
  const auto row = stored("inv");
  ASSERT_TRUE(row);
  EXPECT_EQ(row->next_phase, 0);
  ASSERT_TRUE(row->due);
  EXPECT_EQ(calendar::format_instant(*row->due), "2040-01-01T00:00:00Z");  // 2030-01-01 + 10 years
  // And a sweep in 2040 purges it.
  m_clock.set(calendar::Instant{2208988800});  // 2040-01-01T00:00:00Z
  const auto counts = sweep();
  ASSERT_TRUE(counts);
  EXPECT_EQ(counts->purged, 1);
}

// ---- the clock guard (clock_guard.cpp) --------------------------------------

class ClockGuardTest : public ServiceTest {
 protected:
  void SetUp() override {
    ServiceTest::SetUp();
    // The reload guard in force is the one stored with the adopted policy.
    ASSERT_TRUE(m_store->set_meta("reload_guard", "2"));
  }
  ClockCheck check(bool confirm = false) {
    auto r = m_service->check_clock(confirm, Actor{"uid:0"});
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : ClockCheck{};
  }
  std::string seen() { return m_store->get_meta("clock_seen")->value_or("(none)"); }
  // A usage record whose anonymisation falls due at 2031-06-01 + `days` days.
  void usage(const std::string& key, int days) {
    const auto last_use = calendar::add(calendar::parse_instant("2030-06-01").value(), calendar::Duration{.days = days});
    ASSERT_TRUE(put({{"key", key}, {"subject", "a"}, {"category", "usage"},
                     {"dates", {{"last_use", calendar::format_instant(last_use)}}}}));
  }
};

TEST_F(ClockGuardTest, TheFirstCheckRecordsTheClockAndASteadyClockIsWrittenAtMostOnceAMinute) {
  EXPECT_EQ(check().verdict, ClockCheck::Verdict::first);
  EXPECT_EQ(seen(), "2030-01-01T00:00:00Z");
  m_clock.advance(30);
  EXPECT_EQ(check().verdict, ClockCheck::Verdict::steady);
  EXPECT_EQ(seen(), "2030-01-01T00:00:00Z");
  m_clock.advance(90);
  EXPECT_EQ(check().verdict, ClockCheck::Verdict::steady);
  EXPECT_EQ(seen(), "2030-01-01T00:02:00Z");
}

TEST_F(ClockGuardTest, AJumpIsCountedInRecordsNewlyDueNotInTime) {
  check();
  usage("a", 0);    // due 2031-06-01
  usage("b", 1);    // due 2031-06-02
  usage("c", 400);  // due 2032-07-05
  // A year and a half ahead: two newly due, not more than the guard.
  m_clock.set(calendar::parse_instant("2031-07-01").value());
  auto c = check();
  EXPECT_EQ(c.verdict, ClockCheck::Verdict::accepted);
  EXPECT_EQ(c.newly_due, 2);
  EXPECT_EQ(c.guard, 2);
  EXPECT_EQ(seen(), "2031-07-01T00:00:00Z");
  // Twenty years ahead from there: one more (the two already due count on
  // both sides), still within the guard.
  m_clock.set(calendar::parse_instant("2051-07-01").value());
  EXPECT_EQ(check().newly_due, 1);
}

TEST_F(ClockGuardTest, AJumpMakingMoreThanTheGuardDueTripsUntilConfirmedAndTheConfirmationIsAudited) {
  check();
  usage("a", 0);
  usage("b", 1);
  usage("c", 2);
  // Puts are not audited: the log is empty so far.
  const auto audit_head = [&] {
    const auto last = *m_store->last_audit();
    return last ? last->seq : 0;
  };
  const auto head = audit_head();
  EXPECT_EQ(head, 0);
  m_clock.set(calendar::parse_instant("2050-01-01").value());
  auto c = check();
  EXPECT_EQ(c.verdict, ClockCheck::Verdict::tripped);
  EXPECT_EQ(c.newly_due, 3);
  EXPECT_EQ(c.last_seen, calendar::parse_instant("2030-01-01").value());
  EXPECT_EQ(c.now, calendar::parse_instant("2050-01-01").value());
  // Nothing recorded: it trips again, and nothing was audited.
  EXPECT_EQ(seen(), "2030-01-01T00:00:00Z");
  EXPECT_EQ(check().verdict, ClockCheck::Verdict::tripped);
  EXPECT_EQ(audit_head(), head);

  EXPECT_EQ(check(true).verdict, ClockCheck::Verdict::confirmed);
  EXPECT_EQ(seen(), "2050-01-01T00:00:00Z");
  const auto entry = **m_store->last_audit();
  EXPECT_EQ(entry.seq, head + 1);
  EXPECT_EQ(entry.action, "clock.confirm");
  EXPECT_EQ(entry.actor, "uid:0");
  EXPECT_EQ(entry.reason, "clock jumped from 2030-01-01T00:00:00Z to 2050-01-01T00:00:00Z; newly due: 3; guard: 2");
  EXPECT_EQ(check().verdict, ClockCheck::Verdict::steady);
}

// Undo windows the jump would end count as records newly due: their
// destruction is as final as a purge.
TEST_F(ClockGuardTest, UndoWindowsAJumpWouldEndCountAsNewlyDue) {
  check();
  for (const char* key : {"a", "b", "c"}) {
    usage(key, 1000);  // due years ahead
    ASSERT_TRUE(*m_store->retire(key, store::Location::active, calendar::parse_instant("2030-01-01").value(),
                                 calendar::parse_instant("2030-01-31").value()));
  }
  m_clock.set(calendar::parse_instant("2030-03-01").value());
  auto c = check();
  EXPECT_EQ(c.verdict, ClockCheck::Verdict::tripped);
  EXPECT_EQ(c.newly_due, 3);
}

TEST_F(ClockGuardTest, AJumpWithinClockGuardIsSteadyWhateverFallsDue) {
  check();
  m_clock.set(calendar::parse_instant("2031-05-31T12:00:00Z").value());
  check();
  usage("a", 0);
  usage("b", 0);
  usage("c", 0);
  // 23 hours: within the default guard of one day.
  m_clock.advance(23 * 3600);
  EXPECT_EQ(check().verdict, ClockCheck::Verdict::steady);
}

TEST_F(ClockGuardTest, AClockBehindWhatItHasShownIsNotRecorded) {
  m_clock.set(calendar::parse_instant("2040-01-01").value());
  check();
  m_clock.set(calendar::parse_instant("2030-01-01").value());
  auto c = check();
  EXPECT_EQ(c.verdict, ClockCheck::Verdict::backward);
  EXPECT_EQ(seen(), "2040-01-01T00:00:00Z");
  // Confirming a clock behind changes nothing either.
  EXPECT_EQ(check(true).verdict, ClockCheck::Verdict::backward);
  EXPECT_EQ(seen(), "2040-01-01T00:00:00Z");
}

// ---- connectors (issue 14) -----------------------------------------------

TEST(JobBackoff, DoublesFromOneSecondIsJitteredIntoTheUpperHalfAndCapped) {
  EXPECT_EQ(job_backoff_seconds(1, 0.0), 1);  // full 1 s: half is 0.5, rounded up to the 1 s floor
  EXPECT_EQ(job_backoff_seconds(1, 1.0), 1);
  EXPECT_EQ(job_backoff_seconds(3, 0.0), 2);  // full 4 s
  EXPECT_EQ(job_backoff_seconds(3, 1.0), 4);
  EXPECT_EQ(job_backoff_seconds(5, 0.5), 12);  // full 16 s: 8 + 4
  EXPECT_EQ(job_backoff_seconds(8, 1.0), 120);  // 128 s capped at 120
  EXPECT_EQ(job_backoff_seconds(40, 0.0), 60);
}

// The service fixture's categories, each now also run on two connectors: an
// exec one and a pull one that fails for good after two failed attempts.
class ConnectorServiceTest : public ServiceTest {
 protected:
  static constexpr const char* kConnectors = R"toml(
[[connectors]]
name = "lms"
kind = "exec"
command = ["/bin/true"]
[[connectors]]
name = "billing"
kind = "pull"
max_attempts = 2
)toml";

  void SetUp() override {
    ServiceTest::SetUp();
    const auto loaded = policy::load_policy_text(
        service_policy(kConnectors, "connectors = [\"billing\"]\n", "connectors = [\"lms\", \"billing\"]\n"),
        policy::ConfFormat::toml, "t.toml");
    ASSERT_TRUE(loaded.ok()) << loaded.first_error();
    m_service->set_policy(loaded.policy);
  }

  std::vector<vault::Job> claim(const std::string& connector, std::size_t max = 10, std::int64_t lease_s = 300) {
    auto claimed = m_service->claim_jobs(ClaimRequest{connector, max, lease_s}, false);
    EXPECT_TRUE(claimed) << claimed.error().message;
    return claimed ? *claimed : std::vector<vault::Job>{};
  }
  std::int64_t settle(const std::string& connector, const std::string& id, Delivery outcome) {
    auto n = m_service->settle_jobs(connector, {{id, outcome, "receiver said no"}}, Actor{"scheduler"});
    EXPECT_TRUE(n) << n.error().message;
    return n ? *n : -1;
  }
  store::StoredJob job(const std::string& id) { return **m_store->job(id); }
  void advance(std::int64_t seconds) { m_clock.set(calendar::Instant{m_clock.now().seconds + seconds}); }
};

TEST_F(ConnectorServiceTest, ASweepWritesOneJobPerConnectorWithTheActionAndItsAuditEntry) {
  ASSERT_TRUE(put({{"key", "u1"}, {"subject", "bob"}, {"category", "usage"}, {"dates", {{"last_use", "2020-01-01"}}}}));
  const auto counts = sweep();
  ASSERT_TRUE(counts) << counts.error().message;
  ASSERT_EQ(counts->anonymised, 1);
  ASSERT_EQ(counts->purged, 1);
  // Entries 1 (anonymise) and 2 (purge); one job per connector for each.
  const auto jobs = *m_store->jobs_of_key("u1");
  ASSERT_EQ(jobs.size(), 4u);
  EXPECT_EQ(jobs[0].audit_seq, 1);
  EXPECT_EQ(jobs[0].action, "anonymise");
  EXPECT_EQ(jobs[0].phase, 0);
  EXPECT_EQ(jobs[1].audit_seq, 1);
  EXPECT_EQ(jobs[2].audit_seq, 2);
  EXPECT_EQ(jobs[2].action, "purge");
  EXPECT_EQ(jobs[2].phase, 1);
  EXPECT_EQ(std::set<std::string>({jobs[0].connector, jobs[1].connector}), std::set<std::string>({"billing", "lms"}));
  for (const auto& j : jobs) {
    EXPECT_EQ(j.state, store::JobState::pending);
    EXPECT_EQ(j.key, "u1");
    EXPECT_EQ(j.category, "usage");
    EXPECT_EQ(j.decided_at, m_clock.now());
    EXPECT_EQ(j.id.size(), 32u);
  }
  EXPECT_NE(jobs[0].id, jobs[1].id);
  // The subject goes with the anonymise job (it is the record's before
  // anonymisation); the purge comes after, when the record has none.
  const auto billing = claim("billing");
  ASSERT_EQ(billing.size(), 1u);  // the purge waits for the anonymise job of its record
  EXPECT_EQ(billing[0].row.action, "anonymise");
  EXPECT_EQ(billing[0].subject, std::optional<std::string>("bob"));
  EXPECT_EQ(job_json(billing[0]), json({{"id", billing[0].row.id}, {"connector", "billing"}, {"action", "anonymise"},
                                        {"key", "u1"}, {"subject", "bob"}, {"category", "usage"}, {"phase", 0},
                                        {"decided_at", "2030-01-01T00:00:00Z"}, {"audit_seq", 1}}));
  ASSERT_EQ(settle("billing", billing[0].row.id, Delivery::done), 1);
  const auto purge = claim("billing");
  ASSERT_EQ(purge.size(), 1u);
  EXPECT_EQ(purge[0].row.action, "purge");
  EXPECT_EQ(purge[0].subject, std::nullopt);
  const auto counts_now = *m_store->connector_stats();
  ASSERT_EQ(counts_now.size(), 2u);
  EXPECT_EQ(counts_now[0].connector, "billing");
  EXPECT_EQ(counts_now[0].in_flight, 1);
  EXPECT_EQ(counts_now[0].done, 1);
  EXPECT_EQ(counts_now[1].connector, "lms");
  EXPECT_EQ(counts_now[1].pending, 2);
}

TEST_F(ConnectorServiceTest, AJobThatCannotBeWrittenRollsBackTheActionAndItsEntry) {
  ASSERT_TRUE(put({{"key", "u1"}, {"subject", "bob"}, {"category", "usage"}, {"dates", {{"last_use", "2020-01-01"}}}}));
  m_faulty->fail_insert_job = true;
  EXPECT_FALSE(sweep());
  m_faulty->fail_insert_job = false;
  const auto row = stored("u1");
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->state, store::RecordState::active);
  EXPECT_EQ(row->subject, "bob");
  EXPECT_FALSE(m_store->last_audit()->has_value());
  EXPECT_TRUE(m_store->jobs_of_key("u1")->empty());
  EXPECT_EQ(m_vault->unzeroed_slots(), 0u);
}

TEST_F(ConnectorServiceTest, FailedAttemptsBackOffThenFailForGoodAuditedAndRetryStartsAfresh) {
  ASSERT_TRUE(put({{"key", "inv"}, {"subject", "acme"}, {"category", "invoice"}, {"dates", {{"issued", "2029-05-10"}}}}));
  ASSERT_EQ(sweep()->archived, 1);
  auto first = claim("billing", 10, 60);
  ASSERT_EQ(first.size(), 1u);
  const std::string id = first[0].row.id;
  EXPECT_EQ(first[0].row.action, "archive");
  EXPECT_EQ(job(id).state, store::JobState::in_flight);
  EXPECT_EQ(job(id).attempts, 1);
  EXPECT_EQ(job(id).next_at.seconds, m_clock.now().seconds + 60);  // the lease
  EXPECT_TRUE(claim("billing").empty());  // leased
  // Try later: not a failed attempt; back-off 1 s after one delivery.
  ASSERT_EQ(settle("billing", id, Delivery::later), 1);
  EXPECT_EQ(job(id).state, store::JobState::pending);
  EXPECT_EQ(job(id).failures, 0);
  EXPECT_EQ(job(id).next_at.seconds, m_clock.now().seconds + 1);
  EXPECT_EQ(job(id).last_error, "receiver said no");
  EXPECT_TRUE(claim("billing").empty());
  advance(1);
  ASSERT_EQ(claim("billing").size(), 1u);
  // A failed attempt: back-off after two deliveries, 1 to 2 s.
  ASSERT_EQ(settle("billing", id, Delivery::failed_attempt), 1);
  EXPECT_EQ(job(id).failures, 1);
  EXPECT_GE(job(id).next_at.seconds, m_clock.now().seconds + 1);
  EXPECT_LE(job(id).next_at.seconds, m_clock.now().seconds + 2);
  advance(2);
  ASSERT_EQ(claim("billing").size(), 1u);
  const std::int64_t head_before = (*m_store->last_audit())->seq;
  ASSERT_EQ(settle("billing", id, Delivery::failed_attempt), 1);  // max_attempts = 2
  EXPECT_EQ(job(id).state, store::JobState::failed);
  EXPECT_EQ(job(id).attempts, 3);
  const auto entry = **m_store->last_audit();
  EXPECT_EQ(entry.seq, head_before + 1);
  EXPECT_EQ(entry.action, "connector.failed");
  EXPECT_EQ(entry.key, "inv");
  EXPECT_EQ(entry.reason, "connector=billing job=" + id + " attempts=3");
  advance(3600);
  EXPECT_TRUE(claim("billing").empty());  // failed stays failed
  EXPECT_EQ(settle("billing", id, Delivery::done), 0);  // and is not acknowledged
  EXPECT_EQ((*m_store->connector_stats())[0].failed, 1);
  // Retry: pending now, attempts and failures from zero.
  auto retried = m_service->retry_jobs(JobIdsRequest{"billing", {}, true, ""}, Actor{"uid:0"});
  ASSERT_TRUE(retried);
  EXPECT_EQ(*retried, 1);
  EXPECT_EQ(job(id).state, store::JobState::pending);
  EXPECT_EQ(job(id).attempts, 0);
  EXPECT_EQ(job(id).failures, 0);
  ASSERT_EQ(claim("billing").size(), 1u);
  ASSERT_EQ(settle("billing", id, Delivery::done), 1);
  EXPECT_EQ(job(id).state, store::JobState::done);
  EXPECT_EQ((**m_store->last_audit()).action, "connector.done");
  EXPECT_EQ((**m_store->last_audit()).reason, "connector=billing job=" + id + " attempts=1");
}

TEST_F(ConnectorServiceTest, ARecordsJobsReachAConnectorInDecisionOrderEvenWhenTheFirstBacksOff) {
  // Issued 2010: the archive (2011) and the purge (2021) are both due.
  // Claims of one job, as the delivery workers make them.
  ASSERT_TRUE(put({{"key", "inv"}, {"subject", "acme"}, {"category", "invoice"}, {"dates", {{"issued", "2010-05-10"}}}}));
  ASSERT_EQ(sweep()->purged, 1);
  auto first = claim("billing", 1);
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(first[0].row.action, "archive");
  ASSERT_EQ(settle("billing", first[0].row.id, Delivery::later), 1);
  EXPECT_TRUE(claim("billing", 1).empty());  // the purge waits behind its archive's back-off
  advance(1);
  // The purge, decided at the same instant, is first in (next_at, seq)
  // order only if it was not held back: the archive must come out.
  auto again = claim("billing", 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].row.action, "archive");
  EXPECT_TRUE(claim("billing", 1).empty());  // the purge waits while the archive is delivered
  ASSERT_EQ(settle("billing", again[0].row.id, Delivery::done), 1);
  auto purge = claim("billing", 1);  // woken by the archive's done, at once
  ASSERT_EQ(purge.size(), 1u);
  EXPECT_EQ(purge[0].row.action, "purge");
  // A claim or a release carries no new error: the connector's last one is
  // the archive's answer, not repeated by later moves.
  const auto stats = (*m_store->connector_stats())[0];
  EXPECT_EQ(stats.last_error, "receiver said no");
}

TEST_F(ConnectorServiceTest, AFailedJobHoldsBackOnlyItsOwnRecordsLaterJobs) {
  ASSERT_TRUE(put({{"key", "inv1"}, {"subject", "acme"}, {"category", "invoice"}, {"dates", {{"issued", "2010-05-10"}}}}));
  ASSERT_TRUE(sweep());
  // inv1's archive fails for good (max_attempts 2).
  for (int i = 0; i < 2; ++i) {
    auto c = claim("billing", 1);
    ASSERT_EQ(c.size(), 1u);
    ASSERT_EQ(c[0].row.key, "inv1");
    ASSERT_EQ(settle("billing", c[0].row.id, Delivery::failed_attempt), 1);
    advance(10);
  }
  ASSERT_TRUE(put({{"key", "inv2"}, {"subject", "acme"}, {"category", "invoice"}, {"dates", {{"issued", "2029-05-10"}}}}));
  ASSERT_EQ(sweep()->archived, 1);
  // inv1's purge waits behind the failed archive; inv2's archive goes.
  auto next = claim("billing", 1);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].row.key, "inv2");
  EXPECT_TRUE(claim("billing", 5).empty());
  EXPECT_EQ((*m_store->connector_stats())[0].failed, 1);
}

TEST_F(ConnectorServiceTest, DoneAndDiscardDestroyTheSubjectsKeyAndDiscardIsAudited) {
  ASSERT_TRUE(put({{"key", "u1"}, {"subject", "bob"}, {"category", "usage"}, {"dates", {{"last_use", "2028-06-01"}}}}));
  ASSERT_EQ(sweep()->anonymised, 1);
  const auto jobs = *m_store->jobs_of_key("u1");
  ASSERT_EQ(jobs.size(), 2u);
  std::map<std::string, store::StoredJob> by_connector;
  for (const auto& j : jobs) by_connector[j.connector] = **m_store->job(j.id);  // with the sealed subject
  for (const auto& [name, j] : by_connector) {
    ASSERT_GE(j.subject.slot, 0) << name;
    ASSERT_TRUE(m_keys->read(j.subject.slot)) << name;
  }
  const auto& lms = by_connector["lms"];
  const auto& billing = by_connector["billing"];
  ASSERT_EQ(claim("lms").size(), 1u);
  ASSERT_EQ(settle("lms", lms.id, Delivery::done), 1);
  auto discarded = m_service->discard_jobs(JobIdsRequest{"billing", {billing.id}, false, "billing system retired"},
                                           Actor{"uid:0"});
  ASSERT_TRUE(discarded);
  EXPECT_EQ(*discarded, 1);
  const auto entry = **m_store->last_audit();
  EXPECT_EQ(entry.action, "connector.discard");
  EXPECT_EQ(entry.actor, "uid:0");
  EXPECT_EQ(entry.reason, "connector=billing job=" + billing.id + " attempts=0: billing system retired");
  for (const auto* j : {&lms, &billing}) {
    const auto now = job(j->id);
    EXPECT_EQ(now.subject.slot, -1);
    EXPECT_TRUE(now.subject.bytes.empty());
    EXPECT_FALSE(m_keys->read(j->subject.slot)) << "the subject's key of " << j->connector << " is not zeroed";
  }
  EXPECT_EQ(job(lms.id).state, store::JobState::done);
  EXPECT_EQ(job(billing.id).state, store::JobState::discarded);
  EXPECT_EQ(m_vault->unzeroed_slots(), 0u);
}

TEST_F(ConnectorServiceTest, AnErasureWritesEraseJobsWithTheSubjectAndNoPhase) {
  ASSERT_TRUE(put({{"key", "u1"}, {"subject", "carol"}, {"category", "usage"}, {"dates", {{"last_use", "2029-06-01"}}}}));
  ASSERT_TRUE(put({{"key", "u2"}, {"subject", "dave"}, {"category", "usage"}, {"dates", {{"last_use", "2029-06-01"}}}}));
  EraseRequest by_subject;
  by_subject.subject = "carol";
  by_subject.reason = "art. 17";
  ASSERT_TRUE(m_service->erase(by_subject, Actor{"uid:0"}));
  EraseRequest by_key;
  by_key.key = "u2";
  by_key.reason = "art. 17";
  ASSERT_TRUE(m_service->erase(by_key, Actor{"uid:0"}));
  const auto billing = claim("billing");
  ASSERT_EQ(billing.size(), 2u);
  for (const auto& j : billing) {
    EXPECT_EQ(j.row.action, "erase");
    EXPECT_EQ(j.row.phase, std::nullopt);
    EXPECT_EQ(j.subject, j.row.key == "u1" ? "carol" : "dave");
    EXPECT_EQ(job_json(j)["phase"], json(nullptr));
  }
}

TEST_F(ConnectorServiceTest, AtStartPushJobsLeftInFlightArePendingAgainAndPullLeasesStay) {
  ASSERT_TRUE(put({{"key", "u1"}, {"subject", "bob"}, {"category", "usage"}, {"dates", {{"last_use", "2028-06-01"}}}}));
  ASSERT_EQ(sweep()->anonymised, 1);
  const auto lms = claim("lms");
  const auto billing = claim("billing");
  ASSERT_EQ(lms.size(), 1u);
  ASSERT_EQ(billing.size(), 1u);
  auto released = m_service->release_push_jobs();
  ASSERT_TRUE(released);
  EXPECT_EQ(*released, 1);
  EXPECT_EQ(job(lms[0].row.id).state, store::JobState::pending);
  EXPECT_EQ(job(lms[0].row.id).next_at, m_clock.now());
  EXPECT_EQ(job(lms[0].row.id).attempts, 1);
  EXPECT_EQ(job(billing[0].row.id).state, store::JobState::in_flight);
  const auto again = claim("lms");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].row.id, lms[0].row.id);  // the same id: the receiver's idempotency key
}

TEST_F(ConnectorServiceTest, ClaimingAnExecConnectorOverTheSocketAndUnknownNamesAreRefused) {
  auto wrong = m_service->claim_jobs(ClaimRequest{"lms", 10, 300}, true);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().reason, "wrong_kind");
  auto unknown = m_service->claim_jobs(ClaimRequest{"crm", 10, 300}, true);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().reason, "unknown_connector");
  EXPECT_EQ(unknown.error().message, "unknown connector 'crm' (defined: lms, billing)");
}

TEST_F(ConnectorServiceTest, AReloadCannotDropAConnectorWithUnfinishedJobs) {
  ASSERT_TRUE(put({{"key", "u1"}, {"subject", "bob"}, {"category", "usage"}, {"dates", {{"last_use", "2028-06-01"}}}}));
  ASSERT_EQ(sweep()->anonymised, 1);
  // billing is gone from the policy: its job is unfinished.
  const auto candidate = policy::load_policy_text(
      service_policy("[[connectors]]\nname = \"lms\"\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n", "",
                     "connectors = [\"lms\"]\n"),
      policy::ConfFormat::toml, "t2.toml");
  ASSERT_TRUE(candidate.ok()) << candidate.first_error();
  auto assessed = assess_policy(*m_vault, *candidate.policy, m_clock.now());
  ASSERT_FALSE(assessed);
  EXPECT_EQ(assessed.error().reason, "bad_config");
  EXPECT_EQ(assessed.error().message,
            "t2.toml: connector 'billing' was removed but still has 1 unfinished job; keep it until they are done, or "
            "discard them first (connector.discard)");
}

}  // namespace
}  // namespace retentiond::actions
