"""The grid of settings a benchmark runs.

A setting is one way of generating (a method with its parameters, on one of the loaded models,
or a transformers peer); its label names it in the records, the tables and the plots.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase

from ..api import GenerationConfig
from ..config import TEST_ONLY_TASKS, TRIVIAL_DRAFTERS
from ..errors import BigLittleError
from ..peers.llamacpp_server import DRAFT_MAX
from .options import BenchOptions

BASELINE = "Vanilla (large)"  # ar on the big model: every run's baseline
DEFAULT_THRESHOLDS = (GenerationConfig.fallback_threshold, GenerationConfig.rollback_threshold)
TREE_DRAFTERS = {"model": "little model", "ngram": "lookup", "hybrid": "merged"}  # drafter -> what the tree holds
# Fields a setting leaves out of its parameters (and so of its records' keys) while they hold these values:
# settings that existed before them keep their keys, and a resumed run finds their records.
OMITTED_DEFAULTS = {"fallback": True, "rollback": True, "draft_text": None, "cross_tokenizer": False}
LLAMACPP_PLAIN = "llama.cpp plain"
LLAMACPP_ENGINES = {  # engine -> (label, llama.cpp mode: bench/llamacpp.py)
    "llamacpp-plain": (LLAMACPP_PLAIN, "plain"),
    "llamacpp-draft": (f"llama.cpp speculative γ={DRAFT_MAX}", "draft"),
    "llamacpp-ngram": (f"llama.cpp n-gram γ={DRAFT_MAX}", "ngram"),
}


@dataclass(frozen=True)
class Setting:
    label: str  # unique within a run
    family: str  # ar | small | speculative | ngram | trees | bild | peers | llamacpp | extra | precision
    engine: str = "biglittle"
    model: str = "main"  # the pair that runs it: main, small, an --extra-draft label, or (precision_pairs) P / P little
    model_spec: str = ""  # an extra draft's path or early-exit:L (so a changed spec is a new setting)
    method: str = "ar"
    drafter: str = "model"
    gamma: int | str | None = None
    tree: int | str | None = None
    temperature: float = 0.0
    fallback_threshold: float | None = None
    rollback_threshold: float | None = None
    fallback: bool = True  # False: BiLD's rollback-only ablation
    rollback: bool = True  # False: BiLD's fallback-only ablation
    draft_text: str | None = None  # unigram / bigram: a text file; None: the task's train split
    cross_tokenizer: bool = False  # an extra draft with its own tokenizer

    def runs_on(self, task: str) -> bool:
        """A unigram or bigram draft needs a text: the task's train split, which a test-only task lacks."""
        return not (self.drafter in TRIVIAL_DRAFTERS and self.draft_text is None and task in TEST_ONLY_TASKS)

    def config(self, max_new_tokens: int, seed: int, task: str | None = None) -> GenerationConfig:
        """The GenerationConfig of a biglittle setting on `task`; unset fields keep GenerationConfig's defaults."""
        chosen = {
            "gamma": self.gamma,
            "tree": self.tree,
            "fallback_threshold": self.fallback_threshold,
            "rollback_threshold": self.rollback_threshold,
            "draft_text": (self.draft_text or task) if self.drafter in TRIVIAL_DRAFTERS else None,
        }
        return GenerationConfig(
            method=self.method,
            drafter=self.drafter,
            temperature=self.temperature,
            seed=seed,
            max_new_tokens=max_new_tokens,
            fallback=self.fallback,
            rollback=self.rollback,
            **{name: value for name, value in chosen.items() if value is not None},
        )

    def params(self) -> dict:
        return {
            name: value
            for name, value in asdict(self).items()
            if name not in OMITTED_DEFAULTS or value != OMITTED_DEFAULTS[name]
        }


def _fmt(value: float) -> str:
    return f"{value:g}"


def bild_label(fallback: float, rollback: float, prefix: str = "") -> str:
    return f"{prefix}BiLD {_fmt(fallback)}/{_fmt(rollback)}"


