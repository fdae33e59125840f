import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ByteTokenizer } from '@llama-pro/core';
import { BatchStream, DocumentFile, docsFileOf, type DataOptions, SequenceFile, epochOrder, globToRegExp, listInputFiles, prepareData, TRAIN_TOKENS, VAL_TOKENS } from '../src';

const tok = new ByteTokenizer(300);
let tmp: string;
beforeEach(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'train-data-'));
});
afterEach(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

const opts = (p: string, o: Partial<DataOptions> = {}): DataOptions => ({ path: p, format: 'auto', glob: '**/*', textSplit: 'file', field: 'text', idsDtype: 'int32', valFraction: 0, bos: true, ...o });
const readTokens = async (f: string) => [...new Int32Array((await fsp.readFile(f)).buffer.slice(0))];

describe('data pipeline', () => {
  it('packs documents with BOS/EOS between them (text files, byte tokens)', async () => {
    await fsp.writeFile(path.join(tmp, 'a.txt'), 'hi\nyo');
    await fsp.writeFile(path.join(tmp, 'b.txt'), 'ok');
    const d = await prepareData(path.join(tmp, 'out'), opts(tmp, { glob: '*.txt' }), tok, 0);
    const b = (s: string) => [...Buffer.from(s)].map((x) => x + 3);
    expect(await readTokens(path.join(d.dir, TRAIN_TOKENS))).toEqual([1, ...b('hi\nyo'), 2, 1, ...b('ok'), 2]);
    expect(d.train.documents).toBe(2);
    // Sequences: windows of seqLen + 1 with stride seqLen.
    const sf = await SequenceFile.open(path.join(d.dir, TRAIN_TOKENS), 4);
    expect(sf.numSequences).toBe(2); // 12 tokens → floor(11 / 4)
    expect([...(await sf.read(1))]).toEqual([b('y')[0], b('o')[0], 2, 1, b('o')[0]]);
    await sf.close();
    // Documents from their start, padded with ignored targets.
    const df = await DocumentFile.open(path.join(d.dir, TRAIN_TOKENS), docsFileOf(path.join(d.dir, TRAIN_TOKENS)), 6);
    expect(df.numDocuments).toBe(2);
    const doc1 = await df.read(1);
    expect([...doc1.ids]).toEqual([1, ...b('ok'), 2, 0, 0]);
    expect([...doc1.targets]).toEqual([...b('ok'), 2, -100, -100, -100]);
    const doc0 = await df.read(0);
    expect([...doc0.ids]).toEqual([1, ...b('hi\nyo')]);
    expect([...doc0.targets]).toEqual([...b('hi\nyo'), 2]);
    await df.close();
  });

  it('JSONL field, line and paragraph splits, id files', async () => {
    await fsp.writeFile(path.join(tmp, 'x.jsonl'), '{"q":"a"}\n\n{"q":[10,11]}\n');
    let d = await prepareData(path.join(tmp, 'o1'), opts(path.join(tmp, 'x.jsonl'), { field: 'q', bos: false }), tok, 0);
    expect(await readTokens(path.join(d.dir, TRAIN_TOKENS))).toEqual([100, 2, 10, 11, 2]);
    await expect(prepareData(path.join(tmp, 'o2'), opts(path.join(tmp, 'x.jsonl'), { field: 'text' }), tok, 0)).rejects.toThrow(/field "text"/);
    await fsp.writeFile(path.join(tmp, 'p.txt'), 'a\nb\n\nc\n');
    d = await prepareData(path.join(tmp, 'o3'), opts(path.join(tmp, 'p.txt'), { textSplit: 'paragraph', bos: false }), tok, 0);
    expect(await readTokens(path.join(d.dir, TRAIN_TOKENS))).toEqual([100, 13, 101, 2, 102, 2]);
    d = await prepareData(path.join(tmp, 'o4'), opts(path.join(tmp, 'p.txt'), { textSplit: 'line', bos: false }), tok, 0);
    expect(d.train.documents).toBe(3);
    const ids = new Int32Array([5, 6, 2, 7, 8]);
    await fsp.writeFile(path.join(tmp, 'c.i32'), Buffer.from(ids.buffer));
    d = await prepareData(path.join(tmp, 'o5'), opts(path.join(tmp, 'c.i32'), { bos: false }), tok, 0);
    expect(await readTokens(path.join(d.dir, TRAIN_TOKENS))).toEqual([5, 6, 2, 7, 8, 2]);
    expect(d.train.documents).toBe(2);
    const bad = new Int32Array([5, 999]);
    await fsp.writeFile(path.join(tmp, 'bad.i32'), Buffer.from(bad.buffer));
    await expect(prepareData(path.join(tmp, 'o6'), opts(path.join(tmp, 'bad.i32')), tok, 0)).rejects.toThrow(/outside the vocabulary/);
  });

  it('streams id files across read chunks and write buffers exactly (int32 and uint16)', async () => {
    // The extension decides the width (the option says the opposite here).
    // 400k tokens: more than one 1 MiB read chunk and several 64 Ki-token write buffers; EOS every 1000.
    const n = 400_000;
    const ids = Int32Array.from({ length: n }, (_, i) => (i % 1000 === 999 ? 2 : 3 + ((i * 7919) % 290)));
    await fsp.writeFile(path.join(tmp, 'big.i32'), Buffer.from(ids.buffer));
    await fsp.writeFile(path.join(tmp, 'big.u16'), Buffer.from(Uint16Array.from(ids).buffer));
    for (const [file, idsDtype] of [
      ['big.i32', 'int32'],
      ['big.u16', 'uint16'],
    ] as const) {
      const d = await prepareData(path.join(tmp, `o-${idsDtype}`), opts(path.join(tmp, file), { bos: false, idsDtype: idsDtype === 'uint16' ? 'int32' : 'uint16' }), tok, 0);
      expect(d.train.documents).toBe(400);
      const got = new Int32Array((await fsp.readFile(path.join(d.dir, TRAIN_TOKENS))).buffer.slice(0));
      expect(got.length).toBe(n);
      expect(Buffer.from(got.buffer).equals(Buffer.from(ids.buffer))).toBe(true);
    }
  });

  it('splits documents into train/validation deterministically by seed', async () => {
    const lines = Array.from({ length: 200 }, (_, i) => `doc ${i}`).join('\n');
    await fsp.writeFile(path.join(tmp, 'l.txt'), lines);
    const o = opts(path.join(tmp, 'l.txt'), { textSplit: 'line', valFraction: 0.2 });
    const a = await prepareData(path.join(tmp, 's1'), o, tok, 7);
    const b = await prepareData(path.join(tmp, 's2'), o, tok, 7);
    const c = await prepareData(path.join(tmp, 's3'), o, tok, 8);
    expect(a.val.documents + a.train.documents).toBe(200);
    expect(a.val.documents).toBeGreaterThan(20);
    expect(a.val.documents).toBeLessThan(60);
    const va = await readTokens(path.join(a.dir, VAL_TOKENS));
    expect(await readTokens(path.join(b.dir, VAL_TOKENS))).toEqual(va);
    expect(await readTokens(path.join(c.dir, VAL_TOKENS))).not.toEqual(va);
    // The same preparation is reused (fingerprint match), not redone.
    const st = await fsp.stat(path.join(a.dir, TRAIN_TOKENS));
    const again = await prepareData(path.join(tmp, 's1'), o, tok, 7);
    expect(again.fingerprint).toBe(a.fingerprint);
    expect((await fsp.stat(path.join(a.dir, TRAIN_TOKENS))).mtimeMs).toBe(st.mtimeMs);
  });

  it('shuffles by seed and epoch, and resumes from a position', async () => {
    const o1 = epochOrder(50, 1, 0, true);
    expect([...o1].sort((x, y) => x - y)).toEqual([...Array(50).keys()]);
    expect([...epochOrder(50, 1, 0, true)]).toEqual([...o1]);
    expect([...epochOrder(50, 1, 1, true)]).not.toEqual([...o1]);
    expect([...epochOrder(50, 2, 0, true)]).not.toEqual([...o1]);
    expect([...epochOrder(5, 1, 0, false)]).toEqual([0, 1, 2, 3, 4]);

    const ids = Int32Array.from({ length: 101 }, (_, i) => 3 + (i % 250));
    await fsp.writeFile(path.join(tmp, 't.tokens'), Buffer.from(ids.buffer));
    const sf = await SequenceFile.open(path.join(tmp, 't.tokens'), 10);
    const straight = new BatchStream(sf, 3, true);
    const seen: number[][] = [];
    for (let i = 0; i < 7; i++) seen.push([...(await straight.next(3)).ids]);
    const first = new BatchStream(sf, 3, true);
    for (let i = 0; i < 4; i++) await first.next(3);
    const resumed = new BatchStream(sf, 3, true, first.position);
    expect(first.position).toEqual({ epoch: 1, cursor: 2 });
    for (let i = 4; i < 7; i++) expect([...(await resumed.next(3)).ids]).toEqual(seen[i]);
    await sf.close();
  });

  it('globs and missing inputs', async () => {
    expect(globToRegExp('**/*.txt').test('a/b/c.txt')).toBe(true);
    expect(globToRegExp('**/*.txt').test('c.txt')).toBe(true);
    expect(globToRegExp('*.{md,txt}').test('a/c.txt')).toBe(false);
    expect(globToRegExp('*.{md,txt}').test('c.md')).toBe(true);
    await fsp.mkdir(path.join(tmp, 'sub'));
    await fsp.writeFile(path.join(tmp, 'sub', 'z.txt'), 'z');
    await fsp.writeFile(path.join(tmp, 'a.md'), 'a');
    expect(await listInputFiles(tmp, '**/*.txt')).toEqual([path.join(tmp, 'sub', 'z.txt')]);
    await expect(listInputFiles(tmp, '*.json')).rejects.toThrow(/no file/);
    await expect(listInputFiles(path.join(tmp, 'nope'), '*')).rejects.toThrow(/does not exist/);
  });
});
