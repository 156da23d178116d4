#include "lib/scheduler/deliverer.hpp"

#include <signal.h>

#include <future>

#include <spdlog/spdlog.h>

#include "lib/connectors/transport.hpp"

namespace retentiond::scheduler {

namespace {

actions::Delivery delivery_of(connectors::Outcome o) {
  switch (o) {
    case connectors::Outcome::done: return actions::Delivery::done;
    case connectors::Outcome::later: return actions::Delivery::later;
    case connectors::Outcome::failed: return actions::Delivery::failed_attempt;
  }
  return actions::Delivery::failed_attempt;
}

}  // namespace

Deliverer::Deliverer(boost::asio::io_context& io, Writer& writer, actions::Service& service, std::string user_agent)
    : m_io(io), m_writer(writer), m_service(service), m_user_agent(std::move(user_agent)) {}

Deliverer::~Deliverer() { stop(); }

void Deliverer::start() {
  // A connector that exits before reading its stdin must not kill the
  // daemon with SIGPIPE: the write fails with EPIPE instead.
  ::signal(SIGPIPE, SIG_IGN);
  m_stopping = false;
  start_missing();
}

void Deliverer::stop() {
  {
    // Under the mutex: a worker between its check and its wait must not
    // miss this.
    std::lock_guard lock(m_mutex);
    m_stopping = true;
  }
  m_cv.notify_all();
  for (auto& [name, worker] : m_workers) {
    if (worker->thread.joinable()) worker->thread.join();
  }
  m_workers.clear();
}

void Deliverer::policy_changed() {
  if (m_stopping) return;
  start_missing();
  wake();
}

void Deliverer::wake() {
  {
    std::lock_guard lock(m_mutex);
    ++m_wakes;
  }
  m_cv.notify_all();
}

void Deliverer::start_missing() {
  const auto policy = m_service.policy();
  for (auto it = m_workers.begin(); it != m_workers.end();) {
    bool finished = false;
    {
      std::lock_guard lock(m_mutex);
      finished = it->second->finished;
    }
    if (finished) {
      it->second->thread.join();
      it = m_workers.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& c : policy->connectors) {
    if (c.kind == policy::ConnectorKind::pull || m_workers.count(c.name) != 0) continue;
    auto worker = std::make_unique<Worker>();
    Worker& w = *worker;
    w.thread = std::thread([this, name = c.name, &w] { run(name, w); });
    m_workers.emplace(c.name, std::move(worker));
  }
}

template <typename T>
std::optional<T> Deliverer::on_writer(std::function<T()> job) {
  auto promise = std::make_shared<std::promise<T>>();
  auto future = promise->get_future();
  boost::asio::post(m_io, [this, job = std::move(job), promise]() mutable {
    if (m_stopping) return;  // its promise is dropped: the worker sees m_stopping
    m_writer.submit<T>(std::move(job), [promise](T result) { promise->set_value(std::move(result)); });
  });
  while (future.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
    if (m_stopping) return std::nullopt;
  }
  return future.get();
}

void Deliverer::idle(std::chrono::milliseconds d) {
  std::unique_lock lock(m_mutex);
  const std::uint64_t seen = m_wakes;
  m_cv.wait_for(lock, d, [&] { return m_stopping.load() || m_wakes != seen; });
}

void Deliverer::run(const std::string& name, Worker& self) {
  spdlog::debug("connector.worker_started connector={}", name);
  bool warned = false;
  while (!m_stopping) {
    const auto policy = m_service.policy();
    const policy::Connector* c = policy->find_connector(name);
    if (c == nullptr || c->kind == policy::ConnectorKind::pull) {
      // Reloaded away. Said under the mutex before anything else, so that
      // a reload bringing it back starts a new worker instead of counting
      // on this one.
      std::lock_guard lock(m_mutex);
      self.finished = true;
      break;
    }
    const policy::Connector connector = *c;  // the worker's own copy while it delivers
    actions::ClaimRequest claim{name, kClaimBatch,
                                connector.timeout_s * static_cast<std::int64_t>(kClaimBatch) + 60};
    auto claimed = on_writer<Result<std::vector<vault::Job>>>([this, claim] { return m_service.claim_jobs(claim, false); });
    if (!claimed) break;
    if (!*claimed) {
      if (!warned) spdlog::error("connector.claim_failed connector={} error=\"{}\" (retried)", name, claimed->error().message);
      warned = true;
      idle(std::chrono::seconds(5));
      continue;
    }
    warned = false;
    if ((*claimed)->empty()) {
      auto next = on_writer<Result<std::optional<calendar::Instant>>>([this, name] { return m_service.next_job_at(name); });
      if (!next) break;
      std::chrono::milliseconds wait = kIdleCheck;
      if (*next && **next) {
        const std::int64_t in = (**next)->seconds - m_service.clock().now().seconds;
        wait = std::clamp<std::chrono::milliseconds>(std::chrono::seconds(in), std::chrono::milliseconds(0), kIdleCheck);
      }
      if (wait.count() > 0) idle(wait);
      continue;
    }
    // Delivered one by one; the outcomes are settled together (one writer
    // transaction) at the end of the batch, or sooner once a second has
    // passed, so that a sweep in progress costs the batch two waits, not
    // two per job.
    std::vector<actions::DeliveryOutcome> outcomes;
    auto last_settle = std::chrono::steady_clock::now();
    const auto settle = [&]() -> bool {
      if (outcomes.empty()) return true;
      auto settled = on_writer<Result<std::int64_t>>(
          [this, name, outcomes] { return m_service.settle_jobs(name, outcomes, actions::Actor{"scheduler"}); });
      if (!settled) return false;  // stopping: the jobs stay in flight, delivered again after the restart
      if (!*settled) {
        // The outcomes are lost, the jobs are not: claimed again when their lease ends.
        spdlog::error("connector.settle_failed connector={} jobs={} error=\"{}\"", name, outcomes.size(),
                      settled->error().message);
      }
      outcomes.clear();
      last_settle = std::chrono::steady_clock::now();
      return true;
    };
    for (const auto& job : **claimed) {
      if (m_stopping) break;
      const std::string body = actions::job_json(job).dump();
      const auto timeout = std::chrono::seconds(connector.timeout_s);
      connectors::Attempt attempt =
          connector.kind == policy::ConnectorKind::exec
              ? connectors::run_exec(connector.command, body + "\n", timeout, m_stopping)
              : connectors::post_http({connector.host, connector.port, connector.target}, body, job.row.id, m_user_agent,
                                      timeout, m_stopping);
      if (m_stopping) break;  // abandoned: delivered again after the restart
      const auto outcome = delivery_of(attempt.outcome);
      if (outcome == actions::Delivery::done) {
        spdlog::debug("connector.done connector={} job={} attempt={}", name, job.row.id, job.row.attempts);
      } else if (outcome == actions::Delivery::later) {
        // The connector asked for it (busy, down for maintenance): no warning.
        spdlog::info("connector.attempt_failed connector={} job={} attempt={} outcome=later error=\"{}\"", name,
                     job.row.id, job.row.attempts, attempt.message);
      } else {
        spdlog::warn("connector.attempt_failed connector={} job={} attempt={} outcome=failed error=\"{}\"", name,
                     job.row.id, job.row.attempts, attempt.message);
      }
      outcomes.push_back({job.row.id, outcome, attempt.message});
      if (std::chrono::steady_clock::now() - last_settle >= std::chrono::seconds(1) && !settle()) break;
    }
    if (!m_stopping) settle();
  }
  spdlog::debug("connector.worker_stopped connector={}", name);
  std::lock_guard lock(m_mutex);
  self.finished = true;
}

}  // namespace retentiond::scheduler
