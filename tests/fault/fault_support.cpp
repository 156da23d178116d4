#include "tests/fault/fault_support.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <sched.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <stdexcept>

#include "lib/audit/audit.hpp"
#include "lib/crypto/crypto.hpp"
#include "tests/crash/layout.hpp"

namespace retentiond::testing {
namespace {

std::string errno_text() { return std::strerror(errno); }

// Once per process: a mount namespace of our own, its mounts private, so a
// tmpfs left mounted by a test that crashed goes away with the process (and
// the daemon it started). Needs to run while the process has one thread;
// when it cannot be had, mounts go to the shared namespace and rely on the
// destructor.
void private_mounts_once() {
  static const bool done = [] {
    if (::unshare(CLONE_NEWNS) != 0) return false;
    return ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0;
  }();
  (void)done;
}

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int remaining_ms(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

}  // namespace

// --- SmallFilesystem ---

SmallFilesystem::SmallFilesystem(const std::filesystem::path& where, std::uint64_t bytes)
    : m_path(where), m_filler(where / "filler") {
  std::filesystem::create_directories(where);
  private_mounts_once();
  const std::string options = "size=" + std::to_string(bytes) + ",mode=0700";
  if (::mount("tmpfs", where.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
    m_error = "cannot mount a tmpfs on " + where.string() + ": " + errno_text() + " (the fault tests need root)";
    return;
  }
  m_mounted = true;
}

SmallFilesystem::~SmallFilesystem() {
  if (!m_mounted) return;
  if (::umount2(m_path.c_str(), 0) != 0) (void)::umount2(m_path.c_str(), MNT_DETACH);
}

std::uint64_t SmallFilesystem::free_bytes() const {
  struct statvfs s {};
  if (::statvfs(m_path.c_str(), &s) != 0) throw std::runtime_error("statvfs " + m_path.string() + ": " + errno_text());
  return static_cast<std::uint64_t>(s.f_bavail) * s.f_frsize;
}

std::uint64_t SmallFilesystem::fill(std::uint64_t leave) {
  const int fd = ::open(m_filler.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("open " + m_filler.string() + ": " + errno_text());
  // Big writes first, then ever smaller ones, until not one byte fits.
  std::string chunk(1 << 20, 'f');
  std::size_t size = chunk.size();
  while (size > 0) {
    const ssize_t n = ::write(fd, chunk.data(), size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != ENOSPC) {
      ::close(fd);
      throw std::runtime_error("write " + m_filler.string() + ": " + errno_text());
    }
    if (n <= 0 || static_cast<std::size_t>(n) < size) size /= 2;
  }
  off_t end = ::lseek(fd, 0, SEEK_END);
  if (leave > 0) {
    end = std::max<off_t>(0, end - static_cast<off_t>(leave));
    if (::ftruncate(fd, end) != 0) {
      ::close(fd);
      throw std::runtime_error("ftruncate " + m_filler.string() + ": " + errno_text());
    }
  }
  ::close(fd);
  return static_cast<std::uint64_t>(end);
}

void SmallFilesystem::release() {
  std::error_code ec;
  std::filesystem::remove(m_filler, ec);
}

// --- DatabaseLock ---

DatabaseLock::DatabaseLock(const std::filesystem::path& db, Mode mode)
    : m_db(std::make_unique<SQLite::Database>(db.string(), SQLite::OPEN_READWRITE)) {
  m_db->setBusyTimeout(10000);
  if (m_db->execAndGet("PRAGMA journal_mode").getString() != "wal") {
    throw std::runtime_error(db.string() + " is not in WAL mode");
  }
  if (mode == Mode::write) {
    m_db->exec("BEGIN IMMEDIATE");
  } else {
    // A deferred transaction takes its snapshot at its first read.
    m_db->exec("BEGIN");
    m_db->execAndGet("SELECT count(*) FROM sqlite_master");
  }
  m_held = true;
}

DatabaseLock::~DatabaseLock() { release(); }

std::int64_t DatabaseLock::count(const std::string& sql) { return m_db->execAndGet(sql).getInt64(); }

void DatabaseLock::release() {
  if (!m_held) return;
  m_held = false;
  m_db->exec("ROLLBACK");
}

// --- Immutable ---

namespace {

// Sets or clears FS_IMMUTABLE_FL; "" on success, else why not.
std::string set_immutable(const std::filesystem::path& file, bool on) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return "open " + file.string() + ": " + errno_text();
  int flags = 0;
  std::string error;
  if (::ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) {
    error = "FS_IOC_GETFLAGS " + file.string() + ": " + errno_text();
  } else {
    flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
    if (::ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0) error = "FS_IOC_SETFLAGS " + file.string() + ": " + errno_text();
  }
  ::close(fd);
  return error;
}

}  // namespace

Immutable::Immutable(const std::filesystem::path& file) : m_file(file) {
  m_error = set_immutable(file, true);
  m_set = m_error.empty();
}

Immutable::~Immutable() { clear(); }

void Immutable::clear() {
  if (!m_set) return;
  if (const auto error = set_immutable(m_file, false); !error.empty()) throw std::runtime_error(error);
  m_set = false;
}

// --- LogFile ---

LogFile::LogFile(std::filesystem::path path) : m_path(std::move(path)) { std::ofstream(m_path, std::ios::app).flush(); }

DaemonOptions LogFile::options(DaemonOptions base) const {
  // sh execs the daemon (same pid) with stderr appended to the file.
  base.launcher = {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>>'" + m_path.string() + "'"};
  return base;
}

std::optional<std::string> LogFile::wait_for(const std::vector<std::string>& needles, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const int fd = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) throw std::runtime_error("inotify_init1: " + errno_text());
  if (::inotify_add_watch(fd, m_path.c_str(), IN_MODIFY) < 0) {
    ::close(fd);
    throw std::runtime_error("inotify_add_watch " + m_path.string() + ": " + errno_text());
  }
  // The watch is in place before each read, so no write is missed.
  std::optional<std::string> found;
  for (;;) {
    const std::string text = read_all(m_path);
    std::size_t at = m_cursor;
    while (at < text.size()) {
      const std::size_t nl = text.find('\n', at);
      if (nl == std::string::npos) break;
      const std::string line = text.substr(at, nl - at);
      at = nl + 1;
      if (std::all_of(needles.begin(), needles.end(), [&](const std::string& n) { return line.find(n) != std::string::npos; })) {
        m_cursor = at;
        found = line;
        break;
      }
    }
    if (found) break;
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, remaining_ms(deadline)) <= 0) {
      if (std::chrono::steady_clock::now() >= deadline) break;
      continue;
    }
    char buf[4096];
    while (::read(fd, buf, sizeof buf) > 0) {
    }
  }
  ::close(fd);
  return found;
}

std::vector<std::string> LogFile::lines() const {
  const std::string text = read_all(m_path);
  std::vector<std::string> out;
  std::size_t at = 0;
  for (std::size_t nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1) out.push_back(text.substr(at, nl - at));
  return out;
}

std::size_t LogFile::count(const std::string& needle) const {
  const auto all = lines();
  return static_cast<std::size_t>(
      std::count_if(all.begin(), all.end(), [&](const std::string& l) { return l.find(needle) != std::string::npos; }));
}

std::string LogFile::tail(std::size_t n) const {
  const auto all = lines();
  std::string out;
  for (std::size_t i = all.size() > n ? all.size() - n : 0; i < all.size(); ++i) out += all[i] + "\n";
  return out;
}

std::unique_ptr<DaemonProcess> LogFile::start(const std::filesystem::path& dir, const std::vector<std::string>& args) const {
  try {
    return std::make_unique<DaemonProcess>(dir, args, options());
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(e.what()) + "; its log ends:\n" + tail());
  }
}

