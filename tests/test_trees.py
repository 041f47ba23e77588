"""Trees of proposals verified in one pass: tree attention, caches after a round, the tree rules, greedy identity,
and the exact target distribution under sampling."""

import random
from collections import Counter

import pytest
import torch
from conftest import PROMPTS, VOCAB
from stats_checks import ALPHA, chi_square_pvalue, exact_distribution, sample_first_two

from biglittle import load_pair
from biglittle.decoding.acceptance import tree_greedy, tree_rejection_sample
from biglittle.decoding.lookup_index import LookupIndex
from biglittle.decoding.proposal import ROOT, Proposal
from biglittle.decoding.sampling import SamplingConfig
from biglittle.decoding.trees import Candidates, TreeDrafter, TreeShape
from biglittle.errors import BigLittleError
from biglittle.runtime.runner import ModelRunner

# A tree over word tokens: two first-level branches, one of them forked again below.
#   root -> 10 -> 11 -> 12
#                \-> 13
#        -> 14 -> 15
TREE_TOKENS = [10, 14, 11, 15, 12, 13]
TREE_PARENTS = [ROOT, ROOT, 0, 1, 2, 2]
CONTEXT = [2, 4, 5, 12]  # "<s> the cat sees"


@pytest.fixture(scope="module")
def exact_pair(tiny_models, request):
    """The pair at int8, whose scoring is batch-invariant (bit for bit: what greedy identity needs); at fp32 on a
    GPU (`--device cuda`, the GPU check), where int8 is not offered."""
    dtype = "int8" if request.config.getoption("--device") == "cpu" else "fp32"
    return load_pair(tiny_models["llama_target"], tiny_models["gpt2_draft"], dtype=dtype)


def assert_same(actual, expected):
    """Bit for bit on a CPU (the int8 pair is batch-invariant); a GPU's fp32 kernels change with the number of rows
    (the GPU check), so there to within rounding."""
    if actual.device.type == "cpu":
        assert torch.equal(actual, expected)
    else:
        torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)


def paths_to(parents):
    """Every node's path from the root, as a list of nodes."""
    paths = []
    for node, parent in enumerate(parents):
        paths.append(([] if parent == ROOT else paths[parent]) + [node])
    return paths


def ar_runner(model, tokens, prompt_length=None):
    """A runner that read `tokens` as plain decoding does: the prompt, then one token per pass; and its last logits."""
    prompt_length = len(CONTEXT) if prompt_length is None else prompt_length
    runner = ModelRunner(model, len(VOCAB))
    runner.start(tokens[:prompt_length])
    for end in range(prompt_length, len(tokens) + 1):
        logits = runner.forward(tokens[:end], 1)[0]
    return runner, logits


def chain_logits(model, tokens):
    return ar_runner(model, tokens)[1]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("role", ["target", "draft"])  # a Llama (target) and a GPT-2 (draft)
def test_tree_attention_gives_each_node_the_logits_of_its_path_scored_alone(
    tiny_models, exact_pair, precision, role, request
):
    if precision == "int8" and request.config.getoption("--device") != "cpu":
        pytest.skip("int8 runs on the CPU only: the fp32 case is this test on a GPU")
    pair = exact_pair if precision == "int8" else load_pair(tiny_models["llama_target"], tiny_models["gpt2_draft"])
    model = getattr(pair, role).model
    runner = ModelRunner(model, len(VOCAB))
    logits = runner.forward_tree(runner.start(CONTEXT), TREE_TOKENS, TREE_PARENTS, list(range(len(TREE_TOKENS))))
    assert logits.shape == (1 + len(TREE_TOKENS), len(VOCAB))
    expected = [chain_logits(model, CONTEXT)] + [
        chain_logits(model, CONTEXT + [TREE_TOKENS[n] for n in path]) for path in paths_to(TREE_PARENTS)
    ]
    for row, reference in enumerate(expected):
        if precision == "int8":  # batch-invariant scoring: bit for bit, what greedy identity needs
            assert torch.equal(logits[row], reference), row
        else:
            torch.testing.assert_close(logits[row], reference, rtol=0, atol=1e-5)


def test_a_tree_fed_level_by_level_gives_the_same_logits_as_in_one_pass(exact_pair):
    model = exact_pair.draft.model
    whole = ModelRunner(model, len(VOCAB))
    all_at_once = whole.forward_tree(whole.start(CONTEXT), TREE_TOKENS, TREE_PARENTS, list(range(6)))
    levels = ModelRunner(model, len(VOCAB))
    tokens = levels.start(CONTEXT)
    rows = [levels.forward_tree(tokens, TREE_TOKENS, TREE_PARENTS, [])]  # the committed text: the root's row
    for feed in ([0, 1], [2, 3], [4, 5]):
        rows.append(levels.forward_tree(tokens, TREE_TOKENS, TREE_PARENTS, feed))
    assert_same(torch.cat(rows), all_at_once)


