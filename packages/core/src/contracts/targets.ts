/**
 * The padded-targets contract every backend implements identically.
 *
 * A target at (b, t) is *counted* iff it is not IGNORE_INDEX and position (b, t) is a real token
 * (attentionMask absent or 1 there). Uncounted targets — IGNORE_INDEX, and any target at a padding
 * position, whatever its value — contribute nothing:
 * - `tokenLogprobs` returns exactly 0 at uncounted positions;
 * - `loss` is the mean negative log-probability over counted targets, `tokens` their number;
 * - gradients are those of that mean; a batch with no counted target is refused.
 * Counted targets must lie in [0, vocabSize) (checked by model/validate `checkTargets`). Logits at
 * padding positions are unspecified.
 */
export const IGNORE_INDEX = -100;

/** 1 where the target counts (see the contract above), else 0; and how many count. */
export function countedTargets(targets: ArrayLike<number>, attentionMask?: ArrayLike<number>): { counted: Uint8Array; count: number } {
  const counted = new Uint8Array(targets.length);
  let count = 0;
  for (let i = 0; i < targets.length; i++) {
    if (targets[i] === IGNORE_INDEX || (attentionMask && attentionMask[i] === 0)) continue;
    counted[i] = 1;
    count++;
  }
  return { counted, count };
}