// --- check_state ---

StateReport check_state(const std::filesystem::path& state_dir) {
  StateReport report;
  auto& problems = report.problems;
  const auto problem = [&](std::string p) { problems.push_back(std::move(p)); };

  for (const auto& name : crash::legacy_files(state_dir)) {
    problem(name + " is in the state directory: a file of the two-file layout (one file in WAL mode has none)");
  }
  // retention.db-wal is not checked as the rollback journal was: frames
  // after its last commit are no half-done change (readers ignore them, the
  // next writer overwrites them; a failed commit leaves them). What counts
  // is the committed state, read below through the WAL.
  const std::string key_file = read_all(state_dir / "keys");
  const auto key_at = [&](std::int64_t slot) -> std::string {
    const auto at = static_cast<std::size_t>(slot) * 32;
    return at + 32 <= key_file.size() ? key_file.substr(at, 32) : std::string();
  };
  const auto is_zero = [](const std::string& k) { return std::all_of(k.begin(), k.end(), [](char c) { return c == 0; }); };

  try {
    SQLite::Database db((state_dir / "retention.db").string(), SQLite::OPEN_READONLY);
    db.exec("BEGIN");  // one snapshot for every query below
    const std::string check = db.execAndGet("PRAGMA integrity_check").getString();
    if (check != "ok") problem("retention.db integrity_check: " + check);
    for (const auto& key : crash::keys_in_both(db)) problem("record '" + key + "' is in both the records and the archive table");
    for (const auto& m : crash::count_mismatches(db)) problem(m);
    std::map<std::int64_t, std::string> slot_users;  // slot -> who uses it
    const auto use_slot = [&](std::int64_t slot, const std::string& who) {
      if (const auto [it, fresh] = slot_users.emplace(slot, who); !fresh) {
        problem("slot " + std::to_string(slot) + " is used by both " + it->second + " and " + who);
      }
    };
    std::map<std::string, std::string> state_of;  // key -> "active:<state>" / "archive:<state>"
    for (const std::string table : {"records", "archive"}) {
      const bool archive = table == "archive";
      const std::string where = "the " + table + " table";
      SQLite::Statement half(db, "SELECT key FROM " + table + " WHERE slot IS NULL OR sealed IS NULL");
      while (half.executeStep()) problem(where + ": record '" + half.getColumn(0).getString() + "' has no sealed values");
      SQLite::Statement rows(db, "SELECT key, state, slot, sealed FROM " + table + " WHERE slot IS NOT NULL AND sealed IS NOT NULL");
      while (rows.executeStep()) {
        const std::string key = rows.getColumn(0).getString();
        const std::int64_t slot = rows.getColumn(2).getInt64();
        const std::string sealed = rows.getColumn(3).getString();
        (archive ? report.archived : report.active) += 1;
        report.keys.insert(key);
        state_of.emplace(key, (archive ? "archive:" : "active:") + rows.getColumn(1).getString());
        use_slot(slot, where + " record '" + key + "'");
        const std::string k = key_at(slot);
        if (k.empty() || is_zero(k)) problem(where + " record '" + key + "': its key slot " + std::to_string(slot) + " holds no key");
        else if (!crypto::open_sealed(k, "record\n" + key, sealed)) problem(where + " record '" + key + "': its key does not open its values");
      }
    }
    SQLite::Statement holds(db, "SELECT id, scope, slot, sealed_target FROM holds");
    while (holds.executeStep()) {
      ++report.holds;
      const std::string who = "hold " + std::to_string(holds.getColumn(0).getInt64());
      const std::int64_t slot = holds.getColumn(2).getInt64();
      use_slot(slot, who);
      const std::string k = key_at(slot);
      if (k.empty() || is_zero(k)) problem(who + ": its key slot holds no key");
      else if (!crypto::open_sealed(k, "hold\n" + holds.getColumn(1).getString(), holds.getColumn(3).getString())) {
        problem(who + ": its key does not open its target");
      }
    }
    for (std::size_t at = 0; at + 32 <= key_file.size(); at += 32) {
      if (is_zero(key_file.substr(at, 32))) continue;
      ++report.live_keys;
      const auto slot = static_cast<std::int64_t>(at / 32);
      if (!slot_users.count(slot)) problem("key slot " + std::to_string(slot) + " still holds a key that no live row uses");
    }

    // The audit chain, and the records agreeing with it.
    SQLite::Statement q(db, "SELECT seq, at, action, key, category, phase, subject_ref, actor, reason, policy_hash, hash "
                            "FROM audit ORDER BY seq");
    std::string prev = audit::kGenesisHash;
    std::map<std::string, std::string> last_action;
    std::set<std::string> archived_ever;
    const auto opt = [](const SQLite::Column& c) { return c.isNull() ? std::optional<std::string>() : c.getString(); };
    while (q.executeStep()) {
      store::AuditRow r;
      r.seq = q.getColumn(0).getInt64();
      r.at = calendar::Instant{q.getColumn(1).getInt64()};
      r.action = q.getColumn(2).getString();
      r.key = opt(q.getColumn(3));
      r.category = opt(q.getColumn(4));
      if (!q.getColumn(5).isNull()) r.phase = q.getColumn(5).getInt();
      r.subject_ref = opt(q.getColumn(6));
      r.actor = q.getColumn(7).getString();
      r.reason = opt(q.getColumn(8));
      r.policy_hash = q.getColumn(9).getString();
      r.hash = q.getColumn(10).getString();
      ++report.audit;
      if (r.seq != report.audit) problem("audit seq " + std::to_string(r.seq) + " where " + std::to_string(report.audit) + " was expected");
      if (audit::chain_hash(prev, r) != r.hash) problem("audit entry " + std::to_string(r.seq) + " does not chain");
      prev = r.hash;
      if (r.key) {
        last_action[*r.key] = r.action;
        if (r.action == "archive") archived_ever.insert(*r.key);
      }
    }
    q.reset();
    db.exec("COMMIT");
    for (const auto& [key, action] : last_action) {
      const auto it = state_of.find(key);
      if ((action == "purge" || action == "erase") && it != state_of.end()) problem("record '" + key + "' was " + action + "d by the audit log but is still stored (" + it->second + ")");
      if (action == "archive" && (it == state_of.end() || it->second.rfind("archive:", 0) != 0)) problem("record '" + key + "' was archived by the audit log but is not in the archive");
    }
    for (const auto& [key, place] : state_of) {
      if (place.rfind("archive:", 0) == 0 && !archived_ever.count(key)) problem("record '" + key + "' is in the archive without an archive entry");
    }
  } catch (const std::exception& e) {
    problem(std::string("reading the state directory failed: ") + e.what());
  }
  return report;
}

