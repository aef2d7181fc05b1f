/* progress.c - a progress bar on a terminal, plain lines otherwise (SPEC §2). */
#include "cli_int.h"
#include "core/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct lk_progress_view {
	const char *verb;
	bool tty;
	bool drawn;
	long long last_line_ms;
};

struct lk_progress_view *lk_progress_view_new(const char *verb)
{
	struct lk_progress_view *v = lk_xcalloc(1, sizeof(*v));

	v->verb = verb;
	v->tty = isatty(STDERR_FILENO) == 1;
	return v;
}

void lk_progress_view_cb(void *arg, const struct lk_sync_progress *p)
{
	struct lk_progress_view *v = arg;
	double secs = (double)p->elapsed_ms / 1000.0;
	double rate = secs > 0 ? (double)p->rows_read / secs : 0;

	if (v->tty) {
		char bar[31];
		int fill = 0;

		if (p->total_estimate > 0) {
			fill = (int)(30.0 * (double)p->rows_read / (double)p->total_estimate);
			fill = fill > 30 ? 30 : fill;
		}
		for (int i = 0; i < 30; i++)
			bar[i] = i < fill ? '#' : (p->total_estimate > 0 ? '.' : ' ');
		bar[30] = '\0';
		(void)fprintf(stderr, "\r%s %s [%s] %lld", v->verb, p->job, bar,
			      (long long)p->rows_read);
		if (p->total_estimate > 0)
			(void)fprintf(stderr, "/~%lld", (long long)p->total_estimate);
		(void)fprintf(stderr, " rows  %.0f rows/s  %.1fs \033[K", rate, secs);
		v->drawn = true;
		return;
	}
	if (p->elapsed_ms - v->last_line_ms < 2000)
		return;
	v->last_line_ms = p->elapsed_ms;
	(void)fprintf(stderr, "progress job=%s stage=%s rows_read=%lld rows_written=%lld", p->job,
		      p->stage, (long long)p->rows_read, (long long)p->rows_written);
	if (p->total_estimate > 0)
		(void)fprintf(stderr, " estimate=%lld", (long long)p->total_estimate);
	(void)fprintf(stderr, " elapsed=%.1fs rate=%.0f/s\n", secs, rate);
}

void lk_progress_view_free(struct lk_progress_view *v)
{
	if (!v)
		return;
	if (v->drawn)
		(void)fprintf(stderr, "\n");
	free(v);
}
