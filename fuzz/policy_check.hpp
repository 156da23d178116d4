#pragma once
// The checks shared by fuzz_policy_toml and fuzz_policy_yaml: load a policy
// from text, as `retentiond --check` and config.reload do, and check what the
// loader promises (lib/policy/policy.hpp):
//  - no exception escapes, whatever the text;
//  - a policy is returned exactly when no diagnostic is an error; otherwise
//    first_error() names one; diagnostics are in file order, each with the
//    display name and a message;
//  - a returned policy is valid by the spec: unique category names, at most
//    one phase per action, purge last, every `at` expression re-parses from
//    its text to the same canonical form and names only declared dates, an
//    anonymise table exactly when a phase anonymises; its hash is a SHA-256
//    in hex, is the same when the text is loaded again, and the policy does
//    not differ from its own canonical form.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "fuzz/check.hpp"
#include "lib/policy/policy.hpp"

namespace retentiond::fuzz {

inline void check_policy_text(std::string_view text, policy::ConfFormat format) {
  using policy::Diagnostic;
  const std::string name = format == policy::ConfFormat::toml ? "fuzz.toml" : "fuzz.yaml";
  const policy::LoadResult r = policy::load_policy_text(text, format, name);

  bool any_error = false;
  std::pair<int, int> previous{0, 0};
  for (const auto& d : r.diagnostics) {
    any_error = any_error || d.severity == Diagnostic::Severity::error;
    FUZZ_CHECK(d.file == name, d.to_string());
    FUZZ_CHECK(!d.message.empty(), d.to_string());
    FUZZ_CHECK(d.pos.line >= 0 && d.pos.column >= 0, d.to_string());
    const std::pair<int, int> here{d.pos.line, d.pos.column};
    FUZZ_CHECK(previous <= here, "diagnostics out of order at " + d.to_string());
    previous = here;
  }
  FUZZ_CHECK(r.ok() == !any_error, r.ok() ? "a policy despite an error" : "no policy and no error");
  if (!r.ok()) {
    FUZZ_CHECK(!r.first_error().empty(), "no first error");
    return;
  }

  const policy::Policy& p = *r.policy;
  FUZZ_CHECK(p.hash.size() == 64 && p.hash.find_first_not_of("0123456789abcdef") == std::string::npos, p.hash);
  FUZZ_CHECK(!p.daemon.state_dir.empty(), "empty state_dir");
  std::set<std::string> names;
  for (const auto& c : p.categories) {
    FUZZ_CHECK(names.insert(c.name).second, "duplicate category " + c.name);
    FUZZ_CHECK(!c.name.empty() && c.name.size() <= 64, c.name);
    FUZZ_CHECK(!c.purpose.empty(), c.name);
    std::set<policy::Action> actions;
    bool anonymises = false;
    for (std::size_t i = 0; i < c.phases.size(); ++i) {
      const auto& ph = c.phases[i];
      FUZZ_CHECK(actions.insert(ph.action).second, c.name + ": two phases with one action");
      FUZZ_CHECK(ph.action != policy::Action::purge || i + 1 == c.phases.size(), c.name + ": purge not last");
      anonymises = anonymises || ph.action == policy::Action::anonymise;
      auto again = policy::Expr::parse(ph.at_text);
      FUZZ_CHECK(again.ok() && again->canonical() == ph.at.canonical(), c.name + ": " + ph.at_text);
      for (const auto& date : ph.at.date_names()) FUZZ_CHECK(c.allows_date(date), c.name + ": " + date);
    }
    FUZZ_CHECK(!anonymises || c.has_anonymise, c.name + ": anonymises without a table");
  }

  const auto canonical = policy::canonical_json(p);
  FUZZ_CHECK(policy::diff_policies(canonical, p).empty(), canonical.dump());
  const policy::LoadResult again = policy::load_policy_text(text, format, name);
  FUZZ_CHECK(again.ok() && again.policy->hash == p.hash, "a second load differs");
}

}  // namespace retentiond::fuzz
