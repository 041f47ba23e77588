"""Loading: a large-vocabulary tokenizer saved by this transformers loads without its false Mistral warning, unchanged.

transformers 4.57.3+ warns of "an incorrect regex pattern" for every local tokenizer of over 100,000 tokens whose
config.json it wrote (the default pair's: ~151,000), while changing nothing. The same must hold of our load.
"""

import io
import logging

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from biglittle.runtime.models import load_model

WORDS = 100_010  # over transformers' 100,000-token trigger
SAMPLES = ["w1 w2 w3", "w99999   w5", "w100009 w0 w42"]


@pytest.fixture(scope="module")
def large_vocab_model(tmp_path_factory):
    vocab = {"<unk>": 0, "</s>": 1, **{f"w{i}": i + 2 for i in range(WORDS)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="</s>")
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
        eos_token_id=1,
    )
    path = tmp_path_factory.mktemp("large_vocab")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_tokenizer_loads_without_the_false_mistral_regex_warning_and_tokenizes_alike(large_vocab_model):
    logger, stream = logging.getLogger("transformers"), io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    try:
        plain = AutoTokenizer.from_pretrained(large_vocab_model)
        assert "incorrect regex pattern" in stream.getvalue()  # transformers' own load warns (falsely)
        stream.truncate(0), stream.seek(0)
        loaded = load_model(large_vocab_model).tokenizer
        assert "incorrect regex pattern" not in stream.getvalue()
    finally:
        hf_logging.set_verbosity(verbosity)
        logger.removeHandler(handler)
    assert [loaded(s).input_ids for s in SAMPLES] == [plain(s).input_ids for s in SAMPLES]
    assert loaded.backend_tokenizer.pre_tokenizer.__getstate__() == plain.backend_tokenizer.pre_tokenizer.__getstate__()
