/*
 * config_int.h - what the files of src/config/ share: the ${VAR} interpolation
 * with its position map, the small YAML tree that config_yaml.c builds, the
 * load context with its error helpers, the value converters and the key table.
 *
 * Flow: interpolate (config_interp.c) -> YAML tree (config_yaml.c, the only
 * user of libfyaml) -> sections filled from the key table (config_keys.c,
 * config_values.c, config_sections.c) -> cross-checks (config_validate.c).
 * Everything here runs on the loading thread only.
 */
#ifndef LK_CONFIG_INT_H
#define LK_CONFIG_INT_H

#include "config.h"
#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- interpolation (config_interp.c) ---- */

/* One replaced piece: `in_len` bytes at `in_off` of the original became `out_len` bytes
 * at `out_off` of the output. */
struct lk_interp_span {
	size_t out_off, out_len;
	size_t in_off, in_len;
};

struct lk_interp {
	const char *orig; /* the text as written (borrowed) */
	size_t orig_len;
	char *text; /* the interpolated text, owned, NUL-terminated */
	size_t len;
	struct lk_interp_span *spans; /* in increasing out_off order */
	int nspans, aspans;
};

/*
 * Replaces ${VAR} and ${VAR:-default} from the environment and $$ by $. Comments (a '#' at
 * the start of a line or after a blank, outside quotes) are copied untouched.
 *   ip    out: initialised here; release it with lk_interp_release, even after an error
 *   text  the file's text, borrowed until lk_interp_release
 *   len   bytes of text; a NUL byte inside is an error
 *   file  the path, for messages
 * Returns 0, or -1 with err set ("FILE:L:C: ...", code LK_ERR_CONFIG).
 */
int lk_interp_run(struct lk_interp *ip, const char *text, size_t len, const char *file,
		  struct lk_err *err);

/* Maps an offset of the interpolated text to a 1-based line and column of the original
 * (columns count UTF-8 characters). An offset inside a replacement maps to its "${". */
void lk_interp_pos(const struct lk_interp *ip, size_t out_off, int *line, int *col);

/* Maps a 1-based line and column of the interpolated text to an offset in it. */
size_t lk_interp_out_offset(const struct lk_interp *ip, int line, int col);

void lk_interp_release(struct lk_interp *ip);

/* ---- the YAML tree (config_yaml.c) ---- */

enum lk_ytype { LK_Y_NULL, LK_Y_SCALAR, LK_Y_MAP, LK_Y_SEQ };

struct lk_ynode {
	enum lk_ytype type;
	bool quoted;		/* scalar written quoted or as a block scalar */
	char *text;		/* scalar text, NUL-terminated; NULL otherwise */
	size_t len;		/* bytes of text */
	int line, col;		/* 1-based position in the file as written */
	struct lk_ynode **kids; /* SEQ: the items; MAP: key, value, key, value, ... */
	int nkids;
};

struct lk_cfgctx;

/*
 * Parses the interpolated text of ip into a tree. Refuses anchors, aliases, tags, several
 * documents and duplicate keys; mapping keys are always scalars. An empty document gives
 * an empty mapping. Returns the root (free with lk_ynode_free) or NULL with c->err set.
 */
struct lk_ynode *lk_yaml_parse(struct lk_cfgctx *c, const struct lk_interp *ip);

void lk_ynode_free(struct lk_ynode *n);

/* The value (or the key node) stored under `key` in a mapping; NULL when absent or when
 * map is not a mapping. */
const struct lk_ynode *lk_ymap_get(const struct lk_ynode *map, const char *key);
const struct lk_ynode *lk_ymap_key(const struct lk_ynode *map, const char *key);

/* ---- load context and errors ---- */

struct lk_cfgctx {
	const char *file; /* the path as given, for messages */
	struct lk_config *cfg;
	struct lk_err *err;
};

/* Sets c->err to LK_ERR_CONFIG "FILE:LINE:COL: <fmt>" at node `at` (or 0:0 when NULL);
 * returns -1. */