@pytest.mark.parametrize("path", [(), (0,), (0, 2), (0, 2, 5), (1, 3)])
def test_after_a_tree_round_the_cache_holds_exactly_the_accepted_path(exact_pair, path):
    model = exact_pair.target.model
    runner = ModelRunner(model, len(VOCAB))
    tokens = runner.start(CONTEXT)
    runner.forward(tokens, 1)  # the prompt is read: the cache holds all but the last token, as the loop keeps it
    runner.crop(len(tokens) - 1)
    runner.forward_tree(tokens, TREE_TOKENS, TREE_PARENTS, list(range(6)))
    runner.retain(len(tokens), path)
    assert runner.cache_len == len(tokens) + len(path)
    kept = tokens + [TREE_TOKENS[n] for n in path]
    next_token = 7
    continued = runner.forward(kept + [next_token], 1)[0]
    fresh, fresh_logits = ar_runner(model, kept + [next_token])
    assert_same(continued, fresh_logits)
    for layer, fresh_layer in zip(runner._cache.layers, fresh._cache.layers):
        assert_same(layer.keys, fresh_layer.keys)
        assert_same(layer.values, fresh_layer.values)


def test_cropping_into_unretained_tree_nodes_is_refused(tiny_models):
    runner = ModelRunner(load_pair(tiny_models["llama_target"]).target.model, len(VOCAB))
    tokens = runner.start(CONTEXT)
    runner.forward_tree(tokens, TREE_TOKENS, TREE_PARENTS, [0, 1])
    with pytest.raises(RuntimeError, match="retain"):
        runner.crop(len(tokens) + 1)


def logits_with_choices(choices, vocab=20):
    """Logits [rows, vocab] whose argmax in row i is choices[i]."""
    logits = torch.zeros(len(choices), vocab)
    for row, token in enumerate(choices):
        logits[row, token] = 5.0
    return logits


def test_tree_greedy_follows_the_targets_argmax_through_the_tree():
    proposal = Proposal(TREE_TOKENS, parents=TREE_PARENTS)
    # rows: root, then after nodes 0..5
    assert tree_greedy(proposal, logits_with_choices([14, 11, 15, 13, 1, 1, 1])).path == (1, 3)
    verdict = tree_greedy(proposal, logits_with_choices([10, 11, 0, 13, 0, 1, 9]))
    assert (verdict.path, verdict.next_token) == ((0, 2, 5), 9)  # the bonus token after a leaf
    verdict = tree_greedy(proposal, logits_with_choices([10, 7, 0, 0, 0, 0, 0]))
    assert (verdict.path, verdict.next_token) == ((0,), 7)  # no child holds the choice: the correction
    verdict = tree_greedy(proposal, logits_with_choices([3, 0, 0, 0, 0, 0, 0]))
    assert (verdict.path, verdict.next_token) == ((), 3)


# The tree rule, by Monte Carlo at the rule level: first emitted token ~ p_root, and the second, given the first was
# an accepted node v, ~ p_v. N = 20,000 draws: against any alternative at total-variation distance 0.03 from the
# exact distribution the chi-square statistic's noncentrality is at least 4 N TV^2 = 72, so at significance
# ALPHA = 0.001 (critical value 20.5 for 5 degrees of freedom) the test detects it with power above 0.999.
DRAWS = 20_000
VOCAB6 = 6


def distribution(*weights):
    weights = torch.tensor(weights, dtype=torch.float64)
    return (weights / weights.sum()).float()


TARGET_ROWS = {  # p at the root and after each node
    ROOT: distribution(5, 3, 1, 1, 4, 6),
    0: distribution(1, 1, 6, 1, 1, 0.5),
    1: distribution(2, 0.2, 1, 3, 1, 1),
}


def run_rule(make_proposal, draws):
    """Draw a proposal (`make_proposal(generator)`) and let the rule decide, `draws` times."""
    generator = torch.Generator().manual_seed(0)
    first, second = Counter(), {node: Counter() for node in TARGET_ROWS if node != ROOT}
    for _ in range(draws):
        proposal = make_proposal(generator)
        rows = [TARGET_ROWS.get(node, distribution(1, 1, 1, 1, 1, 1)) for node in range(ROOT, len(proposal))]
        verdict = tree_rejection_sample(proposal, torch.stack(rows), generator)
        emitted = proposal.path_tokens(verdict.path) + [verdict.next_token]
        first[emitted[0]] += 1
        if verdict.path and verdict.path[0] in second:
            second[verdict.path[0]][emitted[1]] += 1
    return first, second


