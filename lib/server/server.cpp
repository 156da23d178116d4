#include "lib/server/server.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace retentiond::server {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;

namespace {

bool in_group(uid_t uid, gid_t gid, const std::string& group) {
  if (group.empty()) return false;
  struct group* g = ::getgrnam(group.c_str());
  if (g == nullptr) return false;
  if (g->gr_gid == gid) return true;
  struct passwd* pw = ::getpwuid(uid);
  if (pw == nullptr) return false;
  int n = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(n));
  if (::getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<std::size_t>(n));
    if (::getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n) < 0) return false;
  }
  groups.resize(static_cast<std::size_t>(n));
  return std::find(groups.begin(), groups.end(), g->gr_gid) != groups.end();
}

}  // namespace

protocol::Role role_for(uid_t uid, gid_t gid, const std::string& admin_group, const std::string& reader_group) {
  if (uid == 0 || uid == ::getuid()) return protocol::Role::admin;
  if (in_group(uid, gid, admin_group)) return protocol::Role::admin;
  if (in_group(uid, gid, reader_group)) return protocol::Role::reader;
  return protocol::Role::none;
}

class Server::Connection : public std::enable_shared_from_this<Server::Connection> {
 public:
  Connection(Server& server, local::socket socket, protocol::Caller caller)
      : m_server(server),
        m_alive(server.m_alive),
        m_socket(std::move(socket)),
        m_buffer(server.m_options.max_request_bytes + 1),
        m_idle(server.m_io),
        m_caller(caller) {
    ++m_server.m_connections;
    ++m_server.m_per_uid[m_caller.uid];
  }

  ~Connection() {
    if (!*m_alive) return;
    --m_server.m_connections;
    if (--m_server.m_per_uid[m_caller.uid] == 0) m_server.m_per_uid.erase(m_caller.uid);
  }

  void start() { read(); }

 private:
  void read() {
    arm_idle_timer();
    asio::async_read_until(m_socket, m_buffer, '\n', [self = shared_from_this()](auto ec, std::size_t n) {
      self->on_read(ec, n);
    });
  }

  void arm_idle_timer() {
    m_idle.expires_after(m_server.m_options.idle_timeout);
    m_idle.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      if (auto self = weak.lock()) self->close();
    });
  }

  void on_read(const boost::system::error_code& ec, std::size_t n) {
    if (!*m_alive) return;
    if (ec == asio::error::not_found) {
      // The line outgrew the limit: answer once, then close.
      write_and_close(protocol::Dispatcher::error_line(
          ErrorCode::invalid_request, "too_large",
          "request line longer than " + std::to_string(m_server.m_options.max_request_bytes) + " bytes"));
      return;
    }
    if (ec) {
      close();
      return;
    }
    std::string line(asio::buffers_begin(m_buffer.data()), asio::buffers_begin(m_buffer.data()) + static_cast<std::ptrdiff_t>(n) - 1);
    m_buffer.consume(n);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) {
      read();  // blank lines are ignored
      return;
    }
    // No idle timeout while a request is being answered (a sweep can take
    // a while); the next read re-arms it.
    m_idle.cancel();
    m_server.m_dispatcher.handle_line(line, m_caller, [self = shared_from_this()](std::optional<std::string> response) {
      if (!*self->m_alive || !self->m_socket.is_open()) return;
      if (!response) {
        self->read();
        return;
      }
      self->m_out = std::move(*response);
      self->m_out += '\n';
      // A client that stops reading must not hold its slot for ever.
      self->arm_idle_timer();
      asio::async_write(self->m_socket, asio::buffer(self->m_out), [self](auto wec, std::size_t) {
        if (wec) self->close();
        else self->read();
      });
    });
  }

  void write_and_close(std::string text) {
    m_out = std::move(text) + "\n";
    asio::async_write(m_socket, asio::buffer(m_out), [self = shared_from_this()](auto, std::size_t) { self->close(); });
  }

  void close() {
    boost::system::error_code ignored;
    m_idle.cancel();
    m_socket.shutdown(local::socket::shutdown_both, ignored);
    m_socket.close(ignored);
  }

  Server& m_server;
  std::shared_ptr<bool> m_alive;
  local::socket m_socket;
  asio::streambuf m_buffer;
  asio::steady_timer m_idle;
  protocol::Caller m_caller;
  std::string m_out;
};

