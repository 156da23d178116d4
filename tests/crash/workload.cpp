#include "tests/crash/workload.hpp"

#include <algorithm>
#include <charconv>
#include <ctime>

#include "lib/crypto/crypto.hpp"

namespace retentiond::crash {

const char* to_string(Action a) {
  switch (a) {
    case Action::archive: return "archive";
    case Action::anonymise: return "anonymise";
    case Action::purge: return "purge";
  }
  return "?";
}

const std::vector<CategorySpec>& categories() {
  // Lifetimes of a few days: the harness's clock moves one day per kill
  // point, so records fall due all along the run, and every phase kind
  // (archive, anonymise in either database, purge in either) keeps running.
  static const std::vector<CategorySpec> k = {
      {"lead", "last_contact", true, {{Action::purge, true, 7 * kDay, "max(collected, last_contact) + 7 days"}}},
      {"customer",
       "contract_end",
       true,
       {{Action::anonymise, false, 2 * kDay, "contract_end + 2 days"},
        {Action::purge, false, 12 * kDay, "contract_end + 12 days"}}},
      {"invoice",
       "issued",
       false,
       {{Action::archive, false, 3 * kDay, "issued + 3 days"}, {Action::purge, false, 15 * kDay, "issued + 15 days"}}},
      {"ticket",
       "closed",
       true,
       {{Action::archive, false, 1 * kDay, "closed + 1 day"},
        {Action::anonymise, false, 4 * kDay, "closed + 4 days"},
        {Action::purge, false, 10 * kDay, "closed + 10 days"}}},
  };
  return k;
}

std::optional<int> category_index(std::string_view name) {
  const auto& cats = categories();
  for (std::size_t i = 0; i < cats.size(); ++i) {
    if (name == cats[i].name) return static_cast<int>(i);
  }
  return std::nullopt;
}

std::string policy_toml(const std::filesystem::path& dir, const std::filesystem::path& connector_exe) {
  return "# Written by tests/crash/crash_harness.\n"
         "[daemon]\n"
         "state_dir = \"" + (dir / "state").string() + "\"\n"
         "socket = \"" + (dir / "admin.sock").string() + "\"\n"
         "max_batch_records = 20\n"
         "max_batch_ms = 5\n"
         "reload_guard = 1000000000\n"
         "purge_grace = \"2 days\"\n"
         "\n"
         "[[connectors]]\n"
         "name = \"app\"\n"
         "kind = \"exec\"\n"
         "command = [\"" + connector_exe.string() + "\", \"" + received_file(dir).string() + "\", \"" +
         steady_file(dir).string() + "\"]\n"
         "timeout = \"10 s\"\n"
         "\n"
         "[[categories]]\n"
         "name = \"lead\"\n"
         "purpose = \"Prospects\"\n"
         "legal_basis = \"consent\"\n"
         "dates = [\"collected\", \"last_contact\"]\n"
         "phases = [ { action = \"purge\", at = \"max(collected, last_contact) + 7 days\" } ]\n"
         "\n"
         "[[categories]]\n"
         "name = \"customer\"\n"
         "purpose = \"Customer accounts\"\n"
         "legal_basis = \"contract\"\n"
         "dates = [\"collected\", \"contract_end\"]\n"
         "phases = [ { action = \"anonymise\", at = \"contract_end + 2 days\" },\n"
         "           { action = \"purge\", at = \"contract_end + 12 days\" } ]\n"
         "anonymise = { email = \"hmac\", ip = \"truncate_ip\", name = \"redact\", born = \"year_only\", tier = \"keep\" }\n"
         "\n"
         "[[categories]]\n"
         "name = \"invoice\"\n"
         "purpose = \"Invoices kept for the tax authorities\"\n"
         "legal_basis = \"legal_obligation\"\n"
         "dates = [\"collected\", \"issued\"]\n"
         "phases = [ { action = \"archive\", at = \"issued + 3 days\" },\n"
         "           { action = \"purge\", at = \"issued + 15 days\" } ]\n"
         "\n"
         "[[categories]]\n"
         "name = \"ticket\"\n"
         "purpose = \"Support tickets\"\n"
         "legal_basis = \"legitimate_interest\"\n"
         "dates = [\"collected\", \"closed\"]\n"
         "phases = [ { action = \"archive\", at = \"closed + 1 day\" },\n"
         "           { action = \"anonymise\", at = \"closed + 4 days\" },\n"
         "           { action = \"purge\", at = \"closed + 10 days\" } ]\n"
         "anonymise = { agent = \"keep\", summary = \"redact\" }\n"
         "connectors = [\"app\"]\n";
}

std::filesystem::path received_file(const std::filesystem::path& dir) { return dir / "received.jsonl"; }

std::filesystem::path steady_file(const std::filesystem::path& dir) { return dir / "steady"; }

std::string key_name(std::uint32_t id) { return "k" + std::to_string(id); }

namespace {

std::optional<std::uint32_t> number_after(std::string_view text, std::string_view prefix) {
  if (text.size() <= prefix.size() || text.substr(0, prefix.size()) != prefix) return std::nullopt;
  std::uint32_t v = 0;
  const char* first = text.data() + prefix.size();
  const char* last = text.data() + text.size();
  const auto [p, ec] = std::from_chars(first, last, v);
  if (ec != std::errc{} || p != last) return std::nullopt;
  return v;
}

}  // namespace

std::optional<std::uint32_t> key_id(std::string_view key) { return number_after(key, "k"); }

std::string subject_name(std::uint32_t subject) { return "s" + std::to_string(subject) + "-canary@example.com"; }

std::string erase_reason(std::uint32_t request) { return "crash-erase-" + std::to_string(request); }

std::optional<std::uint32_t> erase_request(std::string_view reason) { return number_after(reason, "crash-erase-"); }

namespace {

std::string ip_of(std::uint32_t id) {
  return "10." + std::to_string((id >> 16) & 255) + "." + std::to_string((id >> 8) & 255) + "." +
         std::to_string(id & 255);
}

std::string born_of(std::uint32_t id) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "19%02u-%02u-%02u", 40 + id % 60, 1 + id % 12, 1 + id % 28);
  return buf;
}

}  // namespace

