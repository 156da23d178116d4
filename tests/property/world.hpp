#pragma once
// A retentiond "world" for the service and scheduler properties: a policy
// whose rules are built as reference expression trees (reference.hpp) and
// written into the policy file in random spellings, a real SqliteStore in a
// temporary directory, the audit log, and a Service on a ManualClock.
//
// Categories cover every kind of rule: archive/anonymise/purge phases, a
// second phase due before the first (both must run in one sweep, in order),
// event-based rules waiting for a date, min/max, fiscal_year_end and the
// end_of_* functions, and a category without phases.

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lib/actions/service.hpp"
#include "lib/audit/audit.hpp"
#include "lib/calendar/clock.hpp"
#include "lib/policy/policy.hpp"
#include "lib/protocol/decode.hpp"
#include "lib/store/sqlite/sqlite_store.hpp"
#include "lib/vault/key_file.hpp"
#include "lib/vault/vault.hpp"
#include "tests/property/property_support.hpp"
#include "tests/property/reference.hpp"

namespace retentiond::property {

struct Rule {
  policy::Action action = policy::Action::purge;
  ref::Node at;
};

struct CategorySpec {
  std::string name;
  std::string legal_basis = "legitimate_interest";
  std::vector<std::string> dates;  // declared, besides collected
  std::vector<Rule> phases;
  std::string anonymise;  // TOML inline table, when a phase anonymises
};

namespace build {
inline ref::Node date(std::string name) {
  ref::Node n;
  n.name = std::move(name);
  return n;
}
inline ref::Node shift(ref::Node base, ref::Span span, bool minus = false) {
  ref::Node n;
  n.kind = ref::Node::Kind::shift;
  n.args.push_back(std::move(base));
  n.span = span;
  n.minus = minus;
  return n;
}
inline ref::Node call(ref::Node::Kind kind, std::vector<ref::Node> args) {
  ref::Node n;
  n.kind = kind;
  n.args = std::move(args);
  return n;
}
inline ref::Span years(std::int64_t n) { return ref::Span{n}; }
inline ref::Span months(std::int64_t n) { return ref::Span{0, n}; }
inline ref::Span days(std::int64_t n) { return ref::Span{0, 0, 0, n}; }
}  // namespace build

inline std::vector<CategorySpec> world_categories() {
  using namespace build;
  using K = ref::Node::Kind;
  using A = policy::Action;
  const std::string usage_table = R"({ ip = "truncate_ip", page = "keep", user = "hmac" })";
  return {
      {"prospect", "legitimate_interest", {"last_contact"},
       {{A::purge, shift(call(K::max, {date("collected"), date("last_contact")}), years(3))}}, ""},
      {"invoice", "legal_obligation", {"issued"},
       {{A::archive, call(K::fiscal_year_end, {date("issued")})},
        {A::purge, shift(call(K::fiscal_year_end, {date("issued")}), years(10))}},
       ""},
      {"usage", "legitimate_interest", {"last_use"},
       {{A::anonymise, shift(date("last_use"), months(13))}, {A::purge, shift(date("last_use"), years(5))}},
       usage_table},
      {"student", "public_task", {"left"},
       {{A::archive, shift(date("left"), years(1))},
        {A::anonymise, shift(date("left"), ref::Span{2, 6})},
        {A::purge, shift(date("left"), years(5))}},
       R"({ grade = "keep", user = "redact" })"},
      {"account", "contract", {"contract_end", "suspended"},
       {{A::purge, call(K::min, {date("contract_end"), shift(date("suspended"), years(2))})}}, ""},
      {"cookie", "consent", {}, {{A::purge, shift(date("collected"), months(13))}}, ""},
      {"contract", "contract", {"contract_end"},
       {{A::archive, shift(call(K::end_of_month, {date("contract_end")}), ref::Span{0, 4, 0, 30})},
        {A::purge, shift(call(K::end_of_year, {date("contract_end")}), years(6))}},
       ""},
      // The second phase falls due a day before the first: both run together.
      {"quirky", "legitimate_interest", {"issued"},
       {{A::anonymise, shift(date("issued"), months(1))},
        {A::archive, shift(date("issued"), days(1), true)},
        {A::purge, shift(call(K::end_of_day, {date("issued")}), ref::Span{0, 0, 0, 0, 24})}},
       R"({ page = "keep" })"},
      {"session", "consent", {}, {{A::purge, shift(date("collected"), ref::Span{0, 0, 0, 0, 24})}}, ""},
      {"kept", "legal_obligation", {"issued"}, {}, ""},
  };
}

// "YYYY-MM-DDTHH:MM:SSZ", computed by the reference.
inline std::string iso(std::int64_t t) {
  const ref::Date d = ref::date(ref::day_of(t));
  const std::int64_t sod = t - ref::day_of(t) * ref::kDay;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04lld-%02d-%02dT%02lld:%02lld:%02lldZ", static_cast<long long>(d.y), d.m, d.d,
                static_cast<long long>(sod / 3600), static_cast<long long>(sod / 60 % 60),
                static_cast<long long>(sod % 60));
  return buf;
}

