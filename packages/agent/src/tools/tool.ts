/**
 * Tools: named plugins (TOKENS.AgentTool) with a zod parameter schema. The JSON Schema shown to
 * models and to the OpenAI API is derived from the zod schema.
 */
import type { z } from 'zod';
import type { Named } from '@llama-pro/core';
import type { ToolSpec } from '../messages';

/** Per-run state shared by tools (e.g. the persistent Python interpreter), disposed when the run ends. */
export class AgentSession {
  private readonly resources = new Map<string, { dispose(): void | Promise<void> }>();

  /** The resource stored under `key`, created on first use. */
  resource<T extends { dispose(): void | Promise<void> }>(key: string, create: () => T): T {
    let r = this.resources.get(key);
    if (!r) {
      r = create();
      this.resources.set(key, r);
    }
    return r as T;
  }

  async dispose(): Promise<void> {
    const all = [...this.resources.values()];
    this.resources.clear();
    await Promise.all(all.map(async (r) => r.dispose()));
  }
}

export interface ToolContext {
  readonly signal: AbortSignal;
  readonly session: AgentSession;
}

/** What a tool returns: the observation text, and flags the loop reports. */
export interface ToolOutput {
  readonly output: string;
  /** The tool failed (the text says why); the model sees it as an observation. */
  readonly isError?: boolean;
  readonly timedOut?: boolean;
  /** Ask the loop to end with finishReason "stop". */
  readonly stop?: boolean;
}

export interface AgentTool<A = unknown> extends Named {
  readonly name: string;
  readonly description: string;
  readonly parameters: z.ZodType<A>;
  /** Overrides the loop's per-call timeout. */
  readonly timeoutMs?: number;
  execute(args: A, context: ToolContext): Promise<ToolOutput | string>;
}

/** A typed tool definition (infers the argument type from the zod schema). */
export function defineTool<S extends z.ZodType>(tool: {
  name: string;
  description: string;
  parameters: S;
  timeoutMs?: number;
  execute(args: z.infer<S>, context: ToolContext): Promise<ToolOutput | string>;
}): AgentTool<z.infer<S>> {
  return tool as AgentTool<z.infer<S>>;
}

/** The JSON Schema of a tool's parameters (draft 2020-12, without the `$schema` key). */
export function toolParametersSchema(tool: Pick<AgentTool, 'parameters'>): Record<string, unknown> {
  // zod is required here, not at module load: commands that register tools but never list or run them (eval, train)
  // skip its ~50 ms load (its classic entry compiles every locale).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { z } = require('zod') as typeof import('zod');
  const schema = z.toJSONSchema(tool.parameters, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete schema['$schema'];
  return schema;
}

/** The OpenAI-style description of a tool. */
export function toolSpec(tool: AgentTool): ToolSpec {
  return { type: 'function', function: { name: tool.name, description: tool.description, parameters: toolParametersSchema(tool) } };
}
