#!/usr/bin/env python3
"""Generate tests/calendar/data/relativedelta_cases.csv, an independent oracle
for retentiond's calendar arithmetic (lib/calendar: add / subtract).

The policy spec (shared/spec/policy.md, "Durations") defines adding a duration
to an instant in three steps and says it is the arithmetic of python-dateutil's
`relativedelta`. This script computes the expected results with Python's
datetime + dateutil, not with our C++ code, so that the GoogleTest
`RelativedeltaOracle.EveryGeneratedCaseMatches` in calendar_test.cpp compares
two independent implementations.

Regenerate (the output is deterministic: fixed seed, fixed row count):

    python3 tests/calendar/gen_relativedelta_cases.py

from the repository root (or anywhere: paths are relative to this file).
Needs python-dateutil (Debian: python3-dateutil). If you change ROWS, change
the row count asserted in calendar_test.cpp as well.

CSV columns, one case per row, no quoting (no field contains a comma):

    start     an instant as parse_instant accepts it: `YYYY-MM-DD`,
              `YYYY-MM-DDTHH:MM:SSZ`, with a fraction (truncated), or with a
              `+HH:MM` / `-HH:MM` offset; always within 1970..9999
    duration  a duration in one of the spellings the spec allows: long
              (`4 months 30 days`), compact (`4mo30d`), mixed (`4 mo 30days`)
              or ISO 8601 (`P4M30D`)
    op        `+` (add) or `-` (subtract: every part negated)
    expected  the result, `YYYY-MM-DDTHH:MM:SSZ`, computed per the spec:
              1. start + relativedelta(years=, months=)  (day clamped to the
                 target month's last day, time of day kept)
              2. + timedelta(days = weeks * 7 + days)
              3. + timedelta(hours=, minutes=, seconds=)
              with every part negated for `-`.

Starts are random instants in 1970..9999, about 40% of them on a month end
(the 28th..31st, and 29 February of leap years) where clamping matters, at a
random time of day. Rows whose result (or an intermediate step) falls outside
years 1970..9999 are skipped and redrawn: Python's datetime cannot represent
them, and the spec limits inputs to that range anyway.
"""

import calendar
import csv
import datetime as dt
import pathlib
import random

from dateutil.relativedelta import relativedelta

SEED = 20240229
ROWS = 5000
OUT = pathlib.Path(__file__).resolve().parent / "data" / "relativedelta_cases.csv"

UNITS = ["years", "months", "weeks", "days", "hours", "minutes", "seconds"]
LONG = {
    "years": ("year", "years"),
    "months": ("month", "months"),
    "weeks": ("week", "weeks"),
    "days": ("day", "days"),
    "hours": ("hour", "hours"),
    "minutes": ("minute", "minutes"),
    "seconds": ("second", "seconds"),
}
SHORT = {"years": "y", "months": "mo", "weeks": "w", "days": "d",
         "hours": "h", "minutes": "min", "seconds": "s"}
ISO_DATE = [("years", "Y"), ("months", "M"), ("weeks", "W"), ("days", "D")]
ISO_TIME = [("hours", "H"), ("minutes", "M"), ("seconds", "S")]

MIN_YEAR, MAX_YEAR = 1970, 9999
UTC = dt.timezone.utc


def random_start(rng):
    """A UTC datetime in 1970..9999, biased to month ends."""
    r = rng.random()
    if r < 0.10:
        # 29 February of a leap year.
        while True:
            year = rng.randint(MIN_YEAR, MAX_YEAR)
            if calendar.isleap(year):
                break
        month, day = 2, 29
    elif r < 0.40:
        # The 28th..31st of some month, when that day exists.
        year = rng.randint(MIN_YEAR, MAX_YEAR)
        month = rng.randint(1, 12)
        last = calendar.monthrange(year, month)[1]
        day = rng.choice([d for d in (28, 29, 30, 31) if d <= last])
    else:
        year = rng.randint(MIN_YEAR, MAX_YEAR)
        month = rng.randint(1, 12)
        day = rng.randint(1, calendar.monthrange(year, month)[1])
    if rng.random() < 0.2:
        h = m = s = 0
    else:
        h, m, s = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    return dt.datetime(year, month, day, h, m, s, tzinfo=UTC)


