/*
 * In-kernel ranged file copy for Node.js (N-API): copy_file_range(2) from one open file descriptor at
 * one offset to another at another offset, on a libuv worker thread. Node exposes whole-file copies
 * only (fs.copyFile); a ranged copy lets a safetensors writer move tensor bytes from an input shard
 * into an output shard without passing them through user space.
 *
 * copyFileRange(fdIn, offsetIn, fdOut, offsetOut, length) -> Promise<void>
 *   Rejects with an Error whose `code` is the errno name ("EXDEV", "ENOSYS", "EOPNOTSUPP", ...), or
 *   "ESHORT" when the source ends before `length` bytes were copied. Callers fall back to read/write
 *   on any of these.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <node_api.h>
#if defined(__GLIBC__)
#include <malloc.h>
#include <gnu/libc-version.h>
#endif

#define CHECK(env, call)                                        \
  do {                                                          \
    if ((call) != napi_ok) {                                    \
      napi_throw_error((env), "EINTERNAL", "N-API call failed: " #call); \
      return NULL;                                              \
    }                                                           \
  } while (0)

typedef struct {
  int fd_in;
  int fd_out;
  int64_t off_in;
  int64_t off_out;
  int64_t length;
  int err;   /* errno of the failure, 0 when done, -1 for a short copy */
  napi_deferred deferred;
  napi_async_work work;
} copy_job;

static void execute(napi_env env, void *data) {
  (void)env;
  copy_job *job = (copy_job *)data;
  job->err = 0;
#ifdef __linux__
  loff_t in = (loff_t)job->off_in;
  loff_t out = (loff_t)job->off_out;
  int64_t left = job->length;
  while (left > 0) {
    size_t want = left > (int64_t)(1 << 30) ? (size_t)(1 << 30) : (size_t)left;
    ssize_t n = copy_file_range(job->fd_in, &in, job->fd_out, &out, want, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      job->err = errno;
      return;
    }
    if (n == 0) {
      job->err = -1;
      return;
    }
    left -= n;
  }
#else
  job->err = ENOSYS;
#endif
}

static const char *errno_name(int e) {
  switch (e) {
    case -1: return "ESHORT";
    case EXDEV: return "EXDEV";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EINVAL: return "EINVAL";
    case EBADF: return "EBADF";
    case EIO: return "EIO";
    case ENOSPC: return "ENOSPC";
    case EFBIG: return "EFBIG";
    case EISDIR: return "EISDIR";
    case EPERM: return "EPERM";
    case ETXTBSY: return "ETXTBSY";
    case EOVERFLOW: return "EOVERFLOW";
    case ENOMEM: return "ENOMEM";
    case EDQUOT: return "EDQUOT";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case E2BIG: return "E2BIG";
    case ENOEXEC: return "ENOEXEC";
    default: return "EUNKNOWN";
  }
}

static void complete(napi_env env, napi_status status, void *data) {
  copy_job *job = (copy_job *)data;
  if (status == napi_ok && job->err == 0) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, job->deferred, undef);
  } else {
    const char *code = status == napi_ok ? errno_name(job->err) : "ECANCELED";
    const char *text = status != napi_ok ? "the copy was cancelled"
                     : job->err == -1     ? "the source ended before the requested length was copied"
                                          : strerror(job->err);
    char message[256];
    snprintf(message, sizeof message, "copy_file_range: %s", text);
    napi_value code_v, msg_v, err_v;
    napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_v);
    napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg_v);
    napi_create_error(env, code_v, msg_v, &err_v);
    napi_set_named_property(env, err_v, "code", code_v);
    napi_reject_deferred(env, job->deferred, err_v);
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

static int get_int64(napi_env env, napi_value v, int64_t *out, int64_t min) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
  if (!(d >= (double)min) || d > 9007199254740991.0 || d != (double)(int64_t)d) return 0;
  *out = (int64_t)d;
  return 1;
}

