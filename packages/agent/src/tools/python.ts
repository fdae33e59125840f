/**
 * The `python` tool: runs code in the session's persistent interpreter, a PythonSession from
 * @llama-pro/sandbox (the one sandbox for all untrusted code, shared with eval's code tasks).
 */
import type { z } from 'zod';
import { PythonSession, type PythonRunResult, type PythonSessionOptions } from '@llama-pro/sandbox';
import { PYTHON_DEFAULTS } from '../constants';
import { defineTool, type AgentTool, type ToolOutput } from './tool';

export { PythonSession, SandboxError, truncateOutput, type PythonRunResult, type PythonSessionOptions } from '@llama-pro/sandbox';

export interface PythonToolOptions extends PythonSessionOptions {
  name?: string;
}

/** Formats a run as the observation the model sees. */
export function pythonObservation(r: PythonRunResult): string {
  const note = r.restarted ? '[The previous Python session was lost; this code ran in a fresh session without earlier variables.]\n' : '';
  const out = r.output.length > 0 ? r.output.replace(/\n$/, '') : '[Executed successfully with no output]';
  return note + out;
}

let codeSchema: z.ZodObject<{ code: z.ZodString }> | undefined;

/** The tool's parameter schema, built on first use (zod loads then; see toolParametersSchema). */
function codeParameters(): z.ZodObject<{ code: z.ZodString }> {
  if (!codeSchema) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { z: zod } = require('zod') as typeof import('zod');
    codeSchema = zod.object({ code: zod.string().describe('Python source to run') });
  }
  return codeSchema;
}

/** The `python` tool: runs code in the session's persistent sandboxed interpreter. */
export function createPythonTool(options: PythonToolOptions = {}): AgentTool<{ code: string }> {
  const name = options.name ?? 'python';
  const timeoutMs = options.timeoutMs ?? PYTHON_DEFAULTS.timeoutMs;
  return defineTool({
    name,
    description: 'Runs Python 3 code in a persistent interpreter (variables survive between calls) and returns what it prints and the value of a trailing expression.',
    get parameters() {
      return codeParameters();
    },
    // The session kills the interpreter at `timeoutMs`; the loop's own guard fires only if that fails.
    timeoutMs: timeoutMs + 5000,
    async execute({ code }, ctx): Promise<ToolOutput> {
      const session = ctx.session.resource(`python:${name}`, () => new PythonSession(options));
      const r = await session.run(code, { signal: ctx.signal });
      return { output: pythonObservation(r), isError: r.error, timedOut: r.timedOut };
    },
  });
}
