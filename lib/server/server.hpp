#pragma once
// Server: the admin socket. Accepts Unix-domain stream connections, reads
// newline-terminated JSON-RPC requests, answers each through the Dispatcher
// in request order, and enforces the documented limits: request line size,
// concurrent connections (in all, per user, and the slots kept for
// administrators), idle time (JSON depth is the Dispatcher's).
// Roles come from the peer's credentials (SO_PEERCRED), read at accept: a
// peer with no role gets one `forbidden` line and is closed at once, and
// never holds a slot.
//
// Runs on the io_context it is given; all handlers run on that one thread.

#include <sys/types.h>

#include "lib/util/asio.hpp"
#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "lib/protocol/dispatcher.hpp"
#include "lib/util/result.hpp"

namespace retentiond::server {

struct ServerOptions {
  std::string socket_path;  // used when no inherited descriptor is given
  unsigned socket_mode = 0660;
  std::optional<int> inherited_fd;  // a listening socket passed by systemd
  std::string admin_group;
  std::string reader_group;
  std::size_t max_request_bytes = 16 * 1024 * 1024;
  std::size_t max_connections = 64;
  std::size_t max_connections_per_uid = 16;   // one user's (uid's) connections
  std::size_t admin_reserved_connections = 4;  // of max_connections, taken only by administrators
  std::chrono::seconds idle_timeout{300};
};

// The role of a peer: uid 0 and our own uid are admin; members of
// admin_group (by primary gid or group database) are admin; members of
// reader_group are reader; anyone else none.
protocol::Role role_for(uid_t uid, gid_t gid, const std::string& admin_group, const std::string& reader_group);

class Server {
 public:
  Server(boost::asio::io_context& io, protocol::Dispatcher& dispatcher, ServerOptions options);
  ~Server();

  // Binds (replacing a stale socket file only when no daemon answers on it)
  // or adopts the inherited descriptor, and starts accepting.
  Status start();
  // Stops accepting and closes every connection; removes the socket file we created.
  void stop();

  std::size_t connections() const { return m_connections; }

 private:
  class Connection;
  void accept();
  // Why a new connection of a peer with `role` and `uid` is refused, or
  // nullopt when it is taken.
  std::optional<std::string> refusal(protocol::Role role, uid_t uid) const;

  boost::asio::io_context& m_io;
  protocol::Dispatcher& m_dispatcher;
  ServerOptions m_options;
  boost::asio::local::stream_protocol::acceptor m_acceptor;
  std::size_t m_connections = 0;
  std::map<uid_t, std::size_t> m_per_uid;
  bool m_created_file = false;
  std::shared_ptr<bool> m_alive = std::make_shared<bool>(true);
};

}  // namespace retentiond::server
