"""What this CPU really runs: tried in a child process once per machine, kept, and obeyed by int8 and auto."""

import json

import pytest
import torch

from biglittle.runtime import cpu
from biglittle.runtime.models import load_model
from biglittle.runtime.quantize import Int8Linear, fastest_precision, int8_problem


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A private cache and no remembered verdict."""
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path))
    cpu.capabilities.cache_clear()
    yield tmp_path
    cpu.capabilities.cache_clear()


def test_the_probe_runs_the_kernels_in_a_child_and_says_what_works():
    found = cpu._probe()
    assert set(found) == set(cpu.KEYS) == {"int8", "int8_8bit", "int8_onednn", "bf16", "int4"}
    assert found["int8"] == ("fbgemm" in torch.backends.quantized.supported_engines)


def test_the_verdict_is_kept_per_machine_and_a_damaged_record_is_tried_again(fresh, monkeypatch):
    calls = []
    verdict = {"int8": True, "int8_8bit": False, "int8_onednn": False, "bf16": True, "int4": True}
    monkeypatch.setattr(cpu, "_probe", lambda: calls.append(1) or verdict)
    assert cpu.capabilities()["int8_8bit"] is False
    cpu.capabilities.cache_clear()
    assert cpu.capabilities() == verdict and len(calls) == 1  # from disk
    (record,) = (fresh / "cpu").glob("*.json")
    record.write_text("{not json")
    cpu.capabilities.cache_clear()
    cpu.capabilities()
    assert len(calls) == 2 and json.loads(record.read_text())["int8"] is True
    record.write_text(json.dumps({"int8": True, "int8_8bit": False, "bf16": True}))  # from before int4 was tried
    cpu.capabilities.cache_clear()
    assert cpu.capabilities() == verdict and len(calls) == 3


def test_a_child_that_crashes_leaves_nothing_claimed(fresh, monkeypatch):
    monkeypatch.setattr(cpu, "PROBE", "import os, signal; os.kill(os.getpid(), signal.SIGILL)")
    assert cpu.capabilities() == dict.fromkeys(cpu.KEYS, False)


def test_int8_and_auto_obey_the_verdict(fresh, monkeypatch, tiny_models):
    model = load_model(tiny_models["llama_target"]).model
    monkeypatch.setattr(cpu, "_probe", lambda: dict.fromkeys(cpu.KEYS, False))
    assert "do not run correctly on this CPU" in int8_problem(model)
    assert fastest_precision(model) == "fp32"  # neither int8 nor bf16 is tried


def test_seven_bit_activations_where_eight_do_not_sum_exactly(fresh, monkeypatch):
    monkeypatch.setattr(
        cpu, "_probe", lambda: {"int8": True, "int8_8bit": False, "int8_onednn": False, "bf16": True, "int4": True}
    )
    layer = Int8Linear.from_float(torch.randn(32, 64), None)
    assert (layer.activation_max, layer.zero_point) == (63, 64)
    rows = torch.randn(5, 64)
    together = layer(rows)
    assert torch.equal(together, torch.cat([layer(rows[i : i + 1]) for i in range(5)]))  # still batch-invariant
    reference = rows @ layer.weight.t()
    assert (together - reference).norm() / reference.norm() < 0.05  # 7 bits: ~1% error
