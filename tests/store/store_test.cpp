// The Store contract, run against every backend (Kea's GenericLeaseMgrTest):
// every Store and StoreReader method, transactions, snapshots, the audit
// queries, cursor paging, counts and the due-time counts, holds, meta and
// the key slot bookkeeping. A backend persists opaque sealed bytes: these
// tests give it arbitrary bytes and slot numbers and get them back.
//
// A new backend adds one Backend{} to the INSTANTIATE below; nothing else.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <atomic>
#include <set>
#include <thread>

#include <SQLiteCpp/SQLiteCpp.h>

#include "lib/store/postgresql/pg_store.hpp"
#include "lib/store/sqlite/sqlite_store.hpp"
#include "tests/support/daemon_process.hpp"
#include "tests/support/pg_cluster.hpp"

namespace retentiond::store {
namespace {

using calendar::Instant;

struct Backend {
  std::string name;
  // Opens the writer on a fresh state in `dir` (or the existing one).
  std::function<std::unique_ptr<Store>(const std::filesystem::path& dir)> open;
  // A reader on the state the writer opened.
  std::function<std::unique_ptr<StoreReader>(const std::filesystem::path& dir)> open_reader;
};

void PrintTo(const Backend& b, std::ostream* os) { *os << b.name; }

Backend sqlite_backend() {
  return Backend{"sqlite",
                 [](const std::filesystem::path& dir) {
                   auto s = open_sqlite_store(dir / "retention.db");
                   if (!s) throw std::runtime_error(s.error().message);
                   return std::move(s).value();
                 },
                 [](const std::filesystem::path& dir) {
                   auto r = open_sqlite_reader(dir / "retention.db");
                   if (!r) throw std::runtime_error(r.error().message);
                   return std::move(r).value();
                 }};
}

// A database of this process's own PostgreSQL cluster per state directory
// (each test's): created when the writer first opens it.
std::string pg_database_of(const std::filesystem::path& dir) {
  char name[32];
  std::snprintf(name, sizeof name, "t_%016zx", std::hash<std::string>{}(dir.string()));
  return name;
}

Backend postgresql_backend() {
  return Backend{"postgresql",
                 [](const std::filesystem::path& dir) {
                   auto& cluster = test::PgCluster::shared();
                   const std::string db = pg_database_of(dir);
                   const auto marker = dir / "pg-database";
                   const std::string url = std::filesystem::exists(marker) ? cluster.url(db) : cluster.create_database(db);
                   std::ofstream(marker) << db;
                   auto s = open_postgresql_store(url);
                   if (!s) throw std::runtime_error(s.error().message);
                   return std::move(s).value();
                 },
                 [](const std::filesystem::path& dir) {
                   auto r = open_postgresql_reader(test::PgCluster::shared().url(pg_database_of(dir)));
                   if (!r) throw std::runtime_error(r.error().message);
                   return std::move(r).value();
                 }};
}

class StoreContract : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    m_store = GetParam().open(m_dir.path());
    m_reader = GetParam().open_reader(m_dir.path());
  }

  // A record due at `due` (none: waiting), its values "sealed" as bytes
  // that name it, in slot `slot`.
  static StoredRecord row(const std::string& key, std::optional<std::int64_t> due, std::int64_t slot = 1,
                          const std::string& category = "c") {
    StoredRecord r;
    r.key = key;
    r.category = category;
    r.dates = {{"collected", Instant{1000}}, {"left", Instant{2000}}};
    if (due) r.due = Instant{*due};
    r.done = {Instant{900}};
    r.created_at = Instant{1000};
    r.subject_ref = "ref-of-" + key;
    r.sealed = Sealed{slot, std::string("sealed\0bytes of ", 16) + key};
    return r;
  }

  Store& store() { return *m_store; }
  StoreReader& reader() { return *m_reader; }

  testing::TempDir m_dir;
  std::unique_ptr<Store> m_store;
  std::unique_ptr<StoreReader> m_reader;
};

TEST_P(StoreContract, InsertThenGetReturnsTheSameRecordBytesIncluded) {
  ASSERT_TRUE(store().insert(row("a", 5000, 7)));
  for (StoreReader* r : {static_cast<StoreReader*>(&store()), &reader()}) {
    auto got = r->get("a");
    ASSERT_TRUE(got) << got.error().message;
    ASSERT_TRUE(got->has_value());
    const StoredRecord& g = **got;
    EXPECT_EQ(g.key, "a");
    EXPECT_EQ(g.category, "c");
    EXPECT_EQ(g.state, RecordState::active);
    EXPECT_EQ(g.location, Location::active);
    EXPECT_EQ(g.dates.at("collected"), Instant{1000});
    EXPECT_EQ(g.dates.at("left"), Instant{2000});
    EXPECT_EQ(g.due, Instant{5000});
    ASSERT_EQ(g.done.size(), 1u);
    EXPECT_EQ(g.done[0], Instant{900});
    EXPECT_EQ(g.created_at, Instant{1000});
    EXPECT_EQ(g.subject_ref, "ref-of-a");
    EXPECT_EQ(g.sealed.slot, 7);
    EXPECT_EQ(g.sealed.bytes, std::string("sealed\0bytes of a", 17));
    EXPECT_FALSE(r->get("missing")->has_value());
  }
}

