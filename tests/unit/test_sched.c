/*
 * test_sched.c - the scheduler's decisions on a fake clock: no overlap, skips recorded,
 * overlap queue, each misfire policy, the catch-up cap, the 80% warning, coalesced triggers.
 */
/* cmocka.h needs these system headers before it. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */
#include "sched/assign.h"
#include "sched/sched.h"

#include <stdio.h>
#include <string.h>

#define T0 1700000000000LL /* a whole second */

/* @every N ms, aligned to multiples of N. */
static int64_t every(void *arg, int64_t after)
{
	int64_t n = *(const int64_t *)arg;

	return after - after % n + n;
}

static struct lk_sched_entry entry(const int64_t *interval, enum lk_overlap o, enum lk_misfire m)
{
	struct lk_sched_entry e;

	memset(&e, 0, sizeof(e));
	e.name = "job";
	e.overlap = o;
	e.misfire = m;
	e.priority = LK_PRIO_NORMAL;
	e.next = every;
	e.next_arg = (void *)(intptr_t)interval;
	return e;
}

struct counts {
	int runs, skips, slow, capped;
	int max_concurrent;
};

/* Runs the clock from `from` to `to` in 100 ms steps; each run lasts run_ms. */
static void simulate(struct lk_sched_entry *e, int64_t from, int64_t to, int64_t run_ms,
		     struct counts *c)
{
	int64_t run_end = 0;
	int concurrent = 0;

	for (int64_t now = from; now <= to; now += 100) {
		struct lk_sched_act acts[8];
		int n;

		if (concurrent && now >= run_end) {
			lk_sched_finished(e, now);
			concurrent = 0;
		}
		n = lk_sched_tick(e, 1, now, acts, 8);
		for (int i = 0; i < n; i++) {
			switch (acts[i].kind) {
			case LK_SCHED_RUN:
				c->runs++;
				concurrent++;
				run_end = now + run_ms;
				break;
			case LK_SCHED_SKIP:
				c->skips++;
				assert_true(acts[i].fire_ms <= now);
				break;
			case LK_SCHED_SLOW:
				c->slow++;
				break;
			case LK_SCHED_CAPPED:
				c->capped++;
				break;
			}
			if (concurrent > c->max_concurrent)
				c->max_concurrent = concurrent;
		}
	}
}

static void test_no_overlap_skips_recorded(void **state)
{
	int64_t iv = 1000;
	struct lk_sched_entry e = entry(&iv, LK_OVERLAP_SKIP, LK_MISFIRE_SKIP);
	struct lk_sched_act a[1];
	struct counts c = {0};

	(void)state;
	assert_int_equal(lk_sched_place(&e, 0, 0, T0, a), 0);
	assert_int_equal(e.next_ms, T0 + 1000);
	assert_true(e.dirty);
	/* Each run takes 2.5 s on a 1 s interval: fires at +1, then +4, +7 ... */
	simulate(&e, T0, T0 + 20000, 2500, &c);
	assert_int_equal(c.max_concurrent, 1);
	assert_int_equal(c.runs + c.skips, 20); /* every fire is a run or a recorded skip */
	assert_int_equal(c.runs, 7);
	assert_int_equal(c.skips, 13);
	assert_int_equal(c.slow, 7); /* 2.5 s > 80% of 1 s, once per run */
}

static void test_overlap_queue_keeps_one(void **state)
{
	int64_t iv = 1000;
	struct lk_sched_entry e = entry(&iv, LK_OVERLAP_QUEUE, LK_MISFIRE_SKIP);
	struct lk_sched_act a[1];
	struct counts c = {0};

	(void)state;
	(void)lk_sched_place(&e, 0, 0, T0, a);
	simulate(&e, T0, T0 + 20000, 2500, &c);
	assert_int_equal(c.max_concurrent, 1);
	assert_int_equal(c.runs + c.skips + e.pending, 20);
	assert_true(e.pending <= 1);
	/* Back to back: a queued run starts as soon as the previous one ends. */
	assert_int_equal(c.runs, 8);
}

