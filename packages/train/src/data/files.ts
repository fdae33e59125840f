/** Input discovery: a file, or a directory walked recursively (sorted) and filtered by a glob. */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { DataError } from '../errors';

/**
 * Converts a glob (`*` within a path segment, `**` across segments, `?`, `{a,b}`) to a RegExp
 * matched against '/'-separated paths relative to the directory.
 */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        const slash = glob[i + 2] === '/';
        re += slash ? '(?:.*/)?' : '.*';
        i += slash ? 2 : 1;
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '{') {
      const end = glob.indexOf('}', i);
      if (end < 0) throw new DataError(`glob "${glob}" has an unclosed "{"`, 'DATA_GLOB');
      re += '(?:' + glob.slice(i + 1, end).split(',').map(escapeRe).join('|') + ')';
      i = end;
    } else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`);
}

function escapeRe(s: string): string {
  return s.replace(/[.+^${}()|[\]\\*?]/g, '\\$&');
}

async function walk(dir: string, rel: string, out: string[]): Promise<void> {
  const entries = await fsp.readdir(path.join(dir, rel), { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) await walk(dir, r, out);
    else if (e.isFile()) out.push(r);
  }
}

/** The input files for `input` (a file or a directory filtered by `glob`), in a deterministic order. */
export async function listInputFiles(input: string, glob: string): Promise<string[]> {
  let st;
  try {
    st = await fsp.stat(input);
  } catch {
    throw new DataError(`data path ${input} does not exist`, 'DATA_MISSING');
  }
  if (st.isFile()) return [input];
  if (!st.isDirectory()) throw new DataError(`data path ${input} is neither a file nor a directory`, 'DATA_MISSING');
  const all: string[] = [];
  await walk(input, '', all);
  const re = globToRegExp(glob);
  const files = all.filter((r) => re.test(r)).map((r) => path.join(input, r));
  if (files.length === 0) throw new DataError(`no file under ${input} matches "${glob}"; set data.glob (e.g. "**/*.txt")`, 'DATA_EMPTY');
  return files;
}
