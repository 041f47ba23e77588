"""The llama.cpp peer without llama.cpp: instruction sets chosen from /proc/cpuinfo texts, the build's fallback,
the servers' command lines and requests, a captured server answer parsed, and failures that stay contained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_llamacpp import CRASHING_SERVER, fake_build, requests_seen

from biglittle.errors import BigLittleError
from biglittle.peers import llamacpp_build as build_module
from biglittle.peers.llamacpp_build import (
    AVX2_ONLY,
    PeerUnavailable,
    build_ladder,
    build_llamacpp,
    configure_args,
    cpu_flags,
    describe_exit,
    find_build,
    smoke_test,
)
from biglittle.peers.llamacpp_server import (
    DRAFT_MAX,
    GREEDY,
    NGRAM_SIZE,
    LlamaServer,
    completion_request,
    parse_completion,
    server_command,
)
from biglittle.runtime import fetch

FIXTURES = Path(__file__).parent / "fixtures"

# The flags lines of three machines: the Intel Xeon VM that reports AMX (and faults on it), an AMD EPYC (Zen 4)
# VM, and an AVX2-only Haswell; other /proc/cpuinfo lines trimmed.
XEON_AMX = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse sse2 ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand hypervisor bmi1 avx2 \
smep bmi2 erms avx512f avx512dq rdseed adx avx512ifma clflushopt avx512cd sha_ni avx512bw avx512vl avx_vnni \
avx512_bf16 avx512vbmi avx512_vbmi2 gfni vaes avx512_vnni avx512_bitalg amx_bf16 avx512_fp16 amx_tile amx_int8
"""
EPYC = """model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c bmi1 avx2 bmi2 avx512f avx512dq avx512ifma avx512cd \
avx512bw avx512vl avx512_bf16 avx512vbmi avx512_vbmi2 gfni vaes avx512_vnni avx512_bitalg avx512_vpopcntdq
"""
HASWELL = """model name\t: Intel(R) Xeon(R) CPU E5-2680 v3
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c bmi1 avx2 bmi2
"""
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n"


def test_the_xeon_gets_every_avx512_option_but_never_amx():
    ladder = build_ladder(cpu_flags(XEON_AMX))
    assert ladder[0] == [
        "GGML_SSE42",
        "GGML_AVX",
        "GGML_AVX2",
        "GGML_BMI2",
        "GGML_FMA",
        "GGML_F16C",
        "GGML_AVX_VNNI",
        "GGML_AVX512",
        "GGML_AVX512_VBMI",
        "GGML_AVX512_VNNI",
        "GGML_AVX512_BF16",
    ]
    assert ladder[1] == list(AVX2_ONLY)  # the fallback when the first build dies by a signal
    args = configure_args(Path("src"), Path("build"), ladder[0], "Ninja")
    assert "-DGGML_NATIVE=OFF" in args and "-DGGML_AVX512_VNNI=ON" in args
    for amx in ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16"):
        assert f"-D{amx}=OFF" in args and f"-D{amx}=ON" not in args
    assert args[args.index("-G") + 1] == "Ninja" and "-DLLAMA_USE_PREBUILT_UI=OFF" in args


def test_the_epyc_has_no_avx_vnni_and_a_haswell_no_avx512():
    epyc = build_ladder(cpu_flags(EPYC))[0]
    assert "GGML_AVX512_VNNI" in epyc and "GGML_AVX512_BF16" in epyc and "GGML_AVX_VNNI" not in epyc
    assert build_ladder(cpu_flags(HASWELL)) == [list(AVX2_ONLY)]  # nothing to fall back to
    fallback = configure_args(Path("src"), Path("build"), list(AVX2_ONLY), None)
    assert "-DGGML_AVX512=OFF" in fallback and "-DGGML_AVX512_VNNI=OFF" in fallback and "-G" not in fallback


def test_a_cpu_without_x86_flags_gets_no_x86_options():
    assert build_ladder(cpu_flags(ARM)) == [[]]
    assert build_ladder(cpu_flags("")) == [[]]
    assert all(arg.endswith("=OFF") for arg in configure_args(Path("s"), Path("b"), [], None) if "GGML_AVX" in arg)


def test_a_missing_build_says_how_to_install_it(tmp_path):
    with pytest.raises(PeerUnavailable, match=r"^llama.cpp: not installed \(make peers\)$"):
        find_build(tmp_path)


def test_a_build_for_another_cpu_is_not_used(tmp_path):
    fake_build(tmp_path / "peers" / "llama.cpp", isa=("GGML_AVX2", "GGML_AVX512"))
    assert find_build(tmp_path, XEON_AMX).info["isa"] == ["GGML_AVX2", "GGML_AVX512"]
    with pytest.raises(
        PeerUnavailable, match=r"lacks \(avx512bw, avx512cd, avx512dq, avx512f, avx512vl\); run `make peers`"
    ):
        find_build(tmp_path, HASWELL)


