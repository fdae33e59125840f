/** `llama-pro agent --task "..."`: runs the agent loop (tools, action parser) with a local model. */
import type { Command } from 'commander';
import { UsageError, writeFileAtomic } from '@llama-pro/core';
import { AGENT_DEFAULTS, AgentError, LocalChatModel, MINT_SYSTEM_PROMPT, agentRegistries, createPythonTool, runAgent, type TraceEvent } from '@llama-pro/agent';
import { buildContainer } from '../container';
import { noteInterrupted } from '../exit-codes';
import { BACKEND_OPTION_HELP, DEFAULT_BACKEND } from '../backend-option';
import { TEMPLATE_OPTION_HELP, intOption, loadChatModel, numberOption } from './serve';

interface AgentOpts {
  model: string;
  task: string;
  backend?: string;
  template?: string;
  protocol: string;
  tools?: string[];
  system?: string;
  maxTurns: string;
  tokenBudget?: string;
  maxTokens: string;
  temperature: string;
  seed?: string;
  trace?: string;
  json?: boolean;
  python?: string;
  unsafeNoSandbox?: boolean;
  plugin?: string[];
}

function describe(e: TraceEvent): string | null {
  switch (e.type) {
    case 'model':
      return `--- turn ${e.turn} (${e.completionTokens} tokens, ${e.finishReason}) ---\n${e.text}`;
    case 'tool':
      return `[${e.name}${e.timedOut ? ', timed out' : e.isError ? ', error' : ''}]\n${e.observation}`;
    case 'observation':
      return e.text;
    case 'end':
      return `--- finished: ${e.finishReason} ---`;
    default:
      return null;
  }
}

export function registerAgent(program: Command): void {
  program
    .command('agent')
    .description('Run an agent on a task: the model acts through tools (the sandboxed python tool by default) until it answers')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .requiredOption('--task <text>', 'the task, as the first user message')
    .option('--backend <name[:variant]>', BACKEND_OPTION_HELP, DEFAULT_BACKEND)
    .option('--template <name>', TEMPLATE_OPTION_HELP, 'auto')
    .option('--protocol <name>', 'action parser: mint (<execute>/<solution> tags) or json-tool-calls', 'mint')
    .option('--tools <name...>', 'tools to offer (default: all registered, i.e. python)')
    .option('--system <text>', 'system prompt (default: the MINT instructions for --protocol mint)')
    .option('--max-turns <n>', 'model turns before stopping', String(AGENT_DEFAULTS.maxTurns))
    .option('--token-budget <n>', "prompt + reply tokens any turn may use (default: the model's context window, max_position_embeddings)")
    .option('--max-tokens <n>', 'new tokens per turn', String(AGENT_DEFAULTS.maxTokensPerTurn))
    .option('--temperature <t>', 'sampling temperature; 0 = greedy', String(AGENT_DEFAULTS.temperature))
    .option('--seed <n>', 'random seed for sampling')
    .option('--trace <file>', 'write the full result (messages, trace, usage) as JSON')
    .option('--json', 'print the result as one JSON object instead of the readable transcript')
    .option('--python <exe>', 'interpreter for the python tool (default python3)')
    .option('--unsafe-no-sandbox', 'run the python tool without isolation where bubblewrap/user namespaces are unavailable (it can read your files and environment)')
    .option('--plugin <module...>', 'extra plugin modules (tools, parsers, templates) to load')
    .action(async (opts: AgentOpts) => {
      const maxTurns = intOption('--max-turns', opts.maxTurns, 1)!;
      const budgetFlag = intOption('--token-budget', opts.tokenBudget, 1);
      const maxTokensPerTurn = intOption('--max-tokens', opts.maxTokens, 1)!;
      const temperature = numberOption('--temperature', opts.temperature, (x) => x >= 0, 'a number >= 0');
      const seed = intOption('--seed', opts.seed, 0);
      if (!opts.task.trim()) throw new UsageError('--task is empty; say what the agent should do');
      const container = await buildContainer(opts.plugin ?? []);
      const { parsers, tools: allTools } = agentRegistries(container);
      const parser = parsers.get(opts.protocol);
      const listed = opts.tools ? opts.tools.map((n) => allTools.get(n)) : allTools.list();
      const custom = opts.python !== undefined || opts.unsafeNoSandbox === true;
      const tools = custom ? listed.map((t) => (t.name === 'python' ? createPythonTool({ executable: opts.python, unsafeNoSandbox: opts.unsafeNoSandbox === true }) : t)) : listed;
      const loaded = await loadChatModel(container, opts.model, { backend: opts.backend, template: opts.template });
      try {
        const model = new LocalChatModel(loaded.model, loaded.tokenizer, loaded.template, { id: loaded.id });
        const context = model.contextLength;
        if (budgetFlag !== undefined && budgetFlag > context) process.stderr.write(`llama-pro: --token-budget ${budgetFlag} exceeds the model's ${context}-token context; turns stop at ${context}\n`);
        const tokenBudget = Math.min(budgetFlag ?? context, context);
        const system = opts.system ?? (parser.name === 'mint' ? MINT_SYSTEM_PROMPT : undefined);
        const ctl = new AbortController();
        const onInt = (): void => ctl.abort();
        process.once('SIGINT', onInt);
        const result = await runAgent({
          model,
          parser,
          tools,
          task: opts.task,
          system,
          maxTurns,
          tokenBudget,
          maxTokensPerTurn,
          temperature,
          seed,
          signal: ctl.signal,
          onEvent: opts.json
            ? undefined
            : (e) => {
                const line = describe(e);
                if (line !== null) process.stderr.write(`${line}\n`);
              },
        }).finally(() => process.off('SIGINT', onInt));
        if (result.finishReason === 'aborted') noteInterrupted();
        if (opts.trace) await writeFileAtomic(opts.trace, JSON.stringify(result, null, 2) + '\n');
        if (opts.json) process.stdout.write(JSON.stringify({ finishReason: result.finishReason, answer: result.answer, turns: result.turns, usage: result.usage, ...(result.detail ? { detail: result.detail } : {}), trace: result.trace }) + '\n');
        else process.stdout.write(`${result.answer ?? `(no answer: ${result.finishReason}${result.detail ? ` — ${result.detail}` : ''})`}\n`);
        // A prompt that never fit is an input problem, not an outcome of the run: exit 1 and say so.
        if (result.finishReason === 'length' && result.usage.completionTokens === 0) throw new AgentError(result.detail ?? 'the prompt does not fit the model context', 'PROMPT_TOO_LONG');
      } finally {
        await loaded.dispose();
      }
    });
}
