#pragma once
// Deliverer: the delivery workers of the exec and http connectors
// (docs/connectors.md). One thread per connector delivers its jobs one at
// a time, in the order they became due: it claims a batch on the writer
// (Service::claim_jobs: in_flight, one more attempt), delivers each through
// its transport (lib/connectors), and settles the outcomes on the writer
// (Service::settle_jobs: done and audited, or back-off, or failed). So a
// slow or dead connector holds up only its own thread: never the socket,
// the sweep, or another connector.
//
// The store is the truth: a worker keeps nothing that a crash could lose.
// Jobs it had claimed when the daemon died are released at the next start
// (Service::release_push_jobs, called by the engine before start) and
// delivered again, with the same id.
//
// Threading: start, stop, policy_changed and wake are called on the event
// loop's thread. Workers hand their writer work to the event loop (the
// Writer is driven from there) and wait for its answer.

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "lib/actions/service.hpp"
#include "lib/scheduler/writer.hpp"
#include "lib/util/asio.hpp"

namespace retentiond::scheduler {

class Deliverer {
 public:
  Deliverer(boost::asio::io_context& io, Writer& writer, actions::Service& service, std::string user_agent);
  ~Deliverer();
  Deliverer(const Deliverer&) = delete;
  Deliverer& operator=(const Deliverer&) = delete;

  // Starts a worker per exec and http connector of the policy in force.
  void start();
  // Stops the workers: a delivery under way is abandoned (its process
  // killed, its request dropped); its job is delivered again after restart.
  void stop();
  // After a reload: workers for the connectors it added; those whose
  // connector is gone (or now pull) end by themselves.
  void policy_changed();
  // New jobs may be due (a pass ended, an erasure, a retry): idle workers look.
  void wake();

  // Jobs per claim, delivered one by one and settled together: two writer
  // round trips per batch, not per job (each may wait for a sweep batch).
  // A stop in the middle leaves the rest of the batch in flight with one
  // attempt counted; they are delivered again after the restart.
  static constexpr std::size_t kClaimBatch = 16;
  // The longest an idle worker waits before it looks again.
  static constexpr std::chrono::seconds kIdleCheck{1};

 private:
  struct Worker {
    std::thread thread;
    bool finished = false;  // guarded by m_mutex: it will claim nothing more
  };
  void run(const std::string& name, Worker& self);
  // Runs `job` on the writer and waits for its result; nullopt when stopping.
  template <typename T>
  std::optional<T> on_writer(std::function<T()> job);
  // Waits up to `d`, or until woken or stopping.
  void idle(std::chrono::milliseconds d);
  void start_missing();

  boost::asio::io_context& m_io;
  Writer& m_writer;
  actions::Service& m_service;
  std::string m_user_agent;
  std::atomic<bool> m_stopping{false};
  std::mutex m_mutex;
  std::condition_variable m_cv;
  std::uint64_t m_wakes = 0;
  std::map<std::string, std::unique_ptr<Worker>> m_workers;
};

}  // namespace retentiond::scheduler