static void test_fast_runs_never_skip(void **state)
{
	int64_t iv = 1000;
	struct lk_sched_entry e = entry(&iv, LK_OVERLAP_SKIP, LK_MISFIRE_SKIP);
	struct lk_sched_act a[1];
	struct counts c = {0};

	(void)state;
	(void)lk_sched_place(&e, 0, 0, T0, a);
	simulate(&e, T0, T0 + 10000, 300, &c);
	assert_int_equal(c.runs, 10);
	assert_int_equal(c.skips, 0);
	assert_int_equal(c.slow, 0);
}

static void test_slow_warning_at_80_percent(void **state)
{
	int64_t iv = 10000;
	struct lk_sched_entry e = entry(&iv, LK_OVERLAP_SKIP, LK_MISFIRE_SKIP);
	struct lk_sched_act a[1];
	struct counts c = {0};

	(void)state;
	(void)lk_sched_place(&e, 0, 0, T0, a);
	simulate(&e, T0, T0 + 19900, 7900, &c); /* 79%: no warning */
	assert_int_equal(c.runs, 1);
	assert_int_equal(c.slow, 0);
	e = entry(&iv, LK_OVERLAP_SKIP, LK_MISFIRE_SKIP);
	memset(&c, 0, sizeof(c));
	(void)lk_sched_place(&e, 0, 0, T0, a);
	simulate(&e, T0, T0 + 19900, 8500, &c); /* 85%: one warning */
	assert_int_equal(c.runs, 1);
	assert_int_equal(c.slow, 1);
}

static void test_stored_next_fire_survives_restart(void **state)
{
	int64_t iv = 86400000; /* daily */
	struct lk_sched_entry e = entry(&iv, LK_OVERLAP_SKIP, LK_MISFIRE_SKIP);
	struct lk_sched_act a[1];
	int64_t stored = T0 + 3600000;

	(void)state;
	assert_int_equal(lk_sched_place(&e, 0, stored, T0, a), 0);
	assert_int_equal(e.next_ms, stored); /* not pushed back by the restart */
	assert_false(e.dirty);
	assert_int_equal(e.pending, 0);
	/* Due a moment ago (a quick restart): an ordinary fire, not a misfire. */
	assert_int_equal(lk_sched_place(&e, 0, T0 - 500, T0, a), 0);
	assert_int_equal(e.next_ms, T0 - 500);
	assert_int_equal(lk_sched_tick(&e, 1, T0, a, 1), 0); /* room for fewer than 2 */
}

static void test_misfire_policies(void **state)
{
	int64_t iv = 60000;
	struct lk_sched_entry e;
	struct lk_sched_act a[1];
	int64_t stored = T0 - 3600000; /* down for an hour: 61 fires missed, now included */

	(void)state;
	e = entry(&iv, LK_OVERLAP_SKIP, LK_MISFIRE_SKIP);
	assert_int_equal(lk_sched_place(&e, 0, stored, T0, a), 0);
	assert_int_equal(e.pending, 0);
	assert_int_equal(e.next_ms, every(&iv, T0));

	e = entry(&iv, LK_OVERLAP_SKIP, LK_MISFIRE_ONCE);
	assert_int_equal(lk_sched_place(&e, 0, stored, T0, a), 0);
	assert_int_equal(e.pending, 1);

	e = entry(&iv, LK_OVERLAP_SKIP, LK_MISFIRE_CATCHUP);
	assert_int_equal(lk_sched_place(&e, 0, stored, T0, a), 1);
	assert_int_equal(a[0].kind, LK_SCHED_CAPPED);
	assert_int_equal(a[0].fire_ms, 61 - LK_CATCHUP_MAX);
	assert_int_equal(e.pending, LK_CATCHUP_MAX);

	/* Under the cap: one run per missed fire, no CAPPED action. */
	e = entry(&iv, LK_OVERLAP_SKIP, LK_MISFIRE_CATCHUP);
	assert_int_equal(lk_sched_place(&e, 0, T0 - 180000, T0, a), 0);
	assert_int_equal(e.pending, 4);
}

