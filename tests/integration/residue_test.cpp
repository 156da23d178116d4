// Erasure is real: after purge, anonymise, erase, replacement and a released
// subject hold, no destroyed value can be read from any file under
// state_dir. Personal values are stored sealed (see lib/vault/vault.hpp),
// so kept values are not readable from the files either: the positive
// controls show that the scan does find what is stored in clear (record
// keys), and that the kept values are still there to be read through the
// socket.

#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <iterator>
#include <map>

#include "tests/support/daemon_process.hpp"

namespace retentiond::testing {
namespace {

using nlohmann::json;

// Where `needle` occurs in the files under `dir`: per file, the count and
// the first occurrence with what follows it (to name the value).
std::map<std::string, int> occurrences(const std::filesystem::path& dir, const std::string& needle,
                                       std::string* sample = nullptr) {
  std::map<std::string, int> found;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (auto at = bytes.find(needle); at != std::string::npos; at = bytes.find(needle, at + 1)) {
      ++found[entry.path().filename().string()];
      if (sample != nullptr && sample->empty()) *sample = bytes.substr(at, 24);
    }
  }
  return found;
}

// How many slots of the key file hold a key (are not all zeros).
int live_keys(const std::filesystem::path& state) {
  std::ifstream in(state / "keys", std::ios::binary);
  const std::string keys((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  int n = 0;
  for (std::size_t at = 0; at + 32 <= keys.size(); at += 32) n += keys.compare(at, 32, std::string(32, '\0')) != 0;
  return n;
}

std::string describe(const std::map<std::string, int>& found) {
  std::string out;
  for (const auto& [file, n] : found) out += file + ": " + std::to_string(n) + "; ";
  return out;
}

constexpr int kPerKind = 600;

TEST(Residue, NoDestroyedValueIsReadableFromAnyFileInTheStateDirectory) {
  TempDir dir;
  const auto config = dir.path() / "residue.toml";
  std::ofstream(config) << R"([daemon]
state_dir = "unused"
[[categories]]
name = "gone"
purpose = "purged by the sweep"
legal_basis = "consent"
phases = [ { action = "purge", at = "collected + 1 day" } ]
[[categories]]
name = "anon"
purpose = "anonymised by the sweep"
legal_basis = "consent"
phases = [ { action = "anonymise", at = "collected + 1 day" } ]
anonymise = { kept = "keep", ip = "truncate_ip" }
[[categories]]
name = "arch"
purpose = "archived, then erased on request"
legal_basis = "consent"
phases = [ { action = "archive", at = "collected + 1 day" }, { action = "purge", at = "collected + 100 years" } ]
[[categories]]
name = "long"
purpose = "erased on request, or kept"
legal_basis = "consent"
phases = [ { action = "purge", at = "collected + 100 years" } ]
)";
  DaemonProcess daemon(dir.path(), {"--config", config.string(), "--now", "2030-01-01T00:00:00Z"});
  Client client(daemon.socket());

  // Interleave the kinds so destroyed and kept values share pages.
  json batch = json::array();
  const auto flush = [&] {
    const json reply = client.call("record.put_many", {{"records", batch}});
    ASSERT_FALSE(reply.contains("error")) << reply.dump();
    batch = json::array();
  };
  const std::string pad(40, 'x');
  for (int i = 0; i < kPerKind; ++i) {
    const std::string n = std::to_string(i);
    batch.push_back({{"key", "g" + n}, {"subject", "SUBJ-GONE-" + n}, {"category", "gone"},
                     {"fields", {{"v", "CANARY-GONE-" + n + pad}}}, {"dates", {{"collected", "2020-01-01"}}}});
    batch.push_back({{"key", "a" + n}, {"subject", "SUBJ-ANON-" + n}, {"category", "anon"},
                     {"fields", {{"secret", "CANARY-ANON-" + n + pad}, {"ip", "10.9.8.7"}, {"kept", "KEPT-A-" + n}}},
                     {"dates", {{"collected", "2020-01-01"}}}});
    batch.push_back({{"key", "e" + n}, {"subject", "SUBJ-ERASE-" + std::to_string(i % 20)}, {"category", "long"},
                     {"fields", {{"v", "CANARY-ERASE-" + n + pad}}}});
    batch.push_back({{"key", "x" + n}, {"subject", "SUBJ-ARCH-" + std::to_string(i % 20)}, {"category", "arch"},
                     {"fields", {{"v", "CANARY-ARCH-" + n + pad}}}, {"dates", {{"collected", "2020-01-01"}}}});
    batch.push_back({{"key", "r" + n}, {"subject", "keeper"}, {"category", "long"},
                     {"fields", {{"v", "CANARY-REPLACED-" + n + pad}}}});
    batch.push_back({{"key", "CONTROL-KEY-" + n}, {"subject", "keeper"}, {"category", "long"},
                     {"fields", {{"v", "CONTROL-KEPT-" + n + pad}}}});
    if (batch.size() >= 500) flush();
  }
  flush();
  // Replace every r-record: the old values must go.
  for (int i = 0; i < kPerKind; ++i) {
    batch.push_back({{"key", "r" + std::to_string(i)}, {"subject", "keeper"}, {"category", "long"},
                     {"fields", {{"v", "NEW-VALUE-" + std::to_string(i)}}}});
    if (batch.size() >= 500) flush();
  }
  flush();

  // A hold naming a subject, released: its target must go too.
  const json hold = client.call("hold.place", {{"subject", "SUBJ-HELD-ONCE"}, {"reason", "litigation"}});
  ASSERT_TRUE(hold.contains("result")) << hold.dump();
  ASSERT_FALSE(client.call("hold.release", {{"id", hold["result"]["id"]}}).contains("error"));

  const json sweep = client.call("sweep");
  EXPECT_EQ(sweep["result"]["purged"], kPerKind);
  EXPECT_EQ(sweep["result"]["anonymised"], kPerKind);
  EXPECT_EQ(sweep["result"]["archived"], kPerKind);
  for (int s = 0; s < 20; ++s) {
    for (const char* who : {"SUBJ-ERASE-", "SUBJ-ARCH-"}) {  // from the active database and from the archive
      const json erased = client.call("subject.erase", {{"subject", who + std::to_string(s)}, {"reason", "request"}});
      EXPECT_EQ(erased["result"]["erased"].size(), static_cast<std::size_t>(kPerKind / 20));
    }
  }

  const auto scan = [&](const char* when) {
    for (const char* destroyed :
         {"CANARY-", "SUBJ-GONE-", "SUBJ-ANON-", "SUBJ-ERASE-", "SUBJ-ARCH-", "SUBJ-HELD-ONCE", "10.9.8.7"}) {
      std::string sample;
      const auto found = occurrences(daemon.state_dir(), destroyed, &sample);
      EXPECT_TRUE(found.empty()) << when << ": '" << destroyed << "' still readable in " << describe(found)
                                 << " e.g. '" << sample << "'";
    }
    // Positive control: the same scan finds what is stored in clear, in the
    // database and, while it runs, its WAL.
    const auto control = occurrences(daemon.state_dir(), "CONTROL-KEY-");
    EXPECT_FALSE(control.empty()) << when << ": control keys not found";
    for (const auto& [file, n] : control) {
      EXPECT_TRUE(file == "retention.db" || file == "retention.db-wal") << when << ": control keys in " << file;
    }
  };
  // What was kept is kept: readable through the socket.
  const auto field = [&](const std::string& key, const char* name) {
    const json got = client.call("record.get", {{"key", key}, {"include_archived", true}});
    return got["result"]["fields"].value(name, std::string("(missing: ") + got.dump() + ")");
  };
  for (const int i : {0, 299, kPerKind - 1}) {
    const std::string n = std::to_string(i);
    EXPECT_EQ(field("CONTROL-KEY-" + n, "v"), "CONTROL-KEPT-" + n + pad);
    EXPECT_EQ(field("a" + n, "kept"), "KEPT-A-" + n);
    EXPECT_EQ(field("a" + n, "ip"), "10.9.8.0");
    EXPECT_EQ(field("r" + n, "v"), "NEW-VALUE-" + n);
  }
  scan("while running");
  ASSERT_EQ(daemon.stop(SIGTERM), 0);
  scan("after shutdown");
  // Every key that sealed a destroyed value is gone: the key file holds as
  // many keys as there are live records (a, r and CONTROL-KEY records).
  std::ifstream in(daemon.state_dir() / "keys", std::ios::binary);
  const std::string keys((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  int live_keys = 0;
  for (std::size_t at = 0; at + 32 <= keys.size(); at += 32) {
    live_keys += keys.compare(at, 32, std::string(32, '\0')) != 0 ? 1 : 0;
  }
  EXPECT_EQ(live_keys, 3 * kPerKind);
}

// The undo window (purge_grace): a purged value stays readable through
// record.restore until the window ends, then its key is destroyed like any
// other's: the keys file holds only the live records' keys, and the scan
// finds no value.
TEST(Residue, AfterTheUndoWindowAPurgedValueIsUnreadableFromEveryFile) {
  TempDir dir;
  const auto config = dir.path() / "grace.toml";
  std::ofstream(config) << R"([daemon]
state_dir = "unused"
purge_grace = "30 days"
[[categories]]
name = "gone"
purpose = "purged by the sweep"
legal_basis = "consent"
phases = [ { action = "purge", at = "collected + 1 day" } ]
[[categories]]
name = "long"
purpose = "kept, or erased on request"
legal_basis = "consent"
phases = [ { action = "purge", at = "collected + 100 years" } ]
)";
  constexpr int kRecords = 300;
  const std::string pad(40, 'x');
  std::filesystem::path state;
  {
    DaemonProcess daemon(dir.path(), {"--config", config.string(), "--now", "2030-01-01T00:00:00Z"});
    state = daemon.state_dir();
    Client client(daemon.socket());
    json batch = json::array();
    for (int i = 0; i < kRecords; ++i) {
      const std::string n = std::to_string(i);
      batch.push_back({{"key", "g" + n}, {"subject", "SUBJ-GONE-" + n}, {"category", "gone"},
                       {"fields", {{"v", "CANARY-GONE-" + n + pad}}}, {"dates", {{"collected", "2020-01-01"}}}});
      batch.push_back({{"key", "e" + n}, {"subject", "SUBJ-ERASE"}, {"category", "long"},
                       {"fields", {{"v", "CANARY-ERASE-" + n + pad}}}});
      batch.push_back({{"key", "CONTROL-KEY-" + n}, {"subject", "keeper"}, {"category", "long"},
                       {"fields", {{"v", "CONTROL-KEPT-" + n + pad}}}});
    }
    ASSERT_FALSE(client.call("record.put_many", {{"records", batch}}).contains("error"));
    EXPECT_EQ(client.call("sweep")["result"]["purged"], kRecords);
    EXPECT_EQ(client.call("subject.erase", {{"subject", "SUBJ-ERASE"}, {"reason", "request"}})["result"]["erased"].size(),
              static_cast<std::size_t>(kRecords));
    // Within the window: gone for readers, every key still there, and one
    // brought back with its value.
    EXPECT_EQ(client.call("record.get", {{"key", "g7"}})["error"]["data"]["reason"], "not_found");
    EXPECT_EQ(live_keys(state), 3 * kRecords);
    const json restored = client.call("record.restore", {{"key", "e7"}, {"reason", "erased by mistake"}});
    EXPECT_EQ(restored["result"], json({{"key", "e7"}, {"state", "active"}})) << restored.dump();
    EXPECT_EQ(client.call("record.get", {{"key", "e7"}})["result"]["fields"]["v"], "CANARY-ERASE-7" + pad);
    ASSERT_EQ(daemon.stop(SIGTERM), 0);
  }
  {
    // 31 days later: the window has ended for every purged and erased record.
    DaemonProcess daemon(dir.path(), {"--config", config.string(), "--now", "2030-02-01T00:00:00Z"});
    Client client(daemon.socket());
    ASSERT_FALSE(client.call("sweep").contains("error"));
    EXPECT_EQ(client.call("record.restore", {{"key", "g7"}, {"reason", "too late"}})["error"]["data"]["reason"],
              "not_found");
    EXPECT_EQ(client.call("record.explain", {{"key", "g7"}})["result"].value("restorable_until", json("none")), "none");
    EXPECT_EQ(client.call("record.get", {{"key", "e7"}})["result"]["fields"]["v"], "CANARY-ERASE-7" + pad);
    ASSERT_EQ(daemon.stop(SIGTERM), 0);
  }
  for (const char* destroyed : {"CANARY-", "SUBJ-GONE-", "SUBJ-ERASE"}) {
    std::string sample;
    const auto found = occurrences(state, destroyed, &sample);
    EXPECT_TRUE(found.empty()) << "'" << destroyed << "' readable in " << describe(found) << " e.g. '" << sample << "'";
  }
  EXPECT_FALSE(occurrences(state, "CONTROL-KEY-").empty()) << "the scan finds what is stored in clear";
  // The controls and the one restored record: every other key is zeroed.
  EXPECT_EQ(live_keys(state), kRecords + 1);
}

// Connector jobs (issue 14) carry the subject, sealed under a key of their
// own: it lives while the job is unfinished, and its key is zeroed when the
// job is done or discarded, after which it is unreadable from every file.
TEST(Residue, AConnectorJobsSubjectIsUnreadableOnceTheJobIsDoneOrDiscarded) {
  TempDir dir;
  const auto config = dir.path() / "jobs.toml";
  std::ofstream(config) << R"([daemon]
state_dir = "unused"
[[connectors]]
name = "app"
kind = "pull"
[[categories]]
name = "gone"
purpose = "purged by the sweep, and in the application"
legal_basis = "consent"
phases = [ { action = "purge", at = "collected + 1 day" } ]
connectors = ["app"]
)";
  constexpr int kRecords = 200;
  std::filesystem::path state;
  {
    DaemonProcess daemon(dir.path(), {"--config", config.string(), "--now", "2030-01-01T00:00:00Z"});
    state = daemon.state_dir();
    Client client(daemon.socket());
    json batch = json::array();
    for (int i = 0; i < kRecords; ++i) {
      batch.push_back({{"key", "CONTROL-KEY-" + std::to_string(i)}, {"subject", "SUBJ-JOB-" + std::to_string(i)},
                       {"category", "gone"}, {"dates", {{"collected", "2020-01-01"}}}});
    }
    ASSERT_FALSE(client.call("record.put_many", {{"records", batch}}).contains("error"));
    EXPECT_EQ(client.call("sweep")["result"]["purged"], kRecords);
    // The records are destroyed; their jobs hold the subjects, one key each.
    EXPECT_EQ(live_keys(state), kRecords);
    const json claimed = client.call("connector.claim", {{"connector", "app"}, {"max", 1000}})["result"]["jobs"];
    ASSERT_EQ(claimed.size(), static_cast<std::size_t>(kRecords));
    EXPECT_EQ(claimed[0]["subject"].get<std::string>().rfind("SUBJ-JOB-", 0), 0u);
    json done = json::array(), dropped = json::array();
    for (std::size_t i = 0; i < claimed.size(); ++i) (i % 4 == 0 ? dropped : done).push_back(claimed[i]["id"]);
    EXPECT_EQ(client.call("connector.ack", {{"connector", "app"}, {"ids", done}, {"outcome", "done"}})["result"]["acknowledged"],
              done.size());
    EXPECT_EQ(client.call("connector.discard", {{"connector", "app"}, {"ids", dropped}, {"reason", "test"}})["result"]["discarded"],
              dropped.size());
    ASSERT_EQ(daemon.stop(SIGTERM), 0);
  }
  EXPECT_EQ(live_keys(state), 0);
  std::string sample;
  const auto found = occurrences(state, "SUBJ-JOB-", &sample);
  EXPECT_TRUE(found.empty()) << "'SUBJ-JOB-' readable in " << describe(found) << " e.g. '" << sample << "'";
  EXPECT_FALSE(occurrences(state, "CONTROL-KEY-").empty()) << "the scan finds what is stored in clear";
}

}  // namespace
}  // namespace retentiond::testing
