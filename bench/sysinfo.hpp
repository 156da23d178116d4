#pragma once
// What the bench reports about the machine and about a process: the context
// that makes its figures comparable between runs. Everything is read from
// /proc, uname(2) and git; nothing here changes state. Not thread-safe only
// in the sense that the answers may change between calls.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <sys/types.h>

namespace retentiond::bench {

// CPU model, cores, kernel, memory, and the filesystem that holds `work_dir`.
nlohmann::json machine_info(const std::filesystem::path& work_dir);

// The first three fields of /proc/loadavg ("1.02 0.87 0.55"): how busy the
// machine was, since other work on it skews every figure.
std::string load_average();

// git commit of `source_dir` (and whether lib/, daemon/ or migrations/ have
// uncommitted changes), the build type, and `binary --version`.
nlohmann::json build_info(const std::filesystem::path& source_dir, const std::string& build_type,
                          const std::string& binary);

// A "Vm...:" line of /proc/<pid>/status in KiB (e.g. "VmHWM", "VmRSS"), or
// nullopt when the process or the line is gone.
std::optional<std::uint64_t> proc_status_kib(pid_t pid, const std::string& field);

// Bytes used by the regular files under `path` (recursively), or by `path`
// itself when it is a file.
std::uint64_t disk_bytes(const std::filesystem::path& path);

}  // namespace retentiond::bench