def build_settings(options: BenchOptions, cross_tokenizer_drafts: frozenset[str] = frozenset()) -> list[Setting]:
    """Every setting of the run, the baseline first; `cross_tokenizer_drafts`: the --extra-draft labels whose
    tokenizer differs from the target's (speculative only, at temperature 0 and 1)."""
    settings = [Setting(BASELINE, "ar")]
    families = options.families
    if "small" in families:
        settings.append(Setting("Vanilla (small)", "small", model="small"))
    if "speculative" in families:
        for temperature in (0.0, 1.0):
            settings += [
                Setting(
                    f"speculative γ={gamma} T={_fmt(temperature)}",
                    "speculative",
                    method="speculative",
                    gamma=gamma,
                    temperature=temperature,
                )
                for gamma in options.gammas
            ]
        settings.append(Setting("speculative γ=auto T=0", "speculative", method="speculative", gamma="auto"))
    if "ngram" in families:
        for drafter in ("ngram", "hybrid"):
            settings += [
                Setting(f"{drafter} γ={gamma}", "ngram", method="speculative", drafter=drafter, gamma=gamma)
                for gamma in options.gammas
            ]
        # Lookups sized by their match (cost/lookup_lengths.py): the built-in pair's default.
        settings.append(Setting("ngram γ=auto", "ngram", method="speculative", drafter="ngram", gamma="auto"))
        # Those lookups, and the little model where they propose nothing, sized by its own acceptance.
        settings.append(Setting("hybrid γ=auto", "ngram", method="speculative", drafter="hybrid", gamma="auto"))
    if "trees" in families:
        settings += [
            Setting(
                f"tree auto ({TREE_DRAFTERS[drafter]})", "trees", method="speculative", drafter=drafter, tree="auto"
            )
            for drafter in TREE_DRAFTERS
        ]
        settings.append(
            Setting(
                "tree auto (merged) T=1", "trees", method="speculative", drafter="hybrid", tree="auto", temperature=1.0
            )
        )
    grid = dict.fromkeys((DEFAULT_THRESHOLDS, *options.bild_grid))  # the default is the report's "BiLD" row
    if "bild" in families:
        settings += [
            Setting(
                bild_label(fallback, rollback),
                "bild",
                method="bild",
                fallback_threshold=fallback,
                rollback_threshold=rollback,
            )
            for fallback, rollback in grid
        ]
    if "ablations" in families:  # BiLD's policies one at a time, at the default thresholds and step limit
        fallback, rollback = DEFAULT_THRESHOLDS
        settings += [
            Setting(
                f"BiLD fallback only {_fmt(fallback)}",
                "ablations",
                method="bild",
                fallback_threshold=fallback,
                rollback=False,
            ),
            Setting(
                f"BiLD rollback only {_fmt(rollback)}",
                "ablations",
                method="bild",
                rollback_threshold=rollback,
                fallback=False,
            ),
        ]
    if "trivial" in families:  # drafts that cost nothing (Leviathan et al., table 3): at temperature 0 and 1
        settings += [
            Setting(
                f"{drafter} γ={gamma} T={_fmt(temperature)}",
                "trivial",
                method="speculative",
                drafter=drafter,
                gamma=gamma,
                temperature=temperature,
                draft_text=options.draft_text,
            )
            for drafter in TRIVIAL_DRAFTERS
            for temperature in (0.0, 1.0)
            for gamma in options.gammas
        ]
    if "peers" in families:
        settings += [
            Setting("HF assisted", "peers", engine="hf-assisted"),
            Setting("HF prompt lookup", "peers", engine="hf-lookup"),
        ]
    if "llamacpp" in families:  # gamma: the most tokens a round proposes (the servers are started with it)
        settings += [
            Setting(label, "llamacpp", engine=engine, gamma=None if mode == "plain" else DRAFT_MAX)
            for engine, (label, mode) in LLAMACPP_ENGINES.items()
        ]
    for label, spec in options.extra_drafts.items():
        cross = label in cross_tokenizer_drafts
        settings += [
            Setting(
                f"{label}: speculative γ={gamma} T={_fmt(temperature)}",
                "extra",
                model=label,
                model_spec=spec,
                method="speculative",
                gamma=gamma,
                temperature=temperature,
                cross_tokenizer=cross,
            )
            for temperature in ((0.0, 1.0) if cross else (0.0,))  # exact at T=1 too: worth showing across tokenizers
            for gamma in options.gammas
        ]
        if cross:
            continue  # BiLD needs a little model sharing the target's tokenizer
        settings += [
            Setting(
                bild_label(fallback, rollback, prefix=f"{label}: "),
                "extra",
                model=label,
                model_spec=spec,
                method="bild",
                fallback_threshold=fallback,
                rollback_threshold=rollback,
            )
            for fallback, rollback in grid
        ]
    settings += [setting for precision in options.also_precisions for setting in precision_settings(precision)]
    return _only(settings, options.only)


def precision_pairs(precision: str) -> tuple[str, str]:
    """The pairs an --also-precision P adds: both models in P ("int4"), and the big model in --precision's
    with the little model in P ("int4 little")."""
    return precision, f"{precision} little"


def precision_settings(precision: str) -> list[Setting]:
    """The big model alone and the exact defaults with both models in `precision`, and the little model in it
    drafting for the big one in --precision's, alone and with lookups."""
    both, little = precision_pairs(precision)
    auto = {"method": "speculative", "gamma": "auto"}
    return [
        Setting(f"{both}: {BASELINE}", "precision", model=both),
        Setting(f"{both}: ngram γ=auto", "precision", model=both, drafter="ngram", **auto),
        Setting(f"{both}: speculative γ=auto T=0", "precision", model=both, **auto),
        Setting(f"{little}: speculative γ=auto T=0", "precision", model=little, **auto),
        Setting(f"{little}: hybrid γ=auto", "precision", model=little, drafter="hybrid", **auto),
    ]


def _only(settings: list[Setting], patterns: tuple[str, ...]) -> list[Setting]:
    """The baseline and the settings whose label matches a pattern (all of them without patterns), with the big model
    of each --also-precision whose rows are chosen (their tokens are compared with its)."""
    chosen = [s for s in settings if not patterns or s.family == "ar" or any(fnmatchcase(s.label, p) for p in patterns)]
    references = {f"{s.model}: {BASELINE}" for s in chosen if s.family == "precision"}
    chosen = [s for s in settings if s in chosen or s.label in references]
    if len(chosen) == 1 and len(settings) > 1:
        raise BigLittleError(f"--only {','.join(patterns)} matches no setting of this run besides the baseline")
    return chosen
