"""biglittle: a little and a big language model generating text together, faster than the big one alone.

Methods: plain autoregressive decoding (`ar`), exact speculative decoding (Leviathan, Kalman &
Matias 2023) and the Big Little Decoder (Kim et al. 2023).

    import biglittle
    pair = biglittle.load_pair("path/to/big", "path/to/little")
    result = biglittle.generate(pair, "Translate to English: Guten Morgen!", method="speculative", gamma=4)
    print(result.text, result.stats.acceptance_rate)
"""

from .api import METHODS, GenerationConfig, GenerationResult, ModelPair, generate, load_pair
from .errors import BigLittleError
from .models import LoadedModel, load_model
from .stats import GenerationStats

__all__ = [
    "METHODS",
    "BigLittleError",
    "GenerationConfig",
    "GenerationResult",
    "GenerationStats",
    "LoadedModel",
    "ModelPair",
    "generate",
    "load_model",
    "load_pair",
]
