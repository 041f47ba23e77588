"""Makes the test fixtures that need llama.cpp (`make peers` first):

- tests/fixtures/llamacpp_tokens.json: llama-tokenize's ids (vocabulary only, special tokens parsed, no BOS added)
  of varied sample strings, for both GGUF files of the default pair; tests/test_integration.py checks that
  biglittle's tokenizers of the converted pair give the same ids.
- tests/fixtures/llamacpp_completion.json: llama-server's answer to one greedy speculative request (the 0.5B as
  its draft) on the bench's translation prompt, for tests/test_llamacpp.py's parser test.

    PYTHONPATH=. python scripts/llamacpp_fixtures.py [--tokens-only]
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from biglittle.data.prompts import build_prompt
from biglittle.peers.llamacpp_build import find_build
from biglittle.peers.llamacpp_server import LlamaServer, completion_request, server_command
from biglittle.runtime.fetch import default_pair_dirs, gguf_path
from biglittle.runtime.models import load_tokenizer

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
TRANSLATION_SOURCE = "Wenn man nichts dagegen machen kann, sollte man mitmachen."
SUMMARIZATION_SOURCE = (
    "This package provides a small command-line tool that converts images between formats.\n"
    " It reads PNG, JPEG and   TIFF files, keeps their metadata (EXIF, ICC profiles) and writes\n"
    " WebP or AVIF at a chosen quality: 75% by default.\n"
)
SAMPLES = {
    "code with indentation and tabs": 'def area(r):\n    """Circle."""\n    return 3.14 * r ** 2\n\tif x:\n\t\tpass\n',
    "German with umlauts": "Übermäßig große Äpfel schmecken süß; die Straße, das Öl, viele Grüße! ÄÖÜäöüß",
    "CJK": "你好，世界！日本語のテキスト、カタカナ。한국어 문장입니다.",
    "emoji": "Emoji: 😀👍🏽🇩🇪 ❤️ 👨‍👩‍👧 end",
    "numbers": "1234567 12345678901 3.14159 -42 1,000,000 2026-11-27 0x1F 1e-9",
    "runs of spaces and newlines": "a  b   c    d\n\n\n  e\r\n\t \t  \n\n\nf   ",
    "leading and trailing spaces": "   leading and trailing   ",
    "contractions and punctuation": "It's they're we'll I'd—\"quoted\" (parens) [brackets] {braces} ... !!!",
    "URL and path": "https://example.com/a/b?c=d&e=f#g and C:\\Users\\name\\file.txt and ~/x/y.py",
    "special tokens of the chat template": (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHallo!<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    "end-of-text in text": "before<|endoftext|>after <|fim_prefix|>x<|fim_suffix|>y<|fim_middle|>",
    "fill in the middle": "<|repo_name|>demo\n<|file_sep|>a.py\n<|fim_prefix|>def f(x):\n<|fim_suffix|>\n"
    "<|fim_middle|>",
    "tool call": '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call><|im_end|>',
}


def llama_tokenize(tool: Path, gguf: Path, text: str) -> list[int]:
    """llama-tokenize's ids of `text`: vocabulary only, read from stdin verbatim (no escapes), specials parsed."""
    command = [str(tool), "-m", str(gguf), "--stdin", "--ids", "--no-escape", "--log-disable"]
    result = subprocess.run(command, input=text.encode(), capture_output=True, check=True)
    lines = [line for line in result.stdout.decode().splitlines() if line.startswith("[")]
    return json.loads(lines[-1])


def tokens_fixture(build, target_gguf: Path, draft_gguf: Path) -> dict:
    tokenizer = load_tokenizer(str(default_pair_dirs()[0]))
    samples = {
        **SAMPLES,
        "bench prompt: translation": build_prompt("translation", TRANSLATION_SOURCE, tokenizer),
        "bench prompt: summarization": build_prompt("summarization", SUMMARIZATION_SOURCE, tokenizer),
    }
    tool = build.tool("llama-tokenize")
    return {
        "made_by": "PYTHONPATH=. python scripts/llamacpp_fixtures.py: llama-tokenize -m GGUF --stdin --ids "
        "--no-escape --log-disable (vocabulary only, special tokens parsed, no BOS added)",
        "llama.cpp": build.info.get("version"),
        "source": build.info.get("source"),
        "gguf": {"target": target_gguf.name, "draft": draft_gguf.name},
        "samples": {
            name: {
                "text": text,
                "target": llama_tokenize(tool, target_gguf, text),
                "draft": llama_tokenize(tool, draft_gguf, text),
            }
            for name, text in samples.items()
        },
    }


def completion_fixture(build, target_gguf: Path, draft_gguf: Path, prompt_ids: list[int]) -> dict:
    command = server_command(build.tool("llama-server"), "draft", target_gguf, draft_gguf, threads=2)
    server = LlamaServer(command, Path("/tmp/llamacpp-fixture-server.log"), "fixture")
    request = completion_request(prompt_ids, 24)
    server.start()
    try:
        http = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/completion",
            data=json.dumps(request).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(http, timeout=600) as answer:
            response = json.loads(answer.read())
    finally:
        server.stop()
    response.pop("generation_settings", None)  # the server's whole configuration: long, and not what is parsed
    return {
        "made_by": "PYTHONPATH=. python scripts/llamacpp_fixtures.py: llama-server " + " ".join(command[1:]),
        "llama.cpp": build.info.get("version"),
        "request": request,
        "response": response,
    }


def one_sample_a_line(fixture: dict) -> str:
    """JSON with each sample (its text and both id lists) on one line, so that a diff shows which one changed."""
    head = {key: value for key, value in fixture.items() if key != "samples"}
    lines = [json.dumps(head, indent=1, ensure_ascii=False)[:-2] + ',\n "samples": {']
    samples = [
        f"  {json.dumps(name)}: {json.dumps(sample, ensure_ascii=False)}" for name, sample in fixture["samples"].items()
    ]
    return "\n".join(lines) + "\n" + ",\n".join(samples) + "\n }\n}\n"


def main() -> int:
    build = find_build()
    target_gguf, draft_gguf = gguf_path("target"), gguf_path("draft")
    tokens = tokens_fixture(build, target_gguf, draft_gguf)
    (FIXTURES / "llamacpp_tokens.json").write_text(one_sample_a_line(tokens))
    if "--tokens-only" in sys.argv[1:]:
        print(f"wrote {FIXTURES / 'llamacpp_tokens.json'}")
        return 0
    prompt_ids = tokens["samples"]["bench prompt: translation"]["target"]
    completion = completion_fixture(build, target_gguf, draft_gguf, prompt_ids)
    (FIXTURES / "llamacpp_completion.json").write_text(json.dumps(completion, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {FIXTURES / 'llamacpp_tokens.json'} and {FIXTURES / 'llamacpp_completion.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
