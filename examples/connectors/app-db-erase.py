#!/usr/bin/env python3
"""An exec connector for retentiond: applies a job to an application database.

retentiond runs this program once per job, with the job as one line of JSON
on stdin (docs/connectors.md, "The job"). The program finds the row whose
key column equals the job's `key` and:

    purge, erase   deletes the row;
    anonymise      sets the --anonymise-columns of the row to NULL;
    archive        nothing, unless --archive-table is given: then copies the
                   row into that table (same columns; a copy already there is
                   kept) and deletes it.

It is idempotent, as every connector must be (delivery is at least once): a
row already gone is success, and with SQLite (or with PostgreSQL when the
table exists) the job id is recorded in `retentiond_jobs` in the same
transaction as the change, so a job delivered again is recognised and not
applied twice (a purge redelivered after the application has created a new
row with the same key would otherwise delete the new row).

Exit codes (what retentiond makes of them):

    0   done (also: a job already applied, a row already gone)
    75  try later: the database is locked or busy, or psql cannot connect
    2   bad input (not a job) or bad options: a failed attempt
    1   any other error (no such table, a constraint...): a failed attempt

The job's `subject` is never used and never printed: whatever this program
writes to stdout or stderr ends up in retentiond's log and in the job's
`last_error`.

Values never go into SQL text: with --sqlite they are bound parameters;
with --psql they are psql variables interpolated by psql as quoted literals
(:'key') and identifiers (:"table"). Table and column names are checked
against [A-Za-z_][A-Za-z0-9_$]* (optionally schema.name) and quoted.

Standard library only (python3 >= 3.8). --psql needs psql 11 or later.
"""

import argparse
import datetime
import json
import os
import re
import sqlite3
import subprocess
import sys
import urllib.parse

PROG = "app-db-erase"
EX_OK = 0
EX_FAILED = 1
EX_BAD_INPUT = 2
EX_TEMPFAIL = 75

ACTIONS = ("archive", "anonymise", "purge", "erase")
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
MAX_JOB_BYTES = 1 << 20

# SQLSTATEs worth another try later: serialization failure, deadlock, lock
# not available, query cancelled (statement_timeout), admin shutdown, crash
# shutdown, cannot connect now, too many connections.
PG_TRANSIENT = ("40001", "40P01", "55P03", "57014", "57P01", "57P02",
                "57P03", "53300")


class Fail(Exception):
    """An error that ends the run with `code`, after `message` on stderr."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def fail(code, message):
    raise Fail(code, message)


# ---- options ---------------------------------------------------------------

def identifier(text):
    """argparse type: a table or column name, optionally schema-qualified."""
    parts = text.split(".")
    if len(parts) > 2 or not all(IDENT.match(p) for p in parts):
        raise argparse.ArgumentTypeError(
            "%r is not a plain SQL name ([A-Za-z_][A-Za-z0-9_$]*, "
            "optionally schema.name)" % text)
    return parts


def column_list(text):
    """argparse type: comma-separated column names."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise argparse.ArgumentTypeError("no column named")
    for name in names:
        if not IDENT.match(name):
            raise argparse.ArgumentTypeError(
                "%r is not a plain column name" % name)
    return names


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog=PROG,
        description="retentiond exec connector: reads one job (JSON) on "
        "stdin and applies it, by record key, to a row of an application "
        "database. Exit 0 done, 75 try later, anything else failed.")
    db = p.add_mutually_exclusive_group(required=True)
    db.add_argument("--sqlite", metavar="PATH",
                    help="an existing SQLite database file")
    db.add_argument("--psql", metavar="CONNINFO",
                    help="a PostgreSQL connection string or URI, passed to "
                    "psql (passwords: use ~/.pgpass or PGPASSFILE, not the "
                    "command line)")
    p.add_argument("--table", type=identifier, default=["users"],
                   help="the table holding the rows (default: users)")
    p.add_argument("--key-column", type=identifier, default=["id"],
                   help="the column that holds the record key "
                   "(default: id)")
    p.add_argument("--strip-prefix", metavar="PREFIX", default="",
                   help="the job's key starts with PREFIX, which the "
                   "application's key does not have (e.g. 'u-' for "
                   "retentiond key u-42, row id 42); a key without it is "
                   "an error")
    p.add_argument("--anonymise-columns", "--anonymize-columns",
                   type=column_list, default=["email", "name"],
                   metavar="COLS",
                   help="anonymise: the columns set to NULL "
                   "(default: email,name)")
    p.add_argument("--archive-table", type=identifier, metavar="TABLE",
                   help="archive: move the row into TABLE (same columns, "
                   "with a primary key or unique key on the key column); "
                   "without it archive is a no-op")
    p.add_argument("--lock-timeout", type=positive_float, default=5.0,
                   metavar="SECONDS",
                   help="how long to wait for a lock (SQLite's busy timeout, "
                   "PostgreSQL's lock_timeout) before exiting 75 "
                   "(default: 5; keep it well under the connector's "
                   "timeout, which counts as a failed attempt)")
    p.add_argument("--psql-command", default="psql", metavar="PATH",
                   help="--psql: the psql program (default: psql, found in "
                   "PATH)")
    p.add_argument("--dry-run", action="store_true",
                   help="do everything, then roll back (for trying it out)")
    args = p.parse_args(argv)
    if len(args.key_column) != 1:
        p.error("--key-column: a column name has no schema")
    return args


