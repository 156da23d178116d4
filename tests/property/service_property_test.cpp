// explain, plan, the dry run and sweep agree (issue 5, item 6), over a real
// SqliteStore and a ManualClock: thousands of random records of categories
// with archive, anonymise and purge phases, events and holds arriving
// between sweeps, the clock moving forwards and sometimes back.
//
// At each random instant t:
// - explain's due time of every phase equals the reference's (reference.hpp),
//   so the schedule the sweep follows is the rule's, never earlier;
// - the records explain calls due (next phase due <= t, not held) are
//   exactly those the sweep at t acts on, one audit entry per phase run, and
//   plan up to t, plan to a later random instant and the dry run count the
//   same phases, month by month;
// - after the sweep, explain shows each acted-on record at its next phase
//   (or its proof of disposal), and nothing else changed.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "tests/property/world.hpp"

namespace retentiond::property {
namespace {

using policy::Action;

constexpr std::uint64_t kRecords = 2500;
constexpr std::uint64_t kRounds = 36;

// What explain said about one record before a sweep.
struct Seen {
  bool disposed = false;
  store::Schedule row;
  std::vector<actions::PhaseSchedule> phases;
  bool held = false;
};

// The phases a sweep at `now` must run for `s`, in order: from the next
// phase on, while each is due, stopping after a purge.
std::vector<int> due_phases(const Seen& s, std::int64_t now) {
  std::vector<int> out;
  if (s.disposed || s.held) return out;
  for (auto i = static_cast<std::size_t>(s.row.next_phase); i < s.phases.size(); ++i) {
    if (!s.phases[i].due || s.phases[i].due->seconds > now) break;
    out.push_back(static_cast<int>(i));
    if (s.phases[i].action == Action::purge) break;
  }
  return out;
}

std::string month_of(std::int64_t t) { return iso(t).substr(0, 7); }

using PlanKey = std::tuple<std::string, std::string, int>;  // month, category, action

// What plan(from = now, until) must count: each phase due before `until`, at
// the later of its due time and the run of the phase before (now for the first).
std::map<PlanKey, std::int64_t> expected_plan(const std::map<std::string, Seen>& seen, std::int64_t now,
                                              std::int64_t until) {
  std::map<PlanKey, std::int64_t> out;
  for (const auto& [key, s] : seen) {
    if (s.disposed || s.held) continue;
    std::int64_t previous = now;
    for (auto i = static_cast<std::size_t>(s.row.next_phase); i < s.phases.size(); ++i) {
      if (!s.phases[i].due || s.phases[i].due->seconds >= until) break;
      previous = std::max(previous, s.phases[i].due->seconds);
      ++out[{month_of(previous), s.row.category, static_cast<int>(s.phases[i].action)}];
      if (s.phases[i].action == Action::purge) break;
    }
  }
  return out;
}

std::map<PlanKey, std::int64_t> plan_counts(const actions::Plan& plan) {
  std::map<PlanKey, std::int64_t> out;
  for (const auto& e : plan.actions) out[{e.month, e.category, static_cast<int>(e.action)}] += e.count;
  return out;
}

std::string show(const PlanKey& k) {
  return std::get<0>(k) + "/" + std::get<1>(k) + "/" + std::string(policy::to_string(static_cast<Action>(std::get<2>(k))));
}

// The entries where plan and explain differ (at most 20 of them).
std::string differences(const std::map<PlanKey, std::int64_t>& plan, const std::map<PlanKey, std::int64_t>& want) {
  std::string out;
  int shown = 0;
  std::set<PlanKey> keys;
  for (const auto& [k, n] : plan) keys.insert(k);
  for (const auto& [k, n] : want) keys.insert(k);
  for (const auto& k : keys) {
    const auto p = plan.count(k) ? plan.at(k) : 0, w = want.count(k) ? want.at(k) : 0;
    if (p == w) continue;
    if (++shown > 20) return out + "\n    ...";
    out += "\n    " + show(k) + ": plan " + std::to_string(p) + ", explain " + std::to_string(w);
  }
  return out;
}

using Action3 = std::tuple<std::string, int, std::string>;  // key, phase, action

// The actions in one set and not the other (at most 20 of them).
std::string differences(const std::set<Action3>& done, const std::set<Action3>& want) {
  std::string out;
  int shown = 0;
  const auto list = [&](const std::set<Action3>& a, const std::set<Action3>& b, const char* what) {
    for (const auto& [key, phase, action] : a) {
      if (b.count({key, phase, action}) || ++shown > 20) continue;
      out += "\n    " + std::string(what) + ": " + key + " phase " + std::to_string(phase) + " (" + action + ")";
    }
  };
  list(done, want, "run, not due by explain");
  list(want, done, "due by explain, not run");
  return out;
}

class ServiceProperty : public ::testing::Test {
 protected:
  // Reads every key through explain, checking each phase's due time
  // against the reference on the way.
  void look(const std::vector<std::string>& keys, std::map<std::string, Seen>& out) {
    out.clear();
    for (const auto& key : keys) {
      auto explained = world->service->explain(key);
      ASSERT_TRUE(explained) << key << ": " << explained.error().message;
      Seen s;
      if (std::holds_alternative<actions::Disposal>(*explained)) {
        s.disposed = true;
      } else {
        auto& e = std::get<actions::Explanation>(*explained);
        s.row = std::move(e.record);
        s.phases = std::move(e.phases);
        s.held = !e.holds.empty();
        ASSERT_EQ(s.phases.size(), world->category(s.row.category).phases.size()) << key;
        for (std::size_t i = 0; i < s.phases.size(); ++i) {
          const auto want = world->reference_due(s.row, i);
          const auto got = s.phases[i].due ? std::optional<std::int64_t>(s.phases[i].due->seconds) : std::nullopt;
          ASSERT_EQ(got, want) << "seed " << hex(seed) << ": explain(" << key << ") phase " << i << " of "
                               << s.row.category << " (at = " << s.phases[i].at << ")";
          // A waiting phase names the dates it waits for.
          std::vector<std::string> missing;
          if (!want) {
            std::vector<std::string> mentioned;
            ref::names(world->category(s.row.category).phases[i].at, mentioned);
            for (const auto& name : mentioned) {
              if (s.row.dates.find(name) == s.row.dates.end()) missing.push_back(name);
            }
          }
          ASSERT_EQ(s.phases[i].missing, missing) << "seed " << hex(seed) << ": explain(" << key << ") phase " << i;
        }
        // The stored due time (what sweeps and plan walk) is explain's next phase's.
        const auto next = static_cast<std::size_t>(s.row.next_phase);
        const auto stored = s.row.due ? std::optional<std::int64_t>(s.row.due->seconds) : std::nullopt;
        const auto shown = next < s.phases.size() && s.phases[next].due
                               ? std::optional<std::int64_t>(s.phases[next].due->seconds)
                               : std::nullopt;
        ASSERT_EQ(stored, shown) << "seed " << hex(seed) << ": " << key << " stored due differs from explain's next";
      }
      out.emplace(key, std::move(s));
    }
  }

