/**
 * Python's notion of whitespace, for ports of reference code that calls `str.strip()`, `str.rstrip()` or
 * `re.split(r"\s+", ...)`. Python's `str.isspace()` set (CPython `_PyUnicode_IsWhitespace`: bidirectional type WS, B
 * or S, or category Zs) differs from JavaScript's `\s` / `trim()`: Python includes U+001C..U+001F and U+0085 and
 * excludes U+FEFF, which JavaScript treats the other way round.
 */
const PY_WS_CLASS = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const LEADING = new RegExp(`^[${PY_WS_CLASS}]+`, 'u');
const TRAILING = new RegExp(`[${PY_WS_CLASS}]+$`, 'u');
const RUN = new RegExp(`[${PY_WS_CLASS}]+`, 'gu');
const ONE = new RegExp(`^[${PY_WS_CLASS}]$`, 'u');

/** `str.isspace()` for one character. */
export function isPyWhitespace(ch: string): boolean {
  return ONE.test(ch);
}

/** Python `s.strip()`. */
export function pyStrip(s: string): string {
  return s.replace(LEADING, '').replace(TRAILING, '');
}

/** Python `s.rstrip()`. */
export function pyRstrip(s: string): string {
  return s.replace(TRAILING, '');
}

/** Python `re.split(r"\s+", s)` (str patterns match Unicode whitespace as `str.isspace`). */
export function pySplitWhitespace(s: string): string[] {
  return s.split(RUN);
}
