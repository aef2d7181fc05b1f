/*
 * exec_progress.c - what an exec job's stdout lines mean: a JSON progress object or
 * plain text. Pure functions, shared by the runner, the tests and the fuzzer.
 */
#include "exec.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Largest double that still converts to int64 exactly enough for a row count. */
#define COUNT_REAL_MAX 9.0e15

/* Copies a UTF-8 string into out (size cap), cut at a character boundary. */
static void copy_utf8(char *out, size_t cap, const char *s, size_t len)
{
	size_t n = len < cap - 1 ? len : cap - 1;

	if (n < len) {
		/* Step back over continuation bytes so no character is cut in half. */
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(out, s, n);
	out[n] = '\0';
}

/* A non-negative count from a JSON number; -1 for anything else. */
static int64_t count_value(const json_t *v)
{
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);

		return i >= 0 ? (int64_t)i : -1;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);

		if (d >= 0 && d <= COUNT_REAL_MAX)
			return (int64_t)d;
	}
	return -1;
}

/* The "progress" member: a number up to 100 (more is clamped); -1 when absent, not a
 * number or negative (a program's own "-1 = unknown" keeps that meaning). */
static double progress_value(const json_t *v)
{
	double d;

	if (!json_is_number(v))
		return -1;
	d = json_number_value(v);
	if (isnan(d) || d < 0)
		return -1;
	return d > 100 ? 100 : d;
}

/* Fills the stats fields of out from the "stats" member (an object or not). */
static void read_stats(const json_t *stats, struct lk_exec_progress *out, char *buf, size_t cap)
{
	size_t need;

	out->processed = -1;
	out->total = -1;
	out->stats_json = NULL;
	if (!json_is_object(stats))
		return;
	out->processed = count_value(json_object_get(stats, "processed"));
	out->total = count_value(json_object_get(stats, "total"));
	if (!buf || cap == 0)
		return;
	need = json_dumpb(stats, buf, cap, JSON_COMPACT);
	if (need == 0 || need >= cap)
		return; /* an error, or it does not fit with its NUL */
	buf[need] = '\0';
	out->stats_json = buf;
}

int lk_exec_parse_progress(const char *line, size_t len, struct lk_exec_progress *out,
			   char *stats_buf, size_t stats_cap)
{
	json_error_t jerr;
	json_t *root, *progress, *stage, *stats;

	if (!line || len == 0)
		return 0;
	/* Cheap pre-check: skip leading whitespace; anything but '{' is text, which keeps
	 * ordinary log lines off the JSON parser. */
	for (size_t i = 0; i < len; i++) {
		if (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')
			continue;
		if (line[i] != '{')
			return 0;
		break;
	}
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return 0;
	progress = json_object_get(root, "progress");
	stage = json_object_get(root, "stage");
	stats = json_object_get(root, "stats");
	if (!json_is_object(root) || (!progress && !stage && !stats)) {
		json_decref(root);
		return 0;
	}
	out->progress = progress_value(progress);
	out->stage[0] = '\0';
	if (json_is_string(stage))
		copy_utf8(out->stage, sizeof(out->stage), json_string_value(stage),
			  json_string_length(stage));
	read_stats(stats, out, stats_buf, stats_cap);
	json_decref(root);
	return 1;
}

void lk_exec_format_duration(int64_t ms, char *out, size_t out_size)
{
	int64_t h, m, s, frac;
	char sec[24];

	if (ms < 1000) {
		(void)snprintf(out, out_size, "%" PRId64 "ms", ms < 0 ? 0 : ms);
		return;
	}
	h = ms / 3600000;
	m = ms / 60000 % 60;
	s = ms / 1000 % 60;
	frac = ms % 1000;
	if (frac == 0)
		(void)snprintf(sec, sizeof(sec), "%" PRId64 "s", s);
	else if (frac % 100 == 0)
		(void)snprintf(sec, sizeof(sec), "%" PRId64 ".%" PRId64 "s", s, frac / 100);
	else if (frac % 10 == 0)
		(void)snprintf(sec, sizeof(sec), "%" PRId64 ".%02" PRId64 "s", s, frac / 10);
	else
		(void)snprintf(sec, sizeof(sec), "%" PRId64 ".%03" PRId64 "s", s, frac);
	if (h > 0)
		(void)snprintf(out, out_size, "%" PRId64 "h%" PRId64 "m%s", h, m, sec);
	else if (m > 0)
		(void)snprintf(out, out_size, "%" PRId64 "m%s", m, sec);
	else
		(void)snprintf(out, out_size, "%s", sec);
}