static void test_catchup_runs_back_to_back(void **state)
{
	int64_t iv = 60000;
	struct lk_sched_entry e = entry(&iv, LK_OVERLAP_SKIP, LK_MISFIRE_CATCHUP);
	struct lk_sched_act a[1];
	struct counts c = {0};

	(void)state;
	(void)lk_sched_place(&e, 0, T0 - 180000, T0, a);
	simulate(&e, T0, T0 + 5000, 500, &c); /* 4 runs of 0.5 s, one after the other */
	assert_int_equal(c.runs, 4);
	assert_int_equal(c.max_concurrent, 1);
	assert_int_equal(e.pending, 0);
}

static void test_trigger_coalesces(void **state)
{
	int64_t iv = 60000;
	struct lk_sched_entry e = entry(&iv, LK_OVERLAP_SKIP, LK_MISFIRE_SKIP);
	struct lk_sched_act a[4];

	(void)state;
	(void)lk_sched_place(&e, 0, 0, T0, a);
	assert_int_equal(lk_sched_trigger(&e), LK_TRIGGER_QUEUED);
	assert_int_equal(lk_sched_trigger(&e), LK_TRIGGER_COALESCED);
	assert_int_equal(lk_sched_next_due(&e, 1), 1);
	assert_int_equal(lk_sched_tick(&e, 1, T0 + 10, a, 4), 1);
	assert_int_equal(a[0].kind, LK_SCHED_RUN);
	/* While it runs, a trigger waits for it; a second one joins the first. */
	assert_int_equal(lk_sched_trigger(&e), LK_TRIGGER_QUEUED);
	assert_int_equal(lk_sched_trigger(&e), LK_TRIGGER_COALESCED);
	assert_int_equal(lk_sched_tick(&e, 1, T0 + 20, a, 4), 0);
	lk_sched_finished(&e, T0 + 30);
	assert_int_equal(lk_sched_tick(&e, 1, T0 + 40, a, 4), 1);
	assert_int_equal(e.pending, 0);
}

static void test_manual_only_never_fires(void **state)
{
	struct lk_sched_entry e;
	struct lk_sched_act a[4];

	(void)state;
	memset(&e, 0, sizeof(e));
	e.name = "manual";
	assert_int_equal(lk_sched_place(&e, 0, 0, T0, a), 0);
	assert_int_equal(e.next_ms, 0);
	assert_int_equal(lk_sched_next_due(&e, 1), 0);
	assert_int_equal(lk_sched_tick(&e, 1, T0 + 1000000, a, 4), 0);
}

static void test_pause_collapses_fires(void **state)
{
	int64_t iv = 1000;
	struct lk_sched_entry e = entry(&iv, LK_OVERLAP_SKIP, LK_MISFIRE_SKIP);
	struct lk_sched_act a[8];

	(void)state;
	(void)lk_sched_place(&e, 0, 0, T0, a);
	/* The process was stopped for a minute: one run, not sixty. */
	assert_int_equal(lk_sched_tick(&e, 1, T0 + 60500, a, 8), 1);
	assert_int_equal(a[0].kind, LK_SCHED_RUN);
	assert_int_equal(e.next_ms, T0 + 61000);
}