TEST_P(StoreContract, ScheduleOfLeavesTheSealedValuesOut) {
  ASSERT_TRUE(store().insert(row("a", 5000, 7)));
  const auto s = reader().schedule_of("a");
  ASSERT_TRUE(s && s->has_value());
  EXPECT_EQ((*s)->due, Instant{5000});
  EXPECT_EQ((*s)->subject_ref, "ref-of-a");
  EXPECT_EQ((*s)->sealed.slot, -1);
  EXPECT_TRUE((*s)->sealed.bytes.empty());
  EXPECT_FALSE(reader().schedule_of("missing")->has_value());
}

TEST_P(StoreContract, AKeyLivesInOnePlaceOnly) {
  ASSERT_TRUE(store().insert(row("a", 5000)));
  StoredRecord archived = row("a", 6000);
  archived.location = Location::archive;
  archived.state = RecordState::archived;
  const Status st = store().insert(archived);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::storage_error);
  EXPECT_FALSE(store().insert(row("a", 7000)));  // nor twice in one place
  EXPECT_EQ((*reader().get("a"))->due, Instant{5000});
  EXPECT_EQ(reader().counts()->active, 1);
}

TEST_P(StoreContract, InsertNewReportsAKnownKeyAndWritesNothing) {
  ASSERT_TRUE(store().insert(row("a", 5000, 1)));
  StoredRecord archived = row("b", 6000, 2);
  archived.location = Location::archive;
  archived.state = RecordState::archived;
  ASSERT_TRUE(store().insert(archived));
  EXPECT_EQ(*store().insert_new(row("a", 9000, 3)), false);  // same place
  EXPECT_EQ(*store().insert_new(row("b", 9000, 4)), false);  // the other place
  EXPECT_EQ(*store().insert_new(row("c", 9000, 5)), true);
  EXPECT_EQ((*reader().get("a"))->sealed.slot, 1);
  EXPECT_EQ((*reader().get("b"))->location, Location::archive);
  EXPECT_EQ(reader().counts()->active, 2);
  EXPECT_EQ(reader().counts()->archived, 1);
  EXPECT_EQ(reader().due_by_category(Instant{9000})->at("c"), 3);
}

TEST_P(StoreContract, DueIsOrderedByDueThenKeyAndPagesWithACursor) {
  for (const auto& [key, due] : std::vector<std::pair<std::string, std::optional<std::int64_t>>>{
           {"late", 9000}, {"b", 3000}, {"a", 3000}, {"early", 1000}, {"waiting", std::nullopt}}) {
    ASSERT_TRUE(store().insert(row(key, due)));
  }
  auto first = reader().due(Instant{5000}, 2);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->size(), 2u);
  EXPECT_EQ((*first)[0].key, "early");
  EXPECT_EQ((*first)[1].key, "a");
  EXPECT_EQ((*first)[0].sealed.slot, -1);  // without values
  auto rest = reader().due(Instant{5000}, 10, StoreReader::DueCursor{Instant{3000}, "a"});
  ASSERT_TRUE(rest);
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].key, "b");
  EXPECT_EQ(*reader().next_due(), Instant{1000});
  EXPECT_EQ(*reader().next_due(Instant{1000}), Instant{3000});
  EXPECT_FALSE(reader().next_due(Instant{9000})->has_value());
  EXPECT_EQ(reader().counts()->active, 5);
  const auto undue = reader().undue(10, "");
  ASSERT_TRUE(undue);
  ASSERT_EQ(undue->size(), 1u);
  EXPECT_EQ((*undue)[0].key, "waiting");
}

TEST_P(StoreContract, UpdateScheduleChangesOnlyTheSchedule) {
  ASSERT_TRUE(store().insert(row("a", 5000, 3)));
  Schedule s = row("a", 8000);
  s.next_phase = 1;
  s.done = {Instant{4000}, Instant{4500}};
  s.dates["left"] = Instant{2500};
  s.subject_ref = "ignored";
  ASSERT_TRUE(store().update_schedule(s));
  const StoredRecord got = **reader().get("a");
  EXPECT_EQ(got.next_phase, 1);
  EXPECT_EQ(got.due, Instant{8000});
  ASSERT_EQ(got.done.size(), 2u);
  EXPECT_EQ(got.done[1], Instant{4500});
  EXPECT_EQ(got.dates.at("left"), Instant{2500});
  EXPECT_EQ(got.subject_ref, "ref-of-a");
  EXPECT_EQ(got.sealed.slot, 3);
  Schedule missing = row("nope", 1);
  EXPECT_EQ(store().update_schedule(missing).error().code, ErrorCode::not_found);
}

