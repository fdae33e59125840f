/**
 * Code execution for HumanEval / MBPP lives in @llama-pro/sandbox (one sandbox for all untrusted code, shared
 * with the agent's python tool): bubblewrap namespaces, and verdicts from a checker outside the sandbox.
 */
export {
  DEFAULT_SANDBOX_LIMITS,
  PythonSandbox,
  SandboxError,
  type CheckJob,
  type CodeSandbox,
  type ExecutionResult,
  type ExecutionStatus,
  type PythonSandboxOptions,
  type RunAllOptions,
  type SandboxInfo,
  type SandboxLimits,
} from '@llama-pro/sandbox';
