/*
 * fuzz_exec_progress.c - feeds the input as one stdout line of an exec job to
 * lk_exec_parse_progress (exec_progress.c), which tells a JSON progress object from plain
 * text. The line is passed with its exact length and no NUL after it, as the runner
 * does, with a stats buffer that is large, small, or absent.
 * Checks, with abort() on a violation: progress is -1 or within 0..100; the stage is a
 * complete UTF-8 text shorter than its buffer; counts are -1 or >= 0; stats_json is NULL
 * or a NUL-terminated string inside the buffer given.
 */
#include "sched/exec.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether s[0..n) is whole UTF-8 sequences (the stage was cut at a character boundary). */
static bool utf8_whole(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t k = 1;

		if (s[i] >= 0x80)
			k = s[i] >= 0xF0 ? 4 : s[i] >= 0xE0 ? 3 : s[i] >= 0xC0 ? 2 : 0;
		if (k == 0 || i + k > n)
			return false;
		for (size_t j = 1; j < k; j++)
			if ((s[i + j] & 0xC0) != 0x80)
				return false;
		i += k;
	}
	return true;
}

static void check(const char *line, size_t len, char *buf, size_t cap)
{
	struct lk_exec_progress p;

	memset(&p, 0x5a, sizeof(p));
	if (lk_exec_parse_progress(line, len, &p, buf, cap) != 1)
		return;
	if (p.progress != -1 && !(p.progress >= 0 && p.progress <= 100))
		abort();
	if (memchr(p.stage, '\0', sizeof(p.stage)) == NULL ||
	    !utf8_whole((const unsigned char *)p.stage, strlen(p.stage)))
		abort();
	if (p.processed < -1 || p.total < -1)
		abort();
	if (p.stats_json &&
	    (p.stats_json != buf || memchr(buf, '\0', cap) == NULL || strlen(buf) >= cap))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = malloc(size ? size : 1); /* exactly size bytes: ASan sees any overread */
	char big[4096], small[16];

	if (!line)
		return 0;
	memcpy(line, data, size);
	check(line, size, big, sizeof(big));
	check(line, size, small, sizeof(small));
	check(line, size, NULL, 0);
	free(line);
	return 0;
}