static napi_value copy_file_range_js(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t fd_in, off_in, fd_out, off_out, length;
  if (argc != 5 || !get_int64(env, argv[0], &fd_in, 0) || !get_int64(env, argv[1], &off_in, 0) ||
      !get_int64(env, argv[2], &fd_out, 0) || !get_int64(env, argv[3], &off_out, 0) ||
      !get_int64(env, argv[4], &length, 0) || fd_in > 0x7fffffff || fd_out > 0x7fffffff) {
    napi_throw_type_error(env, "EINVAL",
                          "copyFileRange(fdIn, offsetIn, fdOut, offsetOut, length) takes five non-negative integers");
    return NULL;
  }
  copy_job *job = (copy_job *)calloc(1, sizeof(copy_job));
  if (!job) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  job->fd_in = (int)fd_in;
  job->fd_out = (int)fd_out;
  job->off_in = off_in;
  job->off_out = off_out;
  job->length = length;
  napi_value promise, name;
  CHECK(env, napi_create_promise(env, &job->deferred, &promise));
  CHECK(env, napi_create_string_utf8(env, "llama-pro:copyFileRange", NAPI_AUTO_LENGTH, &name));
  CHECK(env, napi_create_async_work(env, NULL, name, execute, complete, job, &job->work));
  CHECK(env, napi_queue_async_work(env, job->work));
  return promise;
}

/*
 * tuneMalloc(mmapThreshold, trimThreshold) -> boolean
 * glibc serves allocations above a (dynamic) threshold with fresh mmap()s and gives them back on free, so
 * a workload that allocates and frees the same large tensors again and again (an inference step) pays
 * page faults on fresh memory every time. Raising both thresholds keeps that memory in the heap for
 * reuse. Returns false where it does not apply (not glibc) or glibc refused a value.
 */
static napi_value tune_malloc_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t mmap_threshold, trim_threshold;
  if (argc != 2 || !get_int64(env, argv[0], &mmap_threshold, 0) || !get_int64(env, argv[1], &trim_threshold, 0) ||
      mmap_threshold > 0x7fffffff || trim_threshold > 0x7fffffff) {
    napi_throw_type_error(env, "EINVAL", "tuneMalloc(mmapThreshold, trimThreshold) takes two integers in [0, 2^31)");
    return NULL;
  }
  int ok = 0;
#if defined(__GLIBC__)
  ok = mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold) == 1 && mallopt(M_TRIM_THRESHOLD, (int)trim_threshold) == 1;
#endif
  napi_value result;
  CHECK(env, napi_get_boolean(env, ok, &result));
  return result;
}

/*
 * glibcVersion() -> string | undefined
 * The version of the C library this process runs on (gnu_get_libc_version), undefined when it is not glibc.
 */
static napi_value glibc_version_js(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
#if defined(__GLIBC__)
  CHECK(env, napi_create_string_utf8(env, gnu_get_libc_version(), NAPI_AUTO_LENGTH, &result));
#else
  CHECK(env, napi_get_undefined(env, &result));
#endif
  return result;
}

/* A NULL-terminated copy of a JS array of strings; NULL (with a pending exception) on a bad element. */
static char **string_array(napi_env env, napi_value arr, const char *what) {
  uint32_t n;
  if (napi_get_array_length(env, arr, &n) != napi_ok || n > 65536) {
    napi_throw_type_error(env, "EINVAL", what);
    return NULL;
  }
  char **out = (char **)calloc((size_t)n + 1, sizeof(char *));
  if (!out) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value el;
    size_t len;
    if (napi_get_element(env, arr, i, &el) != napi_ok || napi_get_value_string_utf8(env, el, NULL, 0, &len) != napi_ok) {
      napi_throw_type_error(env, "EINVAL", what);
      goto fail;
    }
    out[i] = (char *)malloc(len + 1);
    if (!out[i]) {
      napi_throw_error(env, "ENOMEM", "out of memory");
      goto fail;
    }
    napi_get_value_string_utf8(env, el, out[i], len + 1, &len);
    if (strlen(out[i]) != len) {
      napi_throw_type_error(env, "EINVAL", "strings passed to execve may not contain NUL characters");
      goto fail;
    }
  }
  return out;
fail:
  for (uint32_t i = 0; i < n; i++) free(out[i]);
  free(out);
  return NULL;
}

/*
 * execve(file, args, env, keepFds) -> never returns on success
 * Replaces this process with `file` run with `args` (args[0] included) and `env` ("NAME=value" strings):
 * same pid, descriptors 0-2 and `keepFds` kept open (see below), so the caller's parent, terminal and signals see one process. Used to
 * restart the CLI once with an environment only the C library's startup reads (GLIBC_TUNABLES). Throws
 * an Error whose `code` is the errno name when the exec fails (the process then continues unchanged).
 */
