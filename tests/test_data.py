"""Task datasets: parsing the real Debian sources (fixtures cut from real lines), deterministic
splits, loading, `fetch_data` against a fake apt-get, and prompt templates."""

from __future__ import annotations

import gzip
import io
import lzma
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from biglittle import data
from biglittle.data import Example, build_prompt, load_task, sources, split_examples
from biglittle.data.summarization import description_document, parse_descriptions, read_index
from biglittle.data.translation import clean_sentence, parse_ding
from biglittle.errors import BigLittleError

FIXTURES = Path(__file__).parent / "fixtures"
DING = FIXTURES / "ding-de-en.txt"  # real lines of /usr/share/trans/de-en (trans-de-en 1.9-6)
DESCRIPTIONS = FIXTURES / "Translation-en"  # real stanzas of bookworm main Translation-en


@pytest.fixture(autouse=True)
def no_system_data(monkeypatch, tmp_path):
    """Never fall back to this machine's own /usr/share/trans or apt lists, or its cache."""
    monkeypatch.setattr(sources, "SYSTEM_DING", tmp_path / "no-system" / "de-en")
    monkeypatch.setattr(sources, "SYSTEM_LISTS", tmp_path / "no-system" / "lists")
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path / "default-cache"))


# --------------------------------------------------------------------------- translation


def test_ding_example_sentences_are_paired_by_position():
    examples = parse_ding(DING.read_text(encoding="utf-8").splitlines())
    pairs = {e.source: e.reference for e in examples}
    assert len(examples) == 28
    assert pairs["Der Schiedsrichter gab den Schlusspfiff."] == "The referee blew for full-time."
    assert pairs["Ich muss warten, bis meine Ablösung kommt."] == "I have to wait until my relief comes/arrives."
    for e in examples:  # only real sentences, no headwords or phrases
        assert len(e.source.split()) >= 5 and len(e.reference.split()) >= 5
        assert e.source.endswith((".", "!", "?")) and e.reference.endswith((".", "!", "?"))
        assert " :: " not in e.source and " | " not in e.source and "{" not in e.source
    assert len({e.id for e in examples}) == len(examples)


def test_ding_annotations_alternatives_and_duplicates():
    pairs = {e.source: e.reference for e in parse_ding(DING.read_text(encoding="utf-8").splitlines())}
    # "[Ös.]" dropped from "abgemacht/ausgemacht [Ös.] haben?"
    assert "Hast du vergessen, was wir abgemacht/ausgemacht haben?" in pairs
    # "Satz.; Anderer Satz." keeps the first alternative
    assert pairs["Da ist noch nicht alles verloren."] == "He / It is not without remedy."
    # the same German sentence under two headwords: kept once, the first ("[fig.]" dropped)
    assert pairs["Ich bin auch nur ein Mensch."] == "I’m only flesh and blood."
    assert clean_sentence("  Das  ist {n} gut [ugs.] <gut> so.; Zweiter Satz. ") == "Das ist gut so."


def test_ding_skips_header_and_unpairable_lines():
    lines = ["# Version :: devel", "Haus {n} | Ein Haus am See ist schön. :: house", "ohne Trenner"]
    assert parse_ding(lines) == []


# --------------------------------------------------------------------------- summarization


def test_descriptions_become_document_summary_pairs():
    examples = parse_descriptions([DESCRIPTIONS.read_text(encoding="utf-8")])
    by_id = {e.id: e for e in examples}
    assert sorted(by_id) == sorted(
        [
            "deb-0ad",
            "deb-0ad-data",
            "deb-0xffff",
            "deb-2048",
            "deb-2048-qt",
            "deb-7zip",
            "deb-apt",
            "deb-bash",
            "deb-gnucobol3",
        ]
    )
    assert "deb-acl" not in by_id  # 26 words: shorter than 40
    assert "deb-gnucobol4" not in by_id  # the same document as gnucobol3
    assert by_id["deb-bash"].reference == "GNU Bourne Again SHell"
    bash = by_id["deb-bash"].source
    assert bash.startswith("Bash is an sh-compatible command language interpreter that executes commands read")
    assert bash.count("\n") == 2  # three paragraphs (" ." breaks), lines joined
    flasher = by_id["deb-0xffff"].source.splitlines()
    assert "* editing Maemo firmware packages" in flasher  # list items on their own lines
    for e in examples:
        assert 40 <= len(e.source.split()) <= 300 and e.reference and "\n" not in e.reference


