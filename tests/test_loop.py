"""The decoding loop's bookkeeping on toy models: what each target pass adds, what each model is fed, what
each cache holds after every round. Model-free and fast, so `make mutate` runs them against every mutant."""

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from scripted import ContextRunner, bigram

from biglittle.decoding.drafters import HybridDrafter, ModelDrafter, NgramDrafter
from biglittle.decoding.loop import DRAFTED, TARGET, decode
from biglittle.decoding.methods import Bild, Speculative
from biglittle.decoding.proposal import ROOT, Proposal
from biglittle.decoding.sampling import SamplingConfig
from biglittle.decoding.stats import GenerationStats
from biglittle.errors import BigLittleError
from biglittle.runtime.runner import Runner

VOCAB = 5
PROMPT = [0, 3]
# A target and a different draft over five tokens (none of them ends the text): rows are p(next | last).
TARGET_TABLE = [
    [0.10, 0.40, 0.20, 0.20, 0.10],
    [0.50, 0.10, 0.20, 0.10, 0.10],
    [0.20, 0.20, 0.20, 0.30, 0.10],
    [0.05, 0.05, 0.60, 0.20, 0.10],
    [0.30, 0.10, 0.10, 0.10, 0.40],
]
DRAFT_TABLE = [
    [0.30, 0.30, 0.10, 0.20, 0.10],
    [0.20, 0.20, 0.40, 0.10, 0.10],
    [0.10, 0.50, 0.10, 0.20, 0.10],
    [0.30, 0.10, 0.30, 0.20, 0.10],
    [0.20, 0.20, 0.20, 0.20, 0.20],
]
GREEDY = SamplingConfig()
SAMPLED = SamplingConfig(1.0)


def run(target_table, draft_table, method, sampling, max_new_tokens, seed=0, check=None, **options):
    """decode() on two toy models; `check(text, target, draft, commit)` runs after every round."""
    target, draft = ContextRunner(bigram(target_table), VOCAB), ContextRunner(bigram(draft_table), VOCAB)
    text, commits = list(PROMPT), []

    def on_commit(commit):
        text.extend(commit.tokens)
        commits.append(commit)
        assert commit.total == len(text) - len(PROMPT)
        if check is not None:
            check(text, target, draft, commit)

    output, stats = decode(
        PROMPT,
        target,
        ModelDrafter(draft, sampling, set(), options.pop("fallback_threshold", 0.0)),
        method,
        max_new_tokens=max_new_tokens,
        max_length=options.pop("max_length", 1000),
        eos_token_ids=set(),
        generator=torch.Generator().manual_seed(seed),
        on_commit=on_commit,
        **options,
    )
    assert output == text[len(PROMPT) :]
    assert (stats.method, stats.prompt_tokens, stats.new_tokens) == (method.name, len(PROMPT), len(output))
    assert 0 <= stats.wall_time_s < 60
    return output, stats, commits, draft


def fed(timings):
    return sum(tokens for tokens, _ in timings.call_log)


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
@pytest.mark.parametrize("gamma", [1, 3, 4])
@pytest.mark.parametrize("max_new_tokens", [1, 7, 13])
def test_identical_draft_each_target_pass_adds_one_token_and_wastes_no_draft(sampling, gamma, max_new_tokens):
    """With the draft equal to the target every draft passes, so each round is gamma drafts and the bonus token
    (fewer only where max_new_tokens leaves less room): nothing proposed is thrown away, nothing is drafted
    past the end, and no position is fed to either model twice."""
    output, stats, commits, draft = run(
        TARGET_TABLE, TARGET_TABLE, Speculative(gamma, sampling), sampling, max_new_tokens
    )
    assert len(output) == max_new_tokens
    written = 0
    for commit in commits:
        remaining = max_new_tokens - written
        assert commit.sources == [DRAFTED] * min(gamma, remaining - 1) + [TARGET]  # the bonus token included
        assert commit.discarded == []
        written += len(commit.tokens)
    rounds = len(commits)
    assert stats.target_calls == rounds and stats.proposed == stats.accepted == max_new_tokens - rounds
    assert fed(draft.timings) == draft_fed_without_rejections(stats, rounds)
    assert sum(tokens for tokens, _ in stats.target_call_log) == len(PROMPT) + stats.proposed + rounds - 1