static napi_value execve_js(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char file[4096];
  size_t flen;
  uint32_t nkeep = 0;
  if (argc != 4 || napi_get_value_string_utf8(env, argv[0], file, sizeof file, &flen) != napi_ok || flen == 0 || flen >= sizeof file - 1 ||
      napi_get_array_length(env, argv[3], &nkeep) != napi_ok || nkeep > 1024) {
    napi_throw_type_error(env, "EINVAL", "execve(file, args, env, keepFds) takes a path, an array of arguments, an array of NAME=value strings and an array of descriptors");
    return NULL;
  }
  int keep[1024 + 3];
  for (uint32_t i = 0; i < nkeep; i++) {
    napi_value el;
    int64_t fd;
    if (napi_get_element(env, argv[3], i, &el) != napi_ok || !get_int64(env, el, &fd, 0) || fd > 0x7fffffff) {
      napi_throw_type_error(env, "EINVAL", "execve: keepFds must be non-negative integers");
      return NULL;
    }
    keep[i] = (int)fd;
  }
  keep[nkeep] = 0;
  keep[nkeep + 1] = 1;
  keep[nkeep + 2] = 2;
  nkeep += 3;
  char **args = string_array(env, argv[1], "execve: args must be an array of strings");
  if (!args) return NULL;
  char **envp = string_array(env, argv[2], "execve: env must be an array of NAME=value strings");
  if (!envp) {
    for (char **a = args; *a; a++) free(*a);
    free(args);
    return NULL;
  }
  /* Node marks the descriptors it inherited close-on-exec at startup (libuv's uv_disable_stdio_inheritance:
     0-2 and the ones above up to at least 15): without clearing that, the new image would start without its
     stdin, stdout, stderr and whatever else its parent passed (LLAMA_PRO_PROGRESS=fd:3). The caller names the
     ones to keep; 0-2 always. Restored if the exec fails. */
  int fd_flags[1024 + 3];
  for (uint32_t i = 0; i < nkeep; i++) {
    fd_flags[i] = fcntl(keep[i], F_GETFD);
    if (fd_flags[i] >= 0 && (fd_flags[i] & FD_CLOEXEC)) fcntl(keep[i], F_SETFD, fd_flags[i] & ~FD_CLOEXEC);
  }
  execve(file, args, envp);
  int e = errno;
  for (uint32_t i = 0; i < nkeep; i++) {
    if (fd_flags[i] >= 0) fcntl(keep[i], F_SETFD, fd_flags[i]);
  }
  for (char **a = args; *a; a++) free(*a);
  for (char **a = envp; *a; a++) free(*a);
  free(args);
  free(envp);
  char message[256];
  snprintf(message, sizeof message, "execve: %s", strerror(e));
  napi_value code_v, msg_v, err_v;
  CHECK(env, napi_create_string_utf8(env, errno_name(e), NAPI_AUTO_LENGTH, &code_v));
  CHECK(env, napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg_v));
  CHECK(env, napi_create_error(env, code_v, msg_v, &err_v));
  napi_set_named_property(env, err_v, "code", code_v);
  napi_throw(env, err_v);
  return NULL;
}

napi_status register_adamw(napi_env env, napi_value exports); /* adamw.c */

static napi_value init(napi_env env, napi_value exports) {
  CHECK(env, register_adamw(env, exports));
  napi_value fn, tune, supported;
  CHECK(env, napi_create_function(env, "tuneMalloc", NAPI_AUTO_LENGTH, tune_malloc_js, NULL, &tune));
  CHECK(env, napi_set_named_property(env, exports, "tuneMalloc", tune));
  napi_value gv, ex;
  CHECK(env, napi_create_function(env, "glibcVersion", NAPI_AUTO_LENGTH, glibc_version_js, NULL, &gv));
  CHECK(env, napi_set_named_property(env, exports, "glibcVersion", gv));
  CHECK(env, napi_create_function(env, "execve", NAPI_AUTO_LENGTH, execve_js, NULL, &ex));
  CHECK(env, napi_set_named_property(env, exports, "execve", ex));
  CHECK(env, napi_create_function(env, "copyFileRange", NAPI_AUTO_LENGTH, copy_file_range_js, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "copyFileRange", fn));
#ifdef __linux__
  CHECK(env, napi_get_boolean(env, 1, &supported));
#else
  CHECK(env, napi_get_boolean(env, 0, &supported));
#endif
  CHECK(env, napi_set_named_property(env, exports, "supported", supported));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
