/**
 * The tape that drives the training graph's backward pass (src/grad/tape.ts): which VJPs run, which
 * input gradients they are asked for, and how several gradient contributions to one tensor are summed.
 * Ops here are stand-ins that log their calls; the numerical VJPs are checked by train-graph.test.ts and
 * train-graph-arch.test.ts.
 */
import { GraphBuilder } from '../src/graph';
import { Tape, type OpGrad } from '../src/grad';

interface Call {
  readonly kind: string;
  readonly dys: readonly (string | undefined)[];
  readonly needs: readonly boolean[];
}

function fakeOp(kind: string, calls: Call[]): OpGrad<null> {
  return {
    kind,
    gradFunc(_g, dys, _saved, needs) {
      calls.push({ kind, dys, needs });
      return needs.map((n, i) => (n ? `d(${kind}.${i})` : undefined));
    },
  };
}

describe('Tape', () => {
  it('differentiates only what depends on a watched tensor, asking each VJP for the needed inputs only', () => {
    const g = new GraphBuilder();
    const tape = new Tape(g);
    const calls: Call[] = [];
    tape.watch('w');
    // frozen prefix: x0 -> x1 (no watched input: not recorded, never differentiated)
    tape.record(fakeOp('prefix', calls), ['x0', 'c0'], ['x1'], null);
    // y = A(x1, w); z = B(y, c1); loss = C(z, x1)
    tape.record(fakeOp('A', calls), ['x1', 'w'], ['y'], null);
    tape.record(fakeOp('B', calls), ['y', 'c1'], ['z'], null);
    tape.record(fakeOp('C', calls), ['z', 'x1'], ['loss'], null);
    expect(['x1', 'y', 'z', 'loss'].map((t) => tape.requiresGrad(t))).toEqual([false, true, true, true]);
    const grads = tape.backward('loss', 'one');
    expect(calls).toEqual([
      { kind: 'C', dys: ['one'], needs: [true, false] },
      { kind: 'B', dys: ['d(C.0)'], needs: [true, false] },
      { kind: 'A', dys: ['d(B.0)'], needs: [false, true] },
    ]);
    expect([...grads]).toEqual([['w', ['d(A.1)']]]);
    expect(g.nodes).toEqual([]); // single contributions need no sum
  });

  it('sums several contributions to one tensor once, before its producer\'s VJP runs', () => {
    const g = new GraphBuilder();
    const tape = new Tape(g);
    const calls: Call[] = [];
    tape.watch('w');
    tape.record(fakeOp('P', calls), ['w'], ['h'], null);
    tape.record(fakeOp('U1', calls), ['h'], ['a'], null);
    tape.record(fakeOp('U2', calls), ['h'], ['b'], null);
    tape.record(fakeOp('U3', calls), ['h', 'a', 'b'], ['loss'], null);
    const grads = tape.backward('loss', 'one');
    expect(calls.map((c) => c.kind)).toEqual(['U3', 'U2', 'U1', 'P']);
    expect(g.nodes.map((n) => [n.opType, n.input])).toEqual([['Sum', ['d(U3.0)', 'd(U2.0)', 'd(U1.0)']]]);
    expect(calls[3]!.dys).toEqual([g.nodes[0]!.output![0]]);
    expect(grads.get('w')).toEqual(['d(P.0)']);
  });

  it('leaves a watched tensor the root does not depend on without a gradient, and skips ops no gradient reaches', () => {
    const g = new GraphBuilder();
    const tape = new Tape(g);
    const calls: Call[] = [];
    tape.watch('w');
    tape.watch('unused');
    tape.record(fakeOp('A', calls), ['w'], ['y', 'side'], null);
    tape.record(fakeOp('S', calls), ['side'], ['dead'], null);
    tape.record(fakeOp('L', calls), ['y'], ['loss'], null);
    const grads = tape.backward('loss', 'one');
    expect(calls.map((c) => [c.kind, c.dys])).toEqual([
      ['L', ['one']],
      ['A', ['d(L.0)', undefined]],
    ]);
    expect(grads.has('unused')).toBe(false);
  });
});
