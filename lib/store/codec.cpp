#include "lib/store/codec.hpp"

#include <unistd.h>

#include <charconv>

#include <nlohmann/json.hpp>

namespace retentiond::store {

std::string_view to_string(RecordState s) {
  switch (s) {
    case RecordState::active: return "active";
    case RecordState::archived: return "archived";
    case RecordState::anonymised: return "anonymised";
  }
  return "?";
}

std::string_view to_string(JobState s) {
  switch (s) {
    case JobState::pending: return "pending";
    case JobState::in_flight: return "in_flight";
    case JobState::failed: return "failed";
    case JobState::done: return "done";
    case JobState::discarded: return "discarded";
  }
  return "?";
}

std::optional<JobState> job_state_from(std::string_view s) {
  for (JobState st : {JobState::pending, JobState::in_flight, JobState::failed, JobState::done, JobState::discarded}) {
    if (to_string(st) == s) return st;
  }
  return std::nullopt;
}

Status Store::insert(const StoredRecord& row) {
  auto inserted = insert_new(row);
  if (!inserted) return std::move(inserted).error();
  if (!*inserted) return Error::storage("record '" + row.key + "' already exists; nothing was changed");
  return {};
}

namespace codec {

using calendar::Instant;

std::int64_t day_of(std::int64_t t) { return t >= 0 ? t / kDay : -((-t + kDay - 1) / kDay); }

Error storage_error(const std::exception& e) {
  return Error::storage(std::string("database error: ") + e.what() + "; nothing was changed");
}

std::string daemon_name() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return std::string("retentiond ") + host + " pid " + std::to_string(::getpid());
}

std::optional<DaemonSeen> daemon_from_name(const std::string& name) {
  constexpr std::string_view prefix = "retentiond ";
  const auto at = name.rfind(" pid ");
  if (!name.starts_with(prefix) || at == std::string::npos || at < prefix.size()) return std::nullopt;
  DaemonSeen d;
  d.host = name.substr(prefix.size(), at - prefix.size());
  const char* first = name.data() + at + 5;
  const char* last = name.data() + name.size();
  const auto [p, ec] = std::from_chars(first, last, d.pid);
  if (ec != std::errc() || p != last) return std::nullopt;
  return d;
}

std::string dates_to_json(const policy::Dates& dates) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, t] : dates) j[name] = t.seconds;
  return j.dump();
}

policy::Dates dates_from_json(const std::string& text) {
  policy::Dates out;
  const auto j = nlohmann::json::parse(text);  // must outlive items()
  for (const auto& [name, v] : j.items()) out.emplace(name, Instant{v.get<std::int64_t>()});
  return out;
}

std::string done_to_json(const std::vector<Instant>& done) {
  if (done.empty()) return "[]";
  nlohmann::json j = nlohmann::json::array();
  for (const auto& t : done) j.push_back(t.seconds);
  return j.dump();
}

std::vector<Instant> done_from_json(const std::string& text) {
  std::vector<Instant> out;
  if (text == "[]") return out;
  for (const auto& v : nlohmann::json::parse(text)) out.push_back(Instant{v.get<std::int64_t>()});
  return out;
}

RecordState state_from(const std::string& s) {
  if (s == "anonymised") return RecordState::anonymised;
  return s == "archived" ? RecordState::archived : RecordState::active;
}

void add_count(RecordCounts& c, RecordState state, std::int64_t n) {
  (state == RecordState::anonymised ? c.anonymised : state == RecordState::archived ? c.archived : c.active) += n;
}

std::string pack_slots(const std::vector<std::int64_t>& slots) {
  std::string out;
  out.reserve(slots.size() * 8);
  for (const auto slot : slots) {
    auto v = static_cast<std::uint64_t>(slot);
    for (int i = 0; i < 8; ++i, v >>= 8) out.push_back(static_cast<char>(v & 0xff));
  }
  return out;
}

std::vector<std::int64_t> unpack_slots(const std::string& blob) {
  std::vector<std::int64_t> out;
  out.reserve(blob.size() / 8);
  for (std::size_t at = 0; at + 8 <= blob.size(); at += 8) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(blob[at + static_cast<std::size_t>(i)]);
    out.push_back(static_cast<std::int64_t>(v));
  }
  return out;
}

}  // namespace codec
}  // namespace retentiond::store
