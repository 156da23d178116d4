#include "bench/sysinfo.hpp"

#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <system_error>
#include <thread>
#include <vector>

#include <sys/utsname.h>

namespace retentiond::bench {
namespace {

// The first line of `command`'s standard output, without its newline, or ""
// when it fails.
std::string first_line_of(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "";
  std::array<char, 512> buf{};
  std::string out;
  if (std::fgets(buf.data(), static_cast<int>(buf.size()), pipe) != nullptr) out = buf.data();
  // Drain the rest so the child never blocks on a full pipe.
  while (std::fgets(buf.data(), static_cast<int>(buf.size()), pipe) != nullptr) {
  }
  const int rc = ::pclose(pipe);
  if (rc != 0) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (const char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t");
  const auto e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

}  // namespace

nlohmann::json machine_info(const std::filesystem::path& work_dir) {
  nlohmann::json info;
  {
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    std::string model;
    while (std::getline(cpuinfo, line)) {
      if (line.rfind("model name", 0) == 0) {
        model = trim(line.substr(line.find(':') + 1));
        break;
      }
    }
    info["cpu_model"] = model.empty() ? nlohmann::json(nullptr) : nlohmann::json(model);
  }
  info["cores"] = std::thread::hardware_concurrency();
  info["load_average_at_start"] = load_average();
  utsname u{};
  if (::uname(&u) == 0) {
    info["kernel"] = std::string(u.sysname) + " " + u.release;
    info["arch"] = u.machine;
  }
  {
    std::ifstream meminfo("/proc/meminfo");
    std::string name;
    std::uint64_t kib = 0;
    std::string unit;
    while (meminfo >> name >> kib >> unit) {
      if (name == "MemTotal:") {
        info["memory_mib"] = kib / 1024;
        break;
      }
    }
  }
  {
    // The mount whose point is the longest prefix of the work directory.
    std::error_code ec;
    const std::string dir = std::filesystem::weakly_canonical(work_dir, ec).string();
    std::ifstream mounts("/proc/mounts");
    std::string line;
    std::string best_point;
    std::string best_type;
    std::string best_device;
    while (std::getline(mounts, line)) {
      std::istringstream in(line);
      std::string device;
      std::string point;
      std::string type;
      if (!(in >> device >> point >> type)) continue;
      const bool prefix =
          dir == point || point == "/" ||
          (dir.rfind(point, 0) == 0 && dir.size() > point.size() && dir[point.size()] == '/');
      if (prefix && point.size() >= best_point.size()) {
        best_point = point;
        best_type = type;
        best_device = device;
      }
    }
    info["work_dir_filesystem"] = {
        {"type", best_type}, {"mount_point", best_point}, {"device", best_device}};
  }
  return info;
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a;
  std::string b;
  std::string c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

nlohmann::json build_info(const std::filesystem::path& source_dir, const std::string& build_type,
                          const std::string& binary) {
  const std::string git = "git -C " + shell_quote(source_dir.string());
  const std::string commit = first_line_of(git + " rev-parse HEAD 2>/dev/null");
  // Any output means uncommitted changes in what the daemon is built from.
  const std::string dirty =
      first_line_of(git + " status --porcelain -- lib daemon migrations 2>/dev/null | head -1");
  return {{"build_type", build_type},
          {"git_commit", commit.empty() ? nlohmann::json(nullptr) : nlohmann::json(commit)},
          {"git_dirty", !dirty.empty()},
          {"retentiond", binary},
          {"retentiond_version", first_line_of(shell_quote(binary) + " --version 2>/dev/null")}};
}

std::optional<std::uint64_t> proc_status_kib(pid_t pid, const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  const std::string prefix = field + ":";
  while (std::getline(status, line)) {
    if (line.rfind(prefix, 0) == 0) return std::stoull(line.substr(prefix.size()));
  }
  return std::nullopt;
}

std::uint64_t disk_bytes(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(path, ec)) return std::filesystem::file_size(path, ec);
  std::uint64_t total = 0;
  for (auto it = std::filesystem::recursive_directory_iterator(path, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code fec;
    if (it->is_regular_file(fec)) total += it->file_size(fec);
  }
  return total;
}

}  // namespace retentiond::bench
