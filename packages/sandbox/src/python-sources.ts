/**
 * The Python programs of the code sandbox (our own code, run as `python3 -I -B -c SOURCE CONFIG`).
 *
 * - CANDIDATE_SOURCE runs inside bubblewrap: it sets rlimits, applies openai/human-eval's
 *   `reliability_guard()` and `swallow_io()` equivalents, `exec`s the untrusted code (prompt + completion)
 *   and then only answers calls ("call function NAME with these plain values") from the checker. Whatever it
 *   says is data to the checker, never a verdict.
 * - CHECKER_SOURCE runs outside the sandbox and never executes untrusted code: per job it starts a candidate
 *   sandbox, runs the trusted test code (the dataset's `check`/asserts) in its own interpreter with the
 *   candidate's functions replaced by proxies, under the reference's SIGALRM time limit, and writes the
 *   verdict to the Node side. A sample cannot reach the checker's frames, `check`, nonces or stdout: they
 *   are in another process, outside the sample's pid, mount and user namespaces.
 *
 * Values cross the boundary in a tagged JSON form of the builtin types only (None, bool, int, float, str,
 * bytes, complex, list, tuple, dict, set, frozenset), so an object with a lying `__eq__` cannot reach the
 * checker (it fails as "cannot be checked outside the sandbox"; openai/human-eval would pass it: a
 * documented security choice).
 */

/** Tagged-JSON value codec shared by both sides. */
const CODEC = String.raw`
import json as _json, sys as _sys
try:
    _sys.set_int_max_str_digits(0)
except AttributeError:
    pass

class Unencodable(TypeError):
    pass

def _enc(x, depth=0):
    if depth > 200:
        raise Unencodable("value nested too deeply to be checked outside the sandbox")
    t = type(x)
    if x is None or t is bool or t is str or t is int or t is float:
        return x
    if t is list:
        return {"\x00l": [_enc(v, depth + 1) for v in x]}
    if t is tuple:
        return {"\x00t": [_enc(v, depth + 1) for v in x]}
    if t is dict:
        return {"\x00d": [[_enc(k, depth + 1), _enc(v, depth + 1)] for k, v in x.items()]}
    if t is set:
        return {"\x00s": [_enc(v, depth + 1) for v in x]}
    if t is frozenset:
        return {"\x00f": [_enc(v, depth + 1) for v in x]}
    if t is bytes:
        return {"\x00b": x.hex()}
    if t is complex:
        return {"\x00c": [x.real, x.imag]}
    if getattr(t, "__module__", None) == "numpy" and hasattr(x, "tolist"):
        return _enc(x.tolist(), depth + 1)
    # Subclasses of builtin types (Counter, OrderedDict, namedtuple, IntEnum, ...) cross as their base type,
    # read through the base type's own methods, so an overridden __eq__ never reaches the checker.
    if isinstance(x, bool):
        return bool(int.__int__(x))
    if isinstance(x, int):
        return int.__int__(x)
    if isinstance(x, float):
        return float.__float__(x)
    if isinstance(x, str):
        return str.__str__(x)
    if isinstance(x, dict):
        return _enc(dict(dict.items(x)), depth + 1)
    if isinstance(x, list):
        return _enc(list.copy(x), depth + 1)
    if isinstance(x, tuple):
        return _enc(tuple.__getitem__(x, slice(None)), depth + 1)
    if isinstance(x, frozenset):
        return _enc(frozenset.copy(x) if type(frozenset.copy(x)) is frozenset else frozenset(list(frozenset.__iter__(x))), depth + 1)
    if isinstance(x, set):
        return _enc(set(list(set.__iter__(x))), depth + 1)
    raise Unencodable("a value of type " + t.__name__ + " cannot be checked outside the sandbox")

def _dec_hook(o):
    if len(o) != 1:
        return o
    (k, v), = o.items()
    if not k.startswith("\x00"):
        return o
    if k == "\x00l":
        return list(v)
    if k == "\x00t":
        return tuple(v)
    if k == "\x00d":
        return {_hashable(a): b for a, b in v}
    if k == "\x00s":
        return set(_hashable(a) for a in v)
    if k == "\x00f":
        return frozenset(_hashable(a) for a in v)
    if k == "\x00b":
        return bytes.fromhex(v)
    if k == "\x00c":
        return complex(float(v[0]), float(v[1]))
    raise ValueError("malformed value")

def _hashable(a):
    hash(a)
    return a

def encode(x):
    return _json.dumps(_enc(x), separators=(",", ":")).encode("utf-8")

def decode(b):
    return _json.loads(b.decode("utf-8"), object_hook=_dec_hook)

def _read_exact(fd, n, read):
    parts = []
    while n > 0:
        chunk = read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("channel closed")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)

def recv_frame(fd, read, limit):
    head = _read_exact(fd, 4, read)
    n = int.from_bytes(head, "big")
    if n > limit:
        raise EOFError("message too large")
    return _read_exact(fd, n, read)

def send_frame(fd, data, write):
    data = len(data).to_bytes(4, "big") + data
    while data:
        n = write(fd, data)
        data = data[n:]
`;