def draft_fed_without_rejections(stats, rounds):
    """The draft reads the prompt once, then per drafting round the two tokens it has not read (its own last
    draft, never fed, and the bonus token after it) and one more per further draft: prompt + proposed + R - 2
    for R drafting rounds. The last round drafts nothing when only the target's own token fits."""
    drafting_rounds = stats.proposed_by_position[0]
    assert drafting_rounds in (rounds, rounds - 1)
    return len(PROMPT) + stats.proposed + drafting_rounds - 2 if drafting_rounds else 0


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
@pytest.mark.parametrize("gamma", [2, 4])
def test_each_model_reads_every_position_once_unless_it_was_rejected(sampling, gamma):
    """With a different draft (rejections), the target reads the prompt, then per round the one token it has
    not read plus the proposal; the draft reads, per round, what was committed since it last read (one token,
    or two after a round in which all drafts passed, the last of which it never read) and its own drafts but
    the last. Refeeding a position that was kept, or skipping one, changes these counts."""
    output, stats, commits, draft = run(TARGET_TABLE, DRAFT_TABLE, Speculative(gamma, sampling), sampling, 40, seed=3)
    rounds = len(commits)
    assert stats.target_calls == rounds
    assert sum(tokens for tokens, _ in stats.target_call_log) == len(PROMPT) + stats.proposed + rounds - 1
    drafted = [commit.sources.count(DRAFTED) + len(commit.discarded) for commit in commits]
    full = [not commit.discarded for commit in commits]
    expected = len(PROMPT) - 1 + stats.proposed
    expected += sum(full[r] for r in range(rounds - 1) if drafted[r] and any(drafted[r + 1 :]))
    assert 0 < sum(full) < rounds and stats.proposed > stats.accepted  # both kinds of round happened
    assert fed(draft.timings) == expected


def check_caches(text, target, draft, commit):
    """After every round: the target holds exactly the text but its last token; the draft holds a prefix of it."""
    assert target.held == text[:-1]
    assert len(draft.held) <= len(text) - 1 and draft.held == text[: len(draft.held)]


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
@pytest.mark.parametrize(
    "method",
    [Speculative(3, GREEDY), Bild(rollback_threshold=1.0, max_little_steps=3, sampling=GREEDY)],
    ids=["speculative", "bild"],
)
def test_caches_hold_the_text_after_every_round(sampling, method):
    method = replace(method, sampling=sampling)
    output, stats, commits, _ = run(TARGET_TABLE, DRAFT_TABLE, method, sampling, 30, seed=1, check=check_caches)
    assert any(commit.discarded for commit in commits)  # crops after rejections happened


def test_a_runner_that_was_not_cropped_refuses_to_run():
    """The runtime guard is an error, not an assert (which `python -O` removes)."""

    class Unfed(Runner):
        cache_len = 3

        def _feed(self, tokens, num_logits, hidden):
            raise AssertionError("the guard should have refused")

    model = SimpleNamespace(config=SimpleNamespace(is_encoder_decoder=False), device=torch.device("cpu"))
    with pytest.raises(RuntimeError, match="crop the cache first"):
        Unfed(model, VOCAB).forward([0, 1, 2], 1)  # a cache of 3 tokens cannot give the logits after token 3 again


@pytest.mark.parametrize(
    "method",
    [Speculative(2, SAMPLED), Bild(rollback_threshold=0.5, max_little_steps=3, sampling=SAMPLED)],
    ids=["speculative", "bild"],
)
def test_the_seed_alone_fixes_a_sampled_output(method):
    """Every draw goes through the run's generator: torch's global random state makes no difference."""
    outputs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        outputs.append(run(TARGET_TABLE, DRAFT_TABLE, method, SAMPLED, 30, seed=7)[0])
    assert outputs[0] == outputs[1]


