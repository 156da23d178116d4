#!/usr/bin/env python3
"""A minimal receiver for a retentiond `http` connector, on loopback.

retentiond POSTs each job as a JSON body with the header
`Idempotency-Key: <job id>`, and delivers it at least once: the same id
may come again (a restart, a lost answer). This receiver shows the one rule
a receiver must follow: a job is applied once, and a repeated id is
answered as done.

- It remembers the ids it has processed in --state FILE (JSON lines:
  {"id", "action", "key", "at"}; never the subject). The line is written
  and synced *before* the 200 goes out, so a crash in between makes the
  redelivery a repeat, not a loss.
- 200: done (also for an id already in the file).
- 503: --fail-first N answers the first N jobs with 503, which
  retentiond treats as "try later": for watching retries and back-off.
- 400: a body that is not a job, or an Idempotency-Key that does not match
  its id: a failed attempt for retentiond.

Where it says "apply the job here", a real receiver does its work (delete
the row...) before it records the id, and in the same transaction when it
can.

It binds 127.0.0.1 only. With --port 0 it picks a free port. Either way it
prints "listening on PORT" on stdout when ready.

Standard library only (python3 >= 3.8).
"""

import argparse
import datetime
import http.server
import json
import os
import re
import signal
import sys
import threading

PROG = "http-receiver"
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
ACTIONS = ("archive", "anonymise", "purge", "erase")
MAX_BODY = 1 << 20


def log(message):
    print("%s: %s" % (PROG, message), file=sys.stderr, flush=True)


class State:
    """The processed ids, in memory and in an append-only file."""

    def __init__(self, path, fail_first):
        self.path = path
        self.lock = threading.Lock()
        self.fail_left = fail_first
        self.seen = set()
        try:
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        self.seen.add(json.loads(line)["id"])
                    except (ValueError, KeyError, TypeError):
                        # A line cut short by a crash: its job was not
                        # answered 200, so it will come again.
                        log("%s:%d: unreadable line skipped" % (path, number))
        except FileNotFoundError:
            pass
        self.file = open(path, "a", encoding="utf-8")

    def handle(self, job):
        """Returns (status, text) for a valid job."""
        with self.lock:
            if self.fail_left > 0:
                self.fail_left -= 1
                return 503, "try later (--fail-first, %d left)" \
                    % self.fail_left
            if job["id"] in self.seen:
                return 200, "already done"
            # Apply the job here (delete the row, ...); return 503 when the
            # application is unavailable, or 4xx when the job can never be
            # applied.
            entry = {"id": job["id"], "action": job["action"],
                     "key": job["key"],
                     "at": datetime.datetime.now(datetime.timezone.utc)
                     .strftime("%Y-%m-%dT%H:%M:%SZ")}
            self.file.write(json.dumps(entry, separators=(",", ":")) + "\n")
            self.file.flush()
            os.fsync(self.file.fileno())
            self.seen.add(job["id"])
            return 200, "done"


def check_job(body, idempotency_key):
    """The job, or a reason why not. Reasons never quote the body: it holds
    the subject."""
    try:
        job = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "the body is not JSON"
    if not isinstance(job, dict):
        return None, "the body is not a JSON object"
    if not isinstance(job.get("id"), str) or not JOB_ID.match(job["id"]):
        return None, "field 'id': expected 32 lowercase hex digits"
    if job.get("action") not in ACTIONS:
        return None, "field 'action': expected one of " + ", ".join(ACTIONS)
    if not isinstance(job.get("key"), str) or not job["key"]:
        return None, "field 'key': expected a non-empty string"
    if idempotency_key != job["id"]:
        return None, "the Idempotency-Key header is missing or is not the " \
            "job's id"
    return job, None


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "retentiond-example-receiver"
    protocol_version = "HTTP/1.1"

    def reply(self, status, text, job=None):
        body = (json.dumps({"status": status, "message": text}) + "\n") \
            .encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == 503:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(body)
        # Never log the body: it holds the subject.
        log("%s %s %s -> %d %s" % (
            job["id"] if job else "-", job["action"] if job else "-",
            job["key"] if job else "-", status, text))

    def do_POST(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            return self.reply(411, "Content-Length required")
        if int(length) > MAX_BODY:
            self.close_connection = True
            return self.reply(413, "body larger than %d bytes" % MAX_BODY)
        body = self.rfile.read(int(length))
        job, why = check_job(body, self.headers.get("Idempotency-Key"))
        if job is None:
            return self.reply(400, why)
        status, text = self.server.state.handle(job)
        self.reply(status, text, job)

    def do_GET(self):
        self.send_response(405)
        self.send_header("Allow", "POST")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_PUT = do_DELETE = do_GET

    def log_message(self, format, *args):
        pass  # reply() logs, without the body


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog=PROG,
        description="A loopback HTTP receiver for a retentiond http "
        "connector that answers each job once, and a repeated id as done.")
    p.add_argument("--state", required=True, metavar="FILE",
                   help="where the processed ids are kept (JSON lines; "
                   "created when missing)")
    p.add_argument("--port", type=int, default=8080,
                   help="TCP port on 127.0.0.1 (default 8080; 0: pick a "
                   "free one)")
    p.add_argument("--fail-first", type=int, default=0, metavar="N",
                   help="answer the first N jobs with 503 (try later)")
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        p.error("--port must be 0 to 65535")
    if args.fail_first < 0:
        p.error("--fail-first must not be negative")
    return args


def main(argv):
    args = parse_args(argv)
    try:
        state = State(args.state, args.fail_first)
    except OSError as e:
        log("%s: %s" % (args.state, e.strerror or e))
        return 1
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port),
                                                 Handler)
    except OSError as e:
        log("cannot listen on 127.0.0.1:%d: %s" % (args.port,
                                                   e.strerror or e))
        return 1
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    server.state = state
    print("listening on %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