int lk_cfg_fail(struct lk_cfgctx *c, const struct lk_ynode *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Describes a node for "found ...": "a mapping", "a list", "null", "'text'" or
 * "the quoted string 'text'" (long text shortened). */
void lk_ynode_describe(const struct lk_ynode *n, char *out, size_t size);

/* The closest of cands[0..n) to word by edit distance, or NULL when none is close. */
const char *lk_cfg_suggest(const char *word, const char *const *cands, int n);

/* ---- the key table (config_keys.c) ---- */

enum lk_ksect {
	LK_SECT_TOP,
	LK_SECT_HTTP,
	LK_SECT_LOG,
	LK_SECT_MEMORY,
	LK_SECT_INSTANCE,
	LK_SECT_CLUSTER,
	LK_SECT_DB,
	LK_SECT_JOB,
	LK_SECT_SOURCE,
	LK_SECT_TARGET,
	LK_SECT_RETRY,
	LK_SECT_BREAKER,
	LK_SECT_VERIFY,
	LK_SECT_COUNT
};

enum lk_ktype {
	LK_KT_STRING,	/* char * */
	LK_KT_BOOL,	/* bool */
	LK_KT_INT,	/* int, within [min, max] */
	LK_KT_DURATION, /* int64_t milliseconds, >= min */
	LK_KT_SIZE,	/* int64_t bytes */
	LK_KT_NUMBER,	/* double, within [min, max] */
	LK_KT_ENUM,	/* an enum stored as int, values from `enums` */
	LK_KT_STRLIST,	/* char **, with its count at `off2` */
	LK_KT_MAP,	/* a nested section `child`; its struct at `off` of this one */
	LK_KT_CUSTOM	/* `parse` does everything */
};

struct lk_kenum {
	const char *name;
	int value;
	bool built; /* false: refused as "not supported yet" */
};

struct lk_key;
/*
 * A custom parser: reads `val` (never null) for key `k` into obj, the struct of k's
 * section (fields at k->off and k->off2). Returns 0, or -1 with c->err set at val.
 */
typedef int (*lk_key_parse_cb)(struct lk_cfgctx *c, const struct lk_key *k,
			       const struct lk_ynode *val, void *obj);

struct lk_key {
	const char *name;
	const char *def;  /* default as written in YAML, or NULL */
	int64_t min, max; /* INT/DURATION/NUMBER bounds; min > max means none */
	size_t off, off2; /* field offsets in the section's struct */
	const struct lk_kenum *enums;
	lk_key_parse_cb parse; /* LK_KT_CUSTOM */
	const char *expect;    /* "expected ..." wording for a bad value */
	enum lk_ksect sect;
	enum lk_ktype type;
	enum lk_ksect child; /* LK_KT_MAP: the nested section */
	bool built;	     /* false: the key is known but refused as "not supported yet" */
	bool required;	     /* must be present (and not null) */
};

/* The whole table, in documentation order; *n receives its length. */
const struct lk_key *lk_config_keys(size_t *n);

/* The section's name as written in messages and docs ("source", "retry", ...). */
const char *lk_config_sect_name(enum lk_ksect s);

/* Applies the section's defaults to obj (the struct the section fills). Returns 0, or -1
 * only when a default itself is invalid (a bug in the table). */
int lk_cfg_defaults(struct lk_cfgctx *c, enum lk_ksect sect, void *obj);

/*
 * Fills obj from a mapping by the table of `sect`: unknown keys (with a did-you-mean hint),
 * "not supported yet" keys, bad values and missing required keys are errors; a null value
 * keeps the default of an optional key.
 *   sect   whose keys are allowed
 *   map    the value to read; anything but a mapping is an error
 *   owner  where a missing key is reported (the key that introduced the mapping), or NULL
 *   what   the mapping in messages: "source", "job 'users'"
 *   obj    the struct the section fills
 * Returns 0, or -1 with c->err set.
 */
int lk_cfg_parse_map(struct lk_cfgctx *c, enum lk_ksect sect, const struct lk_ynode *map,
		     const struct lk_ynode *owner, const char *what,
		     void *obj); /* the struct the section fills */

/*
 * ---- value converters (config_values.c) ----
 * Each takes the load context `c`, the value node `val` (which may be of any type, or NULL),
 * the bounds or wording it needs, and the place to store the result; it returns 0, or -1
 * with c->err set to "FILE:L:C: expected ..., found ..." at val. Strings and lists stored
 * replace (and free) what the field held.
 */

int lk_cfg_string(struct lk_cfgctx *c, const struct lk_ynode *val, const char *expect, char **out);
int lk_cfg_bool(struct lk_cfgctx *c, const struct lk_ynode *val, bool *out);
int lk_cfg_int(struct lk_cfgctx *c, const struct lk_ynode *val, int64_t min, int64_t max,
	       int64_t *out);
int lk_cfg_duration(struct lk_cfgctx *c, const struct lk_ynode *val, int64_t min_ms,
		    int64_t *out_ms);
int lk_cfg_size(struct lk_cfgctx *c, const struct lk_ynode *val, int64_t *out);
int lk_cfg_number(struct lk_cfgctx *c, const struct lk_ynode *val, double min, double max,
		  double *out);
int lk_cfg_enum(struct lk_cfgctx *c, const struct lk_ynode *val, const char *what,
		const struct lk_kenum *enums, int *out);
/* A list of non-empty, distinct strings; with `one_ok` a single string counts as a list. */
int lk_cfg_strlist(struct lk_cfgctx *c, const struct lk_ynode *val, bool one_ok, char ***out,
		   int *n);
/* A table reference: `name`, `schema.name`, parts in double quotes when they hold a dot. */
int lk_cfg_tref(struct lk_cfgctx *c, const struct lk_ynode *val, struct lk_tref *out);

/* Splits a table reference; returns 0, or -1 with a reason in why (size >= 128). Exposed
 * for tests. */
int lk_tref_parse(const char *s, struct lk_tref *out, char *why, size_t why_size);

/* ---- custom parsers (config_sections.c), each an lk_key_parse_cb ---- */

int lk_cfg_parse_state(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
		       void *obj);
int lk_cfg_parse_listen(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
			void *obj);
int lk_cfg_parse_databases(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
			   void *obj);
int lk_cfg_parse_db_url(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
			void *obj);
int lk_cfg_parse_listen_url(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
			    void *obj);
int lk_cfg_parse_jobs(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
		      void *obj);
int lk_cfg_parse_dbref(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
		       void *obj);
int lk_cfg_parse_tref(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
		      void *obj);
int lk_cfg_parse_key(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
		     void *obj);
int lk_cfg_parse_labels(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
			void *obj);
int lk_cfg_parse_deletes(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
			 void *obj);
int lk_cfg_parse_deployment(struct lk_cfgctx *c, const struct lk_key *k, const struct lk_ynode *val,
			    void *obj);
int lk_cfg_parse_orphan_after(struct lk_cfgctx *c, const struct lk_key *k,
			      const struct lk_ynode *val, void *obj);

/*
 * Classifies a database URL: postgres:// or postgresql:// or a libpq keyword string (text
 * with '=' and no "://") is PostgreSQL; sqlite:PATH is SQLite.
 *   url   as written
 *   dir   base of a relative SQLite path; NULL keeps the path as written
 *   kind  out: the engine
 *   path  out: the SQLite file path (absolute when dir is), caller frees; NULL otherwise
 * Returns 0, or -1 when url is none of these.
 */
int lk_cfg_db_kind(const char *url, const char *dir, enum lk_db_kind *kind,
		   char **path); /* out: SQLite file path (caller frees), else NULL */

/* ---- cross-checks (config_validate.c) ---- */

/* Resolves database references, fills defaults that depend on other keys and checks what
 * involves several keys. `root` is the tree the config was filled from. */
int lk_cfg_validate(struct lk_cfgctx *c, const struct lk_ynode *root);

#endif