// A temporary directory, on tmpfs (/dev/shm) when there is a writable one:
// these tests commit thousands of transactions, and nothing they check
// depends on fsync reaching a disk (tests/crash sees to durability), so
// they need not wait for it on a shared CI machine.
class ScratchDir {
 public:
  ScratchDir() {
    std::filesystem::path base = "/dev/shm";
    std::error_code ec;
    if (!std::filesystem::is_directory(base, ec) || ::access(base.c_str(), W_OK | X_OK) != 0) {
      base = std::filesystem::temp_directory_path();
    }
    std::string path = (base / "rdprop.XXXXXX").string();
    if (::mkdtemp(path.data()) == nullptr) throw std::runtime_error("mkdtemp in " + base.string() + " failed");
    m_path = path;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(m_path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return m_path; }

 private:
  std::filesystem::path m_path;
};

inline std::int64_t midnight(std::int64_t y, int m, int d) { return ref::at_midnight({y, m, d}); }

class World {
 public:
  static constexpr const char* kSecret = "0123456789abcdef0123456789abcdef";

  // Builds the policy (rules spelled at random from `seed`) and opens the
  // store; check ok() and error() before use.
  World(std::uint64_t seed, ref::FiscalYearEnd fye, std::int64_t start)
      : categories(world_categories()), fiscal_year_end(fye), clock(calendar::Instant{start}) {
    Rng spelling(seed);
    char fye_text[8];
    std::snprintf(fye_text, sizeof fye_text, "%02d-%02d", fye.month, fye.day);
    std::string text = "[daemon]\nstate_dir = \"unused\"\nfiscal_year_end = \"" + std::string(fye_text) + "\"\n";
    for (const auto& c : categories) {
      text += "\n[[categories]]\nname = \"" + c.name + "\"\npurpose = \"testing\"\nlegal_basis = \"" +
              c.legal_basis + "\"\ndates = [";
      for (std::size_t i = 0; i < c.dates.size(); ++i) text += (i ? ", \"" : "\"") + c.dates[i] + "\"";
      text += "]\nphases = [";
      for (std::size_t i = 0; i < c.phases.size(); ++i) {
        std::string at = ref::render(c.phases[i].at, spelling);
        for (auto& ch : at) ch = ch == '\t' ? ' ' : ch;  // a TOML basic string holds no raw tab
        text += std::string(i ? ", " : "") + "{ action = \"" + std::string(policy::to_string(c.phases[i].action)) +
                "\", at = \"" + at + "\" }";
      }
      text += "]\n";
      if (!c.anonymise.empty()) text += "anonymise = " + c.anonymise + "\n";
    }
    policy_text = text;
    const auto loaded = policy::load_policy_text(text, policy::ConfFormat::toml, "world.toml");
    if (!loaded.ok()) {
      m_error = "policy: " + loaded.first_error() + "\n" + text;
      return;
    }
    policy = loaded.policy;
    auto key_file = vault::KeyFile::open(dir.path() / "keys");
    if (!key_file) {
      m_error = "keys: " + key_file.error().message;
      return;
    }
    keys = std::make_unique<vault::KeyFile>(std::move(*key_file));
    auto opened = store::open_sqlite_store(dir.path() / "retention.db");
    if (!opened) {
      m_error = "store: " + opened.error().message;
      return;
    }
    store = std::move(opened).value();
    vault = std::make_unique<vault::Vault>(*store, *keys, kSecret);
    if (auto st = vault->open(); !st) {
      m_error = "vault: " + st.error().message;
      return;
    }
    audit = std::make_unique<audit::AuditLog>(*store);
    // One thread: the vault serves as the reader too.
    service = std::make_unique<actions::Service>(*vault, *vault, *audit, clock, policy);
  }

