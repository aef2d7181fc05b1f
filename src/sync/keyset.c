/* keyset.c - a sorted set of canonical key strings for matching one page of keys. */
#include "keyset.h"

#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

void lk_keyset_init(struct lk_keyset *ks)
{
	memset(ks, 0, sizeof(*ks));
	lk_arena_init(&ks->arena, (size_t)64 * 1024);
}

void lk_keyset_reset(struct lk_keyset *ks)
{
	ks->n = 0;
	ks->sorted = false;
	lk_arena_reset(&ks->arena);
}

void lk_keyset_release(struct lk_keyset *ks)
{
	free(ks->items);
	lk_arena_release(&ks->arena);
	memset(ks, 0, sizeof(*ks));
}

void lk_keyset_add(struct lk_keyset *ks, const char *key, size_t len, uint64_t payload)
{
	if (ks->n == ks->cap) {
		ks->cap = ks->cap ? ks->cap * 2 : 256;
		ks->items = lk_xrealloc(ks->items, ks->cap * sizeof(*ks->items));
	}
	ks->items[ks->n].key = lk_arena_memdup(&ks->arena, key, len);
	ks->items[ks->n].payload = payload;
	ks->items[ks->n].seen = false;
	ks->n++;
	ks->sorted = false;
}

static int cmp_item(const void *a, const void *b)
{
	return strcmp(((const struct lk_keyset_item *)a)->key,
		      ((const struct lk_keyset_item *)b)->key);
}

struct lk_keyset_item *lk_keyset_find(struct lk_keyset *ks, const char *key)
{
	struct lk_keyset_item probe = {.key = key};

	if (!ks->sorted) {
		if (ks->n)
			qsort(ks->items, ks->n, sizeof(*ks->items), cmp_item);
		ks->sorted = true;
	}
	if (!ks->n)
		return NULL;
	return bsearch(&probe, ks->items, ks->n, sizeof(*ks->items), cmp_item);
}

size_t lk_keyset_unique(struct lk_keyset *ks)
{
	size_t n = 0;

	(void)lk_keyset_find(ks, ""); /* sorts */
	for (size_t i = 0; i < ks->n; i++) {
		if (n == 0 || strcmp(ks->items[n - 1].key, ks->items[i].key) != 0)
			ks->items[n++] = ks->items[i];
	}
	ks->n = n;
	return n;
}
