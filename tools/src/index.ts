/** @llama-pro/tools: benchmarks, synthetic checkpoint generator and report scripts (not published). */
export {};
