#pragma once
// Test support for retentionctl: runs the real binary as a child process
// with given arguments, environment and standard input, and captures its
// exit code, standard output and standard error separately. Not
// thread-safe: one call at a time.

#include <filesystem>
#include <string>
#include <vector>

namespace retentiond::testing {

struct CtlResult {
  int exit_code = -1;  // 128 + signal when it was killed
  std::string out;
  std::string err;
};

struct CtlOptions {
  // Added to the environment, "NAME=value". RETENTIOND_SOCKET is removed
  // from the inherited environment, so only these can set it.
  std::vector<std::string> env;
  // Standard input; /dev/null when empty.
  std::filesystem::path stdin_file;
  // Run as nobody (uid and gid 65534); only possible when the test runs as root.
  bool as_nobody = false;
};

// Runs retentionctl with `args` and waits for it (at most 60 s, then kills
// it and returns exit code -1). Throws std::runtime_error when it cannot be
// started.
CtlResult run_ctl(const std::vector<std::string>& args, const CtlOptions& options = {});

std::string retentionctl_binary();

}  // namespace retentiond::testing
