"""T(k)/T(1) of a big model and c of a little one from their config.json files alone, with random weights.

A step's cost depends on the models' shapes, not on their weights' values, so this gives a pair's costs on a machine
that cannot reach the weights (a GPU lent without network): `python scripts/profile_shapes.py BIG/config.json
LITTLE/config.json --device cuda --dtype bf16`. Acceptance does depend on the weights: measure it where they are.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from biglittle.cost.profile import measure_profile
from biglittle.runtime.models import DTYPES
from biglittle.runtime.runner import ModelRunner


def random_model(config_file: str, dtype: torch.dtype, device: str) -> ModelRunner:
    config = AutoConfig.from_pretrained(Path(config_file).parent)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    return ModelRunner(model, config.vocab_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target_config")
    parser.add_argument("draft_config")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--max-k", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", help="write the profile here as JSON")
    args = parser.parse_args()
    dtype = DTYPES[args.dtype]
    target = random_model(args.target_config, dtype, args.device)
    draft = random_model(args.draft_config, dtype, args.device)
    profile = measure_profile(target, draft, max_k=args.max_k, repeats=args.repeats)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    step_ms = 1000 * profile.target_step_s
    print(f"{device}, {args.dtype}, random weights: T(1) = {step_ms:.2f} ms, c = {profile.draft_cost:.3f}")
    fixed = [f"{1000 * s:.2f} ms" if s else "-" for s in (profile.target_fixed_s, profile.draft_fixed_s)]
    print(f"fixed part of a step (the same layers with tiny matrices): target {fixed[0]}, draft {fixed[1]}")
    print(f"T(k)/T(1), k = 1..{args.max_k}: " + " ".join(f"{cost:.2f}" for cost in profile.verify_cost))
    if args.out:
        Path(args.out).write_text(json.dumps({"device": device, "dtype": args.dtype, **asdict(profile)}, indent=1))


if __name__ == "__main__":
    main()
