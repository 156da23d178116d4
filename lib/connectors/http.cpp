// The http transport: one POST with Boost.Beast, on an io_context of its
// own that runs for at most the timeout (Beast's synchronous calls have no
// timeout; the asynchronous ones under run_for do).

#include <optional>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "lib/connectors/transport.hpp"
#include "lib/util/asio.hpp"

namespace retentiond::connectors {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// The exchange, step by step; `result` is set by the last step or an error.
struct Exchange : std::enable_shared_from_this<Exchange> {
  Exchange(asio::io_context& io, http::request<http::string_body> req)
      : resolver(io), stream(io), request(std::move(req)) {
    parser.body_limit(1024 * 1024);
  }
  tcp::resolver resolver;
  beast::tcp_stream stream;
  http::request<http::string_body> request;
  http::response_parser<http::string_body> parser;
  beast::flat_buffer buffer;
  std::optional<Attempt> result;

  void fail(const char* step, const beast::error_code& ec) {
    // No answer: the receiver is down, or slow; try later.
    if (!result) result = Attempt{Outcome::later, std::string(step) + ": " + ec.message()};
    stream.expires_never();
  }

  void start(const std::string& host, const std::string& port) {
    auto self = shared_from_this();
    resolver.async_resolve(host, port, [self](const beast::error_code& ec, const tcp::resolver::results_type& results) {
      if (ec) return self->fail("resolve", ec);
      self->stream.async_connect(results, [self](const beast::error_code& ec2, const tcp::endpoint&) {
        if (ec2) return self->fail("connect", ec2);
        http::async_write(self->stream, self->request, [self](const beast::error_code& ec3, std::size_t) {
          if (ec3) return self->fail("send", ec3);
          http::async_read(self->stream, self->buffer, self->parser, [self](const beast::error_code& ec4, std::size_t) {
            // A body past the limit: the status is what counts (the body is
            // only kept for the message).
            if (ec4 == http::error::body_limit && self->parser.is_header_done()) return self->answered();
            if (ec4) return self->fail("response", ec4);
            self->answered();
          });
        });
      });
    });
  }

  void answered() {
    const auto& res = parser.get();
    const unsigned status = res.result_int();
    std::string body = res.body().substr(0, kMaxOutputBytes);
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
    std::string text = "HTTP " + std::to_string(status) + (body.empty() ? "" : ": " + body);
    if (status >= 200 && status < 300) {
      result = Attempt{Outcome::done, std::move(text)};
    } else if (status == 408 || status == 429 || status >= 500) {
      result = Attempt{Outcome::later, std::move(text)};
    } else {
      result = Attempt{Outcome::failed, std::move(text)};
    }
    stream.expires_never();
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }
};

}  // namespace

Attempt post_http(const HttpTarget& to, const std::string& body, const std::string& idempotency_key,
                  const std::string& user_agent, std::chrono::milliseconds timeout, const std::atomic<bool>& cancel) {
  asio::io_context io;
  http::request<http::string_body> req{http::verb::post, to.target, 11};
  const bool v6 = to.host.find(':') != std::string::npos;
  const std::string host_header = (v6 ? "[" + to.host + "]" : to.host) + (to.port == 80 ? "" : ":" + std::to_string(to.port));
  req.set(http::field::host, host_header);
  req.set(http::field::user_agent, user_agent);
  req.set(http::field::content_type, "application/json");
  req.set("Idempotency-Key", idempotency_key);
  req.keep_alive(false);
  req.body() = body;
  req.prepare_payload();
  auto exchange = std::make_shared<Exchange>(io, std::move(req));
  exchange->stream.expires_after(timeout);
  exchange->start(to.host, std::to_string(to.port));
  const auto deadline = std::chrono::steady_clock::now() + timeout + std::chrono::milliseconds(100);
  while (!exchange->result && !io.stopped() && !cancel.load() && std::chrono::steady_clock::now() < deadline) {
    io.run_for(std::chrono::milliseconds(100));
  }
  std::optional<Attempt> result = exchange->result;
  // Out of time with an operation pending, or done: cancel what is left
  // and let its handlers run, so that nothing outlives the io_context.
  exchange->resolver.cancel();
  exchange->stream.expires_never();
  beast::error_code ignored;
  exchange->stream.socket().close(ignored);
  io.restart();
  io.run();
  if (result) return *result;
  if (cancel.load()) return Attempt{Outcome::later, "stopped: the daemon is shutting down"};
  return Attempt{Outcome::later, "timed out after " + std::to_string(timeout.count() / 1000) + " s"};
}

}  // namespace retentiond::connectors
