/**
 * A small ONNX graph builder over `onnx-proto`: nodes with generated unique output names, typed
 * constants, and float32 initializers that are either embedded (`raw_data`) or stored in an external
 * data file (offset/length entries).
 */
import { onnx } from 'onnx-proto';

export const DT = onnx.TensorProto.DataType;
const AT = onnx.AttributeProto.AttributeType;

export type AttrValue = number | number[] | string | { float: number } | { floats: number[] } | { graph: onnx.IGraphProto };

function attribute(name: string, v: AttrValue): onnx.IAttributeProto {
  if (typeof v === 'string') return { name, type: AT.STRING, s: Buffer.from(v, 'utf8') };
  if (typeof v === 'number') return { name, type: AT.INT, i: v };
  if (Array.isArray(v)) return { name, type: AT.INTS, ints: v };
  if ('float' in v) return { name, type: AT.FLOAT, f: v.float };
  if ('graph' in v) return { name, type: AT.GRAPH, g: v.graph };
  return { name, type: AT.FLOATS, floats: v.floats };
}

/** ONNX Runtime's contrib operator domain (fused CPU kernels: RotaryEmbedding, SkipSimplifiedLayerNormalization). */
export const MS_DOMAIN = 'com.microsoft';

/** A dimension: a fixed size or a symbolic name. */
export type Dim = number | string;

export function valueInfo(name: string, elemType: number, dims: readonly Dim[]): onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

/** Where initializer bytes go: embedded in the model, or appended to an external data file. */
export interface InitializerSink {
  /** Returns the TensorProto fields that locate `bytes` (raw_data, or external_data entries). */
  place(name: string, bytes: Uint8Array): Promise<Partial<onnx.ITensorProto>>;
}

export class EmbeddedSink implements InitializerSink {
  async place(_name: string, bytes: Uint8Array): Promise<Partial<onnx.ITensorProto>> {
    return { rawData: bytes };
  }
}

export class GraphBuilder {
  readonly nodes: onnx.INodeProto[] = [];
  readonly initializers: onnx.ITensorProto[] = [];
  readonly inputs: onnx.IValueInfoProto[] = [];
  readonly outputs: onnx.IValueInfoProto[] = [];
  private counter = 0;
  private readonly constCache = new Map<string, string>();

  constructor(private readonly sink: InitializerSink = new EmbeddedSink()) {}

  /** Adds a node (in `domain`, default the ONNX domain); returns its output names (fresh unique names unless given). */
  op(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, nOutputs = 1, names?: readonly string[], domain?: string): string[] {
    const id = this.counter++;
    const outputs = names ? [...names] : Array.from({ length: nOutputs }, (_, i) => `${opType}_${id}${nOutputs > 1 ? `_${i}` : ''}`);
    this.nodes.push({
      name: `${opType}_${id}`,
      opType,
      ...(domain ? { domain } : {}),
      input: [...inputs],
      output: outputs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outputs;
  }

  /** Replaces node `node` in place by another operator (same position in the graph, so still topologically sorted). */
  rewrite(node: onnx.INodeProto, opType: string, inputs: readonly string[], outputs: readonly string[], attrs: Record<string, AttrValue> = {}, domain?: string): void {
    node.opType = opType;
    node.domain = domain ?? '';
    node.input = [...inputs];
    node.output = [...outputs];
    node.attribute = Object.entries(attrs).map(([k, v]) => attribute(k, v));
  }

  /**
   * A subgraph (an If branch): the nodes `body` adds go into it instead of this graph; they may read any
   * value of the enclosing graph. Its outputs are float32 values of unknown shape.
   */
  branch(name: string, body: () => readonly string[]): onnx.IGraphProto {
    const start = this.nodes.length;
    const outs = body();
    const node = this.nodes.splice(start);
    return { name, node, output: outs.map((o) => ({ name: o, type: { tensorType: { elemType: DT.FLOAT } } })) };
  }

  /** A fresh unique value name. */
  fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  /** Single-output node. */
  op1(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, name?: string): string {
    return this.op(opType, inputs, attrs, 1, name ? [name] : undefined)[0]!;
  }

  /** A small int64 constant (1-D unless `scalar`), deduplicated. */
  i64(values: readonly number[], scalar = false): string {
    const key = `i64:${scalar}:${values.join(',')}`;
    let name = this.constCache.get(key);
    if (!name) {
      name = `const_i64_${this.constCache.size}`;
      this.initializers.push({ name, dataType: DT.INT64, dims: scalar ? [] : [values.length], int64Data: [...values] });
      this.constCache.set(key, name);
    }
    return name;
  }

  /** A small float32 constant (1-D unless `scalar`), deduplicated. */
  f32(values: readonly number[], scalar = false): string {
    const key = `f32:${scalar}:${values.join(',')}`;
    let name = this.constCache.get(key);
    if (!name) {
      name = `const_f32_${this.constCache.size}`;
      this.initializers.push({ name, dataType: DT.FLOAT, dims: scalar ? [] : [values.length], floatData: [...values] });
      this.constCache.set(key, name);
    }
    return name;
  }

  /** A float32 weight initializer; its bytes go to the sink (embedded or external). */
  async weight(name: string, shape: readonly number[], values: Float32Array): Promise<string> {
    const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    const loc = await this.sink.place(name, bytes);
    this.initializers.push({ name, dataType: DT.FLOAT, dims: [...shape], ...loc });
    return name;
  }

  model(opts: { opset: number; producerVersion: string; docString?: string; metadata?: Record<string, string> }): onnx.ModelProto {
    return onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: opts.opset }, ...(usesDomain(this.nodes, MS_DOMAIN) ? [{ domain: MS_DOMAIN, version: 1 }] : [])],
      producerName: 'llama-pro',
      producerVersion: opts.producerVersion,
      docString: opts.docString ?? '',
      metadataProps: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: 'llama',
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
  }
}

/** Whether any node, in subgraphs (If branches) too, is of `domain`. */
function usesDomain(nodes: readonly onnx.INodeProto[], domain: string): boolean {
  return nodes.some((n) => n.domain === domain || (n.attribute ?? []).some((a) => a.g && usesDomain(a.g.node ?? [], domain)));
}

export function encodeModel(model: onnx.ModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}