  // The service's calls on JSON params, decoded as the protocol does.
  Result<vault::Record> put(const nlohmann::json& params) {
    auto r = protocol::decode::put(params);
    if (!r) return std::move(r).error();
    return service->put(*r, actions::Actor{"uid:0"});
  }
  Result<std::size_t> put_many(const nlohmann::json& records) {
    auto r = protocol::decode::put_many({{"records", records}}, 100000);
    if (!r) return std::move(r).error();
    return service->put_many(*r, actions::Actor{"uid:0"});
  }
  Result<std::int64_t> record_event(const nlohmann::json& params) {
    auto r = protocol::decode::event(params);
    if (!r) return std::move(r).error();
    return service->record_event(*r, actions::Actor{"uid:0"});
  }
  Result<std::int64_t> place_hold(const nlohmann::json& params) {
    auto r = protocol::decode::hold_place(params);
    if (!r) return std::move(r).error();
    return service->place_hold(*r, actions::Actor{"uid:0"});
  }
  Status release_hold(std::int64_t id) {
    actions::ReleaseRequest r;
    r.id = id;
    return service->release_hold(r, actions::Actor{"uid:0"});
  }
  Result<actions::Plan> plan(calendar::Instant until) {
    actions::PlanRequest r;
    r.until = until;
    return service->plan(r);
  }
  // The record with its values, or nullopt (destroyed).
  std::optional<vault::Record> record(const std::string& key) {
    auto r = vault->get(key);
    if (!r || !*r) return std::nullopt;
    return std::move(**r);
  }

  bool ok() const { return m_error.empty(); }
  const std::string& error() const { return m_error; }

  const CategorySpec& category(const std::string& name) const {
    for (const auto& c : categories) {
      if (c.name == name) return c;
    }
    throw std::out_of_range("no category " + name);
  }

  // A random record of a random category: some declared dates missing
  // (event-based rules wait for them), times of day on some, collected
  // given or taken from the clock.
  nlohmann::json random_record(Rng& rng, const std::string& key, std::int64_t first_year,
                               std::int64_t last_year) const {
    const CategorySpec& c = categories[static_cast<std::size_t>(rng.range(0, static_cast<std::int64_t>(categories.size()) - 1))];
    nlohmann::json record = {{"key", key},
                             {"subject", "subject-" + std::to_string(rng.range(0, 299)) + "@example.com"},
                             {"category", c.name},
                             {"fields", {{"ip", "10.1.2." + std::to_string(rng.range(0, 255))},
                                         {"page", "/p/" + std::to_string(rng.range(0, 99))},
                                         {"user", "u" + std::to_string(rng.range(0, 999))},
                                         {"grade", "B"}}}};
    nlohmann::json dates = nlohmann::json::object();
    for (const auto& name : c.dates) {
      if (rng.chance(80)) dates[name] = iso(random_instant(rng, first_year, last_year));
    }
    if (rng.chance(70)) dates["collected"] = iso(random_instant(rng, first_year, last_year));
    record["dates"] = dates;
    return record;
  }

  static std::int64_t random_instant(Rng& rng, std::int64_t first_year, std::int64_t last_year) {
    std::int64_t t = ref::at_midnight(ref::random_date(rng, first_year, last_year));
    if (rng.chance(30)) t += ref::random_time_of_day(rng);
    return t;
  }

  // The due time the spec gives phase `phase` of a record with `dates`
  // (undefined, or past 9999-12-31T23:59:59Z: never reached).
  std::optional<std::int64_t> reference_due(const store::Schedule& row, std::size_t phase) const {
    ref::DateMap dates;
    for (const auto& [name, t] : row.dates) dates[name] = t.seconds;
    const auto v = ref::eval(category(row.category).phases[phase].at, dates, fiscal_year_end);
    if (!v || *v > calendar::kMaxInstant.seconds) return std::nullopt;
    return v;
  }

  // Every audit entry after `after_seq`, ascending.
  Result<std::vector<store::AuditRow>> audit_after(std::int64_t after_seq) {
    std::vector<store::AuditRow> out;
    for (;;) {
      store::StoreReader::AuditQuery q;
      q.after_seq = out.empty() ? after_seq : out.back().seq;
      q.limit = 1000;
      auto page = store->audit_entries(q);
      if (!page) return std::move(page).error();
      if (page->empty()) return out;
      out.insert(out.end(), page->begin(), page->end());
    }
  }

  std::vector<CategorySpec> categories;
  ref::FiscalYearEnd fiscal_year_end;
  std::string policy_text;
  calendar::ManualClock clock;
  ScratchDir dir;
  std::shared_ptr<const policy::Policy> policy;
  std::unique_ptr<vault::KeyFile> keys;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<vault::Vault> vault;
  std::unique_ptr<audit::AuditLog> audit;
  std::unique_ptr<actions::Service> service;

 private:
  std::string m_error;
};

}  // namespace retentiond::property