TEST_P(StoreContract, ARetiredRecordLeavesEveryQueryKeepsItsBytesAndComesBackAsItWas) {
  ASSERT_TRUE(store().insert(row("a", 5000, 42)));
  StoredRecord archived = row("b", 6000, 43, "d");
  archived.location = Location::archive;
  archived.state = RecordState::archived;
  ASSERT_TRUE(store().insert(archived));
  ASSERT_TRUE(store().insert(row("c", 7000, 44)));

  EXPECT_EQ(*store().retire("a", Location::active, Instant{5500}, Instant{9000}), true);
  EXPECT_EQ(*store().retire("b", Location::archive, Instant{5600}, Instant{8000}), true);
  EXPECT_EQ(*store().retire("missing", Location::active, Instant{5600}, Instant{8000}), false);
  EXPECT_EQ(*store().retire("c", Location::archive, Instant{5600}, Instant{8000}), false);  // not there

  // Out of every query of records, and of the counts.
  EXPECT_FALSE(reader().get("a")->has_value());
  EXPECT_FALSE(reader().schedule_of("b")->has_value());
  EXPECT_TRUE(reader().by_subject_ref("ref-of-a")->empty());
  EXPECT_EQ(reader().due(Instant{10000}, 10)->size(), 1u);
  EXPECT_EQ(reader().counts()->active, 1);
  EXPECT_EQ(reader().counts()->archived, 0);
  EXPECT_EQ(reader().count_category("d").value(), 0);
  EXPECT_EQ(reader().due_by_category(Instant{10000})->size(), 1u);

  // Kept whole, and due for destruction in (destroy_at, key) order.
  const auto a = reader().retired("a");
  ASSERT_TRUE(a && a->has_value());
  EXPECT_EQ((*a)->record.sealed.slot, 42);
  EXPECT_EQ((*a)->record.sealed.bytes, std::string("sealed\0bytes of a", 17));
  EXPECT_EQ((*a)->record.due, Instant{5000});
  EXPECT_EQ((*a)->record.location, Location::active);
  EXPECT_EQ((*a)->purged_at, Instant{5500});
  EXPECT_EQ((*a)->destroy_at, Instant{9000});
  EXPECT_FALSE(reader().retired("c")->has_value());
  EXPECT_TRUE(reader().retired_due(Instant{7999}, 10)->empty());
  auto due = reader().retired_due(Instant{9000}, 10);
  ASSERT_TRUE(due);
  ASSERT_EQ(due->size(), 2u);
  EXPECT_EQ((*due)[0].record.key, "b");
  EXPECT_EQ((*due)[0].record.location, Location::archive);
  EXPECT_EQ((*due)[1].record.key, "a");
  EXPECT_EQ(reader().retired_due(Instant{9000}, 1)->size(), 1u);
  EXPECT_EQ(*reader().count_retired(Instant{0}, Instant{9000}), 2);
  EXPECT_EQ(*reader().count_retired(Instant{8000}, Instant{9000}), 1);  // after 8000: only a
  EXPECT_EQ(*reader().count_retired(Instant{0}, Instant{8999}), 1);

  // A retired key cannot be retired again; back where it was, as it was.
  ASSERT_TRUE(store().insert(row("a", 100, 50)));
  EXPECT_FALSE(store().retire("a", Location::active, Instant{5700}, Instant{9900}));
  EXPECT_FALSE(store().unretire("a"));  // a record of that key exists again
  ASSERT_TRUE(store().remove("a", Location::active));
  EXPECT_EQ(*store().unretire("a"), true);
  EXPECT_EQ(*store().unretire("a"), false);
  const auto back = reader().get("a");
  ASSERT_TRUE(back && back->has_value());
  EXPECT_EQ((*back)->sealed.slot, 42);
  EXPECT_EQ((*back)->due, Instant{5000});
  EXPECT_EQ(reader().counts()->active, 2);
  EXPECT_EQ(reader().due_by_category(Instant{5000})->at("c"), 1);

  // Dropped: its slot, for the vault to destroy.
  EXPECT_EQ(*store().drop_retired("b"), std::optional<std::int64_t>(43));
  EXPECT_EQ(*store().drop_retired("b"), std::nullopt);
  EXPECT_FALSE(reader().retired("b")->has_value());
  EXPECT_FALSE(reader().get("b")->has_value());
}

TEST_P(StoreContract, RemoveDeletesTheRecordAndReturnsItsSlot) {
  ASSERT_TRUE(store().insert(row("a", 5000, 42)));
  const auto slot = store().remove("a", Location::active);
  ASSERT_TRUE(slot);
  EXPECT_EQ(*slot, std::optional<std::int64_t>(42));
  EXPECT_FALSE(reader().get("a")->has_value());
  EXPECT_FALSE(reader().next_due()->has_value());
  EXPECT_EQ(*store().remove("a", Location::active), std::nullopt);
}

