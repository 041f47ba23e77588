"""biglittle: a little and a big language model generating text together, faster than the big one alone.

Methods: plain autoregressive decoding (`ar`), exact speculative decoding (Leviathan, Kalman &
Matias 2023) and the Big Little Decoder (Kim et al. 2023).

    import biglittle
    pair = biglittle.load_pair("path/to/big", "path/to/little")
    result = biglittle.generate(pair, "Translate to English: Guten Morgen!", method="speculative", gamma=4)
    print(result.text, result.stats.acceptance_rate)
"""

from importlib import import_module

# Where each public name lives; imported on first use so that `biglittle --help` starts fast.
_EXPORTS = {
    "METHODS": "api",
    "GenerationConfig": "api",
    "GenerationResult": "api",
    "ModelPair": "api",
    "StreamChunk": "streaming",
    "GenerationCancelled": "streaming",
    "generate": "api",
    "load_pair": "api",
    "BigLittleError": "errors",
    "LoadedModel": "runtime.models",
    "load_model": "runtime.models",
    "GenerationStats": "decoding.stats",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'biglittle' has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
