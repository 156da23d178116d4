#pragma once
// A thin C++ face on libpq for the PostgreSQL backend (internal to
// lib/store): a connection that prepares each distinct statement once and
// runs it with typed parameters, and results read by row and column. Text
// results; bytea parameters are sent in binary, bytea results decoded from
// PostgreSQL's hex form. Every failure throws pq::Failure (the backend turns
// it into a storage_error); each object is confined to one thread.

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace retentiond::store::pq {

class Failure : public std::runtime_error {
 public:
  Failure(const std::string& what, std::string sqlstate) : std::runtime_error(what), m_sqlstate(std::move(sqlstate)) {}
  const std::string& sqlstate() const { return m_sqlstate; }  // empty when not from the server

 private:
  std::string m_sqlstate;
};

// Statement parameters, $1, $2... in the order added.
class Params {
 public:
  Params& text(std::string_view v);
  Params& text(const std::string& v) { return text(std::string_view(v)); }
  Params& text(const char* v) { return text(std::string_view(v)); }
  Params& text(const std::optional<std::string>& v);
  Params& i64(std::int64_t v);
  Params& i64(const std::optional<std::int64_t>& v);
  Params& bytes(std::string_view v);  // bytea, sent in binary
  Params& null();

  int size() const { return static_cast<int>(m_values.size()); }
  const char* const* values() const;
  const int* lengths() const { return m_lengths.data(); }
  const int* formats() const { return m_formats.data(); }

 private:
  std::vector<std::optional<std::string>> m_values;
  std::vector<int> m_lengths, m_formats;
  mutable std::vector<const char*> m_pointers;
};

class Rows {
 public:
  explicit Rows(PGresult* r) : m_r(r, &PQclear) {}
  int size() const { return PQntuples(m_r.get()); }
  bool empty() const { return size() == 0; }
  bool null(int row, int col) const { return PQgetisnull(m_r.get(), row, col) != 0; }
  std::string text(int row, int col) const;
  std::optional<std::string> opt_text(int row, int col) const;
  std::int64_t i64(int row, int col) const;
  std::optional<std::int64_t> opt_i64(int row, int col) const;
  bool boolean(int row, int col) const;
  std::string bytes(int row, int col) const;  // a bytea column
  // Rows changed by an INSERT, UPDATE or DELETE.
  std::int64_t affected() const;

 private:
  std::unique_ptr<PGresult, decltype(&PQclear)> m_r;
};

class Connection {
 public:
  // Connects (`conninfo`: a libpq connection string or URI); throws with
  // libpq's message when the server cannot be reached or refuses us.
  explicit Connection(const std::string& conninfo, const std::string& application_name = "retentiond");
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // One or more statements without parameters (simple query protocol).
  void exec(const std::string& sql);
  // A statement with parameters, prepared on this connection the first time
  // its text is seen.
  Rows run(const std::string& sql, const Params& params = {});
  // The same without preparing (statements run once: DDL helpers, scans).
  Rows run_once(const std::string& sql, const Params& params = {});

  // After a failure: true when the connection is gone (the server closed it
  // or restarted); reconnect() then opens it again (prepared statements are
  // forgotten).
  bool broken() const { return PQstatus(m_conn.get()) != CONNECTION_OK; }
  void reconnect();

  PGconn* handle() { return m_conn.get(); }
  // The database and server this connection reached, for messages.
  std::string describe() const;

 private:
  Rows check(PGresult* r, const std::string& sql);

  std::string m_conninfo;
  std::unique_ptr<PGconn, decltype(&PQfinish)> m_conn;
  std::unordered_map<std::string, std::string> m_prepared;  // sql -> statement name
};

}  // namespace retentiond::store::pq
