/** Counters for `GET /metrics` in the Prometheus text exposition format (version 0.0.4). */
export class ServerMetrics {
  requests = new Map<string, number>();
  promptTokens = 0;
  generationTokens = 0;

  countRequest(route: string, status: number): void {
    const key = `${route} ${status}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  /** The exposition text; `queue` and `running` are read at scrape time. */
  render(model: string, gauges: { waiting: number; running: number }): string {
    const label = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
    const m = `model_name="${label(model)}"`;
    const lines = [
      '# HELP llama_pro_requests_total HTTP requests served, by route and status.',
      '# TYPE llama_pro_requests_total counter',
      ...[...this.requests].sort().map(([k, n]) => {
        const [route, status] = k.split(' ');
        return `llama_pro_requests_total{${m},route="${label(route!)}",status="${status}"} ${n}`;
      }),
      '# HELP llama_pro_prompt_tokens_total Prompt tokens processed.',
      '# TYPE llama_pro_prompt_tokens_total counter',
      `llama_pro_prompt_tokens_total{${m}} ${this.promptTokens}`,
      '# HELP llama_pro_generation_tokens_total Tokens generated.',
      '# TYPE llama_pro_generation_tokens_total counter',
      `llama_pro_generation_tokens_total{${m}} ${this.generationTokens}`,
      '# HELP llama_pro_requests_waiting Requests waiting for the model.',
      '# TYPE llama_pro_requests_waiting gauge',
      `llama_pro_requests_waiting{${m}} ${gauges.waiting}`,
      '# HELP llama_pro_requests_running Requests on the model now.',
      '# TYPE llama_pro_requests_running gauge',
      `llama_pro_requests_running{${m}} ${gauges.running}`,
    ];
    return lines.join('\n') + '\n';
  }
}
