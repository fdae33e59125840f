/**
 * The REPL driver of PythonSession, run inside the sandbox as `python3 -I -u -c DRIVER CONFIG`: sets rlimits,
 * then executes cells in one persistent namespace. Protocol: one JSON request per line on fd 3
 * (`{"id", "code"}`), one JSON reply per line on fd 4 (`{"id", "output", "error", "dropped"}`); `{"id": "ready"}`
 * once set up. stdout and stderr of a cell are captured (interleaved, capped); a trailing
 * expression's repr is shown as in a REPL. stdin is /dev/null. Isolation is the kernel's (isolation.ts), not
 * this code's: the cell shares this interpreter, so the Node side trusts a reply only as "what this cell
 * printed" and accepts one reply per request, matched by the request's random id.
 */
export const PYTHON_DRIVER = String.raw`
import sys, os, json, ast, builtins, traceback, resource
_cfg = json.loads(sys.argv[1])
del sys.argv[1:]

def _lim(which, value):
    if value is None:
        return
    try:
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY and value > hard:
            value = hard
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass

_lim(resource.RLIMIT_AS, _cfg['memory'])
_lim(resource.RLIMIT_CPU, _cfg['cpu'])
_lim(resource.RLIMIT_FSIZE, _cfg['fsize'])
_lim(resource.RLIMIT_CORE, 0)
_lim(resource.RLIMIT_NPROC, _cfg['nproc'])

_req = os.fdopen(3, 'rb', buffering=0)
_rep = os.fdopen(4, 'wb', buffering=0)
_lim(resource.RLIMIT_NOFILE, _cfg['nofile'])

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

_send({'id': 'ready'})
_buf = b''
while True:
    while b'\n' not in _buf:
        chunk = _req.read(65536)
        if not chunk:
            sys.exit(0)
        _buf += chunk
    line, _buf = _buf.split(b'\n', 1)
    req = json.loads(line)
    rid = req.get('id')
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
    _send({'id': rid, 'output': ''.join(cap.parts), 'error': error, 'dropped': cap.dropped})
`;
