#!/usr/bin/env python3
"""A minimal pull consumer for a retentiond `pull` connector.

It talks to the daemon's admin socket (JSON-RPC 2.0, one JSON text per
line; it needs the admin role) and loops:

    1. connector.claim {connector, max, lease}: up to --max jobs, each leased
       to this consumer for --lease seconds;
    2. for each job, in order, runs the hook:
         default   prints the job's id, action and key (never its subject)
                   to stdout: the job is done;
         --exec    runs a command with the job JSON on stdin, as retentiond
                   runs an exec connector: exit 0 done, exit 75 try later,
                   anything else (a signal, the --timeout) failed;
    3. connector.ack: the done jobs in one call, the failed ones in one call
       per distinct message. A job the hook wants tried later is not acked:
       its lease runs out and it is claimed again, with the same id.

With --once it makes one claim/ack round and exits; otherwise it sleeps
--idle seconds whenever a claim returns nothing, and reconnects when the
daemon goes away. SIGTERM or SIGINT: the batch in hand is finished and
acked, then it exits 0.

A job's lease is counted from the claim: the consumer starts no hook that
could still be running when the lease ends (the job would be claimed again
by someone else), and leaves those jobs unacked.

Exit codes: 0 done; 1 an error (the socket, a JSON-RPC error other than a
transient one); 2 usage.

Standard library only (python3 >= 3.8).
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

PROG = "pull-consumer"
EX_TEMPFAIL = 75
CAPTURE_BYTES = 4096
DEFAULT_SOCKET = "/run/retentiond/admin.sock"
# storage_error (the database was busy or failed; nothing changed) and
# invalid_request with reason busy (no free connection slot) pass.
TRANSIENT_CODES = (-32005,)
TRANSIENT_REASONS = ("busy",)


def log(message):
    print("%s: %s" % (PROG, message), file=sys.stderr, flush=True)


class RpcError(Exception):
    """A JSON-RPC error answer: its code, message and data.reason."""

    def __init__(self, method, code, message, reason):
        super().__init__("%s: error %s: %s%s" % (
            method, code, message, " (%s)" % reason if reason else ""))
        self.code = code
        self.reason = reason

    @property
    def transient(self):
        return self.code in TRANSIENT_CODES \
            or self.reason in TRANSIENT_REASONS


class Client:
    """One connection to the admin socket; requests one at a time."""

    def __init__(self, path, timeout):
        self.path = path
        self.timeout = timeout
        self.next_id = 1
        self.sock = None
        self.reader = None

    def connect(self):
        self.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except OSError:
            s.close()
            raise
        self.sock = s
        self.reader = s.makefile("rb")

    def close(self):
        if self.reader is not None:
            self.reader.close()
        if self.sock is not None:
            self.sock.close()
        self.sock = self.reader = None

    def call(self, method, params):
        """Sends one request and returns its result. A connection the daemon
        closed (idle timeout, restart) is opened again and the request sent
        once more: claim and ack may both be repeated safely."""
        for attempt in (1, 2):
            request_id = self.next_id
            self.next_id += 1
            line = json.dumps({"jsonrpc": "2.0", "id": request_id,
                               "method": method, "params": params},
                              separators=(",", ":")) + "\n"
            try:
                if self.sock is None:
                    self.connect()
                self.sock.sendall(line.encode("utf-8"))
                answer = self.reader.readline()
                if not answer:
                    raise ConnectionError("the daemon closed the connection")
            except (ConnectionError, BrokenPipeError) as e:
                self.close()
                if attempt == 2:
                    raise
                log("%s: %s; reconnecting" % (method, e))
                continue
            return self.result(method, request_id, answer)

    @staticmethod
    def result(method, request_id, answer):
        try:
            response = json.loads(answer)
        except ValueError:
            raise RpcError(method, None, "the answer is not JSON", None)
        if not isinstance(response, dict):
            raise RpcError(method, None, "the answer is not an object", None)
        error = response.get("error")
        if error is not None:
            data = error.get("data") if isinstance(error, dict) else None
            raise RpcError(method, error.get("code"), error.get("message"),
                           data.get("reason") if isinstance(data, dict)
                           else None)
        if response.get("id") != request_id:
            raise RpcError(method, None, "the answer has id %r, expected %r"
                           % (response.get("id"), request_id), None)
        if "result" not in response:
            raise RpcError(method, None, "the answer has no result", None)
        return response["result"]


# ---- hooks -----------------------------------------------------------------
# A hook takes a job and returns ("done", None), ("failed", message) or
# ("later", message).

def print_hook(job):
    print("%s %s %s" % (job.get("id"), job.get("action"), job.get("key")),
          flush=True)
    return "done", None


def first_bytes(data):
    text = data[:CAPTURE_BYTES].decode("utf-8", "replace").strip()
    return text + (" [...]" if len(data) > CAPTURE_BYTES else "")


def exec_hook(argv, timeout):
    """Runs argv as retentiond runs an exec connector: job on stdin, cwd /,
    the consumer's environment, its own process group (killed on timeout)."""

    def hook(job):
        payload = (json.dumps(job, separators=(",", ":")) + "\n").encode()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, cwd="/",
                                    start_new_session=True)
        except OSError as e:
            return "failed", "cannot run %s: %s" % (argv[0], e)
        try:
            out, err = proc.communicate(payload, timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            return "failed", "timed out after %g s%s" % (
                timeout, output_text(out, err))
        rc = proc.returncode
        if rc == 0:
            return "done", None
        if rc == EX_TEMPFAIL:
            return "later", "exit 75%s" % output_text(out, err)
        what = "killed by signal %d" % -rc if rc < 0 else "exit %d" % rc
        return "failed", what + output_text(out, err)

    return hook


def output_text(out, err):
    parts = []
    if out and out.strip():
        parts.append("stdout: " + first_bytes(out))
    if err and err.strip():
        parts.append("stderr: " + first_bytes(err))
    return ("; " + "; ".join(parts)) if parts else ""


# ---- the loop --------------------------------------------------------------

class Stop:
    requested = False


def one_round(client, args, hook):
    """Claims once, runs the hook on each job, acks. Returns the number of
    jobs claimed."""
    claimed_at = time.monotonic()
    result = client.call("connector.claim", {
        "connector": args.connector, "max": args.max,
        "lease": "%d s" % args.lease})
    jobs = result.get("jobs", [])
    done, failed, later, skipped = [], {}, 0, 0
    # A hook started after this point could outlive the lease.
    deadline = claimed_at + args.lease - args.timeout - args.margin
    for job in jobs:
        if not isinstance(job, dict) or not isinstance(job.get("id"), str):
            log("claim returned something that is not a job; skipped")
            continue
        if Stop.requested or time.monotonic() > deadline:
            skipped += 1
            continue
        try:
            outcome, message = hook(job)
        except Exception as e:  # a bug in a hook fails the job, not the loop
            outcome, message = "failed", "hook error: %s" % type(e).__name__
        if outcome == "done":
            done.append(job["id"])
        elif outcome == "failed":
            failed.setdefault(message or "failed", []).append(job["id"])
            log("job %s failed: %s" % (job["id"], message))
        else:
            later += 1
            log("job %s: try later (left to its lease): %s"
                % (job["id"], message))
    acked = 0
    if done:
        acked += client.call("connector.ack", {
            "connector": args.connector, "ids": done, "outcome": "done",
            "message": "done"})["acknowledged"]
    for message, ids in failed.items():
        acked += client.call("connector.ack", {
            "connector": args.connector, "ids": ids, "outcome": "failed",
            "message": message})["acknowledged"]
    n_failed = sum(len(ids) for ids in failed.values())
    if jobs:
        log("claimed %d: %d done, %d failed, %d left for later, %d not "
            "started before the lease; %d acknowledged"
            % (len(jobs), len(done), n_failed, later, skipped, acked))
        if acked < len(done) + n_failed:
            log("some acks were not counted: those jobs were already "
                "finished (done or discarded) or are unknown")
    return len(jobs)


def run(args):
    hook = exec_hook(args.exec, args.timeout) if args.exec else print_hook
    client = Client(args.socket, args.rpc_timeout)
    backoff = 1.0  # after an error: 1 s, doubled up to 60 s
    try:
        while not Stop.requested:
            try:
                n = one_round(client, args, hook)
            except RpcError as e:
                if args.once or not e.transient:
                    log(str(e))
                    return 1
                log("%s; retrying in %g s" % (e, backoff))
            except OSError as e:
                client.close()
                if args.once:
                    log("%s: %s" % (args.socket, e))
                    return 1
                log("%s: %s; retrying in %g s" % (args.socket, e, backoff))
            else:
                if args.once:
                    return 0
                backoff = 1.0
                if n == 0:
                    sleep(args.idle)
                continue
            sleep(backoff)
            backoff = min(60.0, backoff * 2)
    finally:
        client.close()
    return 0


def sleep(seconds):
    end = time.monotonic() + seconds
    while not Stop.requested and time.monotonic() < end:
        time.sleep(min(0.5, end - time.monotonic()))


def positive_int(low, high):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not an integer" % text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError("must be %d to %d" % (low, high))
        return value
    return parse


def non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def positive_float(text):
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Claims the jobs of a retentiond pull connector over the "
        "admin socket, runs a hook on each, and acknowledges them.")
    p.add_argument("--socket",
                   default=os.environ.get("RETENTIOND_SOCKET")
                   or DEFAULT_SOCKET,
                   help="the admin socket (default: $RETENTIOND_SOCKET, else "
                   + DEFAULT_SOCKET + ")")
    p.add_argument("--connector", required=True,
                   help="the pull connector's name")
    p.add_argument("--max", type=positive_int(1, 1000), default=100,
                   help="jobs per claim (1..1000, default 100)")
    p.add_argument("--lease", type=positive_int(1, 86400), default=300,
                   metavar="SECONDS",
                   help="lease of a claim, in seconds (default 300)")
    p.add_argument("--timeout", type=positive_int(1, 86400), default=30,
                   metavar="SECONDS",
                   help="--exec: a run taking longer is killed and fails "
                   "(default 30)")
    p.add_argument("--margin", type=non_negative_float, default=5.0,
                   metavar="SECONDS",
                   help="time kept back at the end of a lease for the ack "
                   "(default 5)")
    p.add_argument("--idle", type=non_negative_float, default=5.0,
                   metavar="SECONDS",
                   help="sleep when a claim returned nothing (default 5)")
    p.add_argument("--rpc-timeout", type=positive_float, default=60.0,
                   metavar="SECONDS",
                   help="wait at most this long for an answer (default 60)")
    p.add_argument("--once", action="store_true",
                   help="one claim/ack round, then exit")
    p.add_argument("--exec", nargs=argparse.REMAINDER, metavar="CMD",
                   help="run CMD [ARGS...] for each job, with the job JSON on "
                   "stdin (must come last)")
    args = p.parse_args(argv)
    if args.exec is not None and not args.exec:
        p.error("--exec needs a command")
    if args.exec and not args.timeout + args.margin < args.lease:
        p.error("--timeout plus --margin must be less than --lease")
    if args.margin >= args.lease:
        p.error("--margin must be less than --lease")
    if not args.exec:
        args.timeout = 0  # the print hook takes no time worth counting
    return args


def main(argv):
    args = parse_args(argv)

    def on_signal(signum, frame):
        if Stop.requested:  # a second signal: stop now
            sys.exit(128 + signum)
        Stop.requested = True
        log("signal %d: finishing the batch in hand" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
