"""Errors of the user's environment through the command line: unwritable output folders and caches, corrupt model
files, devices this machine lacks, seeds torch refuses, damaged record files. Each is one line on stderr and exit 2,
said before any slow work; and --cache-dir is where every measurement goes."""

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from biglittle.align import CalibSettings, generate_calibration
from biglittle.api import load_pair
from biglittle.cli import main
from biglittle.config import MAX_SEED
from biglittle.runtime.fetch import MARKER

FIXTURES = Path(__file__).parent / "fixtures"
DING = FIXTURES / "ding-de-en.txt"


def one_line_error(capsys, *argv) -> str:
    """The command's stderr, after checking that it is exactly one error line and the exit code 2."""
    code = main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("biglittle: error: "), (code, err)
    return err


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """$BIGLITTLE_CACHE points at a fresh empty folder: what lands there was not sent to --cache-dir."""
    env_cache = tmp_path / "env-cache"
    monkeypatch.setenv("BIGLITTLE_CACHE", str(env_cache))
    return env_cache


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder\n")
    return path


def make_read_only(path: Path, monkeypatch) -> None:
    """Let this process no longer write in `path` (chmod 555: the caller restores 755). Root ignores permissions:
    there the OS's refusal is simulated at os.open, which tempfile's files go through."""
    path.chmod(0o555)
    if os.access(path, os.W_OK):
        real_open = os.open

        def refusing_open(file, flags, *args, **kwargs):
            writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if writes and Path(os.fsdecode(file)).is_relative_to(path):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(file))
            return real_open(file, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)


@pytest.fixture
def read_only_dir(tmp_path, monkeypatch):
    path = tmp_path / "read-only"
    path.mkdir()
    make_read_only(path, monkeypatch)
    yield path
    path.chmod(0o755)  # so that pytest can clean up


@pytest.fixture(params=["a file", "read-only"])
def unwritable(request, tmp_path) -> tuple[Path, str]:
    """(a folder that cannot be written, the words that say why): below a file, or in a read-only folder."""
    if request.param == "a file":
        return request.getfixturevalue("a_file") / "out", "a-file is not a directory"
    return request.getfixturevalue("read_only_dir") / "out", "Permission denied"


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory, tiny_models):
    out = tmp_path_factory.mktemp("calib") / "data"
    prompts = [("a", "the cat sees"), ("b", "my friend likes")]
    generate_calibration(load_pair(tiny_models["llama_target"]), prompts, out, CalibSettings(task="toy"), False)
    return out


def translation_cache(root: Path) -> Path:
    """A cache root holding a small copy of the translation data."""
    ding = root / "data" / "trans-de-en" / "de-en"
    ding.parent.mkdir(parents=True)
    ding.write_text("".join(f"Der Hund sieht den Ball {i}. :: the dog sees the ball {i}.\n" for i in range(12)))
    return root


# --------------------------------------------------------------------------- output folders and the cache

# Models that do not exist: a command that loaded them before checking its output would say so instead.
NO_MODELS = ["--target", "/nonexistent/big", "--draft", "/nonexistent/little"]
ALIGN_TRAIN = ["align", "train", "--data", "{calib}"]
OUT_COMMANDS = {
    "bench": ["bench", "--task", "translation", *NO_MODELS, "--out"],
    "tune-bild": ["tune-bild", "--task", "translation", "--data-path", DING, *NO_MODELS, "--out"],
    "align calib": ["align", "calib", "--task", "translation", "--n", 2, "--target", "/nonexistent/big", "--out"],
    "align train": [*ALIGN_TRAIN, "--draft", "/nonexistent/little", "--out"],
    "align train early exit": [*ALIGN_TRAIN, "--draft", "early-exit:2", "--target", "/nonexistent/big", "--out"],
}


@pytest.mark.parametrize("command", list(OUT_COMMANDS), ids=list(OUT_COMMANDS))
def test_an_unwritable_out_is_refused_before_data_or_models_load(capsys, tmp_path, calib_dir, unwritable, command):
    out, why = unwritable
    argv = [str(arg).format(calib=calib_dir) for arg in OUT_COMMANDS[command]]
    # bench's data comes from an empty cache: read before the check, it would be missing
    err = one_line_error(capsys, *argv, out, "--cache-dir", tmp_path / "empty-cache")
    assert f"cannot write under {out}" in err and why in err and "give --out a directory you can write to" in err


def test_profile_refuses_an_unwritable_cache_before_loading_and_measuring(capsys, unwritable):
    cache, why = unwritable
    err = one_line_error(capsys, "profile", *NO_MODELS, "--cache-dir", cache)
    assert f"cannot write under {cache / 'profiles'}" in err and why in err
    assert "give --cache-dir (or $BIGLITTLE_CACHE) a directory you can write to" in err


def test_tune_bild_refuses_an_unwritable_cache_where_it_keeps_its_choice(capsys, unwritable):
    cache, why = unwritable
    err = one_line_error(
        capsys, "tune-bild", "--task", "translation", "--data-path", DING, *NO_MODELS, "--cache-dir", cache
    )
    assert f"cannot write under {cache / 'profiles'}" in err and why in err and "--cache-dir" in err


