// The Store contract, run against every backend (Kea's GenericLeaseMgrTest).

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>

#include "lib/store/sqlite_store.hpp"
#include "tests/support/daemon_process.hpp"

namespace retentiond::store {
namespace {

using calendar::Instant;

struct Backend {
  std::string name;
  std::function<std::unique_ptr<Store>(const std::filesystem::path& dir)> open;
};

void PrintTo(const Backend& b, std::ostream* os) { *os << b.name; }

std::unique_ptr<Store> open_sqlite(const std::filesystem::path& dir) {
  SqliteOptions options;
  options.secret = std::string(32, 's');
  auto s = open_sqlite_store(dir / "retention.db", options);
  if (!s) throw std::runtime_error(s.error().message);
  return std::move(s).value();
}

class StoreContract : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override { m_store = GetParam().open(m_dir.path()); }

  static RecordRow row(const std::string& key, std::optional<std::int64_t> due) {
    RecordRow r;
    r.key = key;
    r.subject = "subject-of-" + key;
    r.category = "c";
    r.fields = {{"email", key + "@example.com"}};
    r.dates = {{"collected", Instant{1000}}};
    if (due) r.due = Instant{*due};
    r.created_at = Instant{1000};
    return r;
  }

  Store& store() { return *m_store; }

  testing::TempDir m_dir;
  std::unique_ptr<Store> m_store;
};

TEST_P(StoreContract, PutThenGetReturnsTheSameRecord) {
  ASSERT_TRUE(store().put(row("a", 5000)));
  auto got = store().get("a");
  ASSERT_TRUE(got);
  ASSERT_TRUE(got->has_value());
  const RecordRow& r = **got;
  EXPECT_EQ(r.key, "a");
  EXPECT_EQ(r.subject, "subject-of-a");
  EXPECT_EQ(r.fields, nlohmann::json({{"email", "a@example.com"}}));
  EXPECT_EQ(r.dates.at("collected"), Instant{1000});
  EXPECT_EQ(r.due, Instant{5000});
  EXPECT_EQ(r.state, RecordState::active);
  EXPECT_FALSE(store().get("missing")->has_value());
}

TEST_P(StoreContract, PutReplacesFieldsAndSubject) {
  ASSERT_TRUE(store().put(row("a", 5000)));
  RecordRow r = row("a", 7000);
  r.subject = "someone else";
  r.fields = {{"x", 1}};
  ASSERT_TRUE(store().put(r));
  const RecordRow got = **store().get("a");
  EXPECT_EQ(got.subject, "someone else");
  EXPECT_EQ(got.fields, nlohmann::json({{"x", 1}}));
  EXPECT_EQ(got.due, Instant{7000});
}

TEST_P(StoreContract, DueIsOrderedByDueThenKeyAndPagesWithACursor) {
  for (const auto& [key, due] : std::vector<std::pair<std::string, std::optional<std::int64_t>>>{
           {"late", 9000}, {"b", 3000}, {"a", 3000}, {"early", 1000}, {"waiting", std::nullopt}}) {
    ASSERT_TRUE(store().put(row(key, due)));
  }
  auto first = store().due(Instant{5000}, 2);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->size(), 2u);
  EXPECT_EQ((*first)[0].key, "early");
  EXPECT_EQ((*first)[1].key, "a");
  auto rest = store().due(Instant{5000}, 10, Store::DueCursor{Instant{3000}, "a"});
  ASSERT_TRUE(rest);
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].key, "b");
  EXPECT_EQ(*store().count_due(Instant{5000}), 3);
  EXPECT_EQ(*store().next_due(), Instant{1000});
  EXPECT_EQ(store().counts()->active, 5);
}

TEST_P(StoreContract, UpdateScheduleChangesOnlyTheSchedule) {
  ASSERT_TRUE(store().put(row("a", 5000)));
  RecordRow r = row("a", 8000);
  r.next_phase = 1;
  r.done = {Instant{4000}};
  r.fields = {{"ignored", true}};
  ASSERT_TRUE(store().update_schedule(r));
  const RecordRow got = **store().get("a");
  EXPECT_EQ(got.next_phase, 1);
  EXPECT_EQ(got.due, Instant{8000});
  ASSERT_EQ(got.done.size(), 1u);
  EXPECT_EQ(got.done[0], Instant{4000});
  EXPECT_EQ(got.fields, nlohmann::json({{"email", "a@example.com"}}));
}

TEST_P(StoreContract, RemoveDeletesTheRecord) {
  ASSERT_TRUE(store().put(row("a", 5000)));
  ASSERT_TRUE(store().remove("a", Location::active));
  EXPECT_FALSE(store().get("a")->has_value());
  EXPECT_FALSE(store().next_due()->has_value());
}

TEST_P(StoreContract, AFailedTransactionChangesNothing) {
  ASSERT_TRUE(store().put(row("a", 5000)));
  const Status st = store().transaction([&]() -> Status {
    if (auto s = store().remove("a", Location::active); !s) return s;
    if (auto s = store().put(row("b", 1)); !s) return s;
    return Error::conflict("simulated failure after two changes");
  });
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::conflict);
  EXPECT_TRUE(store().get("a")->has_value());
  EXPECT_FALSE(store().get("b")->has_value());
}