/**
 * Candidate runtime (inside the sandbox). argv[1]: JSON limits. fd 0: frames from the checker, fd 1: frames
 * to it; both are moved to private descriptors and 0/1/2 point to /dev/null before untrusted code runs.
 */
export const CANDIDATE_SOURCE =
  CODEC +
  String.raw`
import os, resource
_cfg = _json.loads(_sys.argv[1])
del _sys.argv[1:]
_rd, _wr = os.dup(0), os.dup(1)
_nul = os.open(os.devnull, os.O_RDWR)
for _fd in (0, 1, 2):
    os.dup2(_nul, _fd)
os.close(_nul)
_read, _write = os.read, os.write

def _lim(which, value):
    if value is None:
        return
    try:
        resource.setrlimit(which, (int(value), int(value)))
    except (ValueError, OSError):
        pass

_lim(resource.RLIMIT_CORE, 0)
_lim(resource.RLIMIT_AS, _cfg["memoryBytes"])
_lim(resource.RLIMIT_CPU, _cfg["cpuSeconds"])
_lim(resource.RLIMIT_FSIZE, _cfg["fileSizeBytes"])
_lim(resource.RLIMIT_NPROC, _cfg["maxProcesses"])
_lim(resource.RLIMIT_NOFILE, _cfg["maxOpenFiles"])

def _send(obj):
    send_frame(_wr, _json.dumps(obj, separators=(",", ":")).encode("utf-8"), _write)

def _exc(e):
    try:
        args = _enc(e.args)
    except BaseException:
        args = None
    try:
        msg = str(e)
    except BaseException:
        msg = type(e).__name__
    return {"exc": [type(e).__name__, args, msg]}

_send({"hello": True})
_program = recv_frame(_rd, _read, 1 << 30).decode("utf-8")

# openai/human-eval swallow_io(): output goes nowhere, reading stdin raises OSError.
import io, builtins, faulthandler, shutil, subprocess, tempfile
# The reference has used tempfile (its TemporaryDirectory) before the guard, so tempfile's cached temp dir
# is known and mkstemp() works after os.unlink is gone.
tempfile.gettempdir()
class _WriteOnly(io.StringIO):
    def read(self, *a, **k):
        raise IOError
    def readline(self, *a, **k):
        raise IOError
    def readlines(self, *a, **k):
        raise IOError
    def readable(self, *a, **k):
        return False
_sink = _WriteOnly()
_sys.stdout = _sys.stderr = _sys.stdin = _sink

# openai/human-eval reliability_guard() (the same names set to None); the kernel sandbox is the real boundary.
faulthandler.disable()
os.environ["OMP_NUM_THREADS"] = "1"
builtins.exit = None
builtins.quit = None
for _n in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
           "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
           "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"):
    if hasattr(os, _n):
        setattr(os, _n, None)
shutil.rmtree = None
shutil.move = None
shutil.chown = None
subprocess.Popen = None
builtins.help = None
for _n in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
    _sys.modules[_n] = None

_g = {}
try:
    exec(_program, _g)
except BaseException as _e:
    _send(_exc(_e))
    _sys.exit(0)
del _program

_names = {}
for _k, _v in list(_g.items()):
    if _k.startswith("__"):
        continue
    if type(_v).__name__ == "module":
        _names[_k] = ["m", getattr(_v, "__name__", "")]
    elif callable(_v):
        _names[_k] = ["f"]
    else:
        try:
            _names[_k] = ["v", _enc(_v)]
        except BaseException:
            pass
_send({"names": _names})

while True:
    try:
        _req = _json.loads(recv_frame(_rd, _read, 1 << 30).decode("utf-8"), object_hook=_dec_hook)
    except EOFError:
        break
    try:
        _f = _g[_req["call"]]
        _r = _f(*_req["args"], **_req["kwargs"])
        _out = {"ok": _enc(_r)}
    except BaseException as _e:
        _out = _exc(_e)
    _send(_out)
`;