def as_dict(probs):
    return {token: float(p) for token, p in enumerate(probs) if p > 0}


FIRST_Q, CHILD_Q = distribution(1, 1, 1, 1, 5, 1), distribution(1, 1, 4, 1, 1, 1)


def draw(probs, generator):
    return int(torch.multinomial(probs, 1, generator=generator))


def iid_siblings(generator):
    """Two first-level children drawn i.i.d. from q (so they may repeat a token), each with a drawn child."""
    tokens = [draw(FIRST_Q, generator), draw(FIRST_Q, generator), draw(CHILD_Q, generator), draw(CHILD_Q, generator)]
    return Proposal(tokens, parents=[ROOT, ROOT, 0, 1], probs=torch.stack([FIRST_Q, FIRST_Q, CHILD_Q, CHILD_Q]))


def without_replacement(generator):
    """The second child is drawn from q without the first child's token: its q is renormalised without it."""
    first = draw(FIRST_Q, generator)
    rest = FIRST_Q.clone()
    rest[first] = 0
    rest /= rest.sum()
    tokens = [first, draw(rest, generator), draw(CHILD_Q, generator), draw(CHILD_Q, generator)]
    return Proposal(tokens, parents=[ROOT, ROOT, 0, 1], probs=torch.stack([FIRST_Q, rest, CHILD_Q, CHILD_Q]))


def point_masses(generator):
    """Children chosen without randomness (top-k, lookups), as the tree drafter proposes: q is a point mass."""
    return Proposal([5, 0, 2, 3], parents=[ROOT, ROOT, 0, 1])


TREES = {"i.i.d. siblings": iid_siblings, "without replacement": without_replacement, "point masses": point_masses}


@pytest.mark.parametrize("name", list(TREES))
def test_the_tree_rule_emits_exactly_the_targets_distribution(name):
    proposal = TREES[name]
    first, second = run_rule(proposal, DRAWS)
    assert chi_square_pvalue(first, as_dict(TARGET_ROWS[ROOT])) > ALPHA
    for node, counts in second.items():
        if sum(counts.values()) > 500:
            assert chi_square_pvalue(counts, as_dict(TARGET_ROWS[node])) > ALPHA, node


def test_the_rule_test_catches_a_rule_that_skips_the_residual():
    """Power check: trying every child against the original p (no residual update) is biased, and the test says so."""
    import biglittle.decoding.acceptance as acceptance

    original = acceptance.residual_distribution
    acceptance.residual_distribution = lambda target, draft: target
    try:
        first, _ = run_rule(TREES["point masses"], DRAWS)
    finally:
        acceptance.residual_distribution = original
    assert chi_square_pvalue(first, as_dict(TARGET_ROWS[ROOT])) < ALPHA


def random_prompts(count, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(VOCAB[4:]) for _ in range(rng.randint(1, 12))) for _ in range(count)]


@pytest.mark.parametrize("drafter", ["model", "ngram", "hybrid"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (6, 3, 2), (12, 4, 3)], ids=["1x1x1", "6x3x2", "12x4x3"])
def test_greedy_tree_equals_greedy_ar(exact_pair, drafter, shape):
    nodes, depth, width = shape
    settings = dict(tree=nodes, tree_depth=depth, tree_width=width, drafter=drafter)
    for prompt in PROMPTS + random_prompts(6, seed=nodes):
        ar = exact_pair.generate(prompt, method="ar", max_new_tokens=30)
        tree = exact_pair.generate(prompt, method="speculative", max_new_tokens=30, **settings)
        assert tree.token_ids == ar.token_ids, prompt
        assert tree.stats.target_calls <= ar.stats.target_calls


@pytest.mark.parametrize("drafter", ["model", "hybrid"])
def test_greedy_auto_tree_equals_greedy_ar(exact_pair, drafter):
    """--tree auto on a cheap flat cost profile (so that it grows trees) and on a costly one (so that it does not)."""
    from biglittle.cost.profile import CostProfile

    grown = 0
    for verify, draft_cost in ((FLAT_COSTS, 0.05), ([float(k) for k in range(1, 17)], 0.9)):
        exact_pair._profile = CostProfile(1.0, draft_cost, verify, [1.0] * 16)
        for prompt in PROMPTS:
            ar = exact_pair.generate(prompt, method="ar", max_new_tokens=30)
            tree = exact_pair.generate(prompt, method="speculative", tree="auto", drafter=drafter, max_new_tokens=30)
            assert tree.token_ids == ar.token_ids, prompt
            grown += tree.stats.proposed
            if verify is not FLAT_COSTS:  # a node costs a whole step to verify: never worth proposing
                assert tree.stats.proposed == 0
        if verify is FLAT_COSTS:
            assert grown > 0
    exact_pair._profile = None