def test_long_documents_are_dropped(monkeypatch):
    from biglittle.data import summarization

    monkeypatch.setattr(summarization, "MAX_WORDS", 70)
    ids = {e.id for e in parse_descriptions([DESCRIPTIONS.read_text(encoding="utf-8")])}
    assert ids == {"deb-0ad", "deb-2048-qt", "deb-bash"}


def test_description_document_wrapped_list_item():
    lines = [
        " Key features:",
        "  * Support for many interfaces (e.g. API, command line,",
        " graphical)",
        " .",
        " Done here.",
    ]
    assert (
        description_document(lines)
        == "Key features:\n* Support for many interfaces (e.g. API, command line, graphical)\nDone here."
    )


def test_read_index_handles_apt_compressions(tmp_path):
    import lz4.frame

    raw = DESCRIPTIONS.read_bytes()
    text = raw.decode("utf-8")
    (tmp_path / "a_Translation-en.lz4").write_bytes(lz4.frame.compress(raw))
    (tmp_path / "a_Translation-en.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "a_Translation-en.xz").write_bytes(lzma.compress(raw))
    for name in ("a_Translation-en.lz4", "a_Translation-en.gz", "a_Translation-en.xz"):
        assert read_index(tmp_path / name) == text
    assert read_index(DESCRIPTIONS) == text
    (tmp_path / "bad_Translation-en.xz").write_bytes(b"not xz")
    with pytest.raises(BigLittleError, match="cannot read"):
        read_index(tmp_path / "bad_Translation-en.xz")


@pytest.mark.skipif(shutil.which("lz4cat") is None, reason="needs the lz4cat tool")
def test_read_lz4_without_the_python_package(tmp_path, monkeypatch):
    import lz4.frame

    path = tmp_path / "x_Translation-en.lz4"
    path.write_bytes(lz4.frame.compress(DESCRIPTIONS.read_bytes()))
    monkeypatch.setitem(sys.modules, "lz4.frame", None)  # import fails -> lz4cat
    monkeypatch.setitem(sys.modules, "lz4", None)
    assert read_index(path) == DESCRIPTIONS.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- splits and loading


def test_split_is_deterministic_disjoint_and_order_free():
    examples = [Example(id=f"x{i}", source=f"s{i}", reference=f"r{i}") for i in range(2000)]
    a = split_examples(examples)
    b = split_examples(list(reversed(examples)))
    assert a == b
    assert [len(a[s]) for s in ("test", "dev", "train")] == [300, 300, 1400]
    ids = [e.id for s in ("test", "dev", "train") for e in a[s]]
    assert sorted(ids) == sorted(e.id for e in examples)  # disjoint and complete
    assert split_examples(examples, seed=1)["test"] != a["test"]
    small = split_examples(examples[:20])
    assert [len(small[s]) for s in ("test", "dev", "train")] == [4, 4, 12]


def test_load_task_from_explicit_paths():
    test = load_task("translation", "test", path=DING)
    dev = load_task("translation", "dev", path=DING)
    train = load_task("translation", "train", path=DING)
    assert (len(test), len(dev), len(train)) == (5, 5, 18)
    assert not {e.id for e in test} & {e.id for e in dev}
    assert load_task("translation", "test", path=DING) == test  # same order every time
    assert load_task("translation", "train", path=DING, limit=3) == train[:3]
    summ = load_task("summarization", "train", path=FIXTURES)  # a folder holding Translation-en
    assert summ and all(isinstance(e, Example) for e in summ)
    assert load_task("summarization", "test", path=DESCRIPTIONS, limit=0) == []


def test_load_task_from_the_cache_layout(tmp_path):
    cache = tmp_path / "cache"
    (cache / "data" / "trans-de-en").mkdir(parents=True)
    shutil.copy(DING, cache / "data" / "trans-de-en" / "de-en")
    (cache / "data" / "debian-descriptions").mkdir(parents=True)
    shutil.copy(DESCRIPTIONS, cache / "data" / "debian-descriptions" / "x_main_i18n_Translation-en")
    assert len(load_task("translation", "train", cache=cache)) == 18
    assert len(load_task("summarization", "train", cache=cache)) == 7  # 9 examples: 1 test, 1 dev
    rows = {r["task"]: r for r in data.data_status(cache)}
    assert rows["translation"]["present"] and rows["summarization"]["present"]


def test_missing_data_says_what_to_do(tmp_path):
    for task in ("translation", "summarization"):
        with pytest.raises(BigLittleError, match="biglittle data fetch"):
            load_task(task, "test", cache=tmp_path / "empty")
    with pytest.raises(BigLittleError, match="does not exist"):
        load_task("translation", "test", path=tmp_path / "nope")
    with pytest.raises(BigLittleError, match="no Ding dictionary"):
        load_task("translation", "test", path=tmp_path)
    rows = data.data_status(tmp_path / "empty")
    assert [r["present"] for r in rows] == [False, False]


def test_bad_task_split_or_file(tmp_path):
    with pytest.raises(BigLittleError, match="unknown task"):
        load_task("poetry", "test", path=DING)
    with pytest.raises(BigLittleError, match="unknown split"):
        load_task("translation", "validation", path=DING)
    junk = tmp_path / "de-en"
    junk.write_text("nothing useful here\n")
    with pytest.raises(BigLittleError, match="no translation examples"):
        load_task("translation", "test", path=junk)


# --------------------------------------------------------------------------- fetch_data


def _ar_member(name: str, body: bytes) -> bytes:
    header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
    return header + body + (b"\n" if len(body) % 2 else b"")


def _tar_xz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return lzma.compress(buf.getvalue())


def build_deb(path: Path, files: dict[str, bytes]) -> Path:
    """A minimal binary .deb (ar: debian-binary, control.tar.xz, data.tar.xz)."""
    control = _tar_xz(
        {
            "./control": b"Package: trans-de-en\nVersion: 1.9-6\nArchitecture: all\n"
            b"Maintainer: t <t@example.org>\nDescription: test\n"
        }
    )
    body = b"!<arch>\n" + _ar_member("debian-binary", b"2.0\n") + _ar_member("control.tar.xz", control)
    body += _ar_member("data.tar.xz", _tar_xz({f"./{k}": v for k, v in files.items()}))
    path.write_bytes(body)
    return path


DEB_FILES = {"usr/share/trans/de-en": DING.read_bytes(), "usr/share/doc/trans-de-en/copyright": b"GPL-2+\n"}


@pytest.mark.parametrize("use_dpkg", [False, True])
def test_extract_from_deb(tmp_path, monkeypatch, use_dpkg):
    if use_dpkg and shutil.which("dpkg-deb") is None:
        pytest.skip("no dpkg-deb here")
    if not use_dpkg:
        real_which = shutil.which
        monkeypatch.setattr(sources.shutil, "which", lambda name: None if name == "dpkg-deb" else real_which(name))
    deb = build_deb(tmp_path / "trans-de-en_1.9-6_all.deb", DEB_FILES)
    out = tmp_path / "out" / "de-en"
    sources.extract_from_deb(deb, {"usr/share/trans/de-en": out})
    assert out.read_bytes() == DING.read_bytes()
    with pytest.raises(BigLittleError, match="has no usr/share/nothing"):
        sources.extract_from_deb(deb, {"usr/share/nothing": tmp_path / "x"})
    (tmp_path / "bad.deb").write_bytes(b"garbage")
    with pytest.raises(BigLittleError):
        sources.extract_from_deb(tmp_path / "bad.deb", {"usr/share/trans/de-en": tmp_path / "y"})


class FakeApt:
    """Stands in for apt-get: `update` fills the private lists dir, `download` writes a .deb."""

    def __init__(self, fail_update: bool = False):
        self.calls: list[list[str]] = []
        self.fail_update = fail_update

    def __call__(self, args, cwd=None):
        import lz4.frame

        self.calls.append(args)
        options = dict(a.split("=", 1) for a in args if "=" in a and "::" in a)
        assert options["Acquire::Languages"] == "en" and options["Dir::State::Lists"]
        if args[0] == "update":
            if self.fail_update:
                return subprocess.CompletedProcess(args, 100, "", "E: Some index files failed to download.")
            lists = Path(options["Dir::State::Lists"])
            assert (lists / "partial").is_dir()
            (lists / "d_dists_x-updates_main_i18n_Translation-en.lz4").write_bytes(lz4.frame.compress(b"Package: a\n"))
            (lists / "d_dists_x_main_i18n_Translation-en.lz4").write_bytes(
                lz4.frame.compress(DESCRIPTIONS.read_bytes())
            )
            return subprocess.CompletedProcess(args, 0, "", "")
        if args[0] == "download":
            build_deb(Path(cwd) / "trans-de-en_1.9-6_all.deb", DEB_FILES)
            return subprocess.CompletedProcess(args, 0, "", "")
        raise AssertionError(args)


def test_fetch_data_with_apt_then_nothing_to_do(tmp_path, monkeypatch):
    apt = FakeApt()
    monkeypatch.setattr(sources, "_run_apt", apt)
    monkeypatch.setattr(sources, "_apt_available", lambda: True)
    got = data.fetch_data(tmp_path, progress=False)
    assert got["translation"] == tmp_path / "data" / "trans-de-en" / "de-en"
    assert got["translation"].read_bytes() == DING.read_bytes()
    assert (tmp_path / "data" / "trans-de-en" / "copyright").read_text() == "GPL-2+\n"
    assert got["summarization"].name == "d_dists_x_main_i18n_Translation-en.lz4"  # the largest index
    assert [c[0] for c in apt.calls] == ["update", "download"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        ".fetch.lock",
        "debian-descriptions",
        "trans-de-en",
    ]
    assert len(load_task("summarization", "train", cache=tmp_path)) == 7
    assert len(load_task("translation", "train", cache=tmp_path)) == 18

    assert data.fetch_data(tmp_path, progress=False) == got
    assert len(apt.calls) == 2  # idempotent: apt not run again
    data.fetch_data(tmp_path, progress=False, force=True)
    assert len(apt.calls) == 4


def test_fetch_data_falls_back_to_installed_dictionary(tmp_path, monkeypatch):
    system = tmp_path / "usr-share-trans" / "de-en"
    system.parent.mkdir()
    shutil.copy(DING, system)
    monkeypatch.setattr(sources, "SYSTEM_DING", system)
    monkeypatch.setattr(sources, "_run_apt", FakeApt(fail_update=True))
    monkeypatch.setattr(sources, "_apt_available", lambda: True)
    with pytest.raises(BigLittleError, match="summarization data: apt-get update failed .*Some index files"):
        data.fetch_data(tmp_path, progress=False)
    assert (tmp_path / "data" / "trans-de-en" / "de-en").read_bytes() == DING.read_bytes()  # kept
    assert not list((tmp_path / "data").glob(".apt-*"))


def test_fetch_data_without_apt(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "_apt_available", lambda: False)
    with pytest.raises(BigLittleError, match="apt-get is not available.*trans-de-en"):
        data.fetch_data(tmp_path, progress=False)


# --------------------------------------------------------------------------- prompts


class ChatTokenizer:
    chat_template = "{{ messages }}"

    def __init__(self, reject_system: bool = False):
        self.reject_system = reject_system
        self.seen = []

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True):
        assert add_generation_prompt is True and tokenize is False
        if self.reject_system and any(m["role"] == "system" for m in messages):
            raise ValueError("System role not supported")
        self.seen.append(messages)
        return "|".join(f"{m['role']}:{m['content']}" for m in messages) + "|assistant:"


