"""A tiny random-weight llama-architecture GGUF that llama.cpp loads in milliseconds.

For fast tests of the whole path (and of users' own suites): real llama.cpp, real tokenizer
(SentencePiece-style vocabulary with byte fallback), meaningless weights. Needs the ``gguf``
package (the ``dev`` extra). Widths are multiples of 256 so every GGUF quantization type,
K-quants included, can be made from it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

WORDS: tuple[str, ...] = tuple(
    (
        "the of and to in is was that for on are with as be at by this had not but from or have "
        "an they which one you were her all she there would their we him been has when who will "
        "more no if out so said what up its about into than them can only other new some could "
        "time these two may then do first any my now such like our over man me even most made "
        "after also did many before must through back years where much your way well down should "
        "because each just those people how too little state good very make world still own see "
        "men work long get here between both life being under never day same another know while "
        "last might us great old year off come since against go came right used take three model "
        "token cache batch layer prompt engine server latency memory speed quick brown fox jumps "
        "over lazy dog river stone light green water paper music house table window garden "
    ).split()
)

# SentencePiece token types as GGUF stores them.
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


def vocabulary() -> tuple[list[str], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"]
    types = [UNKNOWN, CONTROL, CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [BYTE] * 256
    pieces: list[str] = []
    for c in "abcdefghijklmnopqrstuvwxyz":
        pieces += [c, "\u2581" + c]
    pieces += ["\u2581" + w for w in WORDS]
    pieces += ["\u2581", ".", ",", "\u2581."]
    seen = set(tokens)
    for p in pieces:
        if p not in seen:  # llama.cpp aborts the process on duplicate token strings
            seen.add(p)
            tokens.append(p)
            types.append(NORMAL)
    return tokens, types


def write_tiny_gguf(
    path: str | Path,
    *,
    n_embd: int = 256,
    n_ff: int = 512,
    n_layer: int = 2,
    n_head: int = 4,
    n_ctx: int = 2048,
    seed: int = 0,
    chat_template: str | None = None,  # issue 25: tokenizer.chat_template, when given
) -> Path:
    """Write the model atomically to ``path`` and return it."""
    import gguf

    path = Path(path)
    tokens, types = vocabulary()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tiny-", suffix=".gguf", dir=path.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, "llama")
        writer.add_name("llmperf-tiny-random")
        writer.add_context_length(n_ctx)
        writer.add_embedding_length(n_embd)
        writer.add_block_count(n_layer)
        writer.add_feed_forward_length(n_ff)
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_head)
        writer.add_rope_dimension_count(n_embd // n_head)
        writer.add_layer_norm_rms_eps(1e-5)
        writer.add_file_type(0)  # all F32
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores([-float(i) for i in range(n_vocab)])
        writer.add_token_types(types)
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_unk_token_id(0)
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)
        if chat_template is not None:
            writer.add_chat_template(chat_template)
        writer.add_tensor("token_embd.weight", w(n_vocab, n_embd))
        writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor("output.weight", w(n_vocab, n_embd))
        for i in range(n_layer):
            p = f"blk.{i}."
            writer.add_tensor(p + "attn_norm.weight", np.ones(n_embd, dtype=np.float32))
            writer.add_tensor(p + "attn_q.weight", w(n_embd, n_embd))
            writer.add_tensor(p + "attn_k.weight", w(n_embd, n_embd))
            writer.add_tensor(p + "attn_v.weight", w(n_embd, n_embd))
            writer.add_tensor(p + "attn_output.weight", w(n_embd, n_embd))
            writer.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
            writer.add_tensor(p + "ffn_gate.weight", w(n_ff, n_embd))
            writer.add_tensor(p + "ffn_up.weight", w(n_ff, n_embd))
            writer.add_tensor(p + "ffn_down.weight", w(n_embd, n_ff))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
