"""Are a model's logits batch-invariant? Scores k new tokens in one pass and one at a time.

After a cache of `--context` random tokens, the logits of k = 4..8 new tokens scored in one
forward pass are compared with those of the same tokens fed one per pass (same cache prefix).
Greedy speculative decoding equals greedy `ar` only when they are equal (torch.equal).

    python scripts/check_batch_invariance.py --precision int8            # the default pair
    python scripts/check_batch_invariance.py --precision fp32 PATH ...
Exit code 0 when every model is invariant, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

import torch

from biglittle.config import PRECISIONS
from biglittle.runtime.fetch import default_pair_dirs
from biglittle.runtime.models import load_model, logit_rows
from biglittle.runtime.quantize import scoring_gap
from biglittle.runtime.runner import ModelRunner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="model directories (default: the default pair)")
    parser.add_argument("--precision", default="int8", choices=PRECISIONS)
    parser.add_argument("--context", type=int, default=64, help="tokens in the cache before the new ones")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = args.models or [str(path) for path in default_pair_dirs()]
    invariant = True
    for path in paths:
        loaded = load_model(path, args.precision)
        runner = ModelRunner(loaded.model, logit_rows(loaded))
        generator = torch.Generator().manual_seed(args.seed)
        ids = torch.randint(0, len(loaded.tokenizer), (args.context + 8,), generator=generator).tolist()
        for k in range(4, 9):
            difference = scoring_gap(runner, ids[: args.context], ids[args.context : args.context + k])
            invariant &= difference == 0.0
            print(
                f"{path} {args.precision} k={k}: "
                + ("identical" if difference == 0.0 else f"max |diff| {difference:.3g}")
            )
        del loaded, runner
    return 0 if invariant else 1


if __name__ == "__main__":
    sys.exit(main())