  std::uint64_t seed = property_seed();
  std::unique_ptr<World> world;
};

TEST_F(ServiceProperty, ExplainPlanDryRunAndSweepAgreeAtRandomInstants) {
  const std::uint64_t records = scaled(kRecords), rounds = scaled(kRounds, 3);
  announce("ServiceProperty.ExplainPlanDryRunAndSweepAgreeAtRandomInstants", seed, records * rounds);
  Rng rng(seed ^ 0x5E4F1CEULL);
  const ref::FiscalYearEnd fye = ref::random_fiscal_year_end(rng);
  world = std::make_unique<World>(rng.next(), fye, midnight(1985, 1, 1));
  ASSERT_TRUE(world->ok()) << world->error();
  actions::Service& service = *world->service;
  const actions::Actor actor{"scheduler"};

  // Records, put in batches by put_many, collected partly by the clock.
  std::vector<std::string> keys;
  for (std::uint64_t i = 0; i < records;) {
    nlohmann::json batch = nlohmann::json::array();
    for (int n = 0; n < 250 && i < records; ++n, ++i) {
      keys.push_back("rec-" + std::to_string(i));
      batch.push_back(world->random_record(rng, keys.back(), 1970, 2045));
    }
    world->clock.set(calendar::Instant{World::random_instant(rng, 1975, 2045)});
    auto put = world->put_many(batch);
    ASSERT_TRUE(put) << put.error().message;
  }

  std::int64_t now = midnight(1988, 1, 1);
  std::int64_t last_seq = 0;
  std::vector<std::int64_t> holds;
  std::int64_t acted = 0, checked_plans = 0;
  actions::SweepCounts total;
  std::map<std::string, Seen> before, after;
  for (std::uint64_t round = 0; round < rounds; ++round) {
    // Between sweeps: events, replaced records, holds placed and released.
    for (int n = 0; n < 15; ++n) {
      const std::string& key = rng.pick(keys);
      auto row = world->record(key);
      if (!row) continue;  // purged
      const auto& declared = world->category(row->category).dates;
      if (declared.empty()) continue;
      const std::string name = rng.pick(declared);
      auto event = world->record_event(
          {{"name", name}, {"at", iso(World::random_instant(rng, 1975, 2060))}, {"key", key}});
      ASSERT_TRUE(event) << event.error().message;
    }
    for (int n = 0; n < 5; ++n) {
      const std::string& key = rng.pick(keys);
      auto put = world->put(world->random_record(rng, key, 1975, 2060));
      ASSERT_TRUE(put || put.error().code == ErrorCode::conflict) << put.error().message;
    }
    if (rng.chance(70)) {
      nlohmann::json params = {{"reason", "litigation"}};
      const auto scope = rng.range(0, 19);
      if (scope < 9) params["key"] = rng.pick(keys);
      else if (scope < 15) params["subject"] = "subject-" + std::to_string(rng.range(0, 299)) + "@example.com";
      else params["category"] = rng.pick(world->categories).name;
      auto id = world->place_hold(params);
      if (id) holds.push_back(*id);
      else ASSERT_EQ(id.error().code, ErrorCode::not_found) << id.error().message;  // a purged key
    }
    if (!holds.empty() && rng.chance(60)) {
      const auto i = static_cast<std::size_t>(rng.range(0, static_cast<std::int64_t>(holds.size()) - 1));
      ASSERT_TRUE(world->release_hold(holds[i]));
      holds.erase(holds.begin() + static_cast<std::ptrdiff_t>(i));
    }

    // The next instant: mostly forwards, sometimes back; fewer rounds take
    // longer steps, so that the walk still crosses the records' lifetimes.
    const std::int64_t year = 365 * ref::kDay * static_cast<std::int64_t>(kRounds / rounds);
    now += rng.chance(12) ? -rng.range(0, 2 * year) : rng.range(0, 4 * year);
    world->clock.set(calendar::Instant{now});
    const std::string at = "seed " + hex(seed) + ", round " + std::to_string(round) + ", t = " + iso(now);

    look(keys, before);
    if (HasFatalFailure()) return;
    std::set<Action3> expected;
    actions::SweepCounts want;
    for (const auto& [key, s] : before) {
      if (s.disposed) continue;
      const bool due = s.row.due && s.row.due->seconds <= now;
      if (s.held) want.held += due ? 1 : 0;
      const auto phases = due_phases(s, now);
      if (!phases.empty()) ++want.due_records;
      for (int p : phases) {
        expected.emplace(key, p, std::string(policy::to_string(s.phases[static_cast<std::size_t>(p)].action)));
        const Action a = s.phases[static_cast<std::size_t>(p)].action;
        (a == Action::archive ? want.archived : a == Action::anonymise ? want.anonymised : want.purged) += 1;
      }
    }

    // plan up to t (before t + 1 s) and to a later random instant.
    for (const std::int64_t until : {now + 1, now + 1 + rng.range(0, 6 * 365 * ref::kDay)}) {
      auto plan = world->plan(calendar::Instant{until});
      ASSERT_TRUE(plan) << plan.error().message;
      const auto want_plan = expected_plan(before, now, until);
      EXPECT_TRUE(plan_counts(*plan) == want_plan)
          << at << ", plan until " << iso(until) << ": plan and explain differ (month/category/action):"
          << differences(plan_counts(*plan), want_plan);
      std::int64_t held = 0, waiting = 0;
      for (const auto& [key, s] : before) {
        if (s.disposed) continue;
        const bool has_next = static_cast<std::size_t>(s.row.next_phase) < s.phases.size();
        if (s.held && s.row.due && s.row.due->seconds < until) ++held;
        if (!s.held && has_next && !s.row.due) ++waiting;
      }
      EXPECT_EQ(plan->held, held) << at << ", plan until " << iso(until);
      EXPECT_EQ(plan->waiting, waiting) << at << ", plan until " << iso(until);
      if (until == now + 1) {
        EXPECT_EQ(plan->archive, want.archived) << at;
        EXPECT_EQ(plan->anonymise, want.anonymised) << at;
        EXPECT_EQ(plan->purge, want.purged) << at;
      }
      ++checked_plans;
    }

    // The dry run.
    auto dry = service.count_due();
    ASSERT_TRUE(dry) << dry.error().message;
    EXPECT_EQ(dry->archived, want.archived) << at;
    EXPECT_EQ(dry->anonymised, want.anonymised) << at;
    EXPECT_EQ(dry->purged, want.purged) << at;
    EXPECT_EQ(dry->held, want.held) << at;
    EXPECT_EQ(dry->due_records, want.due_records) << at;

    // The sweep, in batches of random size; in some rounds every batch is
    // already past its time bound, so it stops after one record.
    actions::SweepCounts got;
    actions::SweepCursor cursor;
    const bool out_of_time = rng.chance(20);
    while (!cursor.done) {
      std::optional<std::chrono::steady_clock::time_point> deadline;
      if (out_of_time) deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
      auto batch = service.sweep_batch(static_cast<std::size_t>(rng.range(1, 60)), actor, cursor, deadline);
      ASSERT_TRUE(batch) << batch.error().message;
      if (out_of_time) {
        ASSERT_LE(batch->visited, 1) << at;
      }
      got += *batch;
    }
    EXPECT_EQ(got.archived, want.archived) << at;
    EXPECT_EQ(got.anonymised, want.anonymised) << at;
    EXPECT_EQ(got.purged, want.purged) << at;
    EXPECT_EQ(got.held, want.held) << at;
    EXPECT_EQ(got.stuck, 0) << at;
    total += got;

    // Its audit entries: exactly the expected phases, once each, at t.
    auto entries = world->audit_after(last_seq);
    ASSERT_TRUE(entries) << entries.error().message;
    std::set<Action3> done;
    std::map<std::string, std::int64_t> purge_seq;
    for (const auto& e : *entries) {
      last_seq = e.seq;
      // The world's own changes between sweeps: holds, events, replacements.
      if (e.action.rfind("hold.", 0) == 0 || e.action == "event" || e.action == "extend") continue;
      ASSERT_TRUE(e.key && e.phase) << at << ": entry " << e.seq << " (" << e.action << ")";
      EXPECT_EQ(e.at.seconds, now) << at << ": entry " << e.seq;
      EXPECT_EQ(e.actor, "scheduler") << at << ": entry " << e.seq;
      EXPECT_TRUE(done.emplace(*e.key, *e.phase, e.action).second)
          << at << ": " << *e.key << " phase " << *e.phase << " " << e.action << " audited twice";
      if (e.action == "purge") purge_seq[*e.key] = e.seq;
    }
    EXPECT_TRUE(done == expected) << at << ": the sweep's audit entries differ from what explain said was due ("
                                  << done.size() << " entries, " << expected.size() << " expected):"
                                  << differences(done, expected);
    acted += static_cast<std::int64_t>(done.size());

    // After: acted-on records at their next phase or disposed of, the rest unchanged.
    std::map<std::string, std::vector<int>> ran;
    for (const auto& [key, phase, action] : expected) ran[key].push_back(phase);
    for (const auto& key : keys) {
      const Seen& was = before.at(key);
      auto explained = service.explain(key);
      ASSERT_TRUE(explained) << explained.error().message;
      if (was.disposed) {
        EXPECT_TRUE(std::holds_alternative<actions::Disposal>(*explained)) << at << ": " << key;
        continue;
      }
      const auto it = ran.find(key);
      const bool purged = it != ran.end() &&
                          was.phases[static_cast<std::size_t>(it->second.back())].action == Action::purge;
      if (purged) {
        ASSERT_TRUE(std::holds_alternative<actions::Disposal>(*explained)) << at << ": " << key << " not purged";
        const auto& d = std::get<actions::Disposal>(*explained);
        EXPECT_EQ(d.purged_at.seconds, now) << at << ": " << key;
        EXPECT_EQ(d.audit_seq, purge_seq[key]) << at << ": " << key;
        continue;
      }
      ASSERT_TRUE(std::holds_alternative<actions::Explanation>(*explained)) << at << ": " << key << " vanished";
      const auto& e = std::get<actions::Explanation>(*explained);
      if (it == ran.end()) {
        EXPECT_EQ(e.record.next_phase, was.row.next_phase) << at << ": " << key << " changed";
        EXPECT_EQ(e.record.state, was.row.state) << at << ": " << key << " changed";
        EXPECT_EQ(e.record.location, was.row.location) << at << ": " << key << " changed";
        continue;
      }
      EXPECT_EQ(e.record.next_phase, it->second.back() + 1) << at << ": " << key;
      if (e.next) {
        EXPECT_TRUE(!e.next->due || e.next->due->seconds > now)
            << at << ": " << key << " still due after the sweep: phase " << e.next->index;
      }
      for (int p : it->second) {
        const Action a = was.phases[static_cast<std::size_t>(p)].action;
        if (a == Action::anonymise) {
          EXPECT_EQ(e.record.state, store::RecordState::anonymised) << at << ": " << key;
          EXPECT_FALSE(e.record.subject) << at << ": " << key;
        }
        if (a == Action::archive) {
          EXPECT_EQ(e.record.location, store::Location::archive) << at << ": " << key;
        }
        ASSERT_LT(static_cast<std::size_t>(p), e.record.done.size()) << at << ": " << key;
        EXPECT_EQ(e.record.done[static_cast<std::size_t>(p)].seconds, now) << at << ": " << key;
      }
    }
    auto left = service.count_due();
    ASSERT_TRUE(left) << left.error().message;
    EXPECT_EQ(left->due_records, 0) << at << ": due records left after the sweep";
    if (HasFailure()) return;  // one round's report is enough
  }
  std::printf("[ property ] %zu records, %llu instants: %lld phases run (%lld archive, %lld anonymise, %lld purge), "
              "%lld held records passed over, %lld plans checked\n",
              keys.size(), static_cast<unsigned long long>(rounds), static_cast<long long>(acted),
              static_cast<long long>(total.archived), static_cast<long long>(total.anonymised),
              static_cast<long long>(total.purged), static_cast<long long>(total.held),
              static_cast<long long>(checked_plans));
  auto chain = audit::verify(*world->store);
  ASSERT_TRUE(chain);
  EXPECT_TRUE(chain->ok);
  // The walk reached every kind of action (so the comparisons above compared something).
  EXPECT_GT(acted, static_cast<std::int64_t>(records / 2));
  EXPECT_GT(total.archived, 0);
  EXPECT_GT(total.anonymised, 0);
  EXPECT_GT(total.purged, 0);
  EXPECT_GT(total.held, 0);
}

}  // namespace
}  // namespace retentiond::property
