#include "tests/crash/layout.hpp"

#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <fstream>
#include <iterator>
#include <vector>

namespace retentiond::crash {
namespace {

namespace fs = std::filesystem;

std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

std::uint32_t le32(const unsigned char* p) {
  return (std::uint32_t{p[3]} << 24) | (std::uint32_t{p[2]} << 16) | (std::uint32_t{p[1]} << 8) | std::uint32_t{p[0]};
}

// SQLite's WAL checksum (wal.c walChecksumBytes) over `n` bytes (a multiple
// of 8): 32-bit words, big-endian when the magic's low bit is set, else
// little-endian, folded into `s`.
void wal_checksum(bool big_endian, const unsigned char* data, std::size_t n, std::array<std::uint32_t, 2>& s) {
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    const std::uint32_t w0 = big_endian ? be32(data + i) : le32(data + i);
    const std::uint32_t w1 = big_endian ? be32(data + i + 4) : le32(data + i + 4);
    s[0] += w0 + s[1];
    s[1] += w1 + s[0];
  }
}

std::string utc_day(std::int64_t day) {
  const auto t = static_cast<std::time_t>(day * 86400);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

// floor(due / 86400) in SQL, for negative times too (the store's day_of).
#define RD_DAY_OF_DUE "((due - (((due % 86400) + 86400) % 86400)) / 86400)"

const char* const kDueCountMismatches =
    "WITH due_rows(day, category) AS ("
    "  SELECT " RD_DAY_OF_DUE ", category FROM main.records WHERE due IS NOT NULL"
    "  UNION ALL SELECT " RD_DAY_OF_DUE ", category FROM main.archive WHERE due IS NOT NULL),"
    " counted(day, category, n) AS (SELECT day, category, count(*) FROM due_rows GROUP BY day, category)"
    " SELECT c.day, c.category, coalesce(k.n, 0), c.n FROM counted c"
    "  LEFT JOIN main.due_counts k ON k.day = c.day AND k.category = c.category WHERE coalesce(k.n, 0) != c.n"
    " UNION ALL SELECT k.day, k.category, k.n, 0 FROM main.due_counts k"
    "  LEFT JOIN counted c ON c.day = k.day AND c.category = k.category WHERE c.n IS NULL AND k.n != 0"
    " ORDER BY 1, 2";

const char* const kRecordCountMismatches =
    "WITH counted(location, category, state, n) AS ("
    "  SELECT 'active', category, state, count(*) FROM main.records GROUP BY category, state"
    "  UNION ALL SELECT 'archive', category, state, count(*) FROM main.archive GROUP BY category, state)"
    " SELECT c.location, c.state, coalesce(k.n, 0), c.n, c.category FROM counted c"
    "  LEFT JOIN main.record_counts k"
    "    ON k.location = c.location AND k.category = c.category AND k.state = c.state WHERE coalesce(k.n, 0) != c.n"
    " UNION ALL SELECT k.location, k.state, k.n, 0, k.category FROM main.record_counts k"
    "  LEFT JOIN counted c ON c.location = k.location AND c.category = k.category AND c.state = k.state"
    "  WHERE c.n IS NULL AND k.n != 0"
    " ORDER BY 1, 5, 2";

}  // namespace

WalView read_wal(const fs::path& wal) {
  WalView v;
  std::error_code ec;
  v.bytes = fs::file_size(wal, ec);
  if (ec) {
    v.bytes = 0;
    return v;
  }
  v.present = true;
  std::ifstream in(wal, std::ios::binary);
  unsigned char header[32];
  if (!in.read(reinterpret_cast<char*>(header), sizeof header)) return v;
  const std::uint32_t magic = be32(header);
  const std::uint32_t page_size = be32(header + 8);
  if ((magic & 0xfffffffe) != 0x377f0682 || page_size < 512 || page_size > 65536 || (page_size & (page_size - 1)) != 0) {
    return v;
  }
  const bool big_endian = (magic & 1) != 0;
  std::array<std::uint32_t, 2> sum{0, 0};
  wal_checksum(big_endian, header, 24, sum);
  if (sum[0] != be32(header + 24) || sum[1] != be32(header + 28)) return v;
  v.header_valid = true;
  // One frame at a time: a 24-byte header, then the page.
  std::vector<unsigned char> frame(24 + std::size_t{page_size});
  std::int64_t valid = 0;
  for (;;) {
    in.read(reinterpret_cast<char*>(frame.data()), static_cast<std::streamsize>(frame.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    if (got < 24) break;
    const unsigned char* f = frame.data();
    // Other salts: a frame of an earlier generation of the WAL (it restarts
    // from the top after a complete checkpoint), not part of this one.
    if (be32(f + 8) != be32(header + 16) || be32(f + 12) != be32(header + 20)) break;
    bool ok = got == frame.size() && be32(f) != 0;
    if (ok) {
      auto next = sum;
      wal_checksum(big_endian, f, 8, next);
      wal_checksum(big_endian, f + 24, page_size, next);
      ok = next[0] == be32(f + 16) && next[1] == be32(f + 20);
      if (ok) sum = next;
    }
    if (!ok) {
      v.torn_frame = true;
      break;
    }
    ++valid;
    if (be32(f + 4) != 0) {  // a commit frame: it carries the database size after the commit
      ++v.commits;
      v.committed_frames = valid;
    }
  }
  v.uncommitted_frames = valid - v.committed_frames;
  return v;
}

std::vector<std::string> legacy_files(const fs::path& state_dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(state_dir)) {
    const std::string name = e.path().filename().string();
    if (name == "archive.db" || name.rfind("archive.db-", 0) == 0 || name == "retention.db-journal" ||
        name.rfind("retention.db-mj", 0) == 0) {
      out.push_back(name);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> count_mismatches(SQLite::Database& db) {
  std::vector<std::string> out;
  {
    SQLite::Statement q(db, kDueCountMismatches);
    while (q.executeStep()) {
      out.push_back("due_counts holds " + std::to_string(q.getColumn(2).getInt64()) + " records of " +
                    q.getColumn(1).getString() + " due on " + utc_day(q.getColumn(0).getInt64()) + ", the tables " +
                    std::to_string(q.getColumn(3).getInt64()));
    }
  }
  SQLite::Statement q(db, kRecordCountMismatches);
  while (q.executeStep()) {
    const std::string location = q.getColumn(0).getString();
    out.push_back("record_counts holds " + std::to_string(q.getColumn(2).getInt64()) + " " + q.getColumn(1).getString() +
                  " records of " + q.getColumn(4).getString() + " in " + location + ", the table " +
                  (location == "active" ? "records " : "archive ") + std::to_string(q.getColumn(3).getInt64()));
  }
  return out;
}

std::vector<std::string> keys_in_both(SQLite::Database& db) {
  std::vector<std::string> out;
  SQLite::Statement q(db, "SELECT key FROM main.records WHERE key IN (SELECT key FROM main.archive) ORDER BY key");
  while (q.executeStep()) out.push_back(q.getColumn(0).getString());
  return out;
}

}  // namespace retentiond::crash