TEST_P(StoreContract, AFailedTransactionChangesNothing) {
  ASSERT_TRUE(store().insert(row("a", 5000)));
  const Status st = store().transaction([&]() -> Status {
    if (auto s = store().remove("a", Location::active); !s) return std::move(s).error();
    if (auto s = store().insert(row("b", 1)); !s) return s;
    if (auto s = store().set_meta("m", "v"); !s) return s;
    // Inside the transaction, the writer sees its own changes.
    EXPECT_FALSE(store().get("a")->has_value());
    EXPECT_TRUE(store().get("b")->has_value());
    return Error::conflict("simulated failure after three changes");
  });
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::conflict);
  EXPECT_TRUE(reader().get("a")->has_value());
  EXPECT_FALSE(reader().get("b")->has_value());
  EXPECT_FALSE(reader().get_meta("m")->has_value());
  EXPECT_EQ(reader().counts()->active, 1);
  EXPECT_EQ(reader().due_by_category(Instant{6000})->at("c"), 1);
}

TEST_P(StoreContract, CountsFollowEveryChangeByStateAndPlace) {
  ASSERT_TRUE(store().insert(row("a", 5000)));
  ASSERT_TRUE(store().insert(row("b", 5000)));
  StoredRecord archived = row("c", std::nullopt);
  archived.location = Location::archive;
  archived.state = RecordState::archived;
  ASSERT_TRUE(store().insert(archived));
  StoredRecord anonymised = row("d", std::nullopt);
  anonymised.location = Location::archive;
  anonymised.state = RecordState::anonymised;
  anonymised.subject_ref.reset();
  ASSERT_TRUE(store().insert(anonymised));
  auto c = reader().counts();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->active, 2);
  EXPECT_EQ(c->archived, 1);
  EXPECT_EQ(c->anonymised, 1);
  ASSERT_TRUE(store().remove("a", Location::active));
  ASSERT_TRUE(store().remove("d", Location::archive));
  c = reader().counts();
  EXPECT_EQ(c->active, 1);
  EXPECT_EQ(c->archived, 1);
  EXPECT_EQ(c->anonymised, 0);
}

// Metrics' records by category and state: kept by every change, categories
// emptied of records left out.
TEST_P(StoreContract, CountsByCategoryFollowEveryChange) {
  ASSERT_TRUE(store().insert(row("a", 5000, 1, "x")));
  ASSERT_TRUE(store().insert(row("b", 5000, 1, "y")));
  StoredRecord archived = row("c", std::nullopt, 1, "x");
  archived.location = Location::archive;
  archived.state = RecordState::archived;
  ASSERT_TRUE(store().insert(archived));
  StoredRecord anonymised = row("d", std::nullopt, 1, "y");
  anonymised.state = RecordState::anonymised;
  anonymised.subject_ref.reset();
  ASSERT_TRUE(store().insert(anonymised));
  auto c = reader().counts_by_category();
  ASSERT_TRUE(c);
  ASSERT_EQ(c->size(), 2u);
  EXPECT_EQ(c->at("x").active, 1);
  EXPECT_EQ(c->at("x").archived, 1);
  EXPECT_EQ(c->at("x").anonymised, 0);
  EXPECT_EQ(c->at("y").active, 1);
  EXPECT_EQ(c->at("y").archived, 0);
  EXPECT_EQ(c->at("y").anonymised, 1);
  ASSERT_TRUE(store().remove("b", Location::active));
  ASSERT_TRUE(store().remove("d", Location::active));
  c = reader().counts_by_category();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->count("y"), 0u);
  EXPECT_EQ(c->at("x").active, 1);
  // A failed transaction leaves them as they were.
  ASSERT_FALSE(store().transaction([&]() -> Status {
    if (auto st = store().insert(row("e", 5000, 1, "z")); !st) return st;
    return Error::internal("rolled back");
  }));
  c = reader().counts_by_category();
  EXPECT_EQ(c->count("z"), 0u);
  EXPECT_EQ(c->size(), 1u);
}

// Metrics' deletion lateness starts from the earliest day holding due times.
TEST_P(StoreContract, DueDaysListTheDaysUpToNowThatHoldDueTimes) {
  const std::int64_t day = 86400;
  ASSERT_TRUE(store().insert(row("a", 10 * day + 5, 1, "x")));
  ASSERT_TRUE(store().insert(row("b", 10 * day + 500, 1, "y")));
  ASSERT_TRUE(store().insert(row("c", 10 * day + 900, 1, "y")));
  ASSERT_TRUE(store().insert(row("d", 12 * day, 1, "x")));
  ASSERT_TRUE(store().insert(row("w", std::nullopt, 1, "x")));
  auto days = reader().due_days(Instant{10 * day + 1});
  ASSERT_TRUE(days);
  ASSERT_EQ(days->size(), 2u);
  EXPECT_EQ((*days)[0].day.seconds, 10 * day);
  EXPECT_EQ((*days)[0].category, "x");
  EXPECT_EQ((*days)[0].n, 1);
  EXPECT_EQ((*days)[1].category, "y");
  EXPECT_EQ((*days)[1].n, 2);
  EXPECT_TRUE(reader().due_days(Instant{10 * day - 1})->empty());
  ASSERT_TRUE(store().remove("a", Location::active));
  days = reader().due_days(Instant{20 * day});
  ASSERT_EQ(days->size(), 2u);
  EXPECT_EQ((*days)[0].category, "y");
  EXPECT_EQ((*days)[1].day.seconds, 12 * day);
  EXPECT_EQ((*days)[1].category, "x");
}