def test_the_build_falls_back_to_avx2_when_the_smoke_test_dies_by_a_signal(tmp_path, monkeypatch):
    """The first build (every option) 'dies' with SIGILL in the smoke test; the AVX2-only one runs and is recorded."""
    compiled = []
    monkeypatch.setattr(build_module, "read_cpuinfo", lambda: XEON_AMX)
    monkeypatch.setattr(build_module, "_check_toolchain", lambda: ("cmake", "Ninja"))
    monkeypatch.setattr(build_module, "_source_tree", lambda root, progress, pip_args: root / "src")
    monkeypatch.setattr(build_module, "tool_version", lambda build: "llama.cpp version: 0 (test)")

    def compile_(cmake, source, build, options, generator, jobs, log, progress):
        compiled.append(list(options))
        if not (build / "bin").exists():
            fake_build(build.parent, write_info=False)

    monkeypatch.setattr(build_module, "_compile", compile_)
    monkeypatch.setattr(
        build_module,
        "smoke_test",
        lambda build, model, threads: "llama-bench killed by SIGILL" if "GGML_AVX512" in build.info["isa"] else None,
    )
    built = build_llamacpp(tmp_path, smoke_model=tmp_path / "draft.gguf", progress=False)
    assert compiled == build_ladder(cpu_flags(XEON_AMX))
    info = json.loads((tmp_path / "peers" / "llama.cpp" / "build.json").read_text())
    assert info["isa"] == list(AVX2_ONLY) == built.info["isa"]
    assert info["tried"] == [{"isa": compiled[0], "failure": "llama-bench killed by SIGILL"}]
    assert "GGML_AVX512=OFF" in " ".join(info["cmake_args"])

    compiled.clear()
    assert build_llamacpp(tmp_path, progress=False).info["isa"] == list(AVX2_ONLY)  # a rerun builds nothing
    assert compiled == []


def test_a_build_that_never_runs_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "read_cpuinfo", lambda: HASWELL)
    monkeypatch.setattr(build_module, "_check_toolchain", lambda: ("cmake", None))
    monkeypatch.setattr(build_module, "_source_tree", lambda root, progress, pip_args: root / "src")
    monkeypatch.setattr(build_module, "_compile", lambda *args: None)
    monkeypatch.setattr(build_module, "smoke_test", lambda *args: "llama-bench killed by SIGSEGV")
    with pytest.raises(
        BigLittleError,
        match=r"does not run here \(llama-bench killed by SIGSEGV\) even with GGML_SSE42, .*GGML_F16C; see .*build.log",
    ):
        build_llamacpp(tmp_path, smoke_model=tmp_path / "m.gguf", progress=False)
    assert not (tmp_path / "peers" / "llama.cpp" / "build.json").exists()


def test_missing_cmake_or_compiler_is_one_line(monkeypatch):
    monkeypatch.setattr(build_module.shutil, "which", lambda name: None)
    with pytest.raises(BigLittleError, match="cmake is not installed"):
        build_module._check_toolchain()
    monkeypatch.setattr(build_module.shutil, "which", lambda name: "/usr/bin/cmake" if name == "cmake" else None)
    with pytest.raises(BigLittleError, match="no C\\+\\+ compiler"):
        build_module._check_toolchain()


def test_the_smoke_test_names_the_signal(tmp_path):
    build = fake_build(tmp_path)
    assert smoke_test(build, tmp_path / "m.gguf", 1) is None  # the fake llama-bench exits 0
    build.tool("llama-bench").write_text(CRASHING_SERVER)
    assert smoke_test(build, tmp_path / "m.gguf", 1) == "llama-bench killed by SIGILL (illegal instruction)"
    assert describe_exit(-11) == "killed by SIGSEGV (segmentation fault)" and describe_exit(3) == "exit status 3"


def test_each_mode_has_its_command_line():
    plain, draft, ngram = (
        server_command(Path("bin/llama-server"), mode, Path("big.gguf"), Path("little.gguf"), 2)
        for mode in ("plain", "draft", "ngram")
    )
    for command in (plain, draft, ngram):
        assert command[:3] == ["bin/llama-server", "--model", "big.gguf"]
        assert " --threads 2 --threads-batch 2 " in " ".join(command) + " "
        assert "--no-cache-prompt" in command and command[command.index("--parallel") + 1] == "1"
        assert command[command.index("--cache-ram") + 1] == "0"
    assert "--spec-type" not in plain and "little.gguf" not in plain
    assert draft[draft.index("--spec-type") + 1] == "draft-simple"
    assert draft[draft.index("--spec-draft-model") + 1] == "little.gguf"
    assert draft[draft.index("--spec-draft-n-max") + 1] == str(DRAFT_MAX)
    assert ngram[ngram.index("--spec-type") + 1] == "ngram-simple" and "little.gguf" not in ngram
    assert ngram[ngram.index("--spec-ngram-simple-size-n") + 1] == str(NGRAM_SIZE)
    assert ngram[ngram.index("--spec-ngram-simple-size-m") + 1] == str(DRAFT_MAX)
    with pytest.raises(ValueError, match="unknown llama.cpp mode"):
        server_command(Path("s"), "lookahead", Path("a"), Path("b"), 1)