def test_hybrid_drafter_looks_up_first_and_asks_the_model_otherwise():
    model_runner = ContextRunner(bigram(DRAFT_TABLE), VOCAB)
    hybrid = HybridDrafter(NgramDrafter(VOCAB, set()), ModelDrafter(model_runner, GREEDY, set()))
    hybrid.start([0, 3])
    assert hybrid.propose([0, 3, 1, 0, 3], 2, None).tokens == [1, 0]  # (0, 3) occurred: what followed it
    assert hybrid.propose([0, 3, 2], 2, None).tokens == [1, 2]  # no match: the draft model's greedy 2 -> 1 -> 2
    hybrid.crop(2)
    assert model_runner.held == [0, 3]


def test_rollbacks_are_reported_in_their_commits():
    bild = Bild(rollback_threshold=1.0, max_little_steps=3, sampling=GREEDY)
    _, stats, commits, _ = run(TARGET_TABLE, DRAFT_TABLE, bild, GREEDY, 30, fallback_threshold=0.35)
    assert 0 < sum(commit.rolled_back for commit in commits) == stats.rollbacks < len(commits)
    for commit in commits:
        assert commit.rolled_back == (commit.sources[-1] == TARGET and bool(commit.discarded))


def test_a_little_model_writing_alone_is_counted_as_unverified():
    alone = Bild(rollback_threshold=1.0, max_little_steps=3, sampling=GREEDY, fallback_enabled=False)
    output, stats, commits, _ = run(TARGET_TABLE, DRAFT_TABLE, alone, GREEDY, 10)
    assert len(commits) > 1 and stats.unverified == len(output) == 10 and stats.target_calls == 0


def test_the_context_length_bounds_the_output():
    output, *_ = run(TARGET_TABLE, DRAFT_TABLE, Speculative(3, GREEDY), GREEDY, 50, max_length=len(PROMPT) + 7)
    assert len(output) == 7


def test_a_stop_string_ends_the_text_after_it():
    from biglittle.decoding.stopping import stop_check

    def text_of(ids):
        return " ".join(map(str, ids))

    full, *_ = run(TARGET_TABLE, TARGET_TABLE, Speculative(4, GREEDY), GREEDY, 20)
    stop = text_of(full[5:7])
    first = next(i for i in range(len(full)) if stop in text_of(full[: i + 1]))
    output, stats, commits, _ = run(
        TARGET_TABLE, TARGET_TABLE, Speculative(4, GREEDY), GREEDY, 20, stop_check=stop_check(text_of, (stop,))
    )
    assert output == full[: first + 1] and stats.new_tokens == first + 1
    assert sum(len(commit.tokens) for commit in commits) == first + 1


def test_the_chooser_sets_gamma_each_round():
    from biglittle.cost.gamma import GammaChooser
    from biglittle.cost.profile import CostProfile

    chooser = GammaChooser(CostProfile(1.0, 0.01, [1.0] * 6))  # drafting is nearly free: it speculates
    method = Speculative(0, GREEDY, chooser=chooser)
    output, stats, _, _ = run(TARGET_TABLE, TARGET_TABLE, method, GREEDY, 30)
    plain, *_ = run(TARGET_TABLE, TARGET_TABLE, Speculative(0, GREEDY), GREEDY, 30)
    assert output == plain and stats.proposed > 0 and max(stats.proposed_by_position) >= 2


def test_a_tree_proposal_is_refused_by_a_runner_that_scores_chains_only():
    class TreeDrafter(NgramDrafter):
        def propose(self, tokens, max_tokens, generator):
            return Proposal([1, 2], parents=[ROOT, ROOT])

    with pytest.raises(BigLittleError, match="scores chains only"):
        decode(
            PROMPT, ContextRunner(bigram(TARGET_TABLE), VOCAB), TreeDrafter(VOCAB, set()), Speculative(2, GREEDY),
            max_new_tokens=5, max_length=100, eos_token_ids=set(), generator=None,
        )  # fmt: skip


def test_round_statistics_count_each_draft_position():
    stats = GenerationStats()
    stats.record_round(3, 1)
    stats.record_round(3, 1)
    stats.record_round(2, 2)
    assert stats.proposed_by_position == {0: 3, 1: 3, 2: 2}
    assert stats.accepted_by_position == {0: 3, 1: 1}
    assert stats.accepted_lengths == {1: 2, 2: 1}
    assert (stats.proposed, stats.accepted, stats.discarded) == (8, 4, 4)
