/**
 * The user-facing CLI reference (docs/cli.md), generated from commander's own definitions so it cannot
 * drift from `--help`: every command and subcommand with its usage, description, arguments and options
 * (defaults included). Regenerate with `npm run docs:cli`; test/cli-reference.test.ts fails when the
 * committed file differs. `knownFlags` serves the README check (every flag an example uses exists).
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Command } from 'commander';
import { buildProgram } from './main';
import { EXIT } from './exit-codes';

/** A table cell: pipes escaped, one line, the home directory written as ~ (defaults computed from it stay machine-independent). */
const cell = (s: string): string => s.split(os.homedir()).join('~').replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** Commands in definition order, depth first, with their full names (`eval compare`). */
export function listCommands(program: Command): { name: string; cmd: Command }[] {
  const out: { name: string; cmd: Command }[] = [];
  const walk = (c: Command, prefix: string): void => {
    for (const sub of c.commands) {
      const name = prefix ? `${prefix} ${sub.name()}` : sub.name();
      out.push({ name, cmd: sub });
      walk(sub, name);
    }
  };
  walk(program, '');
  return out;
}

/** The Markdown reference for `program` (default: the llama-pro program). */
export function cliReference(program: Command = buildProgram()): string {
  const help = program.createHelp();
  const lines: string[] = [
    '# llama-pro command reference',
    '',
    '<!-- Generated from the commander definitions by `npm run docs:cli` (packages/cli/src/reference.ts); do not edit by hand. -->',
    '',
    program.description(),
    '',
    'Run any command as `npx llama-pro <command>`, `npm run llama-pro -- <command>` or `node packages/cli/dist/bin.js <command>`.',
    'Every model argument also takes a Hugging Face hub id `org/name[@revision]` (resolved through the local cache; see the README).',
    '',
    `Exit codes: ${EXIT.OK} success, ${EXIT.INPUT} input / data error, ${EXIT.USAGE} usage error, ${EXIT.INTERRUPTED} interrupted (Ctrl-C).`,
    '',
    '| command | what it does |',
    '|---|---|',
  ];
  const cmds = listCommands(program);
  for (const { name, cmd } of cmds) lines.push(`| [\`${name}\`](#${name.replace(/ /g, '-')}) | ${cell(cmd.description())} |`);
  for (const { name, cmd } of cmds) {
    lines.push('', `## ${name}`, '', cmd.description(), '', '```', help.commandUsage(cmd), '```');
    const args = help.visibleArguments(cmd);
    if (args.length) {
      lines.push('', '| argument | description |', '|---|---|');
      for (const a of args) lines.push(`| \`${help.argumentTerm(a)}\` | ${cell(help.argumentDescription(a))} |`);
    }
    const opts = help.visibleOptions(cmd);
    if (opts.length) {
      lines.push('', '| option | description |', '|---|---|');
      for (const o of opts) lines.push(`| \`${cell(help.optionTerm(o))}\` | ${cell(help.optionDescription(o))} |`);
    }
  }
  return lines.join('\n') + '\n';
}

/** Long flags each command accepts (its own plus --help), keyed by full command name. */
export function knownFlags(program: Command = buildProgram()): Map<string, Set<string>> {
  const m = new Map<string, Set<string>>();
  for (const { name, cmd } of listCommands(program)) {
    const flags = new Set<string>(['--help']);
    for (const o of cmd.options) {
      if (o.long) flags.add(o.long);
      if (o.negate && o.long) flags.add(o.long);
    }
    m.set(name, flags);
  }
  return m;
}

/**
 * Problems with the `llama-pro ...` examples of a Markdown text (inline spans and `npm run llama-pro -- ...`
 * lines): an unknown command, or a flag the command does not define. Empty when all is well.
 */
export function exampleProblems(text: string, flags: Map<string, Set<string>> = knownFlags()): { examples: number; problems: string[] } {
  const examples = [...text.matchAll(/`llama-pro ([^`]+)`/g)].map((m) => m[1]!).concat([...text.matchAll(/npm run llama-pro -- ([^\n&|`]+)/g)].map((m) => m[1]!));
  const problems: string[] = [];
  let n = 0;
  for (const ex of examples) {
    const words = ex.trim().split(/\s+/);
    if (words[0]!.startsWith('<')) continue; // the generic `llama-pro <command>` form
    n++;
    const name = flags.has(`${words[0]} ${words[1]}`) ? `${words[0]} ${words[1]}` : words[0]!;
    const known = flags.get(name);
    if (!known) {
      problems.push(`"llama-pro ${ex}": no command "${words[0]}"`);
      continue;
    }
    for (const w of ex.matchAll(/(?:^|[\s[(|])(--[a-z][a-z0-9-]*)/g)) if (!known.has(w[1]!)) problems.push(`"llama-pro ${ex}": ${name} has no ${w[1]}`);
  }
  return { examples: n, problems };
}

/** `node packages/cli/dist/reference.js [out.md]` writes the reference (default docs/cli.md at the repo root). */
if (require.main === module) {
  const out = process.argv[2] ?? path.join(__dirname, '..', '..', '..', 'docs', 'cli.md');
  fsp.writeFile(out, cliReference()).then(
    () => process.stdout.write(`wrote ${out}\n`),
    (e: unknown) => {
      process.stderr.write(`cannot write ${out}: ${(e as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