def test_the_request_is_greedy_on_the_given_ids():
    request = completion_request([151644, 872, 198], 32)
    assert request["prompt"] == [151644, 872, 198] and request["n_predict"] == 32
    assert request["cache_prompt"] is False and request["return_tokens"] is True and request["stream"] is False
    assert request["temperature"] == 0 and request["top_k"] == 1 and request["repeat_penalty"] == 1
    assert GREEDY.items() <= request.items()


def test_a_captured_server_answer_is_parsed():
    """llama-server's answer to a speculative request, captured by scripts/llamacpp_fixtures.py."""
    captured = json.loads((FIXTURES / "llamacpp_completion.json").read_text())
    completion = parse_completion(captured["response"])
    assert completion.token_ids == captured["response"]["tokens"] and len(completion.token_ids) > 0
    assert completion.stop_type in ("eos", "limit")
    timings = captured["response"]["timings"]
    assert completion.timings["predicted_n"] == timings["predicted_n"]
    assert completion.timings["draft_n"] >= completion.timings["draft_n_accepted"] > 0
    assert completion.reported_s == pytest.approx((timings["prompt_ms"] + timings["predicted_ms"]) / 1000)
    with pytest.raises(ValueError, match="not a completion response"):
        parse_completion({"error": {"code": 500}})


def test_a_server_answers_with_token_ids(tmp_path):
    build = fake_build(tmp_path)
    command = server_command(build.tool("llama-server"), "ngram", tmp_path / "a.gguf", tmp_path / "b.gguf", 1)
    server = LlamaServer(command, tmp_path / "server.log", "llama.cpp n-gram")
    try:
        completion = server.complete([5, 6, 7, 8], 3)  # started on the first request
        assert completion.token_ids == [8, 7, 6] and completion.timings["predicted_ms"] == 100.0
        assert requests_seen(build)[0] == completion_request([5, 6, 7, 8], 3)
    finally:
        server.stop()
    assert server.process is None


def test_a_server_that_dies_by_a_signal_is_unavailable_not_a_crash(tmp_path):
    build = fake_build(tmp_path, CRASHING_SERVER)
    server = LlamaServer([str(build.tool("llama-server"))], tmp_path / "server.log", "llama.cpp plain")
    with pytest.raises(
        PeerUnavailable, match=r"llama.cpp plain: llama-server killed by SIGILL \(illegal instruction\)"
    ):
        server.complete([1, 2], 2)


def test_a_server_that_never_gets_ready_is_stopped(tmp_path):
    build = fake_build(tmp_path, "#!/bin/sh\nexec sleep 60\n")
    server = LlamaServer([str(build.tool("llama-server"))], tmp_path / "server.log", "llama.cpp plain")
    with pytest.raises(PeerUnavailable, match="not ready after 1 s"):
        server.start(timeout_s=1)
    assert server.process is None


def test_gguf_path_says_how_to_keep_the_files(tmp_path):
    with pytest.raises(BigLittleError, match=r"is not kept; run `biglittle models fetch --keep-gguf`"):
        fetch.gguf_path("draft", tmp_path)
    spec = fetch.DEFAULT_PAIR["draft"]
    kept = tmp_path / "gguf" / spec.gguf_file
    kept.parent.mkdir()
    kept.write_bytes(b"x")
    with pytest.raises(BigLittleError, match="not kept"):  # a file of the wrong size is not the verified one
        fetch.gguf_path("draft", tmp_path)


def run_peers(capsys, *argv) -> tuple[int, str, str]:
    from biglittle.cli import main

    code = main(["peers", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_peers_status_says_what_is_missing_in_one_line(capsys, tmp_path, monkeypatch):
    code, out, err = run_peers(capsys, "status", "--cache-dir", str(tmp_path))
    assert (code, out) == (2, "") and err.strip().endswith("llama.cpp: not installed (make peers)")
    assert len(err.strip().splitlines()) == 1
    fake_build(tmp_path / "peers" / "llama.cpp")  # built, the GGUF files not kept
    code, out, err = run_peers(capsys, "status", "--cache-dir", str(tmp_path))
    assert code == 2 and "biglittle models fetch --keep-gguf" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setattr(fetch, "_is_kept", lambda root, spec: True)
    code, out, err = run_peers(capsys, "status", "--cache-dir", str(tmp_path))
    assert code == 0 and out.startswith("llama.cpp: installed, llama.cpp version: 0 (fake)")
    assert str(tmp_path / "peers" / "llama.cpp" / "build" / "bin") in out


def test_peers_build_without_the_gguf_files_stops_before_downloading(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "_source_tree", lambda *args: pytest.fail("downloaded without a model to check"))
    code, out, err = run_peers(capsys, "build", "--cache-dir", str(tmp_path))
    assert code == 2 and "biglittle models fetch --keep-gguf" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "peers").exists()