// status.backlog without a scan: the due records per category, across days
// and the current day, through inserts, reschedules and removals.
TEST_P(StoreContract, DueByCategoryCountsWhatIsDueAtAnyInstant) {
  const std::int64_t day = 86400;
  ASSERT_TRUE(store().insert(row("a", 10 * day + 5, 1, "x")));
  ASSERT_TRUE(store().insert(row("b", 10 * day + 500, 1, "x")));
  ASSERT_TRUE(store().insert(row("c", 12 * day, 1, "y")));
  ASSERT_TRUE(store().insert(row("w", std::nullopt, 1, "y")));
  StoredRecord archived = row("d", 3 * day, 1, "y");
  archived.location = Location::archive;
  archived.state = RecordState::archived;
  ASSERT_TRUE(store().insert(archived));
  using Map = std::map<std::string, std::int64_t>;
  EXPECT_EQ(*reader().due_by_category(Instant{3 * day - 1}), Map{});
  EXPECT_EQ(*reader().due_by_category(Instant{10 * day + 5}), (Map{{"x", 1}, {"y", 1}}));
  EXPECT_EQ(*reader().due_by_category(Instant{10 * day + 499}), (Map{{"x", 1}, {"y", 1}}));
  EXPECT_EQ(*reader().due_by_category(Instant{11 * day}), (Map{{"x", 2}, {"y", 1}}));
  EXPECT_EQ(*reader().due_by_category(Instant{40 * day}), (Map{{"x", 2}, {"y", 2}}));
  // Moved later, then removed: the counts follow.
  Schedule moved = row("a", 30 * day, 1, "x");
  ASSERT_TRUE(store().update_schedule(moved));
  EXPECT_EQ(*reader().due_by_category(Instant{11 * day}), (Map{{"x", 1}, {"y", 1}}));
  ASSERT_TRUE(store().remove("b", Location::active));
  EXPECT_EQ(*reader().due_by_category(Instant{11 * day}), (Map{{"y", 1}}));
  EXPECT_EQ(*reader().due_by_category(Instant{40 * day}), (Map{{"x", 1}, {"y", 2}}));
  // Due times before 1970 are counted too.
  ASSERT_TRUE(store().insert(row("old", -3 * day - 7, 1, "x")));
  EXPECT_EQ(*reader().due_by_category(Instant{-3 * day}), (Map{{"x", 1}}));
}

TEST_P(StoreContract, SubjectsAreFoundByTheirRefInBothPlaces) {
  StoredRecord a = row("a", 5000);
  a.subject_ref = std::string(64, 'f');
  StoredRecord b = row("b", std::nullopt);
  b.subject_ref = std::string(64, 'f');
  b.location = Location::archive;
  b.state = RecordState::archived;
  StoredRecord other = row("other", 5000);
  other.subject_ref = std::string(16, 'f') + std::string(48, '0');  // same 16-digit prefix, another subject
  ASSERT_TRUE(store().insert(a));
  ASSERT_TRUE(store().insert(b));
  ASSERT_TRUE(store().insert(other));
  const auto found = reader().by_subject_ref(std::string(64, 'f'));
  ASSERT_TRUE(found);
  ASSERT_EQ(found->size(), 2u);
  EXPECT_EQ((*found)[0].key, "a");
  EXPECT_EQ((*found)[1].key, "b");
  EXPECT_EQ((*found)[1].location, Location::archive);
  EXPECT_FALSE((*found)[1].sealed.bytes.empty());  // with the values
}

TEST_P(StoreContract, SchedulesOfACategoryPageByKeyAcrossBothPlaces) {
  for (const char* key : {"k3", "k1", "k5"}) ASSERT_TRUE(store().insert(row(key, 5000, 1, "x")));
  StoredRecord archived = row("k2", 5000, 1, "x");
  archived.location = Location::archive;
  archived.state = RecordState::archived;
  ASSERT_TRUE(store().insert(archived));
  ASSERT_TRUE(store().insert(row("y1", 5000, 1, "y")));
  auto page = reader().schedules("x", 2, "");
  ASSERT_TRUE(page);
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].key, "k1");
  EXPECT_EQ((*page)[1].key, "k2");
  page = reader().schedules("x", 2, "k2");
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].key, "k3");
  EXPECT_EQ((*page)[1].key, "k5");
  EXPECT_EQ(*reader().count_category("x"), 4);
  EXPECT_EQ(*reader().count_category("none"), 0);
}

