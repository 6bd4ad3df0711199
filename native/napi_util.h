/*
 * N-API helpers shared by stayup's addons (stayup_fuse.c, stayup_net.c): a checked call, and errors
 * shaped like Node's own (code 'ENOENT', errno, syscall, path) so TypeScript handles both the same way.
 */
#ifndef STAYUP_NAPI_UTIL_H
#define STAYUP_NAPI_UTIL_H

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <node_api.h>

#define NAPI_CALL(env, call)                                                                  \
	do {                                                                                  \
		if ((call) != napi_ok) {                                                      \
			const napi_extended_error_info *ei = NULL;                            \
			napi_get_last_error_info((env), &ei);                                 \
			bool pending = false;                                                 \
			napi_is_exception_pending((env), &pending);                           \
			if (!pending)                                                         \
				napi_throw_error((env), "ERR_NAPI",                           \
						 ei && ei->error_message ? ei->error_message : "N-API call failed"); \
			return NULL;                                                          \
		}                                                                             \
	} while (0)

static inline napi_value throw_type(napi_env env, const char *msg)
{
	napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
	return NULL;
}

/* Throws an Error shaped like Node's fs errors: code 'ENOENT', errno 2 (positive, as given to reply()),
 * syscall, path. */
static inline napi_value throw_errno(napi_env env, int err, const char *op, const char *path)
{
	const char *name = strerrorname_np(err);
	char code[32];
	snprintf(code, sizeof code, "%s", name ? name : "EIO");
	char msg[PATH_MAX + 256];
	if (path) snprintf(msg, sizeof msg, "%s: %s, %s '%s'", code, strerror(err), op, path);
	else snprintf(msg, sizeof msg, "%s: %s, %s", code, strerror(err), op);
	napi_value m, c, e, en, sc, p;
	napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
	napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
	napi_create_error(env, NULL, m, &e);
	napi_set_named_property(env, e, "code", c);
	napi_create_int32(env, err, &en);
	napi_set_named_property(env, e, "errno", en);
	napi_create_string_utf8(env, op, NAPI_AUTO_LENGTH, &sc);
	napi_set_named_property(env, e, "syscall", sc);
	if (path) {
		napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &p);
		napi_set_named_property(env, e, "path", p);
	}
	napi_throw(env, e);
	return NULL;
}

static inline int get_string(napi_env env, napi_value v, char *buf, size_t len)
{
	size_t n;
	napi_valuetype t;
	if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return -1;
	if (napi_get_value_string_utf8(env, v, buf, len, &n) != napi_ok) return -1;
	if (n >= len - 1) return -1; /* too long: refuse rather than truncate a path */
	if (strlen(buf) != n) return -1; /* embedded NUL */
	return 0;
}

static inline int get_int64(napi_env env, napi_value v, int64_t *out)
{
	napi_valuetype t;
	if (napi_typeof(env, v, &t) != napi_ok) return -1;
	if (t == napi_number) {
		double d;
		napi_get_value_double(env, v, &d);
		if (d != d || d < -9007199254740992.0 || d > 9007199254740992.0 || d != (double)(int64_t)d) return -1;
		*out = (int64_t)d;
		return 0;
	}
	if (t == napi_bigint) {
		bool lossless;
		if (napi_get_value_bigint_int64(env, v, out, &lossless) != napi_ok || !lossless) return -1;
		return 0;
	}
	return -1;
}

#endif