def spell_start(rng, t):
    """One of the spellings parse_instant accepts for the UTC instant t."""
    midnight = t.hour == 0 and t.minute == 0 and t.second == 0
    r = rng.random()
    if midnight and r < 0.5:
        return t.strftime("%Y-%m-%d")
    if r < 0.75:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if r < 0.85:
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 9)))
        return t.strftime("%Y-%m-%dT%H:%M:%S") + "." + digits + "Z"
    # An offset in -23:59..+23:59; the local date must itself be in 1970..9999.
    minutes = rng.randint(-(23 * 60 + 59), 23 * 60 + 59)
    try:
        local = t + dt.timedelta(minutes=minutes)
    except OverflowError:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if not MIN_YEAR <= local.year <= MAX_YEAR:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    sign = "-" if minutes < 0 else "+"
    a = abs(minutes)
    return local.strftime("%Y-%m-%dT%H:%M:%S") + "%s%02d:%02d" % (sign, a // 60, a % 60)


def random_duration(rng):
    """A dict unit -> value (0..1000), at least one unit present."""
    k = rng.choices([1, 2, 3, 4, 7], weights=[35, 30, 20, 10, 5])[0]
    units = rng.sample(UNITS, k)
    d = {}
    for u in units:
        d[u] = rng.randint(0, 100) if rng.random() < 0.85 else rng.randint(0, 1000)
    return d


def spell_duration(rng, d):
    """One of the spellings the spec allows for d."""
    present = [u for u in UNITS if u in d]
    weeks_mixed = "weeks" in d and len(d) > 1
    styles = ["long", "compact", "mixed"] + ([] if weeks_mixed else ["iso"])
    style = rng.choice(styles)
    if style == "iso":
        out = "P"
        for u, c in ISO_DATE:
            if u in d:
                out += "%d%s" % (d[u], c)
        time = "".join("%d%s" % (d[u], c) for u, c in ISO_TIME if u in d)
        if time:
            out += "T" + time
        return out
    order = present[:]
    if rng.random() < 0.3:
        rng.shuffle(order)  # the spec fixes no order for terms
    terms = []
    for u in order:
        n = d[u]
        if style == "long":
            singular, plural = LONG[u]
            word = singular if n == 1 else plural
            if rng.random() < 0.1:
                word = rng.choice(LONG[u])
            terms.append("%d %s" % (n, word))
        elif style == "compact":
            terms.append("%d%s" % (n, SHORT[u]))
        else:
            word = rng.choice(LONG[u] + (SHORT[u],))
            terms.append("%d%s%s" % (n, rng.choice(["", " "]), word))
    return ("" if style == "compact" else " ").join(terms)


def apply(start, d, sign):
    """The spec's three steps, each as its own operation."""
    g = lambda u: sign * d.get(u, 0)  # noqa: E731
    t = start + relativedelta(years=g("years"), months=g("months"))
    t = t + dt.timedelta(days=g("weeks") * 7 + g("days"))
    t = t + dt.timedelta(hours=g("hours"), minutes=g("minutes"), seconds=g("seconds"))
    return t


def apply_at_once(start, d, sign):
    """The same with one relativedelta, as a cross-check of the steps above."""
    rd = relativedelta(**{u: d.get(u, 0) for u in UNITS})
    return start + rd if sign > 0 else start - rd


def main():
    rng = random.Random(SEED)
    rows = []
    while len(rows) < ROWS:
        start = random_start(rng)
        d = random_duration(rng)
        op = rng.choice("+-")
        sign = 1 if op == "+" else -1
        try:
            expected = apply(start, d, sign)
        except (OverflowError, ValueError):
            continue  # beyond Python's year 1..9999 on the way
        if not MIN_YEAR <= expected.year <= MAX_YEAR:
            continue
        # relativedelta in one go must agree with the explicit steps (it adds
        # days and time together after the months, which is the same thing).
        assert apply_at_once(start, d, sign) == expected, (start, d, op)
        duration = spell_duration(rng, d)
        start_text = spell_start(rng, start)
        assert "," not in duration and "," not in start_text
        rows.append((start_text, duration, op, expected.strftime("%Y-%m-%dT%H:%M:%SZ")))

    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["start", "duration", "op", "expected"])
        w.writerows(rows)
    print("wrote %d rows to %s" % (len(rows), OUT))


if __name__ == "__main__":
    main()
