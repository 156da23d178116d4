#pragma once
// Log set-up for both programs: spdlog to stderr. Under systemd (JOURNAL_STREAM
// set) each line starts with its syslog priority, "<6>", so journald files it
// at the right level; otherwise plain "LEVEL message" lines.

#include <string>

namespace retentiond::daemon {

void setup_logging(const std::string& level);

}  // namespace retentiond::daemon