def test_gamma_auto_refuses_an_unwritable_cache_before_measuring(capsys, tiny_models, unwritable, monkeypatch):
    import biglittle.api

    measured = []
    monkeypatch.setattr(biglittle.api, "measure_profile", lambda *a, **k: measured.append(1))
    cache, why = unwritable
    models = ["--target", tiny_models["llama_target"], "--draft", tiny_models["gpt2_draft"]]
    err = one_line_error(capsys, "generate", *models, "--gamma", "auto", "--cache-dir", cache, "the cat")
    assert f"cannot write under {cache / 'profiles'}" in err and why in err and "--cache-dir" in err
    assert not measured


def test_draft_vocab_refuses_an_unwritable_cache_before_counting_tokens(capsys, tiny_models, unwritable, monkeypatch):
    import biglittle.runtime.vocab_ranking

    counted = []
    monkeypatch.setattr(biglittle.runtime.vocab_ranking, "count_tokens", lambda *a, **k: counted.append(1))
    cache, why = unwritable
    models = ["--target", tiny_models["llama_target"], "--draft", tiny_models["gpt2_draft"], "--draft-vocab", 20]
    err = one_line_error(capsys, "generate", *models, "--cache-dir", cache, "the cat")
    assert f"cannot write under {cache / 'vocab-ranking'}" in err and why in err and "--cache-dir" in err
    assert not counted


def test_a_stored_profile_in_a_read_only_cache_is_still_used(capsys, tiny_models, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    models = ["--target", tiny_models["llama_target"], "--draft", tiny_models["gpt2_draft"], "--cache-dir", cache]
    assert main(["profile", *map(str, models)]) == 0
    capsys.readouterr()
    make_read_only(cache / "profiles", monkeypatch)
    try:
        code = main(["generate", *map(str, models), "--gamma", "auto", "--json", "the cat"])
    finally:
        (cache / "profiles").chmod(0o755)
    assert code == 0, capsys.readouterr().err


def test_measurements_go_to_the_cache_dir_not_the_default_cache(capsys, tiny_models, tmp_path, private_cache):
    cache = translation_cache(tmp_path / "cache")
    models = ["--target", tiny_models["llama_target"], "--draft", tiny_models["gpt2_draft"], "--cache-dir", cache]
    tune = ["tune-bild", "--task", "translation", "--n", 1, "--max-new-tokens", 4, "--bild-grid", "0.4:0", *models]
    assert main([str(arg) for arg in tune]) == 0
    stored = sorted(path.name for path in (cache / "profiles").iterdir())
    assert len([name for name in stored if name.endswith(".json")]) == 2  # the cost profile and the choice
    assert any(name.endswith("-translation-4tok") for name in stored)  # tune-bild's generations
    bench = ["bench", "--task", "translation", "--n", 1, "--max-new-tokens", 3, "--families", "ngram", "--gammas", 2]
    bench += ["--bild-grid", "0.6:5", "--extra-draft", "exit=early-exit:2", "--out", tmp_path / "bench", *models]
    assert main([str(arg) for arg in bench]) == 0
    profiles = json.loads((tmp_path / "bench" / "results.json").read_text())["cost_profiles"]
    assert set(profiles) == {"main", "exit"}
    assert len(list((cache / "profiles").glob("*.json"))) == 3  # the early exit's profile joined them
    assert not private_cache.exists()  # nothing went to $BIGLITTLE_CACHE

    generate = ["generate", *map(str, models[:4]), "--bild-thresholds", "auto", "--json", "the cat"]
    assert main([*generate, "--cache-dir", str(cache)]) == 0
    capsys.readouterr()
    assert "biglittle tune-bild" in one_line_error(capsys, *generate)  # $BIGLITTLE_CACHE holds no choice


# --------------------------------------------------------------------------- corrupt model files


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size - 100)


