"""What runs the models: loading, a model with its KV cache, precisions and kernels, cheaper drafts, the default pair.

models.py            loading (hub id, directory, GGUF) and the pair's tokenizer check
runner.py            one model and its KV cache: feed unseen tokens -> logits, crop
quantize.py          batch-invariant int8 and the measured choice of --precision auto
restricted_vocab.py  a draft that scores only its K most frequent tokens
early_exit/          the target's first L layers as the draft: the view, the shared cache, a trained head
fetch.py             the default pair from its PyPI parts
"""
