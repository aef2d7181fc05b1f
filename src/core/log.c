/* log.c - structured log lines on stderr. */
#include "log.h"

#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum lk_log_level lk_log_min_level = LK_LOG_INFO;
static enum lk_log_format log_format = LK_LOG_TEXT;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

/* The job and run this thread works for (lk_log_context); "" when none. */
static _Thread_local char ctx_job[128];
static _Thread_local char ctx_run[40];

void lk_log_context(const char *job, const char *run_id)
{
	(void)snprintf(ctx_job, sizeof(ctx_job), "%s", job ? job : "");
	(void)snprintf(ctx_run, sizeof(ctx_run), "%s", run_id ? run_id : "");
}

void lk_log_setup(enum lk_log_level level, enum lk_log_format format)
{
	/* a reload changes these while other threads log: atomic, relaxed is enough */
	__atomic_store_n(&lk_log_min_level, level, __ATOMIC_RELAXED);
	__atomic_store_n(&log_format, format, __ATOMIC_RELAXED);
}

int lk_log_level_parse(const char *s, enum lk_log_level *out)
{
	for (int i = 0; i <= LK_LOG_ERROR; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum lk_log_level)i;
			return 0;
		}
	}
	return -1;
}

static void add_text_value(struct lk_buf *b, const char *v)
{
	lk_buf_add_json_text(b, v, strlen(v)); /* quoted, escaped: one event stays one line */
}

void lk_log_write(enum lk_log_level level, const char *comp, const struct lk_err *err,
		  const char *fmt, ...)
{
	struct lk_buf line = LK_BUF_INIT;
	struct lk_buf msg = LK_BUF_INIT;
	struct timespec ts;
	struct tm tm;
	char when[40];
	va_list ap;

	va_start(ap, fmt);
	lk_buf_vaddf(&msg, fmt, ap);
	va_end(ap);
	(void)clock_gettime(CLOCK_REALTIME, &ts);
	(void)gmtime_r(&ts.tv_sec, &tm);
	(void)snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
		       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		       tm.tm_sec, ts.tv_nsec / 1000000);
	if (__atomic_load_n(&log_format, __ATOMIC_RELAXED) == LK_LOG_JSON) {
		lk_buf_addf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"comp\":", when,
			    level_names[level]);
		lk_buf_add_json_text(&line, comp, strlen(comp));
		if (ctx_job[0]) {
			lk_buf_adds(&line, ",\"job\":");
			lk_buf_add_json_text(&line, ctx_job, strlen(ctx_job));
		}
		if (ctx_run[0])
			lk_buf_addf(&line, ",\"run\":\"%s\"",
				    ctx_run); /* a UUID: nothing to escape */
		lk_buf_adds(&line, ",\"msg\":");
		lk_buf_add_json_text(&line, msg.buf, msg.len);
		if (err && err->code != LK_OK) {
			lk_buf_addf(&line, ",\"error_code\":\"%s\"", lk_err_code_name(err->code));
			if (err->sqlstate[0])
				lk_buf_addf(&line, ",\"sqlstate\":\"%s\"", err->sqlstate);
			lk_buf_adds(&line, ",\"error\":");
			lk_buf_add_json_text(&line, err->msg, strlen(err->msg));
		}
		lk_buf_adds(&line, "}\n");
	} else {
		lk_buf_addf(&line, "ts=%s level=%s comp=%s ", when, level_names[level], comp);
		if (ctx_job[0]) {
			lk_buf_adds(&line, "job=");
			add_text_value(&line, ctx_job);
			lk_buf_addch(&line, ' ');
		}
		if (ctx_run[0])
			lk_buf_addf(&line, "run=%s ", ctx_run);
		lk_buf_adds(&line, "msg=");
		add_text_value(&line, msg.buf);
		if (err && err->code != LK_OK) {
			lk_buf_addf(&line, " code=%s", lk_err_code_name(err->code));
			if (err->sqlstate[0])
				lk_buf_addf(&line, " sqlstate=%s", err->sqlstate);
			lk_buf_adds(&line, " error=");
			add_text_value(&line, err->msg);
		}
		lk_buf_addch(&line, '\n');
	}
	if (write(STDERR_FILENO, line.buf, line.len) < 0) {
		/* Nowhere left to report a failing stderr. */
	}
	lk_buf_release(&line);
	lk_buf_release(&msg);
}
