#include "bench/records.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <stdexcept>
#include <string_view>

namespace retentiond::bench {
namespace {

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Days since 1970-01-01 to YYYY-MM-DD (H. Hinnant's civil_from_days).
std::string date_from_days(std::int64_t z) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04lld-%02u-%02u", static_cast<long long>(y), m, d);
  return buf;
}

// YYYY-MM-DD to days since 1970-01-01 (H. Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool leap(std::int64_t y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

// `days` (since the epoch) plus `years`, the day clamped to the month's
// last day (29 February + 3 years is 28 February), as lib/calendar's add().
std::int64_t add_years(std::int64_t days, int years) {
  const std::string date = date_from_days(days);
  const std::int64_t y = std::stoll(date.substr(0, 4)) + years;
  const auto m = static_cast<unsigned>(std::stoi(date.substr(5, 2)));
  auto d = static_cast<unsigned>(std::stoi(date.substr(8, 2)));
  if (m == 2 && d == 29 && !leap(y)) d = 28;
  return days_from_civil(y, m, d);
}

constexpr std::int64_t kSecondsPerDay = 86400;

// 2018-01-01 and 2020-01-02 as days since the epoch.
constexpr std::int64_t kCollectedFirst = 17532;
constexpr std::int64_t kCollectedDays = 730;  // ..2019-12-31
constexpr std::int64_t kLastContactFirst = 18263;
constexpr std::int64_t kLastContactDays = 546;  // ..2021-06-30

constexpr std::array<std::string_view, 20> kFirst = {
    "camille", "louis",  "lea",  "gabriel", "manon", "arthur", "chloe", "jules",  "ines", "hugo",
    "sarah",   "nathan", "emma", "lucas",   "jade",  "adam",   "alice", "victor", "lina", "paul"};
constexpr std::array<std::string_view, 20> kLast = {
    "martin", "bernard", "dubois",   "thomas", "robert",  "richard",  "petit",
    "durand", "leroy",   "moreau",   "simon",  "laurent", "lefebvre", "michel",
    "garcia", "david",   "bertrand", "roux",   "vincent", "fournier"};
constexpr std::array<std::string_view, 5> kDomains = {
    "example.org", "example.com", "mail.example.net", "corp.example", "example.fr"};
constexpr std::array<std::string_view, 8> kStreets = {
    "rue de la Paix", "avenue Foch",   "boulevard Voltaire", "rue Oberkampf",
    "place d'Italie", "quai de Valmy", "rue du Bac",         "avenue de Clichy"};

std::string capitalised(std::string_view s) {
  std::string out(s);
  if (!out.empty() && out[0] >= 'a' && out[0] <= 'z')
    out[0] = static_cast<char>(out[0] - 'a' + 'A');
  return out;
}

void append_pair(std::string& out, bool& first, std::string_view name, std::string_view value) {
  if (!first) out += ',';
  first = false;
  out += '"';
  out += name;
  out += "\":\"";
  out += value;
  out += '"';
}

}  // namespace

BenchRecord RecordGenerator::make(std::uint64_t index) const {
  BenchRecord r;
  // Per-record stream: the same (seed, index) always gives the same values.
  std::uint64_t state = m_seed ^ (index * 0xD1B54A32D192ED03ull);
  const std::uint64_t h0 = splitmix64(state);
  const std::uint64_t h1 = splitmix64(state);
  const std::uint64_t h2 = splitmix64(state);

  r.category = index % 2 == 0 ? kPurgeCategory : kAnonymiseCategory;

  // Keys: a random-looking prefix (so key order is unrelated to due order, as
  // with real identifiers) and the index (so keys are unique).
  char key[48];
  std::snprintf(key, sizeof key, "c-%08x-%010llu", static_cast<unsigned>(h0 >> 32),
                static_cast<unsigned long long>(index));
  r.key = key;

  // Two records per subject: 2k (purged) and 2k+1 (anonymised).
  std::uint64_t subject_state = m_seed ^ ((index / 2) * 0xA24BAED4963EE407ull);
  const std::uint64_t hs = splitmix64(subject_state);
  const std::string_view first = kFirst[hs % kFirst.size()];
  const std::string_view last = kLast[(hs >> 8) % kLast.size()];
  r.subject = std::string(first) + "." + std::string(last) + "." + std::to_string(index / 2) + "@" +
              std::string(kDomains[(hs >> 16) % kDomains.size()]);

  const std::int64_t collected_day = kCollectedFirst + static_cast<std::int64_t>(h1 % kCollectedDays);
  const std::int64_t last_contact_day =
      kLastContactFirst + static_cast<std::int64_t>((h1 >> 20) % kLastContactDays);
  const std::string collected = date_from_days(collected_day);
  r.last_contact = date_from_days(last_contact_day);
  // The policy's `at` expressions (policy_toml below), on midnight UTC.
  r.due = kSecondsPerDay * (r.category == kPurgeCategory
                                ? add_years(std::max(collected_day, last_contact_day), 3)
                                : add_years(last_contact_day, 6));
  r.dates_json =
      "{\"collected\":\"" + collected + "\",\"last_contact\":\"" + r.last_contact + "\"}";

  // 2-4 fields: always the email, then 1-3 of the others from a rotating start.
  const unsigned count = 2 + static_cast<unsigned>(h2 % 3);
  const unsigned start = static_cast<unsigned>((h2 >> 8) % 5);
  r.fields_json = "{";
  bool first_field = true;
  append_pair(r.fields_json, first_field, "email", r.subject);
  for (unsigned i = 0; i + 1 < count; ++i) {
    char buf[64];
    switch ((start + i) % 5) {
      case 0:
        append_pair(r.fields_json, first_field, "name",
                    capitalised(first) + " " + capitalised(last));
        break;
      case 1:
        std::snprintf(
            buf, sizeof buf, "+33 6 %02u %02u %02u %02u", static_cast<unsigned>((h2 >> 16) % 100),
            static_cast<unsigned>((h2 >> 24) % 100), static_cast<unsigned>((h2 >> 32) % 100),
            static_cast<unsigned>((h2 >> 40) % 100));
        append_pair(r.fields_json, first_field, "phone", buf);
        break;
      case 2:
        std::snprintf(buf, sizeof buf, "198.51.%u.%u", static_cast<unsigned>((h0 >> 8) % 256),
                      static_cast<unsigned>((h0 >> 16) % 254 + 1));
        append_pair(r.fields_json, first_field, "ip", buf);
        break;
      case 3:
        append_pair(r.fields_json, first_field, "birth_date",
                    date_from_days(-3650 + static_cast<std::int64_t>((h2 >> 48) % 14600)));
        break;
      default:
        std::snprintf(buf, sizeof buf, "%u %s, 750%02u Paris",
                      static_cast<unsigned>((h0 >> 24) % 180 + 1),
                      std::string(kStreets[(h0 >> 40) % kStreets.size()]).c_str(),
                      static_cast<unsigned>((h0 >> 48) % 20 + 1));
        append_pair(r.fields_json, first_field, "address", buf);
        break;
    }
  }
  r.fields_json += '}';
  return r;
}

void RecordGenerator::append_json(const BenchRecord& r, std::string& out) {
  out += "{\"key\":\"";
  out += r.key;
  out += "\",\"subject\":\"";
  out += r.subject;
  out += "\",\"category\":\"";
  out += r.category;
  out += "\",\"fields\":";
  out += r.fields_json;
  out += ",\"dates\":";
  out += r.dates_json;
  out += '}';
}

std::string RecordGenerator::anonymised_fields(const BenchRecord& r) {
  return anonymised_fields(r.fields_json);
}

std::string RecordGenerator::anonymised_fields(const std::string& fields_json) {
  // The shape the strategies give (email: a 64-hex HMAC, birth_date: the
  // year, ip: last octet zeroed, phone: redacted, name and address dropped);
  // the raw UPDATE writes bytes of the same size, it computes no HMAC.
  std::string out = "{\"email\":\"" + std::string(64, 'a') + "\"";
  if (fields_json.find("\"phone\"") != std::string::npos) out += ",\"phone\":\"[redacted]\"";
  if (const auto at = fields_json.find("\"ip\":\""); at != std::string::npos) {
    const auto begin = at + 6;
    const auto end = fields_json.find('"', begin);
    std::string ip = fields_json.substr(begin, end - begin);
    ip = ip.substr(0, ip.rfind('.')) + ".0";
    out += ",\"ip\":\"" + ip + "\"";
  }
  if (const auto at = fields_json.find("\"birth_date\":\""); at != std::string::npos) {
    out += ",\"birth_date\":\"" + fields_json.substr(at + 14, 4) + "\"";
  }
  out += '}';
  return out;
}

std::string last_contact_cutoff(int percent) {
  const std::int64_t days = std::max<std::int64_t>(0, kLastContactDays * percent / 100 - 1);
  std::string date = date_from_days(kLastContactFirst + days);
  if (date.substr(5) == "02-29") date = date_from_days(kLastContactFirst + days + 1);
  return date;
}

std::string plus_years(const std::string& date, int years) {
  return std::to_string(std::stoi(date.substr(0, 4)) + years) + date.substr(4) + "T00:00:00Z";
}

std::int64_t instant_seconds(const std::string& instant) {
  unsigned y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  int used = 0;
  const bool date_only = instant.size() == 10 &&
                         std::sscanf(instant.c_str(), "%4u-%2u-%2u%n", &y, &mo, &d, &used) == 3;
  const bool full = instant.size() == 20 &&
                    std::sscanf(instant.c_str(), "%4u-%2u-%2uT%2u:%2u:%2uZ%n", &y, &mo, &d, &h, &mi,
                                &sec, &used) == 6;
  if ((!date_only && !full) || used != static_cast<int>(instant.size()) || mo < 1 || mo > 12 ||
      d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59) {
    throw std::invalid_argument("not an instant: '" + instant + "'");
  }
  return days_from_civil(y, mo, d) * kSecondsPerDay + h * 3600 + mi * 60 + sec;
}

std::string policy_toml(const std::filesystem::path& dir, bool connector) {
  return "# Written by retentiond-bench.\n"
         "[daemon]\n"
         "state_dir = \"" +
         (dir / "state").string() +
         "\"\n"
         "socket = \"" +
         (dir / "admin.sock").string() +
         "\"\n"
         "log_level = \"info\"\n"
         // Each restart jumps the clock years ahead over every record on
         // purpose: the clock guard would pause the sweeps being measured.
         "clock_guard = \"1000 years\"\n"
         "\n" +
         std::string(connector ? "[[connectors]]\nname = \"bench\"\nkind = \"pull\"\n\n" : "") +
         "[[categories]]\n"
         "name = \"" +
         std::string(kPurgeCategory) +
         "\"\n"
         "purpose = \"Benchmark: prospects purged three years after the last contact\"\n"
         "legal_basis = \"legitimate_interest\"\n"
         "dates = [\"collected\", \"last_contact\"]\n"
         "phases = [\n"
         "  { action = \"purge\", at = \"max(collected, last_contact) + 3 years\" },\n"
         "]\n" +
         std::string(connector ? "connectors = [\"bench\"]\n" : "") +
         "\n"
         "[[categories]]\n"
         "name = \"" +
         std::string(kAnonymiseCategory) +
         "\"\n"
         "purpose = \"Benchmark: usage data kept in anonymised form six years after the last "
         "contact\"\n"
         "legal_basis = \"legitimate_interest\"\n"
         "dates = [\"collected\", \"last_contact\"]\n"
         "phases = [\n"
         "  { action = \"anonymise\", at = \"last_contact + 6 years\" },\n"
         "]\n"
         "anonymise = { email = \"hmac\", name = \"drop\", phone = \"redact\", ip = "
         "\"truncate_ip\", "
         "birth_date = \"year_only\", address = \"drop\" }\n";
}

}  // namespace retentiond::bench