// --- policy and requests ---

std::string fault_policy() {
  return R"([daemon]
state_dir = "unused"
max_batch_records = 1000

[[categories]]
name = "lead"
purpose = "prospection"
legal_basis = "legitimate_interest"
phases = [ { action = "purge", at = "collected + 1 year" } ]

[[categories]]
name = "invoice"
purpose = "accounting"
legal_basis = "contract"
phases = [ { action = "archive", at = "collected + 1 year" }, { action = "purge", at = "collected + 10 years" } ]
)";
}

nlohmann::json records(const std::string& prefix, int n, const std::string& category, const std::string& subject,
                       const std::string& collected, std::size_t filler) {
  nlohmann::json out = nlohmann::json::array();
  for (int i = 0; i < n; ++i) {
    out.push_back({{"key", prefix + std::to_string(i)},
                   {"subject", subject},
                   {"category", category},
                   {"fields", {{"n", i}, {"text", std::string(filler, static_cast<char>('a' + i % 26))}}},
                   {"dates", {{"collected", collected}}}});
  }
  return out;
}

std::optional<nlohmann::json> call_within(Client& client, const std::string& method, const nlohmann::json& params,
                                          std::chrono::milliseconds timeout) {
  static int next_id = 1000000;
  nlohmann::json request = {{"jsonrpc", "2.0"}, {"id", next_id++}, {"method", method}};
  if (!params.is_null()) request["params"] = params;
  client.send_line(request.dump());
  const auto line = client.read_line(timeout);
  if (!line) return std::nullopt;
  return nlohmann::json::parse(*line);
}