# ---- the job ---------------------------------------------------------------

def read_job(stream):
    """Reads and checks the job. Messages never quote the input: it holds
    the subject."""
    data = stream.read(MAX_JOB_BYTES + 1)
    if len(data) > MAX_JOB_BYTES:
        fail(EX_BAD_INPUT, "the job on stdin is larger than %d bytes"
             % MAX_JOB_BYTES)
    if not data.strip():
        fail(EX_BAD_INPUT, "no job on stdin (expected one line of JSON)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        fail(EX_BAD_INPUT, "the job is not UTF-8 (byte %d)" % e.start)
    try:
        job = json.loads(text)
    except ValueError as e:
        # JSONDecodeError's message is a position, never the text itself.
        msg = e.msg if hasattr(e, "msg") else "not JSON"
        pos = "line %d column %d" % (e.lineno, e.colno) \
            if hasattr(e, "lineno") else "?"
        fail(EX_BAD_INPUT, "the job is not valid JSON: %s at %s" % (msg, pos))
    if not isinstance(job, dict):
        fail(EX_BAD_INPUT, "the job is not a JSON object")

    def need(name, ok, what):
        if name not in job or not ok(job[name]):
            fail(EX_BAD_INPUT, "job field '%s': expected %s" % (name, what))

    need("id", lambda v: isinstance(v, str) and JOB_ID.match(v),
         "32 lowercase hex digits")
    need("action", lambda v: v in ACTIONS,
         "one of " + ", ".join(ACTIONS))
    need("key", lambda v: isinstance(v, str) and v != "",
         "a non-empty string")
    # The subject is not needed here; only its type is checked, and its
    # value never appears in a message.
    if "subject" in job and not (job["subject"] is None
                                 or isinstance(job["subject"], str)):
        fail(EX_BAD_INPUT, "job field 'subject': expected a string or null")
    return job


def app_key(job, prefix):
    key = job["key"]
    if prefix:
        if not key.startswith(prefix) or key == prefix:
            fail(EX_FAILED, "job %s: key %r does not start with "
                 "--strip-prefix %r" % (job["id"], key, prefix))
        key = key[len(prefix):]
    return key


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


# ---- SQLite ----------------------------------------------------------------

def sql_name(parts):
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


def is_busy(error):
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
    text = str(error)
    return "database is locked" in text or "is locked" in text \
        or "busy" in text


def apply_sqlite(args, job, key):
    uri = "file:%s?mode=rw" % urllib.parse.quote(os.path.abspath(args.sqlite))
    try:
        db = sqlite3.connect(uri, uri=True, timeout=args.lock_timeout,
                             isolation_level=None)
    except sqlite3.Error as e:
        fail(EX_FAILED, "cannot open %s: %s" % (args.sqlite, e))
    table = sql_name(args.table)
    keycol = sql_name(args.key_column)
    try:
        # IMMEDIATE takes the write lock now: a locked database shows up
        # here, before anything is done, and exits 75.
        db.execute("BEGIN IMMEDIATE")
        db.execute("CREATE TABLE IF NOT EXISTS retentiond_jobs ("
                   "id TEXT PRIMARY KEY, action TEXT NOT NULL, "
                   "key TEXT NOT NULL, done_at TEXT NOT NULL)")
        if db.execute("SELECT 1 FROM retentiond_jobs WHERE id = ?",
                      (job["id"],)).fetchone():
            db.execute("ROLLBACK")
            return "already done"
        action = job["action"]
        if action in ("purge", "erase"):
            n = db.execute("DELETE FROM %s WHERE %s = ?" % (table, keycol),
                           (key,)).rowcount
            result = "deleted %d row(s)" % n
        elif action == "anonymise":
            sets = ", ".join("%s = NULL" % sql_name([c])
                             for c in args.anonymise_columns)
            n = db.execute("UPDATE %s SET %s WHERE %s = ?"
                           % (table, sets, keycol), (key,)).rowcount
            result = "anonymised %d row(s)" % n
        else:  # archive, with --archive-table
            archive = sql_name(args.archive_table)
            copied = db.execute(
                "INSERT OR IGNORE INTO %s SELECT * FROM %s WHERE %s = ?"
                % (archive, table, keycol), (key,)).rowcount
            n = db.execute("DELETE FROM %s WHERE %s = ?" % (table, keycol),
                           (key,)).rowcount
            result = "archived %d row(s) (%d copied)" % (n, copied)
        db.execute("INSERT INTO retentiond_jobs (id, action, key, done_at) "
                   "VALUES (?, ?, ?, ?)",
                   (job["id"], action, job["key"], utc_now()))
        db.execute("ROLLBACK" if args.dry_run else "COMMIT")
        return result
    except sqlite3.Error as e:
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        if isinstance(e, sqlite3.OperationalError) and is_busy(e):
            fail(EX_TEMPFAIL, "%s: %s (try later)" % (args.sqlite, e))
        fail(EX_FAILED, "%s: %s" % (args.sqlite, e))
    finally:
        db.close()


# ---- PostgreSQL, through psql ----------------------------------------------

def psql_name(var, parts):
    """psql text for a (schema-qualified) name held in variables var0..."""
    return ".".join(':"%s%d"' % (var, i) for i in range(len(parts)))


def psql_script(args, action):
    """The psql script for `action`. It holds no value: the key, the job id
    and the names come in as psql variables (-v), which psql quotes."""
    table = psql_name("tbl", args.table)
    keycol = psql_name("keycol", args.key_column)
    where = "WHERE %s = :'key'" % keycol
    if action in ("purge", "erase"):
        change = ["DELETE FROM %s %s;" % (table, where),
                  "\\echo deleted :ROW_COUNT row(s)"]
    elif action == "anonymise":
        sets = ", ".join(':"col%d" = NULL' % i
                         for i in range(len(args.anonymise_columns)))
        change = ["UPDATE %s SET %s %s;" % (table, sets, where),
                  "\\echo anonymised :ROW_COUNT row(s)"]
    else:
        archive = psql_name("arch", args.archive_table)
        change = ["INSERT INTO %s SELECT * FROM %s %s ON CONFLICT DO NOTHING;"
                  % (archive, table, where),
                  "DELETE FROM %s %s;" % (table, where),
                  "\\echo archived :ROW_COUNT row(s)"]
    return "\n".join([
        "BEGIN;",
        "SET LOCAL lock_timeout = :'lock_timeout';",
        # The job log is used when the application has created it (see
        # examples/connectors/README.md); without it every action is still
        # idempotent on its own.
        "SELECT to_regclass('retentiond_jobs') IS NOT NULL AS rd_log \\gset",
        "\\if :rd_log",
        "SELECT EXISTS (SELECT 1 FROM retentiond_jobs WHERE id = :'job_id')"
        " AS rd_seen \\gset",
        "\\else",
        "\\set rd_seen false",
        "\\endif",
        "\\if :rd_seen",
        "\\echo already done",
        "\\else",
    ] + change + [
        "\\if :rd_log",
        "INSERT INTO retentiond_jobs (id, action, key, done_at)"
        " VALUES (:'job_id', :'action', :'job_key', :'done_at')"
        " ON CONFLICT (id) DO NOTHING;",
        "\\endif",
        "\\endif",
        "ROLLBACK;" if args.dry_run else "COMMIT;",
        "",
    ])


def apply_psql(args, job, key):
    variables = {
        "ON_ERROR_STOP": "1",
        "VERBOSITY": "verbose",  # errors carry their SQLSTATE
        "key": key,
        "job_id": job["id"],
        "job_key": job["key"],
        "action": job["action"],
        "done_at": utc_now(),
        "lock_timeout": "%dms" % max(1, round(args.lock_timeout * 1000)),
    }
    for prefix, parts in (("tbl", args.table), ("keycol", args.key_column),
                          ("arch", args.archive_table or [])):
        for i, part in enumerate(parts):
            variables["%s%d" % (prefix, i)] = part
    for i, col in enumerate(args.anonymise_columns):
        variables["col%d" % i] = col
    argv = [args.psql_command, "-X", "-q", "-A", "-t", "-d", args.psql]
    for name, value in variables.items():
        argv += ["-v", "%s=%s" % (name, value)]
    # The script goes on stdin: psql does not interpolate variables in -c.
    argv += ["-f", "-"]
    env = dict(os.environ)
    # A server that does not answer is "try later", not a hang until the
    # connector's timeout (a failed attempt). A connect_timeout in CONNINFO
    # wins over this.
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    try:
        proc = subprocess.run(argv, input=psql_script(args, job["action"]),
                              capture_output=True, text=True, cwd="/",
                              env=env)
    except OSError as e:
        fail(EX_FAILED, "cannot run %s: %s" % (args.psql_command, e))
    err = proc.stderr.strip()
    if proc.returncode == 0:
        return proc.stdout.strip().replace("\n", "; ") or "done"
    if proc.returncode == 2:
        # psql: the connection could not be made, or went bad.
        fail(EX_TEMPFAIL, "psql could not talk to the database (try later): "
             + err)
    m = re.search(r"ERROR:\s+([0-9A-Z]{5}):", err)
    if m and m.group(1) in PG_TRANSIENT:
        fail(EX_TEMPFAIL, "psql: transient error %s (try later): %s"
             % (m.group(1), err))
    fail(EX_FAILED, "psql exited %d: %s" % (proc.returncode, err))


# ---- main ------------------------------------------------------------------

def main(argv):
    args = parse_args(argv)
    try:
        job = read_job(sys.stdin.buffer)
        key = app_key(job, args.strip_prefix)
        if job["action"] == "archive" and not args.archive_table:
            result = "nothing to do (no --archive-table)"
        elif args.sqlite is not None:
            result = apply_sqlite(args, job, key)
        else:
            result = apply_psql(args, job, key)
    except Fail as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return e.code
    print("%s: job %s: %s key %s: %s%s"
          % (PROG, job["id"], job["action"], job["key"], result,
             " (dry run, rolled back)" if args.dry_run else ""))
    return EX_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