TEST_P(StoreContract, AuditRowsComeBackFilteredAndDisposalsAreFoundByKey) {
  EXPECT_FALSE(reader().last_audit()->has_value());
  AuditRow a;
  a.seq = 1;
  a.at = Instant{100};
  a.action = "purge";
  a.key = "k";
  a.category = "c";
  a.phase = 0;
  a.subject_ref = std::string(64, 'a');
  a.actor = "scheduler";
  a.reason = "retention";
  a.policy_hash = "ph";
  a.hash = "h1";
  ASSERT_TRUE(store().append_audit(a));
  AuditRow b = a;
  b.seq = 2;
  b.action = "hold.place";
  b.key = "other";
  b.subject_ref = std::string(64, 'b');
  b.phase.reset();
  b.reason.reset();
  b.hash = "h2";
  ASSERT_TRUE(store().append_audit(b));
  EXPECT_EQ((*store().last_audit())->hash, "h2");
  EXPECT_EQ((*reader().last_audit())->hash, "h2");
  const auto disposal = reader().find_disposal("k");
  ASSERT_TRUE(disposal->has_value());
  EXPECT_EQ((*disposal)->seq, 1);
  EXPECT_EQ((*disposal)->at, Instant{100});
  EXPECT_EQ((*disposal)->phase, 0);
  EXPECT_FALSE(reader().find_disposal("other")->has_value());  // a hold is no disposal
  StoreReader::AuditQuery q;
  q.after_seq = 0;
  auto all = reader().audit_entries(q);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[1].reason, std::nullopt);
  q.subject_ref = std::string(64, 'b');
  EXPECT_EQ(reader().audit_entries(q)->at(0).seq, 2);
  q = {};
  q.key = "k";
  EXPECT_EQ(reader().audit_entries(q)->size(), 1u);
  q = {};
  q.limit = 1;  // the last one
  EXPECT_EQ(reader().audit_entries(q)->at(0).seq, 2);
  AuditRow dup = a;  // seq is unique: a second entry 1 is a storage error
  EXPECT_EQ(store().append_audit(dup).error().code, ErrorCode::storage_error);
}

TEST_P(StoreContract, HoldsKeepTheirSealedTargetAndReturnItsSlotOnRemoval) {
  const StoredHold h{0, "subject", Sealed{11, "sealed target"}, "litigation", Instant{50}, "uid:0"};
  auto id = store().add_hold(h);
  ASSERT_TRUE(id);
  auto id2 = store().add_hold(StoredHold{0, "category", Sealed{12, "c"}, "audit", Instant{60}, "uid:1"});
  ASSERT_TRUE(id2);
  EXPECT_NE(*id, *id2);
  auto holds = reader().holds();
  ASSERT_TRUE(holds);
  ASSERT_EQ(holds->size(), 2u);
  EXPECT_EQ((*holds)[0].id, *id);
  EXPECT_EQ((*holds)[0].scope, "subject");
  EXPECT_EQ((*holds)[0].target.slot, 11);
  EXPECT_EQ((*holds)[0].target.bytes, "sealed target");
  EXPECT_EQ((*holds)[0].reason, "litigation");
  EXPECT_EQ((*holds)[0].placed_at, Instant{50});
  EXPECT_EQ((*holds)[0].placed_by, "uid:0");
  EXPECT_EQ(*store().remove_hold(*id), std::optional<std::int64_t>(11));
  EXPECT_EQ(*store().remove_hold(*id), std::nullopt);
  EXPECT_EQ(reader().holds()->size(), 1u);
}

TEST_P(StoreContract, MetaValuesPersistAndOverwrite) {
  EXPECT_FALSE(reader().get_meta("x")->has_value());
  ASSERT_TRUE(store().set_meta("x", "one"));
  ASSERT_TRUE(store().set_meta("x", "two"));
  EXPECT_EQ(**reader().get_meta("x"), "two");
}

TEST_P(StoreContract, KeySlotBookkeepingCommitsWithTheTransaction) {
  auto state = store().key_slots();
  ASSERT_TRUE(state);
  EXPECT_EQ(state->next_slot, 0);
  EXPECT_TRUE(state->free.empty());
  EXPECT_TRUE(state->unzeroed.empty());
  std::optional<std::int64_t> released;
  ASSERT_TRUE(store().transaction([&]() -> Status {
    KeySlotChanges c;
    c.next_slot = 10;
    c.released = {3, 4, 9};
    auto id = store().save_key_slots(c);
    if (!id) return std::move(id).error();
    released = *id;
    return {};
  }));
  ASSERT_TRUE(released);
  state = store().key_slots();
  EXPECT_EQ(state->next_slot, 10);
  ASSERT_EQ(state->unzeroed.size(), 1u);
  EXPECT_EQ(state->unzeroed[0].slots, (std::vector<std::int64_t>{3, 4, 9}));
  // The next transaction records them zeroed: free; then one is taken.
  ASSERT_TRUE(store().transaction([&]() -> Status {
    KeySlotChanges c;
    c.now_zeroed = {*released};
    return store().save_key_slots(c).ok() ? Status{} : Error::internal("save failed");
  }));
  ASSERT_TRUE(store().transaction([&]() -> Status {
    KeySlotChanges c;
    c.taken_from = {SlotList{*released, {3, 4}}};
    return store().save_key_slots(c).ok() ? Status{} : Error::internal("save failed");
  }));
  state = store().key_slots();
  EXPECT_TRUE(state->unzeroed.empty());
  ASSERT_EQ(state->free.size(), 1u);
  EXPECT_EQ(state->free[0].slots, (std::vector<std::int64_t>{3, 4}));
  // A failed transaction saves nothing.
  EXPECT_FALSE(store().transaction([&]() -> Status {
    KeySlotChanges c;
    c.taken_from = {SlotList{*released, {}}};
    c.released = {7};
    (void)store().save_key_slots(c);
    return Error::internal("rolled back");
  }));
  state = store().key_slots();
  ASSERT_EQ(state->free.size(), 1u);
  EXPECT_TRUE(state->unzeroed.empty());
  EXPECT_EQ(store().save_key_slots({}).error().code, ErrorCode::internal_error);  // outside a transaction
}

