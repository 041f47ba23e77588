"""The grid of settings a benchmark runs.

A setting is one way of generating (a method with its parameters, on one of the loaded models,
or a transformers peer); its label names it in the records, the tables and the plots.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..api import GenerationConfig
from ..peers.llamacpp_server import DRAFT_MAX
from .options import BenchOptions

DEFAULT_THRESHOLDS = (GenerationConfig.fallback_threshold, GenerationConfig.rollback_threshold)
TREE_DRAFTERS = {"model": "little model", "ngram": "lookup", "hybrid": "merged"}  # drafter -> what the tree holds
LLAMACPP_PLAIN = "llama.cpp plain"
LLAMACPP_ENGINES = {  # engine -> (label, llama.cpp mode: bench/llamacpp.py)
    "llamacpp-plain": (LLAMACPP_PLAIN, "plain"),
    "llamacpp-draft": (f"llama.cpp speculative γ={DRAFT_MAX}", "draft"),
    "llamacpp-ngram": (f"llama.cpp n-gram γ={DRAFT_MAX}", "ngram"),
}


@dataclass(frozen=True)
class Setting:
    label: str  # unique within a run
    family: str  # ar | small | speculative | ngram | trees | bild | peers | llamacpp | extra
    engine: str = "biglittle"
    model: str = "main"  # the pair that runs it: main, small, or an --extra-draft label
    model_spec: str = ""  # an extra draft's path or early-exit:L (so a changed spec is a new setting)
    method: str = "ar"
    drafter: str = "model"
    gamma: int | str | None = None
    tree: int | str | None = None
    temperature: float = 0.0
    fallback_threshold: float | None = None
    rollback_threshold: float | None = None

    def config(self, max_new_tokens: int, seed: int) -> GenerationConfig:
        """The GenerationConfig of a biglittle setting; unset fields keep GenerationConfig's defaults."""
        chosen = {
            "gamma": self.gamma,
            "tree": self.tree,
            "fallback_threshold": self.fallback_threshold,
            "rollback_threshold": self.rollback_threshold,
        }
        return GenerationConfig(
            method=self.method,
            drafter=self.drafter,
            temperature=self.temperature,
            seed=seed,
            max_new_tokens=max_new_tokens,
            **{name: value for name, value in chosen.items() if value is not None},
        )

    def params(self) -> dict:
        return asdict(self)


def _fmt(value: float) -> str:
    return f"{value:g}"


def bild_label(fallback: float, rollback: float, prefix: str = "") -> str:
    return f"{prefix}BiLD {_fmt(fallback)}/{_fmt(rollback)}"


def build_settings(options: BenchOptions) -> list[Setting]:
    """Every setting of the run, the baseline first."""
    settings = [Setting("Vanilla (large)", "ar")]
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
        settings += [
            Setting(
                f"{label}: speculative γ={gamma} T=0",
                "extra",
                model=label,
                model_spec=spec,
                method="speculative",
                gamma=gamma,
            )
            for gamma in options.gammas
        ]
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
    return settings