std::string reason_of(const nlohmann::json& reply) {
  if (!reply.contains("error")) return "";
  return reply["error"].value("data", nlohmann::json::object()).value("reason", std::string("?"));
}

nlohmann::json result_of(const nlohmann::json& reply) {
  EXPECT_FALSE(reply.contains("error")) << reply.dump();
  return reply.value("result", nlohmann::json());
}

void expect_storage_error(const std::optional<nlohmann::json>& reply, const std::string& what) {
  ASSERT_TRUE(reply.has_value()) << what << ": no reply";
  ASSERT_TRUE(reply->contains("error")) << what << " succeeded: " << reply->dump();
  const auto& error = (*reply)["error"];
  EXPECT_EQ(error.value("code", 0), -32005) << what << ": " << reply->dump();
  EXPECT_EQ(reason_of(*reply), "storage_error") << what << ": " << reply->dump();
  const std::string message = error.value("message", std::string());
  std::cout << "[ measured ] " << what << ": " << message << '\n';
  const std::string tail = "nothing was changed";
  EXPECT_TRUE(message.size() >= tail.size() && message.compare(message.size() - tail.size(), tail.size(), tail) == 0)
      << what << ": the message should end \"" << tail << "\": " << message;
}

Snapshot snapshot(Client& client) {
  Snapshot s;
  s.records = result_of(client.call("status"))["records"];
  const auto verify = result_of(client.call("audit.verify"));
  s.audit_entries = verify.value("entries", std::int64_t{-1});
  s.audit_head = verify.value("head", std::string());
  s.audit_ok = verify.value("ok", false);
  return s;
}

std::ostream& operator<<(std::ostream& out, const Snapshot& s) {
  return out << "{records " << s.records.dump() << ", audit " << s.audit_entries << " entries, ok " << s.audit_ok
             << ", head " << s.audit_head.substr(0, 12) << "}";
}

std::int64_t ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace retentiond::testing