FLAT_COSTS = [1.0 + 0.02 * k for k in range(16)]


def test_greedy_trees_were_tested_with_branches_accepted_beyond_the_first_choice(exact_pair):
    """The identity test is meaningful only if paths leave the little model's first choice and lookups get used."""
    ranks = Counter()
    for prompt in PROMPTS:
        stats = exact_pair.generate(
            prompt, method="speculative", tree=12, tree_depth=4, tree_width=3, drafter="hybrid", max_new_tokens=30
        ).stats
        ranks.update(stats.accepted_by_depth_rank)
    assert sum(n for (_, rank), n in ranks.items() if rank > 0) > 0
    assert sum(n for (depth, _), n in ranks.items() if depth >= 2) > 0


@pytest.mark.parametrize("drafter", ["model", "hybrid"])
def test_tree_sampling_preserves_the_target_distribution(decoder_pair, drafter):
    """As test_speculative's distribution test: 2,500 generations of the first two tokens at temperature 1, drawn
    from trees whose first level has three children."""
    prompt = "the cat"
    sampling = SamplingConfig(1.0)
    expected = exact_distribution(decoder_pair, prompt, sampling)
    counts = sample_first_two(
        decoder_pair, prompt, "speculative", 2500, temperature=1.0, tree=6, tree_depth=2, tree_width=3, drafter=drafter
    )
    assert chi_square_pvalue(counts, expected) > ALPHA


def test_lookup_finds_distinct_continuations_latest_first():
    index = LookupIndex(max_ngram=2)
    index.extend([1, 2, 3, 9, 1, 2, 4, 5, 7, 1, 2])
    assert index.continuations(max_length=3, max_branches=3) == [(2, [4, 5, 7]), (2, [3, 9, 1])]
    index.extend([1, 2, 3, 9, 1, 2, 4, 5, 7, 1, 2, 3])  # the text grows: only the new positions are indexed
    assert index.continuations(max_length=2, max_branches=1) == [(2, [9, 1])]
    index.extend([8, 8])  # another text: indexed afresh
    assert index.continuations(max_length=2, max_branches=2) == [(1, [8])]
    index.extend([5, 6, 7, 1, 6, 7, 2, 7])  # 1-token matches (after 7) come after the 2-token one would
    assert index.continuations(max_length=1, max_branches=3) == [(1, [2]), (1, [1])]


def test_tree_lookups_are_scored_by_the_length_of_their_match_and_learned_per_length():
    from biglittle.cost.match_chances import PRIOR_CHANCE, PRIOR_TRIES

    drafter = TreeDrafter(None, TreeShape(nodes=4, depth=3), eos_token_ids=set(), lookup=True)
    text = [1, 2, 3, 4, 5, 9, 3, 7, 8, 1, 2, 3]  # (1, 2, 3) before 4 5 9; (3) alone before 7 8 1
    proposal = drafter.propose(text, 3, None)
    # a 3-token match scores 0.8, 0.64, 0.51 down its branch, a 1-token one 0.3 at its first node: one chance for
    # every lookup would have taken 4, 7, 5, 8
    assert proposal.tokens == [4, 7, 5, 9] and proposal.parents == [-1, -1, 0, 2]
    drafter.retain(len(text), (0,))  # 4 accepted, then 5 rejected; 7 tried and rejected
    assert drafter.lookup_chances.chance(3) == pytest.approx((1 + PRIOR_CHANCE[3] * PRIOR_TRIES) / (2 + PRIOR_TRIES))
    assert drafter.lookup_chances.chance(1) == pytest.approx(PRIOR_CHANCE[1] * PRIOR_TRIES / (1 + PRIOR_TRIES))


def test_candidates_merge_repeated_tokens_and_choose_an_ancestor_closed_best_set():
    candidates = Candidates()
    a = candidates.add(7, ROOT, 0.9, "model")
    b = candidates.add(8, ROOT, 0.5, "model")
    c = candidates.add(9, a, 0.8, "model")  # score 0.72
    assert candidates.add(7, ROOT, 0.95, "lookup") == a and candidates.scores[a] == 0.95
    candidates.add(6, c, 1.0, "model")  # 0.72, deeper than c: chosen after c
    chosen = candidates.best(3)
    assert chosen == [a, c, 3]
    assert candidates.proposal(chosen).parents == [ROOT, 0, 1]
    assert b not in chosen


def test_trees_are_refused_for_encoder_decoder_models(seq2seq_pair):
    with pytest.raises(BigLittleError, match="decoder-only"):
        seq2seq_pair.generate("the cat sees a fish .", method="speculative", tree=4, max_new_tokens=5)
