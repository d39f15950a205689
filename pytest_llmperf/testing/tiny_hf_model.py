"""A tiny random-weight Llama checkpoint in Hugging Face format, made offline, for vLLM tests.

``make_tiny_llama()`` writes a directory that vLLM (and transformers) load as any local
checkpoint: ``config.json`` (Llama, 2 layers, hidden 128, 4 heads, 2 KV heads),
``model.safetensors`` (random weights from a fixed seed) and a byte-level BPE tokenizer
trained by the ``tokenizers`` library on the English text below (``<s>``/``</s>`` as bos/eos,
a small chat template). Nothing comes from a hub. The weights mean nothing; the model is for
measuring the machinery (streaming, batching, counts), not for its text.

The checkpoint is made once per content (the parameters, the training text and this
module's format version) and cached under the plugin's cache directory
(``models.packaged.cache_dir()``): it is built in a temporary sibling directory and renamed
into place, so a reader never sees a half-written checkpoint, and concurrent makers (xdist
workers) settle on one copy. Needs torch, transformers and tokenizers (the vLLM environment
has them); they are imported only when a checkpoint is made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..models.packaged import cache_dir

# Bump when the files written change shape, so caches made by an older version are not used.
FORMAT_VERSION = 1
MARKER = "llmperf-tiny-model.json"

BOS, EOS, PAD = "<s>", "</s>", "<pad>"

# The tokenizer's training text: plain English, so the vocabulary holds whole common words
# (pieces such as "Ġthe") as a real model's does.
TEXT = """\
The quick brown fox jumps over the lazy dog. A model turns a prompt into tokens, and each new
token depends on every token before it. The engine keeps a cache of keys and values so that
the next step does not read the whole prompt again. When many people send requests at the same
time, the server puts them in one batch, and the batch moves through the layers together.
Latency is the time a person waits for the first word; throughput is how many words the
machine makes in a second. Both matter, and a change that helps one can hurt the other.
The river ran past the old stone house, and the light on the water was green in the evening.
She opened the window, put the paper on the table, and listened to the music from the garden.
They had walked for three days before they came to the town, and the people there were kind.
He said that the first year was the hardest, because there was little work and much to learn.
We measure memory in megabytes and speed in tokens per second, and we keep every number.
Numbers in a report should be the same numbers that the tests check, or nobody trusts them.
One two three four five six seven eight nine ten eleven twelve twenty thirty hundred.
What is the capital of France? Paris is the capital of France. Which number is larger, seven
or nine? Nine is larger than seven. Water freezes when it is cold and boils when it is hot.
The system was slow during the morning, so the program waited and asked the question again.
Without a plan the work takes longer; with a plan it still takes longer, but less so.
"""

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}"
    "</s>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


# Reasoning and answer phases (issue 24): a variant whose tokenizer has DeepSeek-R1's think
# tokens as special tokens and whose chat template opens the assistant's turn with ``<think>``,
# as R1's does, so vLLM's ``deepseek_r1`` reasoning parser (and its thinking budget) apply.
THINK_START, THINK_END = "<think>", "</think>"
THINK_CHAT_TEMPLATE = CHAT_TEMPLATE.replace("<|assistant|>\n{% endif %}",
                                            "<|assistant|>\n<think>\n{% endif %}")


def model_params(vocab_size: int = 1024, seed: int = 0, think: bool = False) -> dict[str, Any]:
    """What identifies a tiny checkpoint (the cache key is made from it)."""
    if think:  # keys only for the variant: the default checkpoint's cache key is unchanged
        return {**model_params(vocab_size, seed), "chat_template": THINK_CHAT_TEMPLATE,
                "think_tokens": [THINK_START, THINK_END]}
    return {
        "format_version": FORMAT_VERSION, "vocab_size": vocab_size, "seed": seed,
        "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
        "text_sha256": hashlib.sha256(TEXT.encode()).hexdigest(),
        "chat_template": CHAT_TEMPLATE,
    }


def cache_key(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def default_dir(vocab_size: int = 1024, seed: int = 0, think: bool = False) -> Path:
    """Where ``make_tiny_llama()`` caches the checkpoint of these parameters."""
    return cache_dir() / "tiny-llama-hf" / cache_key(model_params(vocab_size, seed, think))


def is_complete(path: Path) -> bool:
    return (Path(path) / MARKER).is_file()


def make_tiny_llama(dest: str | Path | None = None, *, vocab_size: int = 1024,
                    seed: int = 0, think: bool = False) -> Path:
    """The directory of a tiny Llama checkpoint (config, safetensors weights, tokenizer).

    ``dest``: where to put it (default: the cache, ``default_dir()``). An existing complete
    checkpoint there is returned as it is; otherwise it is made in a temporary sibling and
    renamed into place. ``think``: the reasoning variant (``THINK_START``/``THINK_END``
    special tokens, a chat template that opens the answer with ``<think>``)."""
    target = (Path(dest).expanduser() if dest is not None
              else default_dir(vocab_size, seed, think))
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write(tmp, model_params(vocab_size, seed, think))
        if target.exists() and not is_complete(target):
            shutil.rmtree(target, ignore_errors=True)  # a torn copy from before (not ours)
        try:
            os.rename(tmp, target)
        except OSError:
            if not is_complete(target):  # another maker finished first: keep theirs
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def train_tokenizer(vocab_size: int, extra_special: tuple[str, ...] = ()) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``TEXT`` (bos added on encode);
    ``extra_special``: more special tokens (one id each), after bos, eos and pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=1, show_progress=False,
        special_tokens=[BOS, EOS, PAD, *extra_special],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXT.splitlines(), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
        special_tokens=[(BOS, tok.token_to_id(BOS))])
    return tok


def _write(out: Path, params: dict[str, Any]) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(params["vocab_size"],
                                         tuple(params.get("think_tokens", ()))),
        bos_token=BOS, eos_token=EOS, pad_token=PAD)
    fast.chat_template = params["chat_template"]
    fast.save_pretrained(out)

    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=params["hidden_size"],
        intermediate_size=params["intermediate_size"],
        num_hidden_layers=params["num_hidden_layers"],
        num_attention_heads=params["num_attention_heads"],
        num_key_value_heads=params["num_key_value_heads"],
        max_position_embeddings=params["max_position_embeddings"],
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id, tie_word_embeddings=False,
    )
    with _seeded(params["seed"]):
        model = LlamaForCausalLM(config)
    model.to(torch.bfloat16)
    model.config.torch_dtype = torch.bfloat16
    model.save_pretrained(out, safe_serialization=True)
    (out / MARKER).write_text(json.dumps(params, sort_keys=True, indent=1) + "\n")


@contextlib.contextmanager
def _seeded(seed: int) -> Any:
    """torch's global generator seeded for the block, restored after."""
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


if __name__ == "__main__":  # python -m pytest_llmperf.testing.tiny_hf_model: make it, print it
    print(make_tiny_llama())
