#include "lib/server/metrics_http.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

namespace retentiond::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kDeadline = std::chrono::seconds(10);
constexpr std::uint32_t kHeaderLimit = 8 * 1024;
constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace

class MetricsEndpoint::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, MetricsEndpoint& owner) : m_stream(std::move(socket)), m_owner(owner) {
    m_parser.header_limit(kHeaderLimit);
  }

  void start() {
    m_stream.expires_after(kDeadline);
    http::async_read(m_stream, m_buffer, m_parser, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_read(ec);
    });
  }

  void close() {
    m_closed = true;
    beast::error_code ignored;
    m_stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    m_stream.close();
  }

 private:
  void on_read(beast::error_code ec) {
    if (ec) return finish();  // closed, timed out, or not HTTP: nothing to answer
    const auto& request = m_parser.get();
    const std::string_view target(request.target().data(), request.target().size());
    const std::string_view path = target.substr(0, target.find('?'));
    m_head = request.method() == http::verb::head;
    if (path != "/metrics") return respond(http::status::not_found, "not found: the metrics are at /metrics\n");
    if (request.method() != http::verb::get && !m_head) {
      m_response.set(http::field::allow, "GET, HEAD");
      return respond(http::status::method_not_allowed, "only GET and HEAD\n");
    }
    m_owner.m_provider([self = shared_from_this()](Result<std::string> text) {
      if (self->m_closed) return;
      if (!text) {
        spdlog::warn("metrics.failed error={}", text.error().message);
        return self->respond(http::status::service_unavailable, text.error().message + "\n");
      }
      self->respond(http::status::ok, std::move(text).value());
    });
  }

  void respond(http::status status, std::string body) {
    m_response.result(status);
    m_response.version(11);
    m_response.set(http::field::content_type, status == http::status::ok ? kContentType : "text/plain; charset=utf-8");
    m_response.keep_alive(false);
    m_response.body() = std::move(body);
    m_response.prepare_payload();
    if (m_head) m_response.body().clear();  // Content-Length stays that of the GET
    m_stream.expires_after(kDeadline);
    http::async_write(m_stream, m_response, [self = shared_from_this()](beast::error_code, std::size_t) {
      self->finish();
      self->close();
    });
  }

  void finish() {
    m_closed = true;
    if (!m_owner.m_stopped) m_owner.m_sessions.erase(shared_from_this());
  }

  beast::tcp_stream m_stream;
  beast::flat_buffer m_buffer;
  http::request_parser<http::empty_body> m_parser;
  http::response<http::string_body> m_response;
  MetricsEndpoint& m_owner;
  bool m_head = false;
  bool m_closed = false;
};

MetricsEndpoint::MetricsEndpoint(asio::io_context& io, std::string host, std::uint16_t port, Provider provider)
    : m_host(std::move(host)), m_port(port), m_provider(std::move(provider)), m_acceptor(io) {}

MetricsEndpoint::~MetricsEndpoint() { stop(); }

Status MetricsEndpoint::start() {
  try {
    const std::string address = m_host == "localhost" ? "127.0.0.1" : m_host;
    const tcp::endpoint endpoint(asio::ip::make_address(address), m_port);
    m_acceptor.open(endpoint.protocol());
    m_acceptor.set_option(tcp::acceptor::reuse_address(true));
    m_acceptor.bind(endpoint);
    m_acceptor.listen();
    m_bound_port = m_acceptor.local_endpoint().port();
  } catch (const boost::system::system_error& e) {
    return Error::internal("cannot listen for metrics on " + m_host + ":" + std::to_string(m_port) + ": " +
                           e.code().message());
  }
  spdlog::info("metrics.listening address={} port={}", m_host, m_bound_port);
  accept();
  return {};
}

void MetricsEndpoint::stop() {
  if (m_stopped) return;
  m_stopped = true;
  beast::error_code ignored;
  m_acceptor.close(ignored);
  // close() ends their pending operations; their handlers then let go.
  for (const auto& session : std::set<std::shared_ptr<Session>>(m_sessions)) session->close();
  m_sessions.clear();
}

void MetricsEndpoint::accept() {
  m_acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (m_stopped || ec == asio::error::operation_aborted) return;
    if (!ec) {
      if (m_sessions.size() >= kMaxSessions) {
        // A scraper that opens this many is misbehaving: close at once.
        beast::error_code ignored;
        socket.close(ignored);
      } else {
        auto session = std::make_shared<Session>(std::move(socket), *this);
        m_sessions.insert(session);
        session->start();
      }
    }
    accept();
  });
}

}  // namespace retentiond::server
