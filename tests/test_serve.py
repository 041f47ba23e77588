"""`biglittle serve` with the official `openai` client against a server on 127.0.0.1 (tiny models): completions
and chat, streamed and not, equal to `biglittle generate`; bad requests -> 400; a load test; disconnection; a full
queue -> 503; the metrics."""

from __future__ import annotations

import json
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from conftest import PROMPTS
from serving import CHAT_TEMPLATE, PacedPair, running_server

from biglittle import load_pair
from biglittle.cli import main
from biglittle.serve import create_app

MODEL = "tiny"
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def server_pair(tiny_models):
    pair = load_pair(tiny_models["llama_target"], tiny_models["gpt2_draft"])
    pair.tokenizer.chat_template = CHAT_TEMPLATE
    return pair


@pytest.fixture(scope="module")
def server_url(server_pair):
    with running_server(create_app(server_pair, model_name=MODEL, max_queue=32)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server_url):
    return openai.OpenAI(base_url=server_url + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def paced(tiny_models):
    """A server whose one generation at a time runs to max_tokens (no end-of-sequence token), 50 ms a round,
    with room for one request waiting."""
    pair = load_pair(tiny_models["llama_target"], tiny_models["gpt2_draft"])
    pair.target.model.generation_config.eos_token_id = []
    paced_pair = PacedPair(pair, pause_s=0.05)
    with running_server(create_app(paced_pair, model_name=MODEL, max_queue=1)) as url:
        yield paced_pair, url


def messages(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def expected_text(reference_pair, server_pair, prompt: str, chat: bool, **settings) -> str:
    """What the server must answer: `reference_pair` (the same models, another instance) generating greedily."""
    prompt_input = server_pair.encode_messages(messages(prompt)) if chat else prompt
    return reference_pair.generate(prompt_input, max_new_tokens=MAX_TOKENS, **settings).text


def complete(client, prompt: str, chat: bool, stream: bool, **options):
    """(text, finish reason, chunks or the response) from the endpoint, streamed or not."""
    create = client.chat.completions.create if chat else client.completions.create
    prompt_field = {"messages": messages(prompt)} if chat else {"prompt": prompt}
    response = create(model=MODEL, max_tokens=MAX_TOKENS, temperature=0, stream=stream, **prompt_field, **options)
    if not stream:
        choice = response.choices[0]
        return (choice.message.content if chat else choice.text), choice.finish_reason, response
    chunks = list(response)
    pieces = [(c.choices[0].delta.content if chat else c.choices[0].text) or "" for c in chunks if c.choices]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and len({c.id for c in chunks}) == 1  # one end, one stream
    return "".join(pieces), finish[0], chunks


def test_models_health_and_page(client, server_url):
    assert [model.id for model in client.models.list()] == [MODEL]
    assert httpx.get(server_url + "/health").json()["status"] == "ok"
    page = httpx.get(server_url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "<title>biglittle</title>" in page.text and "/v1/chat/completions" in page.text


@pytest.mark.parametrize("method", ["speculative", "bild"])
def test_greedy_completion_equals_biglittle_generate(capsys, tiny_models, client, method):
    assert (
        main(
            ["generate", "--target", tiny_models["llama_target"], "--draft", tiny_models["gpt2_draft"], "--json"]
            + ["--method", method, "--max-new-tokens", str(MAX_TOKENS), "my friend quickly"]
        )
        == 0
    )
    cli = json.loads(capsys.readouterr().out)
    for stream in (False, True):
        text, finish, response = complete(
            client, "my friend quickly", chat=False, stream=stream, extra_body={"biglittle": {"method": method}}
        )
        assert text == cli["text"] and finish in ("stop", "length")
    assert response[-1].model_extra["biglittle"]["stats"]["new_tokens"] == len(cli["token_ids"])


def test_chat_streamed_and_not(client, server_pair, decoder_pair):
    expected = expected_text(decoder_pair, server_pair, "the dog likes", chat=True)
    text, finish, response = complete(client, "the dog likes", chat=True, stream=False)
    assert text == expected and response.object == "chat.completion"
    assert response.choices[0].message.role == "assistant"
    prompt_tokens = len(server_pair.encode_messages(messages("the dog likes")))
    assert response.usage.prompt_tokens == prompt_tokens
    assert response.usage.total_tokens == prompt_tokens + response.usage.completion_tokens
    stats = response.model_extra["biglittle"]["stats"]
    assert stats["new_tokens"] == response.usage.completion_tokens and stats["method"] == "speculative"
    text, finish, chunks = complete(
        client, "the dog likes", chat=True, stream=True, stream_options={"include_usage": True}
    )
    assert text == expected and chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == response.usage.completion_tokens


def test_stop_strings_are_left_out(client, server_pair, decoder_pair):
    full = expected_text(decoder_pair, server_pair, "some", chat=False)
    stop = full.split()[2]  # a word in the middle of the answer
    for stream in (False, True):
        text, finish, _ = complete(client, "some", chat=False, stream=stream, stop=[stop])
        assert text == full[: full.index(stop)] and finish == "stop"


def test_sources_and_turned_down_drafts_stream_with_the_text(client):
    text, _, chunks = complete(client, "some", chat=False, stream=True, extra_body={"biglittle": {"sources": True}})
    rounds = [c.model_extra["biglittle"] for c in chunks if "tokens" in c.model_extra.get("biglittle", {})]
    stats = chunks[-1].model_extra["biglittle"]["stats"]
    tokens = [token for round_ in rounds for token in round_["tokens"]]
    assert "".join(token["text"] for token in tokens) == text
    assert len(tokens) == stats["new_tokens"]
    assert sum(token["source"] == "draft" for token in tokens) == stats["accepted"]
    assert sum(len(round_["discarded"]) for round_ in rounds) == stats["discarded"] > 0


def test_bild_rollbacks_are_reported(client):
    options = {"method": "bild", "fallback_threshold": 0.5, "rollback_threshold": 1.0, "sources": True}
    _, _, chunks = complete(client, "a bird", chat=False, stream=True, extra_body={"biglittle": options})
    rounds = [c.model_extra["biglittle"] for c in chunks if "tokens" in c.model_extra.get("biglittle", {})]
    stats = chunks[-1].model_extra["biglittle"]["stats"]
    assert sum(round_["rolled_back"] for round_ in rounds) == stats["rollbacks"]
    assert {"draft", "target"} <= {token["source"] for round_ in rounds for token in round_["tokens"]}


def test_compare_with_the_big_model_alone(client):
    _, _, response = complete(
        client, "the cat", chat=False, stream=False, extra_body={"biglittle": {"compare_ar": True}}
    )
    comparison = response.model_extra["biglittle"]["compare_ar"]
    assert comparison["same_output"] is True and comparison["measured_speedup"] > 0
    assert comparison["predicted_speedup"] > 0
    options = {"compare_ar": True, "tree": 6}  # a tree of drafted tokens, compared with ar (which has none)
    _, _, response = complete(client, "the cat", chat=False, stream=False, extra_body={"biglittle": options})
    assert response.model_extra["biglittle"]["compare_ar"]["same_output"] is True


def metric(server_url: str, name: str, labels: str = "") -> float:
    text = httpx.get(server_url + "/metrics").text
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_what_was_served(client, server_url):
    names = ("biglittle_completion_tokens_total", "biglittle_target_passes_total", "biglittle_draft_passes_total")
    before = {name: metric(server_url, name) for name in names}
    ok = 'biglittle_requests_total{endpoint="completions",outcome="ok"}'
    ok_before = metric(server_url, ok)
    _, _, response = complete(client, "some", chat=False, stream=False)
    stats = response.model_extra["biglittle"]["stats"]
    assert metric(server_url, ok) == ok_before + 1
    assert metric(server_url, names[0]) - before[names[0]] == response.usage.completion_tokens
    assert metric(server_url, names[1]) - before[names[1]] == stats["target_calls"]
    assert metric(server_url, names[2]) - before[names[2]] == stats["draft_calls"]
    for gauge in ("biglittle_acceptance_rate", "biglittle_tokens_per_second"):
        assert metric(server_url, gauge) > 0
    assert "biglittle_queue_depth 0.0" in httpx.get(server_url + "/metrics").text


LONG_PROMPT = " ".join(["cat"] * 200)
BAD_REQUESTS = {
    "bad JSON": ("completions", "{not json", "not valid JSON"),
    "no model": ("completions", {"model": None}, "model: Field required"),  # None: the field left out
    "unknown model": ("completions", {"model": "gpt-4", "prompt": "the cat"}, "unknown model 'gpt-4'"),
    "negative temperature": ("completions", {"temperature": -1}, "temperature: Input should be greater"),
    "top_p above one": ("chat/completions", {"top_p": 1.5}, "top_p: Input should be less than or equal to 1"),
    "max_tokens zero": ("completions", {"max_tokens": 0}, "max_tokens: Input should be greater"),
    "temperature not a number": ("completions", {"temperature": "hot"}, "temperature: Input should be a valid"),
    "prompt over the context": ("completions", {"prompt": LONG_PROMPT}, "the models' context is 128"),
    "unknown method": ("completions", {"biglittle": {"method": "beam"}}, "unknown method 'beam'"),
    "gamma zero": ("completions", {"biglittle": {"gamma": 0}}, "gamma must be at least 1"),
    "threshold out of range": (
        "completions",
        {"biglittle": {"method": "bild", "fallback_threshold": 2}},
        "fallback-threshold must be in [0, 1]",
    ),
    "misspelt setting": ("completions", {"biglittle": {"gama": 2}}, "biglittle.gama: Extra inputs"),
    "a file as draft text": ("completions", {"biglittle": {"draft_text": "/etc/passwd"}}, "biglittle.draft_text"),
    "n above one": ("completions", {"n": 2}, "n=2 is not supported"),
    "several prompts": ("completions", {"prompt": ["the cat", "a dog"]}, "one prompt per request"),
    "empty prompt": ("completions", {"prompt": "  "}, "the prompt is empty"),
    "token outside the vocabulary": ("completions", {"prompt": [2, 999]}, "outside the vocabulary"),
    "empty stop string": ("completions", {"stop": [""]}, "stop strings must not be empty"),
    "no messages": ("chat/completions", {"messages": []}, "messages: List should have at least 1 item"),
    "stream of a bad request": ("chat/completions", {"stream": True, "temperature": -2}, "temperature"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_requests_get_400_and_the_server_keeps_serving(server_url, client, case):
    endpoint, body, message = BAD_REQUESTS[case]
    if isinstance(body, dict):
        prompt = {"messages": messages("the cat")} if endpoint.startswith("chat") else {"prompt": "the cat"}
        fields = {"model": MODEL, **prompt, **body}
        body = json.dumps({name: value for name, value in fields.items() if value is not None})
    response = httpx.post(
        f"{server_url}/v1/{endpoint}", content=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert message in error["message"], error
    assert complete(client, "the cat", chat=False, stream=False)[0]  # still serving


def test_every_generation_setting_can_be_sent():
    from biglittle.config import SETTING_NAMES
    from biglittle.serve.protocol import BigLittleOptions

    standard = {"temperature", "top_p", "seed", "max_new_tokens", "stop", "chat"}  # OpenAI's fields, the endpoint
    assert set(SETTING_NAMES) - standard <= set(BigLittleOptions.model_fields)


def test_the_openai_client_reads_the_error(client):
    with pytest.raises(openai.BadRequestError, match="unknown method 'beam'") as caught:
        client.completions.create(model=MODEL, prompt="the cat", extra_body={"biglittle": {"method": "beam"}})
    assert caught.value.status_code == 400


def test_load_sixteen_clients_five_requests_each(server_url, server_pair, decoder_pair):
    """Every response complete and its own (no lost or interleaved streams); p50 / p95 latency reported."""
    expected = {
        (prompt, chat): expected_text(decoder_pair, server_pair, prompt, chat)
        for prompt in PROMPTS
        for chat in (False, True)
    }

    def one_client(index: int) -> list[tuple[bool, float, int]]:
        client = openai.OpenAI(base_url=server_url + "/v1", api_key="unused", max_retries=0, timeout=60)
        outcomes = []
        for request in range(5):
            prompt = PROMPTS[(3 * index + request) % len(PROMPTS)]
            chat, stream = bool(request % 2), bool((index + request) % 2)
            started = time.perf_counter()
            text, _, response = complete(client, prompt, chat=chat, stream=stream)
            tokens = (response[-1] if stream else response).model_extra["biglittle"]["stats"]["new_tokens"]
            outcomes.append((text == expected[prompt, chat], time.perf_counter() - started, tokens))
        return outcomes

    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        outcomes = [outcome for client_outcomes in pool.map(one_client, range(16)) for outcome in client_outcomes]
    elapsed = time.perf_counter() - started
    assert len(outcomes) == 80 and all(correct for correct, _, _ in outcomes)
    latencies = sorted(latency for _, latency, _ in outcomes)
    p50, p95 = statistics.quantiles(latencies, n=100)[49], statistics.quantiles(latencies, n=100)[94]
    tokens = sum(count for _, _, count in outcomes)
    print(
        f"\nload: 16 clients x 5 requests in {elapsed:.1f} s: latency p50 {p50:.2f} s, p95 {p95:.2f} s; "
        f"{80 / elapsed:.1f} requests/s, {tokens / elapsed:.0f} tokens/s"
    )
    assert 0 < p50 <= p95 < 60


def test_a_disconnect_mid_stream_frees_the_server(paced):
    pair, url = paced
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
    stream = client.completions.create(
        model=MODEL, prompt="the cat", max_tokens=100, stream=True, extra_body={"biglittle": {"method": "ar"}}
    )
    assert next(iter(stream)).choices[0].text  # the generation is under way: 100 rounds of 50 ms
    stream.close()
    started = time.perf_counter()
    response = client.completions.create(
        model=MODEL, prompt="the dog", max_tokens=3, extra_body={"biglittle": {"method": "ar"}}
    )
    assert response.usage.completion_tokens == 3 and time.perf_counter() - started < 4  # not 5 s behind the first
    assert pair.rounds[-2] < 100 and pair.rounds[-1] == 3  # the first stopped early
    cancelled = 'biglittle_requests_total{endpoint="completions",outcome="cancelled"}'
    assert metric(url, cancelled) == 1


def test_a_request_whose_client_leaves_the_queue_is_not_run(paced):
    pair, url = paced
    body = {"model": MODEL, "prompt": "the cat", "max_tokens": 2}
    pair.gate.clear()
    pair.started.clear()
    generations = len(pair.rounds)
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(httpx.post, url + "/v1/completions", json=body, timeout=30)
            assert pair.started.wait(10)
            with pytest.raises(httpx.ReadTimeout):  # waits in the queue, then its client gives up
                httpx.post(url + "/v1/completions", json=body, timeout=1)
            time.sleep(0.5)  # the server notices within a quarter of a second
            pair.gate.set()
            assert running.result().status_code == 200
        assert complete_raw(url, body)["usage"]["completion_tokens"] == 2
        assert len(pair.rounds) == generations + 2  # the first and the last; the abandoned one never ran
    finally:
        pair.gate.set()


def complete_raw(url: str, body: dict) -> dict:
    response = httpx.post(url + "/v1/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_full_queue_gets_503(paced):
    pair, url = paced
    body = {"model": MODEL, "prompt": "the cat", "max_tokens": 2}
    pair.gate.clear()
    pair.started.clear()
    try:
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(httpx.post, url + "/v1/completions", json=body, timeout=30)
            assert pair.started.wait(10)  # the worker holds it at the gate
            waiting = pool.submit(httpx.post, url + "/v1/completions", json=body, timeout=30)
            deadline = time.monotonic() + 10
            while httpx.get(url + "/health").json()["queue_depth"] < 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            refused = httpx.post(url + "/v1/completions", json=body, timeout=30)
            assert refused.status_code == 503
            error = refused.json()["error"]
            assert error["code"] == "queue_full" and "busy" in error["message"]
            pair.gate.set()
            assert running.result().status_code == waiting.result().status_code == 200
    finally:
        pair.gate.set()


def test_serve_command_errors(capsys, tiny_models):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code = main(["serve", "--target", tiny_models["llama_target"], "--port", port])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("biglittle: error: cannot listen on 127.0.0.1:") and err.count("\n") == 1
    assert main(["serve", "--target", tiny_models["llama_target"], "--max-queue", "0"]) == 2
    assert "--max-queue must be at least 1" in capsys.readouterr().err
