// retentiond-profile: the daemon's core without its socket, for profilers
// (perf, callgrind, heaptrack). It decodes the bench's record.put_many
// requests with the protocol's decoder, stores them through the Engine's
// service (the writer's path: vault, store, audit), then sweeps them the
// way the scheduler does, and prints how long each part took. Nothing is
// compared or judged: retentiond-bench does that, over the socket.
//
//   retentiond-profile --records 50000 --phase ingest
//   valgrind --tool=callgrind --toggle-collect='*Service::put_many*' retentiond-profile ...

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "bench/records.hpp"
#include "lib/calendar/clock.hpp"
#include "lib/engine/engine.hpp"
#include "lib/protocol/decode.hpp"

namespace rd = retentiond;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options("retentiond-profile", "The retentiond core without its socket, for profilers");
  options.add_options()("records", "records to ingest", cxxopts::value<std::uint64_t>()->default_value("50000"))(
      "batch", "records per put_many", cxxopts::value<std::uint64_t>()->default_value("5000"))(
      "phase", "ingest, purge or all", cxxopts::value<std::string>()->default_value("all"))(
      "work-dir", "state directory (default: a new temporary one)", cxxopts::value<std::string>())(
      "seed", "record seed", cxxopts::value<std::uint64_t>()->default_value("20240301"))("h,help", "help");
  const auto opts = options.parse(argc, argv);
  if (opts.count("help")) {
    std::cout << options.help() << '\n';
    return 0;
  }
  spdlog::set_level(spdlog::level::warn);
  const auto records = opts["records"].as<std::uint64_t>();
  const auto batch = opts["batch"].as<std::uint64_t>();
  const std::string phase = opts["phase"].as<std::string>();
  fs::path dir = opts.count("work-dir") ? fs::path(opts["work-dir"].as<std::string>())
                                        : fs::temp_directory_path() / ("rdprofile." + std::to_string(::getpid()));
  fs::create_directories(dir / "state");  // the bench policy's state_dir
  const std::string toml = rd::bench::policy_toml(dir);
  auto loaded = rd::policy::load_policy_text(toml, rd::policy::ConfFormat::toml, "bench.toml");
  if (!loaded.ok()) {
    std::cerr << loaded.first_error() << '\n';
    return 1;
  }
  const auto start_clock = rd::calendar::parse_instant(phase == "purge" ? rd::bench::kPurgeNow : rd::bench::kIngestNow);
  rd::calendar::ManualClock clock(*start_clock);
  boost::asio::io_context io;
  rd::engine::EngineOptions eo;
  eo.config_path = dir / "policy.toml";
  eo.policy = loaded.policy;
  eo.clock = &clock;
  eo.secret = std::string(32, 'p');
  eo.version = "profile";
  eo.writer_mode = rd::scheduler::Writer::Mode::io;
  auto engine = rd::engine::Engine::open(io, std::move(eo));
  if (!engine) {
    std::cerr << engine.error().message << '\n';
    return 1;
  }
  rd::actions::Service& service = (*engine)->service();
  const rd::actions::Actor actor{"uid:0"};

  if (phase == "ingest" || phase == "all") {
    // The request lines, rendered before anything is timed, as the bench does.
    const rd::bench::RecordGenerator gen(opts["seed"].as<std::uint64_t>());
    std::vector<std::string> lines;
    for (std::uint64_t i = 0; i < records; i += batch) {
      std::string line = "{\"records\":[";
      for (std::uint64_t j = i; j < std::min(records, i + batch); ++j) {
        if (j > i) line += ',';
        rd::bench::RecordGenerator::append_json(gen.make(j), line);
      }
      line += "]}";
      lines.push_back(std::move(line));
    }
    double parse = 0, decode = 0, store = 0;
    const auto t0 = Clock::now();
    for (const auto& line : lines) {
      auto t = Clock::now();
      const auto params = nlohmann::json::parse(line);
      parse += seconds_since(t);
      t = Clock::now();
      auto requests = rd::protocol::decode::put_many(params, 100000);
      decode += seconds_since(t);
      if (!requests) {
        std::cerr << requests.error().message << '\n';
        return 1;
      }
      t = Clock::now();
      auto n = service.put_many(*requests, actor);
      store += seconds_since(t);
      if (!n) {
        std::cerr << n.error().message << '\n';
        return 1;
      }
    }
    const double total = seconds_since(t0);
    std::printf("ingest: %llu records in %.2f s (%.0f/s): JSON parse %.2f s, decode %.2f s, put_many %.2f s\n",
                static_cast<unsigned long long>(records), total, static_cast<double>(records) / total, parse, decode,
                store);
  }
  if (phase == "purge" || phase == "all") {
    clock.set(*rd::calendar::parse_instant(rd::bench::kPurgeNow));
    rd::actions::SweepCursor cursor;
    rd::actions::SweepCounts total;
    const auto t0 = Clock::now();
    while (!cursor.done) {
      auto counts = service.sweep_batch(1000, rd::actions::Actor{"scheduler"}, cursor);
      if (!counts) {
        std::cerr << counts.error().message << '\n';
        return 1;
      }
      total += *counts;
    }
    const double secs = seconds_since(t0);
    std::printf("purge sweep: %lld records in %.2f s (%.0f/s)\n", static_cast<long long>(total.purged), secs,
                static_cast<double>(total.purged) / secs);
  }
  (*engine)->stop();
  engine->reset();
  if (!opts.count("work-dir")) fs::remove_all(dir);
  return 0;
}
