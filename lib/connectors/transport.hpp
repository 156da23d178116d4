#pragma once
// The transports of connectors (docs/connectors.md): one delivery of one
// job to an exec or an http connector, blocking for at most its timeout.
// They know nothing of jobs beyond the bytes they send: the caller (the
// delivery workers, lib/scheduler/deliverer.hpp) claims the job, and
// settles it with the outcome. Thread-safe: each call is on its own.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace retentiond::connectors {

enum class Outcome {
  done,    // exec: exit 0; http: 2xx
  later,   // exec: exit 75 (EX_TEMPFAIL); http: 408, 429, 5xx, a timeout, no connection
  failed,  // a failed attempt: any other exit or status, a crash, an exec timeout
};

struct Attempt {
  Outcome outcome = Outcome::failed;
  std::string message;  // what happened, with the connector's output (bounded); empty when done quietly
};

// What is kept of a connector's output (each of stdout and stderr, or an
// http response body).
inline constexpr std::size_t kMaxOutputBytes = 4096;

// Runs argv (argv[0] an absolute path, no shell) in a process group of its
// own with cwd "/", writes `input` to its stdin and closes it, and waits
// for its exit; after `timeout` the group is killed (SIGKILL) and the
// attempt failed. stdout and stderr are captured (kMaxOutputBytes each).
// `cancel` set (the daemon stopping) kills it too: a later attempt.
Attempt run_exec(const std::vector<std::string>& argv, const std::string& input, std::chrono::milliseconds timeout,
                 const std::atomic<bool>& cancel);

struct HttpTarget {
  std::string host;  // a name or an address (IPv6 without brackets)
  std::uint16_t port = 80;
  std::string target = "/";  // path and query
};

// POSTs `body` (application/json) with an Idempotency-Key header; the whole
// exchange (resolve, connect, send, response) within `timeout`; `cancel`
// set abandons it (a later attempt).
Attempt post_http(const HttpTarget& to, const std::string& body, const std::string& idempotency_key,
                  const std::string& user_agent, std::chrono::milliseconds timeout, const std::atomic<bool>& cancel);

}  // namespace retentiond::connectors
