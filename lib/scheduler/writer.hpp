#pragma once
// Writer: the one thread that changes the store. Every change (a put, an
// erasure, a hold, a reload) is a job submitted from the event loop; the
// job runs on the writer thread and its result comes back to the event loop
// (posted to the io_context). Long work (a sweep pass) is background work:
// one step (one bounded batch, one transaction) at a time, and between two
// steps every waiting job runs first, so a change waits for at most one
// batch. Reads never come here: they are answered on the event loop from a
// snapshot of their own (lib/vault's RecordReader over a store reader).
//
// Threading: submit, run_background, cancel_background, start and stop are
// called from the event loop's thread. Jobs and steps run on the writer
// thread, one at a time, in order (jobs first); completions run on the event
// loop. Mode::io runs everything on the event loop instead (one thread: for
// tests and fuzzers, and the same interleaving of jobs and steps).

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "lib/util/asio.hpp"
#include "lib/util/result.hpp"

namespace retentiond::scheduler {

class Writer {
 public:
  enum class Mode { thread, io };

  explicit Writer(boost::asio::io_context& io, Mode mode = Mode::thread);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Starts the thread (Mode::thread). Jobs submitted before wait for it;
  // background work started before takes its first step at once, on the
  // caller's thread (before the event loop runs).
  void start();
  // Lets the running job or step finish, drops what waits (its completions
  // are never called: the daemon is stopping) and joins the thread.
  void stop();

  // Runs `job` on the writer, then `done` with its result on the event loop.
  // A job that throws (a bug) gives internal_error. T is a Result<...>.
  template <typename T>
  void submit(std::function<T()> job, std::function<void(T)> done) {
    enqueue([this, job = std::move(job), done = std::move(done)]() {
      auto result = std::make_shared<T>(run_guarded<T>(job));
      deliver([done, result]() { done(std::move(*result)); });
    });
  }

  // Background work: `step` runs on the writer whenever no job waits, until
  // it returns true; then `finished` runs on the event loop. One at a time:
  // a new one replaces (cancels) the old.
  void run_background(std::function<bool()> step, std::function<void()> finished);
  // No more steps of the current background work; its `finished` is not called.
  void cancel_background();

 private:
  template <typename T>
  static T run_guarded(const std::function<T()>& job) {
    try {
      return job();
    } catch (const std::exception& e) {
      return T(Error::internal(std::string("internal error in a writer job: ") + e.what()));
    }
  }
  void enqueue(std::function<void()> task);
  void deliver(std::function<void()> completion);
  void loop();
  void io_turn(std::uint64_t generation);

  boost::asio::io_context& m_io;
  Mode m_mode;
  std::mutex m_mutex;
  std::condition_variable m_cv;
  std::deque<std::function<void()>> m_tasks;
  std::function<bool()> m_step;
  std::function<void()> m_finished;
  std::uint64_t m_generation = 0;
  bool m_stopping = false;
  std::thread m_thread;
};

}  // namespace retentiond::scheduler
