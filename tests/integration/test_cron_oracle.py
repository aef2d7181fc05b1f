"""Cron next-fire times against Debian's python3-croniter as an independent oracle.

Generates (seeded, reproducible) random valid expressions -- *, ?, lists, ranges,
steps, month and weekday names, both day fields, 5 and 6 fields, @-schedules --
and random instants (mostly 2000-2040, some 1970-2100, many near DST transitions,
in the gaps and overlaps themselves, and near month, year and Feb 29 ends) in 12
zones, asks tests/tools/cron_next ($LK_CRON_NEXT) for every next fire in one
process, and checks two things:

1. Our answer equals `ref`: a plain day-by-day search on local wall time (the field
   values as croniter's parser expands them) walking the zone's UTC-offset periods
   (found with zoneinfo, not our TZif reader) and applying the DST rules of
   docs/cron.md. This must hold for every case.
2. Our answer equals croniter with a pytz zone, used the plain way:
   croniter(expr, aware_start).get_next(). Where it does not, the case must fall in
   one of the REVIEWED disagreements below (each a croniter 1.3.5 / pytz fault or a
   DST rule we chose differently, with a predicate checked in classify());
   anything else fails.

Prints counts per class and the first 20 failures. Exit 0 pass, 1 fail, 77 skip
(driver or croniter missing), a failure instead under CI or LK_REQUIRE_PG: the rule of
the PostgreSQL tests, lktest.strict().
"""
import bisect
import calendar
import datetime
import os
import random
import subprocess
import sys
import time
import zoneinfo

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
import lktest  # noqa: E402  (tests/harness, for strict())


def skip_or_fail(reason):
    """Exit 77 (CTest's skip), or 1 under CI or LK_REQUIRE_PG (lktest.strict())."""
    if lktest.strict():
        print("FAIL: test_cron_oracle: %s (CI or LK_REQUIRE_PG is set: nothing may skip)"
              % reason)
        print("0 passed, 1 failed")
        sys.exit(1)
    print("SKIP: test_cron_oracle: %s" % reason)
    sys.exit(77)


try:
    import pytz
    from croniter import croniter, CroniterBadDateError
except ImportError as e:  # python3-croniter, python3-tz
    skip_or_fail("%s (make deps installs python3-croniter and python3-tz)" % e)

SEED = int(os.environ.get("LK_CRON_SEED", "20240331"))
N_EXPR = int(os.environ.get("LK_CRON_EXPRS", "4000"))
PER_EXPR = 2
VERBOSE = os.environ.get("LK_CRON_VERBOSE") == "1"
HORIZON_S = 10 * 366 * 86400  # LK_CRON_HORIZON_DAYS

ZONES = [("UTC", 22), ("Europe/Berlin", 16), ("America/New_York", 16),
         ("Australia/Lord_Howe", 12), ("Australia/Sydney", 6), ("America/Santiago", 6),
         ("Asia/Kolkata", 4), ("Pacific/Chatham", 6), ("Europe/London", 6),
         ("America/Sao_Paulo", 6), ("Pacific/Apia", 4), ("Antarctica/Troll", 4)]

UTC = datetime.timezone.utc
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)

# The reviewed disagreements with croniter (name -> reason). A case is put in one only
# when its predicate (classify() below) holds AND our answer equals `ref`.
REVIEWED = {
    # croniter or pytz is plainly wrong:
    "croniter_not_a_match":
        "croniter's answer, read in the zone, is a wall time the expression does not "
        "match: croniter steps through the calendar keeping the start's UTC offset and "
        "corrects by the offset change only when the result is at least "
        "(24 - start hour) hours away, so fires after a DST change come an hour off",
    "croniter_skips_a_match":
        "our answer is a wall time the expression matches, shown once by the zone's "
        "clock, and earlier than croniter's: croniter skipped it (same cause as above, "
        "or its day-of-month step jumping past the 1st when the list holds a day the "
        "month lacks, e.g. */5 holds 31 in February)",
    "croniter_or_branch_never":
        "both day fields are restricted and no listed day of the month exists in the "
        "listed months (31 with only June): croniter raises 'failed to find next date' "
        "instead of using the day-of-week branch of the OR",
    "pytz_no_rule_after_2037":
        "pytz reads only the explicit transitions of the TZif file (to 2037) and "
        "ignores the footer rule, so croniter keeps standard time after 2037 where the "
        "zone still has DST",
    # our DST rules (docs/cron.md) differ from what croniter happens to do:
    "gap_runs_at_gap_end":
        "the expression matches a wall time in a spring-forward gap and its hour field "
        "is not '*': we fire once at the first instant after the gap; croniter shifts "
        "the time by the gap's length or skips it",
    "overlap_second_pass":
        "the start lies in the second pass of a fall-back overlap and the hour field is "
        "not '*': croniter fires at a wall time of the second pass, we do not (that wall "
        "time fired in the first pass)",
    "overlap_first_occurrence":
        "the expression matches a wall time of a fall-back overlap: we fire at its first "
        "occurrence, croniter (starting in standard time) at its second",
    "croniter_skips_second_pass":
        "the hour field is '*' and our answer lies in the second pass of a fall-back "
        "overlap: we fire in both passes, croniter walks the wall clock in the start's "
        "offset and jumps over the repeated interval",
}


