"""What this CPU can really run, found by trying it in a child process once per machine.

These machines differ between sessions (an AMD EPYC with AVX-512 VNNI one day, an Intel Xeon reporting AMX the
next), and a flag in /proc/cpuinfo is a claim, not a guarantee: in a virtual machine an instruction can be
reported and still fault. So each kernel whose speed or exactness depends on the instruction set is tried in a
child process (a crash costs the child, never the caller) on inputs whose exact answer is known, and the verdict
is kept under the cache, per CPU model, flags and torch version.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

from ..errors import BigLittleError
from ..files import cache_dir, read_json, write_text_atomically

KEYS = ("int8", "int8_8bit", "int8_onednn", "bf16", "int4")  # what the probe below says

# The child's checks. With VNNI, fbgemm sums u8 x s8 products exactly in 32 bits, so 8-bit activations are exact;
# without, it adds pairs of products in 16 bits, which saturates: extreme activations and weights show which.
# torch's int4 kernel (bf16 activations) must give the exact sums of small numbers, rounded once to bf16, over two
# groups of 32 and two blocks of output channels (64 + 48 on AVX-512), and the same rows alone as 16 together.
# oneDNN's int8 product must give fbgemm's exact sums, times the weight scale, for the activations fbgemm sums
# exactly here (8-bit or 7-bit), and the same rows alone as 16 together: then the two kernels are interchangeable.
PROBE = r"""
import json, warnings, torch
warnings.simplefilter("ignore")
result = {"int8": False, "int8_8bit": False, "int8_onednn": False, "bf16": False, "int4": False}
try:
    g = torch.Generator().manual_seed(0)
    weight = torch.randint(-127, 128, (64, 256), generator=g).float()
    weight[:, :8] = 127.0
    q = torch.quantize_per_channel(weight, torch.ones(64, dtype=torch.double), torch.zeros(64, dtype=torch.long),
                                   0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(q, None)
    for activation_max, key in ((63, "int8"), (127, "int8_8bit")):
        x = torch.randint(-activation_max, activation_max + 1, (4, 256), generator=g).float()
        x[:, :8] = activation_max
        out = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(x, 1.0, activation_max + 1, packed)
        result[key] = bool(torch.equal(out, (x.double() @ weight.double().t()).float()))
except Exception:
    pass
try:
    activation_max = 127 if result["int8_8bit"] else 63
    scale = 2.0 ** torch.randint(-8, 0, (64,), generator=g).float()
    packed = torch.ops.onednn.qlinear_prepack(weight.to(torch.int8), None)
    x = torch.randint(-activation_max, activation_max + 1, (16, 256), generator=g).float()
    x[:, :8] = activation_max
    def onednn(rows):
        return torch.ops.onednn.qlinear_pointwise((rows + activation_max + 1).to(torch.uint8), 1.0,
            activation_max + 1, packed, scale, torch.zeros(64, dtype=torch.long), None, 1.0, 0, torch.float32,
            "none", [], "")
    together = onednn(x)
    alone = torch.cat([onednn(x[i : i + 1]) for i in range(16)])
    exact = (x.double() @ weight.double().t()).float() * scale
    result["int8_onednn"] = bool(result["int8"] and torch.equal(together, exact) and torch.equal(alone, exact))
except Exception:
    pass
try:
    a = torch.randn(8, 256).bfloat16()
    result["bf16"] = bool(torch.isfinite(torch.nn.functional.linear(a, torch.randn(128, 256).bfloat16())).all())
except Exception:
    pass
try:
    g = torch.Generator().manual_seed(1)
    q = torch.randint(0, 16, (112, 64), generator=g, dtype=torch.int32)
    scale = 2.0 ** torch.randint(-1, 2, (2, 112), generator=g)
    zero = torch.randint(-3, 4, (2, 112), generator=g).float()
    weight = ((q.reshape(112, 2, 32) - 8) * scale.t().unsqueeze(-1) + zero.t().unsqueeze(-1)).reshape(112, 64)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
    scales_and_zeros = torch.stack([scale, zero], dim=-1).bfloat16()
    x = torch.randint(-2, 3, (16, 64), generator=g).bfloat16()
    out = torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, 32, scales_and_zeros)
    exact = torch.equal(out, (x.double() @ weight.double().t()).float().bfloat16())
    x = torch.randn(16, 64, generator=g).bfloat16()
    together = torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, 32, scales_and_zeros)
    alone = torch.cat([torch.ops.aten._weight_int4pack_mm_for_cpu(x[i : i + 1], packed, 32, scales_and_zeros)
                       for i in range(16)])
    result["int4"] = bool(exact and torch.equal(together, alone))
except Exception:
    pass
print(json.dumps(result))
"""


def cpu_flags() -> set[str]:
    """The flags /proc/cpuinfo reports (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine_key() -> str:
    identity = "|".join([cpu_model(), " ".join(sorted(cpu_flags())), torch.__version__, sys.version])
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


@functools.cache
def capabilities() -> dict[str, bool]:
    """{"int8": fbgemm's int8 kernel runs exactly with 7-bit activations, "int8_8bit": with 8-bit ones (VNNI),
    "int8_onednn": oneDNN's int8 kernel gives the same exact results, batch-invariantly, "bf16": a bf16 matrix
    product runs, "int4": torch's int4 kernel runs exactly and batch-invariantly}, tried in a child process on first
    use and kept per machine (a record from before a key was added is tried again)."""
    path = cache_dir() / "cpu" / f"{_machine_key()}.json"
    try:
        stored = read_json(path)
    except BigLittleError:  # a damaged record: try again
        stored = None
    if stored is not None and set(KEYS) <= set(stored):
        return stored
    found = _probe()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps(found))
    except OSError:
        pass  # an unwritable cache: try again next time
    return found


def _probe() -> dict[str, bool]:
    try:
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            return {key: bool(value) for key, value in json.loads(done.stdout.strip().splitlines()[-1]).items()}
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        pass
    return dict.fromkeys(KEYS, False)  # the child crashed: nothing is known to run
