/*
 * daemon_health.c - the memory budget (SPEC §7: over 80% of memory.limit batches halve
 * and low-priority jobs pause; under 60% they are restored) and the heartbeat row that
 * `lockstep status` reads: health, memory, breakers and each job's schedule.
 */
#include "connector/breaker.h"
#include "daemon_int.h"
#include "store/store.h"
#include "sync/budget.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LK_LOG_COMPONENT "daemon"
#include "core/buf.h"
#include "core/log.h"
#include "core/units.h"

int64_t lk_daemon_rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long long size = 0, resident = 0;
	long page = sysconf(_SC_PAGESIZE);

	if (!f)
		return 0;
	if (fscanf(f, "%lld %lld", &size, &resident) != 2)
		resident = 0;
	(void)fclose(f);
	return (int64_t)resident * (page > 0 ? page : 4096);
}

void lk_daemon_memory_check(struct lk_daemon *d)
{
	int64_t rss = lk_daemon_rss_bytes();
	bool was, now;

	pthread_mutex_lock(&d->mu);
	d->rss = rss;
	if (rss > d->rss_peak)
		d->rss_peak = rss;
	was = d->degraded;
	/* Over 80% enters DEGRADED, under 60% leaves it; in between nothing changes. */
	now = d->limit > 0 && (was ? rss * 10 >= d->limit * 6 : rss * 10 > d->limit * 8);
	d->degraded = now;
	if (was && !now)
		pthread_cond_broadcast(&d->cond); /* paused low-priority runs may start */
	pthread_mutex_unlock(&d->mu);
	if (now == was)
		return;
	lk_sync_set_batch_divisor(now ? 2 : 1);
	if (now)
		lk_log_warn("memory: RSS %.1f MiB is over 80%% of memory.limit (%.1f MiB): batch "
			    "sizes halved, low-priority jobs paused (DEGRADED)",
			    (double)rss / 1048576.0, (double)d->limit / 1048576.0);
	else
		lk_log_info("memory: RSS %.1f MiB is back under 60%% of memory.limit (%.1f MiB): "
			    "batch sizes and low-priority jobs restored (HEALTHY)",
			    (double)rss / 1048576.0, (double)d->limit / 1048576.0);
}

static void add_breakers(struct lk_buf *b)
{
	struct lk_breaker_info info[32];
	int n = lk_breaker_list(info, 32);

	lk_buf_adds(b, ",\"breakers\":[");
	for (int i = 0; i < n; i++) {
		lk_buf_addf(b, "%s{\"db\":", i ? "," : "");
		lk_buf_add_json_str(b, info[i].db, strlen(info[i].db));
		lk_buf_addf(
			b,
			",\"state\":\"%s\",\"failures\":%d,\"changedMs\":%lld,\"probeInMs\":%lld}",
			lk_breaker_state_name(info[i].state), info[i].failures,
			(long long)info[i].changed_ms, (long long)info[i].probe_in_ms);
	}
	lk_buf_addch(b, ']');
}

/* The jobs' schedule (mu held). */
static void add_jobs(struct lk_daemon *d, struct lk_buf *b)
{
	bool first = true;

	lk_buf_adds(b, ",\"jobs\":[");
	for (int i = 0; i < d->nslots; i++) {
		const struct lk_slot *s = d->slots[i];

		if (s->gone)
			continue;
		lk_buf_addf(b, "%s{\"job\":", first ? "" : ",");
		lk_buf_add_json_str(b, s->job->name, strlen(s->job->name));
		lk_buf_addf(b, ",\"realtime\":%s,\"running\":%s,\"nextMs\":%lld,\"paused\":%s}",
			    s->realtime ? "true" : "false",
			    (s->busy && !s->queued) ? "true" : "false", (long long)s->e.next_ms,
			    (d->degraded && s->e.priority == LK_PRIO_LOW) ? "true" : "false");
		first = false;
	}
	lk_buf_addch(b, ']');
}

void lk_daemon_heartbeat(struct lk_daemon *d, struct lk_store *store, const char *health)
{
	struct lk_buf b = LK_BUF_INIT;
	struct lk_err err = LK_ERR_INIT;

	pthread_mutex_lock(&d->mu);
	if (!health)
		health = d->degraded ? "DEGRADED" : "HEALTHY";
	lk_buf_addf(
		&b,
		"{\"pid\":%ld,\"rssBytes\":%lld,\"rssPeakBytes\":%lld,\"memoryLimitBytes\":%lld,"
		"\"batchDivisor\":%d,\"restarts\":%lld",
		(long)getpid(), (long long)d->rss, (long long)d->rss_peak, (long long)d->limit,
		lk_sync_batch_divisor(), (long long)d->opts->restarts);
	add_jobs(d, &b);
	pthread_mutex_unlock(&d->mu);
	add_breakers(&b);
	lk_buf_addch(&b, '}');
	if (lk_store_instance_report(store, d->opts->instance, health, b.buf, &err) < 0) {
		lk_log_debug("cannot write the heartbeat: %s", err.msg);
	} else {
		pthread_mutex_lock(&d->mu);
		d->store_ok_ms = lk_mono_ms(); /* /api/health's state store check */
		pthread_mutex_unlock(&d->mu);
	}
	lk_buf_release(&b);
}
