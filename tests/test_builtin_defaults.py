"""The built-in pair's defaults: prompt lookup drafting sized by its matches, unless the caller names the method or the
shape of its speculation, or a draft of its own; named models keep the dataclass defaults. Same rule on the command
line, in the Python API and in the server."""

import pytest

from biglittle.api import ModelPair
from biglittle.cli import build_parser
from biglittle.cli.generate import generation_config
from biglittle.config import AUTO, GenerationConfig, generation_defaults, with_builtin_speculation
from biglittle.serve.protocol import CompletionRequest


def cli_config(flags: list[str], builtin: bool = True) -> GenerationConfig:
    args = build_parser().parse_args(["generate", *flags, "prompt"])
    return generation_config(args, builtin, has_draft=True, builtin_draft=args.draft is None)


def test_the_builtin_pair_looks_its_drafts_up_and_needs_no_little_model():
    config = cli_config([])
    assert (config.method, config.drafter, config.gamma, config.tree, config.chat) == (
        "speculative",
        "ngram",
        AUTO,
        None,
        True,
    )
    assert not config.needs_draft_model  # `generate` does not even load it


@pytest.mark.parametrize(
    "flags,method,drafter,gamma,tree",
    [
        (["--method", "speculative"], "speculative", "model", AUTO, None),  # the little model's, as documented
        (["--gamma", "2"], "speculative", "model", 2, None),
        (["--gamma", "auto"], "speculative", "model", AUTO, None),
        (["--tree", "auto"], "speculative", "model", AUTO, AUTO),
        (["--drafter", "hybrid"], "speculative", "hybrid", AUTO, None),
        (["--method", "bild"], "bild", "model", AUTO, None),
        (["--method", "ar"], "ar", "model", AUTO, None),
    ],
)
def test_naming_the_method_or_its_shape_turns_the_lookup_default_off(flags, method, drafter, gamma, tree):
    config = cli_config(flags)
    config.validate()
    assert (config.method, config.drafter, config.gamma, config.tree) == (method, drafter, gamma, tree)


def test_a_draft_named_with_the_builtin_target_is_used():
    config = cli_config(["--draft", "early-exit:14"])
    assert (config.drafter, config.gamma) == ("model", AUTO)


def test_named_models_keep_the_dataclass_defaults():
    config = cli_config(["--target", "BIG", "--draft", "LITTLE"], builtin=False)
    assert (config.tree, config.drafter, config.gamma, config.chat) == (None, "model", 4, False)
    assert with_builtin_speculation(GenerationConfig(), [], is_builtin_pair=False) == GenerationConfig()


def test_the_api_applies_it_to_defaults_not_to_a_config_given_whole(monkeypatch):
    class Pair(ModelPair):  # prepare's settings logic alone, without models
        def __init__(self):
            self.builtin = self.builtin_draft = True
            self.draft_runner, self.bridge = object(), None

        def encode(self, prompt, chat):
            raise StopIteration  # the settings are known by now

    pair = Pair()
    configs = []
    monkeypatch.setattr(GenerationConfig, "validate", lambda self: configs.append(self))
    for call in (
        lambda: pair.prepare("x"),
        lambda: pair.prepare("x", gamma=2),
        lambda: pair.prepare("x", pair.defaults),
    ):
        with pytest.raises(StopIteration):
            call()
    assert [(c.drafter, c.gamma) for c in configs] == [("ngram", AUTO), ("model", 2), ("model", AUTO)]


def test_the_server_applies_it_unless_the_request_names_the_shape():
    defaults = generation_defaults(True)
    plain = CompletionRequest(model="biglittle", prompt="x").config(defaults, has_draft=True, builtin=True)
    chain = CompletionRequest(model="biglittle", prompt="x", biglittle={"gamma": 3}).config(defaults, True, True)
    named = CompletionRequest(model="biglittle", prompt="x").config(defaults, has_draft=True, builtin=False)
    assert (plain.drafter, plain.gamma) == ("ngram", AUTO)
    assert (chain.drafter, chain.gamma) == ("model", 3)
    assert (named.drafter, named.gamma) == ("model", AUTO)
