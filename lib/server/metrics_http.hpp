#pragma once
// The Prometheus scrape endpoint ([daemon] metrics_listen): GET /metrics
// over HTTP/1.1 on a TCP address, answered with the `metrics` method's text
// (Boost.Beast parses the requests). One request per connection, a 10 s
// deadline for each, at most kMaxSessions at once; anything but GET or HEAD
// of /metrics gets 405 or 404. No authentication: it is meant for loopback
// (the default the docs give), and serves only counts, never record values.
//
// Runs on the io_context it is given; all handlers run on that one thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "lib/util/asio.hpp"
#include "lib/util/result.hpp"

namespace retentiond::server {

class MetricsEndpoint {
 public:
  // Produces the exposition text, answering through the callback on the
  // io_context (protocol::Dispatcher::metrics).
  using Provider = std::function<void(std::function<void(Result<std::string>)>)>;
  static constexpr std::size_t kMaxSessions = 16;

  MetricsEndpoint(boost::asio::io_context& io, std::string host, std::uint16_t port, Provider provider);
  ~MetricsEndpoint();

  // Binds (port 0: any free port, for tests) and starts accepting.
  Status start();
  // Stops accepting and closes the connections.
  void stop();
  // The bound port, once started.
  std::uint16_t port() const { return m_bound_port; }

 private:
  class Session;
  void accept();

  std::string m_host;
  std::uint16_t m_port;
  std::uint16_t m_bound_port = 0;
  Provider m_provider;
  boost::asio::ip::tcp::acceptor m_acceptor;
  std::set<std::shared_ptr<Session>> m_sessions;
  bool m_stopped = false;
};

}  // namespace retentiond::server