/* Jobs spread evenly: no member above ceil(J/I); the same inputs give the same answer. */
static void test_assign_balanced_and_stable(void **state)
{
	char jn[40][16], mn[5][16];
	const char *jobs[40], *members[5];
	int owner[40], again[40], fewer[40];

	(void)state;
	for (int j = 0; j < 40; j++) {
		(void)snprintf(jn[j], sizeof(jn[j]), "job%02d", j);
		jobs[j] = jn[j];
	}
	for (int m = 0; m < 5; m++) {
		(void)snprintf(mn[m], sizeof(mn[m]), "host%d#%04x", m, 0x1234 * (m + 1));
		members[m] = mn[m];
	}
	for (int nj = 1; nj <= 40; nj++) {
		for (int nm = 1; nm <= 5; nm++) {
			int count[5] = {0};
			int cap = (nj + nm - 1) / nm;

			lk_assign(jobs, nj, members, nm, NULL, owner);
			lk_assign(jobs, nj, members, nm, NULL, again);
			for (int j = 0; j < nj; j++) {
				assert_true(owner[j] >= 0 && owner[j] < nm);
				assert_int_equal(owner[j], again[j]);
				count[owner[j]]++;
			}
			for (int m = 0; m < nm; m++)
				assert_true(count[m] <= cap);
		}
	}
	/* 6 jobs on 3 members: 2 each; when one member leaves, its jobs move, and most
	 * of the others stay where they were */
	lk_assign(jobs, 6, members, 3, NULL, owner);
	lk_assign(jobs, 6, members, 2, NULL, fewer);
	{
		int stayed = 0, on_first_two = 0;

		for (int j = 0; j < 6; j++) {
			on_first_two += owner[j] < 2;
			stayed += owner[j] < 2 && fewer[j] == owner[j];
		}
		assert_true(stayed >= on_first_two - 2);
	}
	lk_assign(jobs, 3, members, 0, NULL, owner);
	assert_int_equal(owner[0], -1);
}

/*
 * run_on: a job goes only to a member it may run on; pinned jobs take their places first,
 * the free ones still spread under the cap, and a job no member may run gets -1.
 */
static void test_assign_eligible(void **state)
{
	const char *jobs[7] = {"a", "b", "c", "d", "e", "f", "g"};
	const char *members[3] = {"eu#1", "us#2", "eubig#3"};
	/* a, b: eu only (eu#1, eubig#3); c: big only (eubig#3); d: nowhere; e, f, g: any */
	bool ok[7][3] = {{true, false, true},	{true, false, true}, {false, false, true},
			 {false, false, false}, {true, true, true},  {true, true, true},
			 {true, true, true}};
	int owner[7], count[3] = {0}, again[7];

	(void)state;
	lk_assign(jobs, 7, members, 3, &ok[0][0], owner);
	lk_assign(jobs, 7, members, 3, &ok[0][0], again);
	for (int j = 0; j < 7; j++) {
		assert_int_equal(owner[j], again[j]);
		if (j == 3) {
			assert_int_equal(owner[j], -1);
			continue;
		}
		assert_true(owner[j] >= 0 && owner[j] < 3);
		assert_true(ok[j][owner[j]]);
		count[owner[j]]++;
	}
	assert_int_equal(owner[2], 2);
	/* 7 jobs, 3 members: the cap is 3, and nothing forces anyone above it */
	for (int m = 0; m < 3; m++)
		assert_true(count[m] <= 3);
	/* all pinned to one member: it takes them all, over the cap */
	{
		bool one[4][2] = {{true, false}, {true, false}, {true, false}, {true, false}};

		lk_assign(jobs, 4, members, 2, &one[0][0], owner);
		for (int j = 0; j < 4; j++)
			assert_int_equal(owner[j], 0);
	}
	/* every member eligible: the same answer as no eligibility at all */
	{
		bool all[7][3];
		int plain[7];

		memset(all, 1, sizeof(all));
		lk_assign(jobs, 7, members, 3, &all[0][0], owner);
		lk_assign(jobs, 7, members, 3, NULL, plain);
		for (int j = 0; j < 7; j++)
			assert_int_equal(owner[j], plain[j]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_overlap_skips_recorded),
		cmocka_unit_test(test_overlap_queue_keeps_one),
		cmocka_unit_test(test_fast_runs_never_skip),
		cmocka_unit_test(test_slow_warning_at_80_percent),
		cmocka_unit_test(test_stored_next_fire_survives_restart),
		cmocka_unit_test(test_misfire_policies),
		cmocka_unit_test(test_catchup_runs_back_to_back),
		cmocka_unit_test(test_trigger_coalesces),
		cmocka_unit_test(test_manual_only_never_fires),
		cmocka_unit_test(test_pause_collapses_fires),
		cmocka_unit_test(test_assign_balanced_and_stable),
		cmocka_unit_test(test_assign_eligible),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