TEST_P(StoreContract, AuditRowsComeBackAndDisposalsAreFoundByKey) {
  EXPECT_FALSE(store().last_audit()->has_value());
  AuditRow a;
  a.seq = 1;
  a.at = Instant{100};
  a.action = "purge";
  a.key = "k";
  a.category = "c";
  a.phase = 0;
  a.subject_ref = "ref";
  a.actor = "scheduler";
  a.policy_hash = "ph";
  a.hash = "h1";
  ASSERT_TRUE(store().append_audit(a));
  AuditRow b = a;
  b.seq = 2;
  b.action = "hold.place";
  b.hash = "h2";
  ASSERT_TRUE(store().append_audit(b));
  EXPECT_EQ((*store().last_audit())->hash, "h2");
  const auto disposal = store().find_disposal("k");
  ASSERT_TRUE(disposal->has_value());
  EXPECT_EQ((*disposal)->seq, 1);
  EXPECT_EQ((*disposal)->at, Instant{100});
  EXPECT_FALSE(store().find_disposal("other")->has_value());
  AuditRow dup = a;  // seq is unique: a second entry 1 is a storage error
  EXPECT_EQ(store().append_audit(dup).error().code, ErrorCode::storage_error);
}

TEST_P(StoreContract, MetaValuesPersistAndOverwrite) {
  EXPECT_FALSE(store().get_meta("policy_hash")->has_value());
  ASSERT_TRUE(store().set_meta("policy_hash", "one"));
  ASSERT_TRUE(store().set_meta("policy_hash", "two"));
  EXPECT_EQ(**store().get_meta("policy_hash"), "two");
}

TEST_P(StoreContract, ArchivedRecordsAreFoundAndMergedInDueOrder) {
  ASSERT_TRUE(store().put(row("active-late", 9000)));
  RecordRow archived = row("archived-early", 2000);
  archived.location = Location::archive;
  archived.state = RecordState::archived;
  ASSERT_TRUE(store().put(archived));
  const RecordRow got = **store().get("archived-early");
  EXPECT_EQ(got.location, Location::archive);
  EXPECT_EQ(got.state, RecordState::archived);
  EXPECT_EQ(got.fields, nlohmann::json({{"email", "archived-early@example.com"}}));
  const auto due = store().due(Instant{10000}, 10);
  ASSERT_TRUE(due);
  ASSERT_EQ(due->size(), 2u);
  EXPECT_EQ((*due)[0].key, "archived-early");
  EXPECT_EQ((*due)[1].key, "active-late");
  EXPECT_EQ(*store().next_due(), Instant{2000});
  EXPECT_EQ(store().counts()->archived, 1);
  EXPECT_EQ(store().counts()->active, 1);
  EXPECT_EQ(store().by_subject("subject-of-archived-early")->size(), 1u);
  // Removing from the wrong place changes nothing.
  ASSERT_TRUE(store().remove("archived-early", Location::active));
  EXPECT_TRUE(store().get("archived-early")->has_value());
  ASSERT_TRUE(store().remove("archived-early", Location::archive));
  EXPECT_FALSE(store().get("archived-early")->has_value());
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreContract, ::testing::Values(Backend{"sqlite", open_sqlite}),
                         [](const ::testing::TestParamInfo<Backend>& p) { return p.param.name; });

TEST(SqliteStore, DatabaseFileIsPrivateAndMigratedToTheLatestVersion) {
  testing::TempDir dir;
  auto store = open_sqlite(dir.path());
  struct stat st{};
  ASSERT_EQ(::stat((dir.path() / "retention.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir.path() / "archive.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_GE(latest_schema_version(), 1);
  store.reset();
  // Reopening an up-to-date database applies nothing and keeps the data.
  auto again = open_sqlite(dir.path());
  EXPECT_TRUE(again->counts());
}

// A kill during a commit over both databases can leave a super-journal
// that no child journal points to; start-up removes those and only those.
TEST(SqliteStore, StaleSuperJournalsAreRemovedAtStartUpAndLiveOnesKept) {
  testing::TempDir dir;
  open_sqlite(dir.path()).reset();
  const auto write = [](const std::filesystem::path& p, const std::string& content) {
    std::ofstream(p, std::ios::binary) << content;
  };
  const std::string ours = (dir.path() / "retention.db-journal").string() + std::string(1, '\0') +
                           (dir.path() / "archive.db-journal").string() + std::string(1, '\0');
  const auto stale = dir.path() / "retention.db-mj0A1B2C9D3";
  const auto empty = dir.path() / "retention.db-mj4E5F609A1";
  write(stale, ours);
  write(empty, "");
  // A child journal that still has content: its transaction may need the
  // super-journal to be rolled back, so it stays.
  const auto foreign_journal = dir.path() / "other.db-journal";
  write(foreign_journal, "not empty");
  const auto live = dir.path() / "retention.db-mj7C8D9E9F0";
  write(live, ours + foreign_journal.string() + std::string(1, '\0'));
  // What a kill just after SQLite wrote the super-journal leaves: our own
  // journal with pages in it but no valid header yet (not hot, so nothing
  // rolls it back or ever reads the super-journal again).
  write(dir.path() / "retention.db-journal", std::string(28, '\0') + "pages written before the kill");
  // Not a super-journal name: never touched.
  const auto unrelated = dir.path() / "retention.db-mjnotes";
  write(unrelated, "");

  auto store = open_sqlite(dir.path());
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_FALSE(std::filesystem::exists(empty));
  EXPECT_TRUE(std::filesystem::exists(live));
  EXPECT_TRUE(std::filesystem::exists(unrelated));
  EXPECT_TRUE(store->counts());
}

}  // namespace
}  // namespace retentiond::store
