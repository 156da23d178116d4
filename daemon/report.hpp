#pragma once
// The retention report of `retentionctl report --html`: one self-contained
// HTML page (no script, no font, no image, no network: its Content Security
// Policy forbids every load) for a data-protection officer, built from what
// the daemon's methods return. Rendering is a pure function of that JSON, so
// it is tested without a daemon (tests/ctl/report_test.cpp); gathering it is
// the client's job (cmd_report in daemon/retentionctl.cpp).
//
// Nothing here is shared between threads; every function is reentrant.
//
// The structure tests and scripts may rely on (docs/retentionctl.md, "report"):
//   - one <section id="..."> per part: summary, register, records, upcoming,
//     done, holds, audit;
//   - each chart is an <svg class="chart" id="chart-upcoming"> or
//     id="chart-done", with a <title> and a <desc>, in a <figure> followed by
//     a <table> of the same numbers;
//   - each bar segment is one <rect class="bar ACTION" data-month="YYYY-MM"
//     data-action="ACTION" data-count="N">, ACTION one of archive, anonymise,
//     purge (and erase in the chart of actions done), one per month and
//     action with a count above zero; legend swatches are class "swatch",
//     never "bar";
//   - with nothing to draw, the chart is replaced by a <p class="empty">
//     ("Nothing falls due before ...", "No record has been ...").

#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace retentiond::report {

// Counts audit entries per month and action while the client pages through
// audit.tail, so that only the counts, not the entries, are kept.
class AuditTally {
 public:
  // Counts one entry of audit.tail ({"seq", "at", "action", ...}). Entries
  // without a usable `at` or `action` are counted in `other` as "unknown".
  void add(const nlohmann::json& entry);

  // {"entries": N, "last_seq": S or null, "months": [{"month": "YYYY-MM",
  // "archive": n, "anonymise": n, "purge": n, "erase": n}, ...] in month
  // order, "other": {"ACTION": n, ...}}: the "audit" member of the input of
  // render_html().
  nlohmann::json to_json() const;

 private:
  struct Counts {
    std::uint64_t archive = 0, anonymise = 0, purge = 0, erase = 0;
  };
  std::map<std::string, Counts> m_months;
  std::map<std::string, std::uint64_t> m_other;
  std::uint64_t m_entries = 0;
  nlohmann::json m_last_seq;
};

// The HTML page, from an object whose members are the results of the
// daemon's methods, as returned:
//   "status"        status
//   "policy_table"  the "text" of policy.table in its "markdown" format
//   "plan"          plan (its "from" and "until" frame the chart)
//   "verify"        audit.verify
//   "audit"         AuditTally::to_json() over audit.tail up to verify's
//                   "entries"
//   "holds"         hold.list, or null when it was refused; then
//   "holds_error"   says why (a string)
//   "metrics"       optional: the "text" of the metrics method, whose
//                   retentiond_records samples give the records per category
//                   and state (left out, or null, by a daemon without it)
// Missing or malformed members are shown as "-" or as an empty part, never
// thrown on. Every string from the input is HTML-escaped.
std::string render_html(const nlohmann::json& input);

// The member `name` of `j`, or null when `j` is not an object or lacks it
// (operator[] on a const json with a missing key is undefined behaviour).
// Shared with retentionctl, which reads every result this way.
const nlohmann::json& member(const nlohmann::json& j, const char* name);
// A value as a person reads it: null "-", strings bare, booleans yes/no.
std::string text(const nlohmann::json& v);

// `s` with &, <, >, " and ' replaced by entities: safe in text and in
// quoted attribute values.
std::string escape(const std::string& s);

}  // namespace retentiond::report
