/*
 * position.h - a job's position as its target stores it (docs/ARCHITECTURE.md,
 * "Positions"): one struct, its one encoder and its one decoder. Every mode's position
 * is written and read here, and the decoder reads every form an earlier lockstep wrote.
 */
#ifndef LK_SYNC_POSITION_H
#define LK_SYNC_POSITION_H

#include "connector/cdc.h"
#include "connector/connector.h"
#include "core/buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum lk_pos_mode {
	LK_POS_NONE = 0, /* no position, "{}", or none of lockstep's sync modes */
	LK_POS_SNAPSHOT,
	LK_POS_POLL,
	LK_POS_REALTIME,
};

/* A real-time position's phase. */
enum lk_pos_phase {
	LK_PHASE_NONE = 0, /* absent or unknown: the job starts over */
	LK_PHASE_SNAPSHOT, /* copying (resumes after `last`) */
	LK_PHASE_SWEEP,	   /* copy done, the delete sweep not yet */
	LK_PHASE_STREAM,   /* streaming the changelog */
};

/* Key (or cursor and key) values inside a position, for the encoder: the n values of
 * `row` at the indexes idx[0..n), each of type types[idx[i]]. n 0: none. */
struct lk_pos_values {
	const struct lk_value *row;
	const enum lk_type *types;
	const int *idx;
	int n;
};

/*
 * Where a real-time position's changelog history comes from (the timeline guard,
 * docs/realtime.md "Restores and failovers"). A position written before the guard
 * existed has none: it reads as all unknown, and is not judged by what it lacks.
 */
struct lk_pos_origin {
	bool known;	/* written by a version with the guard, on a source that can say */
	char sysid[24]; /* PostgreSQL: the source's system identifier; "" when unreadable */
	int64_t tli;	/* PostgreSQL: the source's timeline; 0 when unreadable */
	int64_t nx;	/* poll: the source's next transaction id when the run that wrote the
			 * position began (PostgreSQL; 0 when unknown) */
};

/*
 * One position. The encoder reads the fields of its mode; the decoder fills every field
 * it finds and leaves the others zero.
 *   snapshot: done, vals ("last", when !done)
 *   poll:     from (a capped position) or vals ("after": cursor, then key), and the run's
 *             record: seen, prepared (has_record); origin (with nx)
 *   realtime: phase, cdc (h, xid, seq), vals ("last", phase snapshot only), origin, need
 */
struct lk_position {
	enum lk_pos_mode mode;
	char fp[17];		     /* the job's fingerprint; "" when the position has none */
	bool blank;		     /* decode: not a JSON object with members ("{}", junk, NULL) */
	bool done;		     /* snapshot: finished (decode: true unless "done" is false) */
	enum lk_pos_phase phase;     /* realtime */
	struct lk_cdc_pos cdc;	     /* realtime */
	struct lk_pos_origin origin; /* realtime */
	char need[400];		     /* realtime: a re-snapshot decided and not yet begun,
				      * "REASON|why" (guard.h's reason name); "" when none */
	char from[64];		     /* poll: re-read from this cursor value; "" when not capped */
	bool has_record;	     /* poll: the record below is present */
	char seen[64];		     /* poll's record: the cap its run saw; "" when none */
	json_t *prepared;	     /* poll's record: {xid: bound}; encode: borrowed, may be NULL;
				      * decode: owned by the position (lk_position_release) */
	struct lk_pos_values vals;   /* encode only */
	json_t *vals_json;	     /* decode only: the "last" / "after" array, or NULL */
	json_t *root;		     /* decode only: the parsed document */
};

/*
 * Parses a stored position (NULL or junk gives mode LK_POS_NONE and blank). Tolerates every
 * form earlier versions wrote: no "fp", h/xid/seq as strings or numbers, no origin, no
 * poll record. Release with lk_position_release.
 */
void lk_position_decode(const char *json, struct lk_position *out);
void lk_position_release(struct lk_position *p);
/* Appends p as JSON to b (the form docs/ARCHITECTURE.md describes). */
void lk_position_encode(struct lk_buf *b, const struct lk_position *p);
/*
 * Parses the decoded "last" / "after" array into out (n values whose types are
 * types[idx[i]]; strings live in arena). -1 when absent or of another shape.
 */
int lk_position_values(const struct lk_position *p, struct lk_value *out, const enum lk_type *types,
		       const int *idx, int n, struct lk_arena *arena);

/*
 * Orders two changelog positions by what they have applied: < 0, 0, > 0. seq_only: an
 * SQLite changelog (seq alone is exact; xid is a stamp, not an order); else PostgreSQL's
 * (horizon, then (xid, seq) inside the window).
 */
int lk_cdc_pos_cmp(const struct lk_cdc_pos *a, const struct lk_cdc_pos *b, bool seq_only);

/* Position JSON: arrays of text values (bytes as hex) <-> struct lk_value. */
void lk_pos_add_values(struct lk_buf *b, const struct lk_value *v, const enum lk_type *types,
		       const int *idx, int n);
/* Parses a JSON array of n values into out (strings stay valid while `arena` lives). */
int lk_pos_parse_values(const void *json_array, struct lk_value *out, const enum lk_type *types,
			const int *idx, int n, struct lk_arena *arena);

#endif
