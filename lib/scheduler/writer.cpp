#include "lib/scheduler/writer.hpp"

#include <pthread.h>

#include <spdlog/spdlog.h>

namespace retentiond::scheduler {

namespace asio = boost::asio;

Writer::Writer(asio::io_context& io, Mode mode) : m_io(io), m_mode(mode) {}

Writer::~Writer() { stop(); }

void Writer::start() {
  if (m_mode != Mode::thread || m_thread.joinable()) return;
  {
    std::lock_guard lock(m_mutex);
    m_stopping = false;
  }
  // Background work started before the thread (the scheduler's catch-up
  // pass) takes its first step here, before the event loop reads its first
  // request: what was overdue before the daemon started is acted on before
  // anything new arrives, as a single thread would.
  if (m_step) {
    const std::uint64_t generation = m_generation;
    bool finished = true;
    try {
      finished = m_step();
    } catch (const std::exception& e) {
      spdlog::error("writer.step_failed error=\"{}\" (a bug: the background work is abandoned)", e.what());
    }
    if (finished && generation == m_generation) {
      auto done = std::move(m_finished);
      m_step = nullptr;
      m_finished = nullptr;
      if (done) deliver(std::move(done));
    }
  }
  m_thread = std::thread([this] {
    ::pthread_setname_np(::pthread_self(), "rd-writer");
    loop();
  });
}

void Writer::stop() {
  {
    std::lock_guard lock(m_mutex);
    m_stopping = true;
    m_tasks.clear();
    m_step = nullptr;
    m_finished = nullptr;
    ++m_generation;
  }
  m_cv.notify_all();
  if (m_thread.joinable()) m_thread.join();
}

void Writer::enqueue(std::function<void()> task) {
  if (m_mode == Mode::io) {
    asio::post(m_io, [this, task = std::move(task)] {
      if (!m_stopping) task();
    });
    return;
  }
  {
    std::lock_guard lock(m_mutex);
    if (m_stopping) return;
    m_tasks.push_back(std::move(task));
  }
  m_cv.notify_one();
}

void Writer::deliver(std::function<void()> completion) { asio::post(m_io, std::move(completion)); }

void Writer::run_background(std::function<bool()> step, std::function<void()> finished) {
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(m_mutex);
    if (m_stopping) return;
    m_step = std::move(step);
    m_finished = std::move(finished);
    generation = ++m_generation;
  }
  if (m_mode == Mode::io) {
    asio::post(m_io, [this, generation] { io_turn(generation); });
    return;
  }
  m_cv.notify_one();
}

void Writer::cancel_background() {
  std::lock_guard lock(m_mutex);
  m_step = nullptr;
  m_finished = nullptr;
  ++m_generation;
}

// Mode::io: one step per turn of the loop, the next posted behind whatever
// arrived meanwhile (jobs included).
void Writer::io_turn(std::uint64_t generation) {
  if (m_stopping || generation != m_generation || !m_step) return;
  bool finished = true;
  try {
    finished = m_step();
  } catch (const std::exception& e) {
    spdlog::error("writer.step_failed error=\"{}\" (a bug: the background work is abandoned)", e.what());
  }
  if (generation != m_generation) return;  // cancelled by the step's own callbacks
  if (!finished) {
    asio::post(m_io, [this, generation] { io_turn(generation); });
    return;
  }
  auto done = std::move(m_finished);
  m_step = nullptr;
  m_finished = nullptr;
  if (done) done();
}

void Writer::loop() {
  for (;;) {
    std::function<void()> task;
    std::function<bool()> step;
    std::uint64_t generation = 0;
    {
      std::unique_lock lock(m_mutex);
      m_cv.wait(lock, [&] { return m_stopping || !m_tasks.empty() || m_step; });
      if (m_stopping) return;
      if (!m_tasks.empty()) {
        task = std::move(m_tasks.front());
        m_tasks.pop_front();
      } else {
        step = m_step;
        generation = m_generation;
      }
    }
    if (task) {
      task();
      continue;
    }
    bool finished = true;
    try {
      finished = step();
    } catch (const std::exception& e) {
      spdlog::error("writer.step_failed error=\"{}\" (a bug: the background work is abandoned)", e.what());
    }
    if (!finished) continue;
    std::function<void()> done;
    {
      std::lock_guard lock(m_mutex);
      if (generation == m_generation) {
        done = std::move(m_finished);
        m_step = nullptr;
        m_finished = nullptr;
      }
    }
    if (done) deliver(std::move(done));
  }
}

}  // namespace retentiond::scheduler