class PlainTokenizer:
    chat_template = None


def test_plain_prompts_without_a_chat_template():
    assert (
        build_prompt("translation", " Guten Morgen! ", PlainTokenizer())
        == "Translate German to English:\nGerman: Guten Morgen!\nEnglish:"
    )
    assert build_prompt("summarization", "A tool.", None) == "Summarize in one sentence: A tool.\nSummary:"


def test_chat_prompts_use_the_template():
    tok = ChatTokenizer()
    prompt = build_prompt("translation", "Guten Morgen!", tok)
    system, user = tok.seen[0]
    assert system["role"] == "system" and user["role"] == "user"
    assert "German: Guten Morgen!" in user["content"] and "English translation only" in user["content"]
    assert prompt.endswith("|assistant:")
    build_prompt("summarization", "Bash is a shell.", tok)
    assert "one short sentence" in tok.seen[1][1]["content"] and "Bash is a shell." in tok.seen[1][1]["content"]
    folded = ChatTokenizer(reject_system=True)
    build_prompt("translation", "Hallo Welt, wie geht es?", folded)
    assert [m["role"] for m in folded.seen[0]] == ["user"]
    with pytest.raises(BigLittleError, match="unknown task"):
        build_prompt("poetry", "x", tok)


def test_prompt_with_the_real_qwen_tokenizer_when_installed():
    from biglittle.runtime import fetch

    try:
        target, _ = fetch.default_pair_dirs(fetch.cache_dir(str(Path.home() / ".cache" / "biglittle")))
    except BigLittleError:
        pytest.skip("default pair not installed")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(target)
    prompt = build_prompt("translation", "Der Schiedsrichter gab den Schlusspfiff.", tok)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
