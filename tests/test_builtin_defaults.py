"""The built-in pair's defaults: a tree of the little model's and the text's candidates for speculative decoding,
unless the caller names its shape; named models keep the dataclass defaults. Same rule on the command line,
in the Python API and in the server."""

import pytest

from biglittle.api import ModelPair
from biglittle.cli import build_parser
from biglittle.cli.generate import generation_config
from biglittle.config import AUTO, GenerationConfig, generation_defaults, with_builtin_speculation
from biglittle.serve.protocol import CompletionRequest


def cli_config(flags: list[str], builtin: bool = True) -> GenerationConfig:
    args = build_parser().parse_args(["generate", *flags, "prompt"])
    return generation_config(args, builtin, has_draft=True)


def test_the_builtin_pair_drafts_a_tree_of_both_candidates():
    config = cli_config([])
    assert (config.method, config.tree, config.drafter, config.chat) == ("speculative", AUTO, "hybrid", True)


@pytest.mark.parametrize(
    "flags,tree,drafter,gamma",
    [
        (["--gamma", "4"], None, "model", 4),  # a chain asked for
        (["--gamma", "auto"], None, "model", AUTO),
        (["--tree", "8"], 8, "model", AUTO),
        (["--drafter", "ngram"], None, "ngram", AUTO),
    ],
)
def test_naming_the_shape_turns_the_builtin_tree_off(flags, tree, drafter, gamma):
    config = cli_config(flags)
    assert (config.tree, config.drafter, config.gamma) == (tree, drafter, gamma)


@pytest.mark.parametrize("flags", [["--method", "bild"], ["--method", "ar"]])
def test_other_methods_get_no_tree(flags):
    config = cli_config(flags)
    config.validate()  # a tree with bild or ar would be refused
    assert config.tree is None and config.drafter == "model"


def test_named_models_keep_the_dataclass_defaults():
    config = cli_config([], builtin=False)
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
        lambda: pair.prepare("x", gamma=4),
        lambda: pair.prepare("x", pair.defaults),
    ):
        with pytest.raises(StopIteration):
            call()
    assert [(c.tree, c.drafter) for c in configs] == [(AUTO, "hybrid"), (None, "model"), (None, "model")]


def test_the_server_applies_it_unless_the_request_names_the_shape():
    defaults = generation_defaults(True)
    plain = CompletionRequest(model="biglittle", prompt="x").config(defaults, has_draft=True, builtin=True)
    chain = CompletionRequest(model="biglittle", prompt="x", biglittle={"gamma": 3}).config(defaults, True, True)
    named = CompletionRequest(model="biglittle", prompt="x").config(defaults, has_draft=True, builtin=False)
    assert (plain.tree, plain.drafter) == (AUTO, "hybrid")
    assert (chain.tree, chain.drafter, chain.gamma) == (None, "model", 3)
    assert named.tree is None


def test_an_early_exit_of_the_builtin_target_drafts_chains():
    args = build_parser().parse_args(["generate", "prompt"])
    config = generation_config(args, True, has_draft=True, builtin_draft=False)
    assert (config.tree, config.drafter, config.gamma) == (None, "model", AUTO)