// Reads never wait for writes: a reader's snapshot holds while the writer
// commits, and the writer commits while the reader's snapshot is open.
TEST_P(StoreContract, AReaderSnapshotNeitherWaitsForNorSeesACommitMadeDuringIt) {
  ASSERT_TRUE(store().insert(row("a", 5000)));
  Status st = reader().read([&]() -> Status {
    EXPECT_TRUE(reader().get("a")->has_value());
    // The writer commits (on another thread, as the daemon's writer does)
    // while the snapshot is open.
    Status written;
    std::thread writer([&] {
      written = store().transaction([&]() -> Status {
        if (auto s = store().insert(row("b", 6000)); !s) return s;
        auto r = store().remove("a", Location::active);
        return r ? Status{} : std::move(r).error();
      });
    });
    writer.join();
    EXPECT_TRUE(written) << written.error().message;
    // Still the snapshot taken before.
    EXPECT_TRUE(reader().get("a")->has_value());
    EXPECT_FALSE(reader().get("b")->has_value());
    EXPECT_EQ(reader().counts()->active, 1);
    return {};
  });
  ASSERT_TRUE(st) << st.error().message;
  // A new read sees the commit.
  EXPECT_FALSE(reader().get("a")->has_value());
  EXPECT_TRUE(reader().get("b")->has_value());
}

TEST_P(StoreContract, ReopeningKeepsEverything) {
  ASSERT_TRUE(store().insert(row("a", 5000, 8)));
  ASSERT_TRUE(store().set_meta("x", "y"));
  m_reader.reset();
  m_store.reset();
  m_store = GetParam().open(m_dir.path());
  m_reader = GetParam().open_reader(m_dir.path());
  EXPECT_EQ((*reader().get("a"))->sealed.slot, 8);
  EXPECT_EQ(**reader().get_meta("x"), "y");
  EXPECT_EQ(reader().counts()->active, 1);
  EXPECT_EQ(reader().due_by_category(Instant{6000})->at("c"), 1);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreContract, ::testing::Values(sqlite_backend(), postgresql_backend()),
                         [](const ::testing::TestParamInfo<Backend>& p) { return p.param.name; });

// ---- SQLite only ------------------------------------------------------------