# ---- expressions ----

RANGES = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def val(rng, i, v):
    if i == 4 and rng.random() < 0.3:
        return MONTHS[v - 1].lower() if rng.random() < 0.2 else MONTHS[v - 1]
    if i == 5 and v <= 6 and rng.random() < 0.3:
        return DAYS[v]
    return str(v)


def gen_field(rng, i):
    lo, hi = RANGES[i]
    vhi = 6 if i == 5 and rng.random() < 0.8 else hi
    k = rng.random()
    if i == 0 and k < 0.45:
        return "0"
    if k < 0.33:
        return "?" if i in (3, 5) and rng.random() < 0.15 else "*"
    if k < 0.55:
        return val(rng, i, rng.randint(lo, vhi))
    if k < 0.68:
        vs = sorted(set(rng.randint(lo, vhi) for _ in range(rng.randint(2, 4))))
        return ",".join(val(rng, i, v) for v in vs)
    if k < 0.78:
        a = rng.randint(lo, vhi)
        b = rng.randint(a, vhi)
        if i == 5 and rng.random() < 0.1 and a > 0:
            return "%s-SUN" % val(rng, i, a)
        return "%s-%s" % (val(rng, i, a), val(rng, i, b))
    n = rng.randint(1, max(1, (hi - lo) // 2))
    if k < 0.9:
        return "*/%d" % n
    a = rng.randint(lo, vhi)
    if k < 0.96:
        return "%s-%s/%d" % (val(rng, i, a), val(rng, i, rng.randint(a, vhi)), n)
    return "%s/%d" % (val(rng, i, a), n)


def gen_expr(rng):
    if rng.random() < 0.03:
        return rng.choice(["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly",
                           "@annually"])
    f = [gen_field(rng, i) for i in range(6)]
    if rng.random() < 0.15:  # both day fields restricted: the OR rule
        f[3] = rng.choice(["13", "1-20/3", "*/5", "28-31", "1,15", "29", "31", "10/7"])
        f[5] = val(rng, 5, rng.randint(0, 7))
    if f[0] == "0" and rng.random() < 0.5:
        return " ".join(f[1:])  # five fields
    return " ".join(f)


def dow_for_croniter6(field):
    """croniter 1.3.5 maps 7 to Sunday only in 5-field expressions; spell it 0 for 6."""
    out = []
    for item in field.split(","):
        base, _, step = item.partition("/")
        if "-" in base or step:
            a, _, b = ("0-7" if base == "*" else base).partition("-")
            a = DAYS.index(a.upper()) if a.upper() in DAYS else int(a)
            b = (DAYS.index(b.upper()) if b.upper() in DAYS else int(b)) if b else 7
            b = 7 if b == 0 and a > 0 else b
            vs = range(a, b + 1, int(step or 1))
            out.extend(str(v % 7) for v in vs)
        else:
            out.append("0" if base == "7" else item)
    return ",".join(out)


def to_croniter(expr):
    """Our syntax (seconds first, '?') to croniter's (seconds last, '*')."""
    if expr.startswith("@"):
        return expr
    f = expr.replace("?", "*").split()
    if len(f) == 5:
        return " ".join(f)
    return " ".join(f[1:5] + [dow_for_croniter6(f[5]), f[0]])


# ---- zones ----

class Zone:
    """UTC-offset periods of a zone, found with zoneinfo (independent of our TZif reader)."""

    def __init__(self, name):
        self.name = name
        self.zi = zoneinfo.ZoneInfo(name)
        self.pz = pytz.timezone(name)
        # pytz stops at the last explicit transition of the file (2037 in fat files).
        pt = getattr(self.pz, "_utc_transition_times", None)
        self.pytz_end = int(calendar.timegm(pt[-1].timetuple())) if pt else None
        self.trans = []  # instants (s) where the offset changes
        step = 6 * 3600
        t = int((datetime.datetime(1960, 1, 1) - datetime.datetime(1970, 1, 1)).total_seconds())
        end = int((datetime.datetime(2120, 1, 1) - datetime.datetime(1970, 1, 1)).total_seconds())
        prev = self.off(t)
        while t < end:
            o = self.off(t + step)
            if o != prev:
                lo, hi = t, t + step  # off(lo) == prev, off(hi) == o
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self.off(mid) == prev:
                        lo = mid
                    else:
                        hi = mid
                self.trans.append(hi)
                prev = o
            t += step

    def off(self, t):
        return int((EPOCH + datetime.timedelta(seconds=t)).astimezone(self.zi)
                   .utcoffset().total_seconds())

    def period(self, t):
        """(start, end, off, prev_off) of the period holding t; start/end None at the ends."""
        i = bisect.bisect_right(self.trans, t)
        start = self.trans[i - 1] if i > 0 else None
        end = self.trans[i] if i < len(self.trans) else None
        off = self.off(t)
        return start, end, off, (self.off(start - 1) if start is not None else off)


# ---- the reference: a plain day-by-day search on wall time + our DST rules ----

class Sets:
    """The values each field matches, as croniter's parser expands them."""

    def __init__(self, cexpr):
        e = croniter(cexpr).expanded  # min, hour, dom, month, dow[, sec]

        def vals(f, every):
            return sorted(every) if f == ["*"] else sorted(set(f))
        self.sec = vals(e[5], range(60)) if len(e) == 6 else [0]
        self.min = vals(e[0], range(60))
        self.hour = vals(e[1], range(24))
        self.dom = set(vals(e[2], range(1, 32)))
        self.month = set(vals(e[3], range(1, 13)))
        self.dow = {v % 7 for v in vals(e[4], range(7))}
        # croniter's day_or: both day fields restricted -> either may match
        self.day_or = e[2] != ["*"] and e[4] != ["*"]
        self.hourly = e[1] == ["*"]

    def day_ok(self, day):
        d = datetime.date.fromordinal(719163 + day)
        if d.month not in self.month:
            return False
        a, b = d.day in self.dom, d.isoweekday() % 7 in self.dow
        return (a or b) if self.day_or else (a and b)

    def time_ge(self, sod):
        """The first matching second of the day >= sod, or None."""
        h0, m0, s0 = sod // 3600, sod // 60 % 60, sod % 60
        for h in self.hour[bisect.bisect_left(self.hour, h0):]:
            if h > h0:
                return h * 3600 + self.min[0] * 60 + self.sec[0]
            for m in self.min[bisect.bisect_left(self.min, m0):]:
                if m > m0:
                    return h * 3600 + m * 60 + self.sec[0]
                j = bisect.bisect_left(self.sec, s0)
                if j < len(self.sec):
                    return h * 3600 + m * 60 + self.sec[j]
        return None


def wall_next(S, lo, hi):
    """The first wall second in [lo, hi) that S matches, or None."""
    day, sod = divmod(lo, 86400)
    while day * 86400 < hi:
        if S.day_ok(day):
            t = S.time_ge(sod)
            if t is not None:
                w = day * 86400 + t
                return w if w < hi else None
        day, sod = day + 1, 0
    return None


def ref_next(S, zone, after_ms):
    """Our documented rules (docs/cron.md), walking the zone's UTC-offset periods."""
    a = after_ms // 1000 + 1
    limit = a + HORIZON_S
    while a < limit:
        start, end, off, prev = zone.period(a)
        if start == a and off > prev and not S.hourly:
            if wall_next(S, a + prev, a + off) is not None:
                return a * 1000  # the gap's wall times fire once, as it ends
        lo = a + off
        if start is not None and not S.hourly and prev > off:
            lo = max(lo, start + prev)  # no second pass for a fixed hour
        end = limit if end is None else min(end, limit)
        w = wall_next(S, lo, end + off)
        if w is not None:
            return (w - off) * 1000
        a = end
    return -1


def croniter_next(cexpr, zone, after_ms):
    start = (EPOCH + datetime.timedelta(milliseconds=after_ms)).astimezone(zone.pz)
    try:
        return int(round(croniter(cexpr, start).get_next(float))) * 1000
    except CroniterBadDateError:
        return -1


# ---- classifying disagreements with croniter ----

def matches(S, zone, t):
    """Does the expression match the local wall time at instant t?"""
    day, sod = divmod(t + zone.off(t), 86400)
    return S.day_ok(day) and S.time_ge(sod) == sod


def ambiguous(zone, t):
    """Is the wall time at t shown at another instant too (a fall-back overlap)?"""
    w = t + zone.off(t)
    return any(w - o != t and zone.off(w - o) == o
               for o in (zone.off(t - 86400), zone.off(t + 86400)))


def second_pass(zone, t):
    """Does t lie in the second pass of a fall-back overlap?"""
    start, _, off, prev = zone.period(t)
    return start is not None and prev > off and t < start + (prev - off)


def gap_end(zone, t):
    start, _, off, prev = zone.period(t)
    return start == t and off > prev


def dom_never(S):
    """No day of the month in the set exists in any of the months."""
    most = {2: 29, 4: 30, 6: 30, 9: 30, 11: 30}
    return not any(d <= most.get(m, 31) for m in S.month for d in S.dom)


def classify(S, zone, after_ms, ours, cr):
    """The REVIEWED reason that explains croniter's different answer, or None."""
    a_s, o_s, c_s = after_ms // 1000, ours // 1000, cr // 1000
    if cr == -1 and ours >= 0 and S.day_or and dom_never(S):
        return "croniter_or_branch_never"
    if zone.pytz_end is not None and max(a_s, o_s, c_s) > zone.pytz_end and \
            zone.trans and zone.trans[-1] > zone.pytz_end:
        return "pytz_no_rule_after_2037"
    if ours < 0 or cr < 0:
        return None
    if c_s <= a_s or not matches(S, zone, c_s):
        return "croniter_not_a_match"
    if c_s < o_s and not S.hourly and second_pass(zone, c_s) and a_s < c_s:
        return "overlap_second_pass"
    if o_s < c_s and gap_end(zone, o_s) and not S.hourly:
        return "gap_runs_at_gap_end"
    if o_s < c_s and matches(S, zone, o_s):
        if ambiguous(zone, o_s) and c_s + zone.off(c_s) == o_s + zone.off(o_s):
            return "overlap_first_occurrence"
        if not ambiguous(zone, o_s):
            return "croniter_skips_a_match"
        if S.hourly and second_pass(zone, o_s):
            return "croniter_skips_second_pass"
    return None


def iso(ms, zone):
    if ms < 0:
        return str(ms)
    d = (EPOCH + datetime.timedelta(milliseconds=ms)).astimezone(zone.zi)
    return "%s(%sZ)" % (d.isoformat(), (EPOCH + datetime.timedelta(milliseconds=ms))
                        .strftime("%H:%M:%S"))


# ---- cases ----

def month_end_instant(rng, zone):
    y = rng.randint(1990, 2060) if rng.random() < 0.8 else rng.randint(1970, 2099)
    m = rng.choice([1, 2, 2, 3, 4, 6, 9, 11, 12, 12])
    last = calendar.monthrange(y, m)[1]
    d = datetime.datetime(y, m, last, 23, 0) + datetime.timedelta(
        seconds=rng.randint(-86400 * 2, 86400 * 2))
    return int((d - datetime.datetime(1970, 1, 1)).total_seconds() - zone.off(0)) * 1000


def gen_instant(rng, zone):
    k = rng.random()
    ms = rng.randint(0, 999) if rng.random() < 0.3 else 0
    dst = zone.pytz_end is not None
    if k < 0.3 and zone.trans:
        ts = [t for t in zone.trans if 946684800 <= t < 2145916800] or zone.trans
        t = rng.choice(ts)
        d = rng.choice([rng.randint(-3, 3), rng.randint(-7200, 7200), rng.randint(-100000, 100000)])
        return (t + d) * 1000 + ms
    if k < 0.5:
        return month_end_instant(rng, zone) + ms
    if k < 0.55:
        return rng.randint(0, 4102444800) * 1000 + ms  # 1970-2100
    # mostly 2000-2040; zones with DST to 2037, where pytz (croniter's zones) ends
    return rng.randint(946684800, 2145916800 if dst else 2208988800) * 1000 + ms


def gen_dst_case(rng, zone):
    """An expression aimed at the gap or overlap of one transition, and instants before
    it, in it and after it."""
    t = rng.choice([t for t in zone.trans if 946684800 <= t < 2145916800])
    prev, off = zone.off(t - 1), zone.off(t)
    w = t + min(prev, off) + rng.randrange(abs(off - prev))  # a wall time seen 0 or 2 times
    h, m = w % 86400 // 3600, w % 3600 // 60
    sec = rng.choice(["0", "0", "*/20", str(rng.randint(0, 59)), "*"])
    mins = rng.choice([str(m), str(m), "*", "*/5", "%d-59" % m, "%d,%d" % (m, (m + 31) % 60),
                       "*/%d" % rng.randint(7, 30)])
    hour = rng.choice([str(h), str(h), str(h), "*", "*/2", "%d,%d" % (h, (h + 12) % 24),
                       "%d-%d" % (max(0, h - 1), h)])
    day = datetime.datetime.utcfromtimestamp(w).day
    dom, dow = rng.choice([("*", "*"), ("*", "*"), (str(day), "*"), ("*", "1-5"),
                           ("%d,%d" % (day, (day + 14) % 28 + 1), "*")])
    expr = " ".join([sec, mins, hour, dom, "*", dow])
    if sec == "0" and rng.random() < 0.5:
        expr = expr[2:]
    span = abs(off - prev)
    afters = [t - rng.randint(1, 2 * 86400), t - rng.randint(1, span + 600),
              t + rng.randint(0, span + 600), t - 1]
    return expr, [a * 1000 + rng.choice([0, 0, 999, 500]) for a in rng.sample(afters, 2)]


def main():
    drv = os.environ.get("LK_CRON_NEXT")
    if not drv or not os.access(drv, os.X_OK):
        skip_or_fail("LK_CRON_NEXT (tests/tools/cron_next) not set or not executable")
    t0 = time.time()
    rng = random.Random(SEED)
    names = [z for z, _ in ZONES]
    weights = [w for _, w in ZONES]
    zones = {n: Zone(n) for n in names}
    cases = []
    dst_zones = [z for z in zones.values() if any(946684800 <= t < 2145916800 for t in z.trans)]
    for _ in range(N_EXPR):
        if rng.random() < 0.2:
            z = rng.choice(dst_zones)
            expr, afters = gen_dst_case(rng, z)
            cases.extend((expr, z, a) for a in afters)
            continue
        expr = gen_expr(rng)
        for _ in range(PER_EXPR):
            z = zones[rng.choices(names, weights)[0]]
            cases.append((expr, z, gen_instant(rng, z)))
    t1 = time.time()
    inp = "".join("%s\t%s\t%d\n" % (e, z.name, a) for e, z, a in cases)
    res = subprocess.run([drv], input=inp, capture_output=True, text=True, check=True)
    outs = res.stdout.split("\n")[:len(cases)]
    t2 = time.time()
    counts = {"agree": 0, "ref_mismatch": 0, "unexplained": 0}
    counts.update({k: 0 for k in REVIEWED})
    failures = []
    near_dst = 0  # agreements with an offset change within two days
    for (expr, z, after), out in zip(cases, outs):
        cexpr = to_croniter(expr)
        if out.startswith("ERR"):
            failures.append("%r %s %d: driver says %s" % (expr, z.name, after, out))
            counts["unexplained"] += 1
            continue
        ours = int(out)
        ref = ref_next(Sets(cexpr), z, after)
        if ours != ref:
            counts["ref_mismatch"] += 1
            failures.append("%r %s after=%d: ours=%d ref=%d (croniter %r)" % (
                expr, z.name, after, ours, ref, cexpr))
            continue
        cr = croniter_next(cexpr, z, after)
        if cr == ours:
            counts["agree"] += 1
            i = bisect.bisect_left(z.trans, after // 1000 - 2 * 86400)
            near_dst += i < len(z.trans) and z.trans[i] <= max(after, ours) // 1000 + 2 * 86400
            continue
        why = classify(Sets(cexpr), z, after, ours, cr)
        if why is None:
            counts["unexplained"] += 1
            failures.append("%r %s after=%d: ours=%d croniter=%d (%r)" % (
                expr, z.name, after, ours, cr, cexpr))
        else:
            counts[why] += 1
            if VERBOSE and counts[why] <= 4:
                print("  [%s] %r %s after=%s ours=%s croniter=%s" % (
                    why, expr, z.name, iso(after, z), iso(ours, z), iso(cr, z)))
    t3 = time.time()
    print("test_cron_oracle: seed=%d cases=%d (generate %.1fs, driver %.2fs, oracle %.1fs)" % (
        SEED, len(cases), t1 - t0, t2 - t1, t3 - t2))
    for k, v in counts.items():
        print("  %-26s %d%s" % (k, v, " (%d near a DST change)" % near_dst if k == "agree" else ""))
    for f in failures[:20]:
        print("FAIL " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
