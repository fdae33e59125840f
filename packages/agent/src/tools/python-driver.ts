/**
 * The REPL driver run by `python3 -I -c`: sets rlimits and an audit-hook policy, then executes cells
 * in one persistent namespace. Protocol: one JSON request per line on fd 3 (`{"code": ...}`), one JSON
 * reply per line on fd 4 (`{"output", "error", "dropped"}`); `{"ready": true}` once set up. stdout and
 * stderr of a cell are captured (interleaved, capped); a trailing expression's repr is shown as in a
 * REPL. stdin is closed.
 */
export const PYTHON_DRIVER = String.raw`
import sys, os, json, ast, builtins, traceback, resource
_cfg = json.loads(sys.argv[1])
del sys.argv[1:]

# Started as root: become the throw-away uid before anything else (rlimits then bind, files are the kernel's to guard).
if _cfg.get('uid') is not None:
    os.setgroups([])
    os.setgid(_cfg['gid'])
    os.setuid(_cfg['uid'])

def _lim(which, value):
    try:
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY and value > hard:
            value = hard
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass

def _user_procs():
    uid = os.getuid()
    n = 0
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                if os.stat('/proc/' + d).st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n

_lim(resource.RLIMIT_AS, _cfg['memory'])
_lim(resource.RLIMIT_CPU, _cfg['cpu'])
_lim(resource.RLIMIT_FSIZE, _cfg['fsize'])
_lim(resource.RLIMIT_CORE, 0)
try:
    _lim(resource.RLIMIT_NPROC, _user_procs() + _cfg['extraProcs'])
except OSError:
    pass

_req = os.fdopen(3, 'rb', buffering=0)
_rep = os.fdopen(4, 'wb', buffering=0)
_lim(resource.RLIMIT_NOFILE, _cfg['nofile'])

_CWD = os.path.realpath(os.getcwd())
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def _inside(p):
    if isinstance(p, int) or p is None:
        return True
    try:
        rp = os.path.realpath(os.fsdecode(p))
    except Exception:
        return False
    return rp == _CWD or rp.startswith(_CWD + os.sep)

_PATH_EVENTS = {'os.remove', 'os.rmdir', 'os.mkdir', 'os.rename', 'os.replace', 'os.chmod', 'os.chown',
                'os.symlink', 'os.link', 'os.truncate', 'os.utime', 'shutil.rmtree', 'shutil.move',
                'shutil.copyfile', 'shutil.copytree', 'os.mkfifo', 'os.mknod'}
_PROC_EVENTS = {'os.system', 'os.exec', 'os.posix_spawn', 'os.spawn', 'subprocess.Popen', 'os.fork',
                'os.forkpty', 'pty.spawn', 'os.kill', 'os.killpg'}
_NET_EVENTS = {'socket.connect', 'socket.bind', 'socket.sendto', 'socket.sendmsg'}
_allow_net = bool(_cfg.get('allowNetwork'))

def _secret_proc(p):
    try:
        rp = os.path.realpath(os.fsdecode(p))
    except Exception:
        return True
    return rp.startswith('/proc/') and (rp.endswith('/environ') or rp.endswith('/mem') or rp.endswith('/auxv'))

def _hook(event, args):
    if event == 'open':
        path, mode, flags = args
        write = (isinstance(mode, str) and any(c in mode for c in 'wax+')) or bool((flags or 0) & _WRITE_FLAGS)
        if path is not None and not isinstance(path, int) and _secret_proc(path):
            raise PermissionError('sandbox: reading process environments or memory is not allowed')
        if write and not _inside(path):
            raise PermissionError('sandbox: writing outside the working directory is not allowed: %r' % (path,))
    elif event in _PATH_EVENTS:
        for a in args:
            if isinstance(a, (str, bytes, os.PathLike)) and not _inside(a):
                raise PermissionError('sandbox: changing files outside the working directory is not allowed: %r' % (a,))
    elif event in _PROC_EVENTS:
        raise PermissionError('sandbox: starting or signalling processes is not allowed')
    elif event in _NET_EVENTS and not _allow_net:
        raise PermissionError('sandbox: network access is not allowed')
    elif event == 'ctypes.dlopen' and args and args[0] is not None:
        raise PermissionError('sandbox: loading native libraries with ctypes is not allowed')
    elif event in ('ctypes.dlsym', 'ctypes.dlsym/handle', 'ctypes.cdata'):
        raise PermissionError('sandbox: ctypes symbol and memory access is not allowed')

class _Capture:
    encoding = 'utf-8'
    errors = 'replace'
    def __init__(self, limit):
        self.parts = []
        self.size = 0
        self.dropped = 0
        self.limit = limit
    def write(self, s):
        if not isinstance(s, str):
            raise TypeError('write() argument must be str, not ' + type(s).__name__)
        room = self.limit - self.size
        if room > 0:
            self.parts.append(s[:room])
            self.size += min(len(s), room)
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)
    def writelines(self, lines):
        for l in lines:
            self.write(l)
    def flush(self):
        pass
    def isatty(self):
        return False
    def fileno(self):
        raise OSError('captured stream has no file descriptor')

_ns = {'__name__': '__main__', '__builtins__': builtins}
sys.stdin = open(os.devnull, 'r')
sys.addaudithook(_hook)

def _run(code, cap):
    tree = ast.parse(code, '<cell>', 'exec')
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, '<cell>', 'exec'), _ns)
    if last is not None:
        value = eval(compile(last, '<cell>', 'eval'), _ns)
        if value is not None:
            cap.write(repr(value) + '\n')

def _send(obj):
    _rep.write((json.dumps(obj) + '\n').encode('utf-8'))

_send({'ready': True})
_buf = b''
while True:
    while b'\n' not in _buf:
        chunk = _req.read(65536)
        if not chunk:
            sys.exit(0)
        _buf += chunk
    line, _buf = _buf.split(b'\n', 1)
    req = json.loads(line)
    cap = _Capture(_cfg['captureChars'])
    old = (sys.stdout, sys.stderr)
    sys.stdout = sys.stderr = cap
    error = False
    try:
        _run(req['code'], cap)
    except BaseException as e:
        error = True
        if isinstance(e, SyntaxError):
            cap.write(''.join(traceback.format_exception_only(type(e), e)))
        else:
            tb = e.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename != '<cell>':
                tb = tb.tb_next
            cap.write(''.join(traceback.format_exception(type(e), e, tb)))
    finally:
        sys.stdout, sys.stderr = old
    try:
        sys.__stdout__.flush()
        sys.__stderr__.flush()
    except Exception:
        pass
    _send({'output': ''.join(cap.parts), 'error': error, 'dropped': cap.dropped})
`;