TEST(SqliteStore, OneFileInWalModePrivateAndMigratedToTheLatestVersion) {
  testing::TempDir dir;
  auto store = sqlite_backend().open(dir.path());
  struct stat st{};
  ASSERT_EQ(::stat((dir.path() / "retention.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "archive.db"));
  StoredRecord r;
  r.key = "k";
  r.category = "c";
  r.sealed = Sealed{0, "x"};
  ASSERT_TRUE(store->insert(r));
  // WAL: the write went to retention.db-wal, 0600 like the database.
  ASSERT_EQ(::stat((dir.path() / "retention.db-wal").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_GE(latest_schema_version(), 6);
  store.reset();
  auto again = sqlite_backend().open(dir.path());
  EXPECT_EQ(again->counts()->active, 1);
}

// Migration 007 on a database of version 6: record_counts, then kept per
// place and state only, is rebuilt per category from the rows at the next
// start, whatever it held.
TEST(SqliteStore, Migration7CountsTheRecordsOfAVersion6DatabasePerCategory) {
  testing::TempDir dir;
  {
    auto store = sqlite_backend().open(dir.path());
    for (const char* key : {"a1", "a2", "b1"}) {
      StoredRecord r;
      r.key = key;
      r.category = key[0] == 'a' ? "alpha" : "beta";
      r.sealed = Sealed{0, "x"};
      ASSERT_TRUE(store->insert(r));
    }
  }
  {
    // Back to version 6's table, with a count that no longer matches.
    SQLite::Database db((dir.path() / "retention.db").string(), SQLite::OPEN_READWRITE);
    db.exec("DROP TABLE record_counts");
    db.exec("CREATE TABLE record_counts (location TEXT NOT NULL, state TEXT NOT NULL, n INTEGER NOT NULL, "
            "PRIMARY KEY (location, state)) WITHOUT ROWID");
    db.exec("INSERT INTO record_counts VALUES ('active', 'active', 99)");
    db.exec("DROP TABLE retired");  // migration 008's
    db.exec("DROP TABLE connector_jobs");  // migration 009's
    db.exec("DROP TABLE connector_stats");
    db.exec("PRAGMA user_version = 6");
  }
  auto store = sqlite_backend().open(dir.path());
  auto counts = store->counts_by_category();
  ASSERT_TRUE(counts) << counts.error().message;
  ASSERT_EQ(counts->size(), 2u);
  EXPECT_EQ(counts->at("alpha").active, 2);
  EXPECT_EQ(counts->at("beta").active, 1);
  EXPECT_EQ(store->counts()->active, 3);
  // 008 ran after it: the undo window's table is there, empty.
  EXPECT_FALSE(store->retired("a1")->has_value());
}

TEST(SqliteStore, AReaderOnADatabaseNotOpenedByAWriterIsRefused) {
  testing::TempDir dir;
  { std::ofstream(dir.path() / "retention.db") << ""; }
  const auto r = open_sqlite_reader(dir.path() / "retention.db");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not in WAL mode"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace retentiond::store

namespace retentiond::store {
namespace {

using calendar::Instant;

// What only a shared store (PostgreSQL) does: two writers on one database.
class SharedPgStore : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    m_url = test::PgCluster::shared().create_database(std::string("shared_") + info->name());
    for (auto* s : {&m_a, &m_b}) {
      auto opened = open_postgresql_store(m_url);
      ASSERT_TRUE(opened) << opened.error().message;
      *s = std::move(*opened);
    }
  }
  std::string m_url;
  std::unique_ptr<Store> m_a, m_b;
};

TEST_F(SharedPgStore, SlotBlocksAreNeverHandedOutTwiceEvenAfterARollback) {
  ASSERT_TRUE(m_a->shared());
  std::set<std::int64_t> firsts;
  Status rolled_back = m_a->transaction([&]() -> Status {
    auto first = m_a->reserve_slot_block(1024);
    EXPECT_TRUE(first);
    firsts.insert(*first);
    return Error::internal("rolled back on purpose");
  });
  EXPECT_FALSE(rolled_back);
  for (int i = 0; i < 20; ++i) {
    for (auto* s : {m_a.get(), m_b.get()}) {
      auto first = s->reserve_slot_block(1024);
      ASSERT_TRUE(first) << first.error().message;
      EXPECT_EQ(*first % 1024, 0);
      EXPECT_TRUE(firsts.insert(*first).second) << "block " << *first << " handed out twice";
    }
  }
  EXPECT_EQ(m_a->reserve_slot_block(1025).error().code, ErrorCode::internal_error);
}

// One writer at a time: B's transaction, begun while A's is open, runs only
// after A's commit, and sees it (the audit head is A's entry).
TEST_F(SharedPgStore, WriteTransactionsOfTwoStoresRunOneAfterTheOtherAndSeeEachOther) {
  AuditRow first;
  first.seq = 1;
  first.at = Instant{100};
  first.action = "test";
  first.actor = "a";
  first.policy_hash = "p";
  first.hash = "h1";
  std::optional<std::int64_t> b_saw;
  std::thread b;
  Status a = m_a->transaction([&]() -> Status {
    // B starts while A holds the write lock: it must wait for A's commit.
    b = std::thread([&] {
      Status st = m_b->transaction([&]() -> Status {
        auto head = m_b->last_audit();
        if (!head) return std::move(head).error();
        if (*head) b_saw = (*head)->seq;
        return {};
      });
      EXPECT_TRUE(st) << st.error().message;
    });
    // A appends after B started: a B not held up by A's lock would run now,
    // before the append, and see no entry.
    return m_a->append_audit(first);
  });
  ASSERT_TRUE(a) << a.error().message;
  b.join();
  EXPECT_EQ(b_saw, 1);
}

TEST_F(SharedPgStore, ACommitUnderAnotherAdoptedPolicyIsRefusedUnlessItAdoptsOne) {
  ASSERT_TRUE(m_a->set_meta("policy_hash", "new"));
  m_b->expect_policy("old");
  const Status refused = m_b->set_meta("x", "y");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().reason, "stale_policy");
  EXPECT_FALSE(m_a->get_meta("x").value().has_value());  // nothing was changed
  // A reload on B adopts its own policy: allowed, and B then runs under it.
  ASSERT_TRUE(m_b->set_meta("policy_hash", "newer"));
  EXPECT_TRUE(m_b->set_meta("x", "y"));
  m_a->expect_policy("new");
  EXPECT_EQ(m_a->set_meta("z", "1").error().reason, "stale_policy");
}

}  // namespace
}  // namespace retentiond::store
