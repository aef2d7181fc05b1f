/*
 * cron_next.c - a stdin/stdout driver of the cron module for tests/integration/
 * test_cron_oracle.py: each line "EXPR<TAB>ZONE<TAB>AFTER_MS" gets one line back, the next
 * fire time in Unix ms, -1 when there is none, or "ERR <message>". Zone "UTC" is NULL.
 */
#include "core/err.h"
#include "core/units.h"
#include "sched/cron.h"
#include "sched/tz.h"

#include <stdio.h>
#include <string.h>

#define MAX_ZONES 64

struct zone {
	char name[LK_TZ_NAME_MAX];
	struct lk_tz *tz;
};

/* Loads each zone once; NULL with err set when it cannot be loaded. */
static int zone_get(struct zone *zones, int *nz, const char *name, const struct lk_tz **out,
		    struct lk_err *err)
{
	*out = NULL;
	if (strcmp(name, "UTC") == 0)
		return 0;
	for (int i = 0; i < *nz; i++)
		if (strcmp(zones[i].name, name) == 0) {
			*out = zones[i].tz;
			return 0;
		}
	if (*nz == MAX_ZONES)
		return lk_err_set(err, LK_ERR_USAGE, "too many zones");
	zones[*nz].tz = lk_tz_load(name, err);
	if (!zones[*nz].tz)
		return -1;
	(void)snprintf(zones[*nz].name, sizeof(zones[*nz].name), "%s", name);
	*out = zones[(*nz)++].tz;
	return 0;
}

/* Answers one line (modified in place). */
static void answer(char *line, struct zone *zones, int *nz)
{
	struct lk_err err = LK_ERR_INIT;
	char *zone = strchr(line, '\t'), *after = zone ? strchr(zone + 1, '\t') : NULL;
	const struct lk_tz *tz;
	struct lk_cron c;
	int64_t after_ms;

	line[strcspn(line, "\r\n")] = '\0';
	if (!zone || !after) {
		printf("ERR expected EXPR<TAB>ZONE<TAB>AFTER_MS\n");
		return;
	}
	*zone++ = '\0';
	*after++ = '\0';
	if (lk_int64_parse(after, &after_ms) < 0) {
		printf("ERR bad AFTER_MS '%s'\n", after);
		return;
	}
	if (zone_get(zones, nz, zone, &tz, &err) < 0 || lk_cron_parse(line, &c, &err) < 0) {
		printf("ERR %s\n", err.msg);
		return;
	}
	printf("%lld\n", (long long)lk_cron_next(&c, tz, after_ms));
}

int main(void)
{
	static struct zone zones[MAX_ZONES];
	char line[1024];
	int nz = 0;

	while (fgets(line, sizeof(line), stdin))
		answer(line, zones, &nz);
	for (int i = 0; i < nz; i++)
		lk_tz_free(zones[i].tz);
	return fflush(stdout) == 0 ? 0 : 1;
}