/**
 * Checker (outside the sandbox, one per worker). stdin: one JSON job per line
 * `{"code", "setup", "test", "expose", "timeout", "startup", "argv", "argvKey", "prestart"}`; stdout: one JSON verdict
 * per line `{"result": "passed" | "timed out" | "failed: ..."}`. It keeps `prestart` candidate sandboxes started ahead.
 */
export const CHECKER_SOURCE =
  CODEC +
  String.raw`
import os, signal, subprocess, builtins, importlib, tempfile, shutil

class TimeoutException(Exception):
    pass

class CandidateGone(Exception):
    pass

class SandboxBroken(Exception):
    pass

class CandidateError(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self._msg = msg
    def __str__(self):
        return self._msg

def _on_alarm(signum, frame):
    raise TimeoutException("Timed out!")

signal.signal(signal.SIGALRM, _on_alarm)

# Modules a candidate's globals may bring into the test (MBPP asserts use e.g. math.isclose): importing them in
# the checker has no side effects. Anything else the candidate imported stays in the sandbox.
_SAFE_MODULES = {"math", "cmath", "re", "string", "collections", "collections.abc", "itertools", "functools",
                 "heapq", "bisect", "operator", "statistics", "fractions", "decimal", "random", "datetime", "time",
                 "typing", "copy", "array", "numbers", "json", "hashlib", "textwrap", "unicodedata", "calendar",
                 "struct", "sys", "os", "os.path", "enum", "dataclasses", "string", "cmath", "itertools", "regex"}
_MAX_REPLY = 64 << 20

class Candidate:
    def __init__(self, argv, isolated):
        # Inside bwrap the working directory is the sandbox's private /tmp; without a sandbox (--unsafe-no-sandbox)
        # each candidate at least gets a fresh directory of its own, as the reference's TemporaryDirectory.
        self.dir = None if isolated else tempfile.mkdtemp(prefix="llama-pro-cand-")
        env = None if isolated else dict(os.environ, HOME=self.dir, TMPDIR=self.dir)
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  close_fds=True, start_new_session=True, cwd=self.dir or "/", env=env)
        self.wfd = self.p.stdin.fileno()
        self.rfd = self.p.stdout.fileno()
        self.greeted = False

    def recv(self):
        try:
            return _json.loads(recv_frame(self.rfd, os.read, _MAX_REPLY).decode("utf-8"), object_hook=_dec_hook)
        except (EOFError, OSError, ValueError, UnicodeDecodeError, RecursionError, TypeError) as e:
            raise CandidateGone(str(e))

    def send(self, data):
        try:
            send_frame(self.wfd, data, os.write)
        except OSError as e:
            raise CandidateGone(str(e))

    def kill(self):
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.p.kill()
        except OSError:
            pass
        for f in (self.p.stdin, self.p.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.p.wait(timeout=5)
        except Exception:
            pass
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

def _exception(payload):
    name, args, msg = payload
    cls = getattr(builtins, name, None) if isinstance(name, str) else None
    if isinstance(cls, type) and issubclass(cls, BaseException) and isinstance(args, tuple):
        try:
            e = cls(*args)
            if str(e) == msg:
                return e
        except BaseException:
            pass
    return CandidateError(msg if isinstance(msg, str) else "")

def _proxy(cand, name):
    def call(*args, **kwargs):
        cand.send(_json.dumps({"call": name, "args": _enc(list(args)), "kwargs": _enc(dict(kwargs))},
                              separators=(",", ":")).encode("utf-8"))
        r = cand.recv()
        if isinstance(r, dict) and "ok" in r:
            return r["ok"]
        if isinstance(r, dict) and "exc" in r:
            raise _exception(r["exc"])
        raise CandidateGone("malformed reply")
    call.__name__ = name
    call.__qualname__ = name
    return call

def _install(g, cand, names, expose, calls):
    if not isinstance(names, dict):
        raise CandidateGone("malformed names")
    wanted = expose if expose is not None else list(names.keys())
    for k in wanted:
        v = names.get(k)
        if not isinstance(k, str) or not isinstance(v, list) or not v:
            if expose is not None:
                g.pop(k, None)
            continue
        # The names come from the sandbox: none may shadow a builtin the test relies on (abs, isinstance, ...)
        # or a dunder such as __builtins__.
        # (the dataset's own function names, "calls", may: MBPP's task 126 defines sum()).
        if expose is None and (k.startswith("__") or (hasattr(builtins, k) and k not in calls) or not k.isidentifier()):
            continue
        if v[0] == "f":
            g[k] = _proxy(cand, k)
        elif v[0] == "m" and expose is None:
            m = v[1] if len(v) > 1 else ""
            if isinstance(m, str) and m in _SAFE_MODULES and k in (m, m.split(".")[-1]):
                g[k] = importlib.import_module(m)
        elif v[0] == "v" and len(v) > 1 and expose is None:
            g[k] = v[1]

def _setup(src, g):
    # HumanEval's setup is the prompt, which ends in a signature plus docstring; a prompt that ends at the
    # colon gets a body so its helpers still load.
    try:
        code = compile(src, "<setup>", "exec")
    except SyntaxError:
        try:
            code = compile(src + "\n    pass\n", "<setup>", "exec")
        except SyntaxError:
            return
    exec(code, g)

_isolated = True

def _spawn(argv):
    return Candidate(argv, _isolated)

_spares = []
# The verdict channel: private copies of fd 0/1; the test code's own output goes to /dev/null.
_inp = os.fdopen(os.dup(0), "rb")
_out = os.fdopen(os.dup(1), "wb")
_nul = os.open(os.devnull, os.O_RDWR)
for _fd in (0, 1):
    os.dup2(_nul, _fd)
os.close(_nul)
import io
_sink = io.StringIO()
_sys.stdout = _sys.stderr = _sink
_sys.stdin = io.StringIO()
_saved_stdio = (_sys.stdout, _sys.stderr, _sys.stdin)
while True:
    line = _inp.readline()
    if not line:
        break
    job = _json.loads(line)
    argv = job["argv"]
    _isolated = job.get("isolated", True) is not False
    for _s in [x for x in _spares if x.argv_key != job["argvKey"]]:
        _s.kill()
        _spares.remove(_s)
    cand = _spares.pop(0) if _spares else _spawn(argv)
    result = "timed out"
    broken = None
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, float(job["startup"]))
            hello = cand.recv()
            signal.setitimer(signal.ITIMER_REAL, 0)
        except (TimeoutException, CandidateGone) as e:
            raise SandboxBroken("the sandboxed interpreter did not start (" + (str(e) or "no greeting in time") + ")")
        if not (isinstance(hello, dict) and hello.get("hello") is True):
            raise SandboxBroken("the sandboxed interpreter did not start (bad greeting)")
        # Sandboxes started ahead hide namespace set-up latency (mostly the network namespace).
        while len(_spares) < int(job.get("prestart", 0)):
            _n = _spawn(argv)
            _n.argv_key = job["argvKey"]
            _spares.append(_n)
        cand.send(job["code"].encode("utf-8"))
        g = {}
        signal.setitimer(signal.ITIMER_REAL, float(job["timeout"]))
        try:
            names = cand.recv()
            if isinstance(names, dict) and "exc" in names:
                raise _exception(names["exc"])
            if not (isinstance(names, dict) and "names" in names):
                raise CandidateGone("malformed names")
            if job.get("setup"):
                _setup(job["setup"], g)
            _install(g, cand, names["names"], job.get("expose"), set(job.get("calls") or ()))
            exec(job["test"], g)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        result = "passed"
    except SandboxBroken as e:
        # Nothing untrusted has run yet: this is the sandbox failing, not a verdict.
        broken = str(e)
    except TimeoutException:
        result = "timed out"
    except CandidateGone:
        # The candidate process died or stopped talking (os._exit, a kill, a crash): openai/human-eval
        # finds no result then and reports "timed out".
        result = "timed out"
    except BaseException as e:
        try:
            result = "failed: " + str(e)
        except BaseException:
            result = "failed: " + type(e).__name__
    finally:
        cand.kill()
        _sys.stdout, _sys.stderr, _sys.stdin = _saved_stdio
        _sink.seek(0)
        _sink.truncate()
    _out.write((_json.dumps({"error": broken} if broken else {"result": result}) + "\n").encode("utf-8"))
    _out.flush()

for _s in _spares:
    _s.kill()
`;
