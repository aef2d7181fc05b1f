/*
 * fuzz_config.c - feeds the input as a config file's text to lk_config_load_string: the
 * ${VAR} interpolation, the YAML parser (libfyaml), the key table and the validation.
 * When it loads, the check-config summary (lk_config_dump, with URL redaction), every
 * job's reload fingerprint, the name lookups and http.listen's check run over it too.
 * Checks: no memory error, no leak, no undefined behaviour; a config that loads has
 * names that look themselves up again, and a fingerprint that is the same when taken
 * twice.
 */
#include "config/config.h"
#include "core/buf.h"
#include "core/log.h"
#include "http/http.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/*
 * LeakSanitizer reads these at start. libfyaml 0.7.12 (Debian bookworm) leaks the chunk
 * array of its atom iterator when fy_token_get_text formats a quoted scalar with many
 * escapes: "- '''''''''''''''''''''" leaks 1 KiB (pantoniou/libfyaml#233, fixed upstream
 * after 0.7.12; fuzz/regress/fuzz_config/leak-libfyaml-233). The library has no frame
 * pointers, so such a stack stops inside it and only the module can be named. Leaks of
 * our own allocations (lk_x*, jansson, libc) are still reported.
 */
const char *__lsan_default_suppressions(void)
{
	return "leak:libfyaml.so\n";
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	lk_log_setup(LK_LOG_OFF, LK_LOG_TEXT); /* a warning per input would flood the run */
	/* ${VAR} must mean the same on every machine: the seeds and the dictionary use these
	 * names, and the usual suspects are pinned (or removed) so no input depends on the
	 * environment the fuzzer happens to run in. */
	(void)setenv("LK_FUZZ_URL", "postgres://app:secret@127.0.0.1:5432/app", 1);
	(void)setenv("LK_FUZZ_TOKEN", "t0k3n", 1);
	(void)setenv("LK_FUZZ_EMPTY", "", 1);
	(void)setenv("HOME", "/nonexistent", 1);
	(void)setenv("USER", "fuzz", 1);
	(void)unsetenv("PGPASSWORD");
	(void)unsetenv("LOCKSTEP_TOKEN");
	(void)unsetenv("DATABASE_URL");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	struct lk_err err = LK_ERR_INIT;
	struct lk_config *cfg;
	struct lk_buf out = LK_BUF_INIT, again = LK_BUF_INIT;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	cfg = lk_config_load_string(text, "fuzz.yaml", &err);
	free(text);
	if (!cfg)
		return 0;
	lk_config_dump(cfg, &out);
	(void)lk_http_check_listen(cfg->http.listen, cfg->http.token, &err);
	for (int i = 0; i < cfg->ndbs; i++)
		if (lk_config_db(cfg, cfg->dbs[i].name) == NULL)
			abort();
	for (int i = 0; i < cfg->njobs; i++) {
		const struct lk_job *j = &cfg->jobs[i];

		if (lk_config_job(cfg, j->name) == NULL)
			abort();
		lk_buf_reset(&out);
		lk_buf_reset(&again);
		lk_config_job_fingerprint(cfg, j, &out);
		lk_config_job_fingerprint(cfg, j, &again);
		if (out.len != again.len || memcmp(out.buf, again.buf, out.len) != 0)
			abort();
	}
	lk_buf_release(&out);
	lk_buf_release(&again);
	lk_config_free(cfg);
	return 0;
}
