// pg_test_cluster start|stop DIR: the ctest fixture that runs one
// PostgreSQL cluster for the daemon suites run on the PostgreSQL backend
// (tests/CMakeLists.txt, RETENTIOND_TEST_BACKEND=postgresql).

#include <iostream>
#include <string>

#include "tests/support/pg_cluster.hpp"

int main(int argc, char** argv) {
  if (argc != 3 || (std::string(argv[1]) != "start" && std::string(argv[1]) != "stop")) {
    std::cerr << "usage: pg_test_cluster start|stop DIR\n";
    return 2;
  }
  try {
    if (std::string(argv[1]) == "start") {
      retentiond::test::PgCluster::stop_in(argv[2]);  // a cluster a killed run left behind
      retentiond::test::PgCluster::start_in(argv[2]);
    } else {
      retentiond::test::PgCluster::stop_in(argv[2]);
    }
  } catch (const std::exception& e) {
    std::cerr << "pg_test_cluster: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
