#include "lib/store/postgresql/pq.hpp"

#include <charconv>
#include <cstdlib>

namespace retentiond::store::pq {

Params& Params::text(std::string_view v) {
  m_values.emplace_back(std::string(v));
  m_lengths.push_back(0);
  m_formats.push_back(0);
  return *this;
}
Params& Params::text(const std::optional<std::string>& v) { return v ? text(*v) : null(); }
Params& Params::i64(std::int64_t v) { return text(std::to_string(v)); }
Params& Params::i64(const std::optional<std::int64_t>& v) { return v ? i64(*v) : null(); }
Params& Params::bytes(std::string_view v) {
  m_values.emplace_back(std::string(v));
  m_lengths.push_back(static_cast<int>(v.size()));
  m_formats.push_back(1);
  return *this;
}
Params& Params::null() {
  m_values.emplace_back(std::nullopt);
  m_lengths.push_back(0);
  m_formats.push_back(0);
  return *this;
}
const char* const* Params::values() const {
  m_pointers.clear();
  for (const auto& v : m_values) m_pointers.push_back(v ? v->data() : nullptr);
  return m_pointers.data();
}

std::string Rows::text(int row, int col) const {
  return std::string(PQgetvalue(m_r.get(), row, col), static_cast<std::size_t>(PQgetlength(m_r.get(), row, col)));
}
std::optional<std::string> Rows::opt_text(int row, int col) const {
  if (null(row, col)) return std::nullopt;
  return text(row, col);
}
std::int64_t Rows::i64(int row, int col) const {
  if (null(row, col)) throw Failure("unexpected NULL in column " + std::to_string(col), "");
  const char* v = PQgetvalue(m_r.get(), row, col);
  const char* end = v + PQgetlength(m_r.get(), row, col);
  std::int64_t out = 0;
  const auto [p, ec] = std::from_chars(v, end, out);
  if (ec != std::errc() || p != end) throw Failure(std::string("not an integer: ") + v, "");
  return out;
}
std::optional<std::int64_t> Rows::opt_i64(int row, int col) const {
  if (null(row, col)) return std::nullopt;
  return i64(row, col);
}
bool Rows::boolean(int row, int col) const { return !null(row, col) && PQgetvalue(m_r.get(), row, col)[0] == 't'; }
std::string Rows::bytes(int row, int col) const {
  std::size_t n = 0;
  unsigned char* raw = PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(m_r.get(), row, col)), &n);
  if (raw == nullptr) throw Failure("cannot decode a bytea value (out of memory)", "");
  std::string out(reinterpret_cast<const char*>(raw), n);
  PQfreemem(raw);
  return out;
}
std::int64_t Rows::affected() const {
  const char* n = PQcmdTuples(m_r.get());
  return (n == nullptr || *n == '\0') ? 0 : std::strtoll(n, nullptr, 10);
}

namespace {
// libpq's messages span lines ("...failed: X\n\tIs the server running..."):
// one line for the log.
std::string one_line(std::string msg) {
  std::string out;
  bool space = false;
  for (const char c : msg) {
    if (c == '\n' || c == '\t' || c == '\r' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

PGconn* connect(const std::string& conninfo, const std::string& application_name) {
  // expand_dbname: conninfo may be a URI or key=value string; the
  // application name (seen in pg_stat_activity) comes after it.
  const char* keys[] = {"dbname", "application_name", "client_encoding", nullptr};
  const char* values[] = {conninfo.c_str(), application_name.c_str(), "UTF8", nullptr};
  PGconn* c = PQconnectdbParams(keys, values, 1);
  if (c == nullptr) throw Failure("cannot allocate a PostgreSQL connection", "");
  if (PQstatus(c) != CONNECTION_OK) {
    const std::string msg = one_line(PQerrorMessage(c));
    PQfinish(c);
    throw Failure("cannot connect to PostgreSQL: " + msg, "08001");
  }
  return c;
}
}  // namespace

Connection::Connection(const std::string& conninfo, const std::string& application_name)
    : m_conninfo(conninfo), m_conn(connect(conninfo, application_name), &PQfinish) {
  exec("SET client_min_messages = warning");
}

void Connection::reconnect() {
  m_prepared.clear();
  PQreset(m_conn.get());
  if (PQstatus(m_conn.get()) != CONNECTION_OK) {
    throw Failure("cannot reconnect to PostgreSQL: " + one_line(PQerrorMessage(m_conn.get())), "08001");
  }
  exec("SET client_min_messages = warning");
}

std::string Connection::describe() const {
  const char* db = PQdb(m_conn.get());
  const char* host = PQhost(m_conn.get());
  const char* port = PQport(m_conn.get());
  return std::string("database ") + (db ? db : "?") + " on " + (host ? host : "?") + ":" + (port ? port : "?");
}

Rows Connection::check(PGresult* r, const std::string& sql) {
  Rows rows(r);
  const auto status = PQresultStatus(r);
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return rows;
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  const std::string msg = one_line(r ? PQresultErrorMessage(r) : PQerrorMessage(m_conn.get()));
  const std::string head = sql.substr(0, 60);
  throw Failure(msg + " (in: " + head + (sql.size() > 60 ? "..." : "") + ")", state ? state : "");
}

void Connection::exec(const std::string& sql) { check(PQexec(m_conn.get(), sql.c_str()), sql); }

Rows Connection::run(const std::string& sql, const Params& params) {
  auto it = m_prepared.find(sql);
  if (it == m_prepared.end()) {
    const std::string name = "rd" + std::to_string(m_prepared.size());
    check(PQprepare(m_conn.get(), name.c_str(), sql.c_str(), 0, nullptr), sql);
    it = m_prepared.emplace(sql, name).first;
  }
  return check(PQexecPrepared(m_conn.get(), it->second.c_str(), params.size(), params.values(), params.lengths(),
                              params.formats(), 0),
               sql);
}

Rows Connection::run_once(const std::string& sql, const Params& params) {
  return check(PQexecParams(m_conn.get(), sql.c_str(), params.size(), nullptr, params.values(), params.lengths(),
                            params.formats(), 0),
               sql);
}

}  // namespace retentiond::store::pq