Server::Server(asio::io_context& io, protocol::Dispatcher& dispatcher, ServerOptions options)
    : m_io(io), m_dispatcher(dispatcher), m_options(std::move(options)), m_acceptor(io) {}

Server::~Server() {
  *m_alive = false;
  stop();
}

Status Server::start() {
  boost::system::error_code ec;
  if (m_options.inherited_fd) {
    m_acceptor.assign(local(), *m_options.inherited_fd, ec);
    if (ec) return Error::internal("cannot use the socket passed by systemd: " + ec.message());
  } else {
    const std::string& path = m_options.socket_path;
    if (path.empty()) return Error::invalid_params("bad_config", "no socket: set daemon.socket or use socket activation");
    struct stat st{};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) return Error::internal(path + " exists and is not a socket; refusing to replace it");
      local::socket probe(m_io);
      probe.connect(local::endpoint(path), ec);
      if (!ec) return Error::internal("another daemon is answering on " + path + "; refusing to start a second one");
      ::unlink(path.c_str());  // stale: nobody answers
    }
    m_acceptor.open(local(), ec);
    if (!ec) m_acceptor.bind(local::endpoint(path), ec);
    if (ec) return Error::internal("cannot bind " + path + ": " + ec.message());
    m_created_file = true;
    if (::chmod(path.c_str(), m_options.socket_mode) != 0) {
      return Error::internal("cannot set the mode of " + path + ": " + std::strerror(errno));
    }
    m_acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Error::internal("cannot listen on " + path + ": " + ec.message());
  }
  accept();
  return {};
}

void Server::stop() {
  boost::system::error_code ignored;
  if (m_acceptor.is_open()) m_acceptor.close(ignored);
  if (m_created_file) {
    ::unlink(m_options.socket_path.c_str());
    m_created_file = false;
  }
}

std::optional<std::string> Server::refusal(protocol::Role role, uid_t uid) const {
  const std::size_t limit = m_options.max_connections;
  if (m_connections >= limit) return "too many connections (limit " + std::to_string(limit) + ")";
  // The last slots are kept for administrators, so that neither readers nor
  // an application flooding the socket can lock them out.
  const std::size_t reserved = std::min(m_options.admin_reserved_connections, limit - 1);
  if (role != protocol::Role::admin && m_connections >= limit - reserved) {
    return "too many connections (limit " + std::to_string(limit) + ", of which the last " + std::to_string(reserved) +
           " are kept for administrators)";
  }
  const auto it = m_per_uid.find(uid);
  if (it != m_per_uid.end() && it->second >= m_options.max_connections_per_uid) {
    return "too many connections from uid " + std::to_string(uid) + " (limit " +
           std::to_string(m_options.max_connections_per_uid) + " per user)";
  }
  return std::nullopt;
}

namespace {

// One line, best effort, then close at once: the peer holds nothing.
void refuse(local::socket& socket, ErrorCode code, const std::string& reason, const std::string& message) {
  const std::string line = protocol::Dispatcher::error_line(code, reason, message) + "\n";
  boost::system::error_code ignored;
  socket.non_blocking(true, ignored);
  socket.write_some(asio::buffer(line), ignored);
  socket.close(ignored);
}

}  // namespace

void Server::accept() {
  m_acceptor.async_accept([this, alive = m_alive](const boost::system::error_code& ec, local::socket socket) {
    if (!*alive || !m_acceptor.is_open()) return;
    if (!ec) {
      // The peer's role, from the kernel, before it gets anything.
      protocol::Caller caller;
      ucred cred{};
      socklen_t len = sizeof cred;
      if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        caller.uid = cred.uid;
        caller.role = role_for(cred.uid, cred.gid, m_options.admin_group, m_options.reader_group);
      }
      if (caller.role == protocol::Role::none) {
        refuse(socket, ErrorCode::forbidden, "forbidden",
               "uid " + std::to_string(caller.uid) +
                   " may not use this daemon (neither root, nor the daemon's user, nor a member of its admin or "
                   "reader group)");
      } else if (auto why = refusal(caller.role, caller.uid)) {
        refuse(socket, ErrorCode::invalid_request, "busy", *why);
      } else {
        std::make_shared<Connection>(*this, std::move(socket), caller)->start();
      }
    }
    accept();
  });
}

}  // namespace retentiond::server
