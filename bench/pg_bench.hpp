#pragma once
// retentiond-bench --backend postgresql (bench/pg_bench.cpp).

#include <cstddef>
#include <cstdint>
#include <string>

namespace retentiond::bench {

struct PgBenchOptions {
  std::uint64_t records = 100000;
  std::size_t batch = 1000;    // records per put_many and per raw INSERT transaction
  std::uint64_t seed = 20240301;
  std::string url;             // a cluster to use (key=value form); empty: the bench starts one
  std::string json_out = "retentiond-bench-postgresql.json";
};

int run_postgresql(const PgBenchOptions& opt);

}  // namespace retentiond::bench