CORRUPTIONS = {
    "safetensors cut short": ("model.safetensors", truncate),
    "safetensors overwritten": ("model.safetensors", lambda path: path.write_bytes(b"\x00" * 64)),
    "tokenizer.json not JSON": ("tokenizer.json", lambda path: path.write_text('{"version": "1.0", "mod')),
    "tokenizer.json not a tokenizer": ("tokenizer.json", lambda path: path.write_text('{"version": "1.0"}')),
    "config.json not JSON": ("config.json", lambda path: path.write_text("{oops")),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_a_corrupt_model_file_is_named(capsys, tiny_models, tmp_path, case):
    name, corrupt = CORRUPTIONS[case]
    model = Path(shutil.copytree(tiny_models["llama_target"], tmp_path / "model"))
    corrupt(model / name)
    err = one_line_error(capsys, "generate", "--target", model, "the cat")
    assert f"{model / name} is corrupt" in err and "replace it with a good copy" in err


def test_a_corrupt_file_of_the_built_in_pair_says_how_to_install_it_again(capsys, tiny_models, tmp_path):
    model = Path(shutil.copytree(tiny_models["llama_target"], tmp_path / "model"))
    (model / MARKER).write_text("{}")  # what `biglittle models fetch` leaves in a model it installed
    truncate(model / "model.safetensors")
    err = one_line_error(capsys, "generate", "--target", model, "the cat")
    assert f"{model / 'model.safetensors'} is corrupt" in err
    assert f"delete {model} and run `biglittle models fetch`" in err


def test_a_corrupt_gguf_file_is_named(capsys, tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + b"\x00" * 60)
    err = one_line_error(capsys, "generate", "--target", gguf, "the cat")
    assert f"{gguf} is corrupt" in err


# --------------------------------------------------------------------------- devices and seeds


def missing_device() -> str:
    """A device name torch knows that this machine lacks: cuda on a CPU build, else one GPU more than there are."""
    return f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


@pytest.mark.parametrize("device", ["missing", "nonsense"])
def test_a_device_this_machine_lacks_is_refused_before_loading(capsys, device):
    name = missing_device() if device == "missing" else "nonsense"
    err = one_line_error(capsys, "generate", *NO_MODELS, "--device", name, "the cat")  # no model file is read first
    assert f"device {name!r}" in err and ("is not available" if device == "missing" else "unknown device") in err
    assert "use --device cpu" in err or "use cpu" in err


def test_align_train_refuses_a_missing_device_too(capsys, tmp_path, calib_dir):
    name = missing_device()
    argv = [arg.format(calib=calib_dir) for arg in ALIGN_TRAIN]
    err = one_line_error(capsys, *argv, "--draft", "/nonexistent/little", "--out", tmp_path / "o", "--device", name)
    assert f"device {name!r} is not available" in err


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1])
def test_a_seed_torch_refuses_is_refused_before_loading(capsys, seed):
    err = one_line_error(capsys, "generate", *NO_MODELS, "--seed", seed, "the cat")
    assert f"seed must be in 0 .. {MAX_SEED}" in err and f"got {seed}" in err


def test_the_extreme_seeds_work(capsys, tiny_models):
    for seed in (0, MAX_SEED):
        argv = ["generate", "--target", tiny_models["llama_target"], "--temperature", "1", "--seed", str(seed)]
        assert main([*argv, "--max-new-tokens", "3", "the cat"]) == 0, capsys.readouterr().err


ALIGN_SEEDS = {
    "calib": (["calib", "--task", "translation", "--n", 2, "--target", "/nonexistent/big"], -1),
    "train": (["train", "--draft", "/nonexistent/little", "--data", "{calib}"], MAX_SEED + 1),
}


@pytest.mark.parametrize("command", list(ALIGN_SEEDS))
def test_align_refuses_an_out_of_range_seed(capsys, tmp_path, calib_dir, command):
    argv, seed = ALIGN_SEEDS[command]
    argv = [str(arg).format(calib=calib_dir) for arg in argv]
    err = one_line_error(capsys, "align", *argv, "--out", tmp_path / "o", "--seed", seed)
    assert f"seed must be in 0 .. {MAX_SEED}" in err and f"got {seed}" in err


# --------------------------------------------------------------------------- damaged record files


def test_bench_reports_records_lines_that_are_not_records_with_their_count(capsys, tiny_models, tmp_path):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "records.jsonl").write_text('{"task": "translation"}\n[1, 2]\n{"torn": ')  # the torn last line: silent
    cache = translation_cache(tmp_path / "cache")
    models = ["--target", tiny_models["llama_target"], "--draft", tiny_models["gpt2_draft"], "--cache-dir", cache]
    bench = ["bench", "--task", "translation", "--n", 1, "--max-new-tokens", 3, "--families", "ngram", "--gammas", 2]
    err = one_line_error(capsys, *bench, "--out", out, *models)
    assert f"{out / 'records.jsonl'}: 2 line(s) are not JSON records" in err and "first: line 1" in err


def test_align_train_reports_calibration_lines_that_are_not_records(capsys, tmp_path, calib_dir):
    data = Path(shutil.copytree(calib_dir, tmp_path / "calib"))
    with open(data / "calib.jsonl", "a") as fh:
        fh.write('{"prompt": "no id"}\n')
    argv = ["align", "train", "--draft", "/nonexistent/little", "--data", data, "--out", tmp_path / "o"]
    err = one_line_error(capsys, *argv)
    assert "calib.jsonl: 1 line(s) is not JSON records" in err and "first: line 3" in err


@pytest.mark.parametrize("command", [["models", "fetch"], ["data", "fetch"]], ids=["models", "data"])
def test_fetching_into_a_cache_below_a_file_says_so_before_downloading(capsys, a_file, command):
    err = one_line_error(capsys, *command, "--cache-dir", a_file / "cache")
    assert f"{a_file} is not a directory" in err and "give --cache-dir (or $BIGLITTLE_CACHE)" in err