nlohmann::json fields_for(int category, std::uint32_t id) {
  const std::string n = std::to_string(id);
  switch (category) {
    case 0: return {{"email", "lead" + n + ".canary@example.com"}, {"phone", "+33 6 canary " + n}};
    case 1:
      return {{"email", "cust" + n + ".canary@example.com"},
              {"ip", ip_of(id)},
              {"name", "Canary Customer " + n},
              {"born", born_of(id)},
              {"note", "canary note " + n},
              {"tier", id % 2 ? "gold" : "silver"}};
    case 2: return {{"amount", std::to_string(10 + id % 990) + ".00"}, {"buyer", "canary buyer " + n}};
    default:
      return {{"agent", "agent-" + std::to_string(id % 7)}, {"summary", "canary ticket " + n}, {"body", "canary body " + n}};
  }
}

nlohmann::json anonymised_fields(int category, std::uint32_t id, const std::string& secret) {
  const nlohmann::json f = fields_for(category, id);
  if (category == 1) {
    const std::string ip = ip_of(id);
    return {{"email", crypto::hmac_sha256_hex(secret, f["email"].get<std::string>())},
            {"ip", ip.substr(0, ip.rfind('.')) + ".0"},
            {"name", "[redacted]"},
            {"born", born_of(id).substr(0, 4)},
            {"tier", f["tier"]}};
  }
  if (category == 3) return {{"agent", f["agent"]}, {"summary", "[redacted]"}};
  return nullptr;  // lead and invoice are never anonymised
}

namespace {

std::int64_t min_of(const std::vector<std::int64_t>& v) { return *std::min_element(v.begin(), v.end()); }

}  // namespace

std::optional<std::int64_t> due_at(const PhaseSpec& phase, std::int64_t collected, std::int64_t date) {
  if (phase.max_with_collected) return std::max(collected, date) + phase.offset;
  if (date == kAbsent) return std::nullopt;
  return date + phase.offset;
}

// max(collected, d) with d absent is collected (max skips undefined
// arguments); `d + offset` with d absent is undefined. kAbsent is the
// smallest int64, so min/max over a set treat it as "earliest" naturally.
std::optional<std::int64_t> due_lower(const PhaseSpec& phase, const std::vector<std::int64_t>& collected,
                                      const std::vector<std::int64_t>& date) {
  if (collected.empty() || date.empty()) return std::nullopt;
  if (phase.max_with_collected) return std::max(min_of(collected), min_of(date)) + phase.offset;
  std::optional<std::int64_t> lo;
  for (const auto v : date) {
    if (v != kAbsent && (!lo || v < *lo)) lo = v;
  }
  if (!lo) return std::nullopt;
  return *lo + phase.offset;
}

std::string format_time(std::int64_t seconds) {
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace retentiond::crash
