/**
 * The Python side of the sandbox: a small runner that the sandbox starts as `python3 -I -B runner.py cfg.json`.
 * It reads and deletes its config (program, nonce, limits), keeps a private copy of stdout for the result line,
 * sends the program's own stdout/stderr to /dev/null, sets rlimits, drops privileges (when started as root),
 * applies openai/human-eval's `reliability_guard()` plus an audit hook that refuses writes outside the working
 * directory, sockets, process creation, signals to other processes, ctypes and other processes' /proc files,
 * then `exec`s the program under a SIGALRM timer as `human_eval/execution.py` does. Only a line that carries
 * the nonce counts as a result, so `exit(0)`, `os._exit(0)` or a crash can never look like a pass.
 */
export const RUNNER_SOURCE = String.raw`
import sys, os, json, signal

def _sandbox_main():
    cfg_path = sys.argv[1]
    with open(cfg_path, "rb") as f:
        cfg = json.loads(f.read().decode("utf-8"))
    os.unlink(cfg_path)
    nonce = cfg["nonce"]
    program = cfg["program"]
    timeout = float(cfg["timeout"])
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)

    def report(status):
        try:
            os.write(out_fd, (nonce + " " + json.dumps(status) + "\n").encode("utf-8"))
        except Exception:
            pass

    import resource
    def limit(which, soft, hard=None):
        if soft is None:
            return
        try:
            resource.setrlimit(which, (int(soft), int(hard if hard is not None else soft)))
        except (ValueError, OSError):
            pass
    limit(resource.RLIMIT_CORE, 0)
    limit(resource.RLIMIT_AS, cfg.get("memoryBytes"))
    limit(resource.RLIMIT_DATA, cfg.get("memoryBytes"))
    limit(resource.RLIMIT_CPU, cfg.get("cpuSeconds"), (cfg.get("cpuSeconds") or 0) + 1)
    limit(resource.RLIMIT_FSIZE, cfg.get("fileSizeBytes"))
    limit(resource.RLIMIT_NPROC, cfg.get("maxProcesses"))
    limit(resource.RLIMIT_NOFILE, cfg.get("maxOpenFiles"))
    uid = cfg.get("uid")
    if uid is not None:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        except OSError as e:
            report("failed: sandbox could not drop privileges: " + str(e))
            os._exit(3)

    cwd0 = os.path.realpath(os.getcwd())
    own_pid = str(os.getpid())
    realpath = os.path.realpath
    fspath = os.fspath
    isabs = os.path.isabs
    join = os.path.join
    sep = os.sep

    def resolve(p):
        p = fspath(p)
        if isinstance(p, bytes):
            p = p.decode("utf-8", "surrogateescape")
        if not isabs(p):
            p = join(cwd0, p)
        return realpath(p)

    def inside(p):
        r = resolve(p)
        return r == cwd0 or r.startswith(cwd0 + sep)

    def deny(what):
        raise PermissionError("sandbox: " + what + " is not allowed")

    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    PATH_EVENTS = {"os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.symlink", "os.link", "os.chmod",
                   "os.chown", "os.truncate", "os.utime", "os.setxattr", "os.removexattr", "os.chflags",
                   "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.copytree", "shutil.move",
                   "shutil.rmtree", "shutil.make_archive", "shutil.chown", "shutil.unpack_archive"}
    DENY_EVENTS = {"os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "os.kill",
                   "os.killpg", "os.startfile", "subprocess.Popen", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym",
                   "ctypes.cdata", "ctypes.call_function", "socket.__new__", "socket.bind", "socket.connect",
                   "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.sendto",
                   "socket.sendmsg", "socket.sethostname", "os.chroot", "os.setuid", "os.setgid"}
    DENY_IMPORTS = {"ctypes", "_ctypes", "_posixsubprocess", "cffi", "_xxsubinterpreters"}

    def path_args(args):
        for a in args:
            if isinstance(a, (str, bytes)) or hasattr(a, "__fspath__"):
                yield a

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int) or path is None:
                return
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & WRITE_FLAGS)
            if writing and not inside(path):
                deny("writing " + repr(path))
            r = resolve(path)
            if r.startswith("/proc/"):
                part = r.split("/")[2]
                if part not in ("self", "thread-self", own_pid) and (part.isdigit() or part in ("kcore", "kmsg")):
                    deny("reading " + r)
                if r.endswith("/environ") or r.endswith("/mem"):
                    deny("reading " + r)
        elif event in DENY_EVENTS:
            deny(event)
        elif event == "import":
            name = args[0]
            if isinstance(name, str) and name.split(".")[0] in DENY_IMPORTS:
                deny("import of " + name)
        elif event in PATH_EVENTS:
            for a in path_args(args):
                if not inside(a):
                    deny(event + " on " + repr(a))

    # openai/human-eval reliability_guard(), same names.
    import faulthandler, builtins, shutil, subprocess
    faulthandler.disable()
    os.environ["OMP_NUM_THREADS"] = "1"
    sys.addaudithook(hook)
    builtins.exit = None
    builtins.quit = None
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
                 "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
                 "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"):
        if hasattr(os, name):
            setattr(os, name, None)
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    subprocess.Popen = None
    builtins.help = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None

    class TimeoutException(Exception):
        pass

    def on_alarm(signum, frame):
        raise TimeoutException("Timed out!")

    signal.signal(signal.SIGALRM, on_alarm)
    status = "timed out"
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            exec(program, {})
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        status = "passed"
    except TimeoutException:
        status = "timed out"
    except BaseException as e:
        try:
            status = "failed: " + str(e)
        except BaseException:
            status = "failed: " + type(e).__name__
    report(status)
    os._exit(0)

_sandbox_main()
`;
