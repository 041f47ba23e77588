#!/usr/bin/env bash
# The GPU check (docs/testing.md): the exactness tests with the tiny pairs on a CUDA GPU (greedy identity, trees,
# BiLD, sampling), then the default pair's costs there from its shapes (scripts/profile_shapes.py, random weights:
# a GPU lent without network cannot reach the weights). CI has no GPU; run it where one is, with biglittle's
# requirements installed:  scripts/gpu_check.sh [OUTDIR]
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the scripts import biglittle from this checkout
out=${1:-gpu-check}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
timeout 360 python3 -m pytest -q -p no:cacheprovider --device cuda --junitxml "$out/tests.xml" \
    tests/test_speculative.py tests/test_trees.py tests/test_bild.py 2>&1 | tee "$out/tests.log" | tail -40
shapes=scripts/shapes
timeout 120 python3 scripts/profile_shapes.py "$shapes/qwen2.5-coder-1.5b-instruct/config.json" \
    "$shapes/qwen2.5-coder-0.5b-instruct/config.json" --device cuda --dtype bf16 --out "$out/profile-bf16.json"
