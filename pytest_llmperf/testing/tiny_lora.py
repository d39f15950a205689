"""A LoRA adapter for a tiny checkpoint (``testing.tiny_hf_model``), made offline: PEFT's file
layout (``adapter_config.json`` + ``adapter_model.safetensors``, tensors named
``base_model.model.model.layers.{i}.self_attn.{q,v}_proj.lora_{A,B}.weight``) written with
safetensors and torch alone, so no ``peft`` install is needed. Weights are seeded random (both
A and B non-zero, so the adapter changes the model's answers), in the base model's dtype.

``vllm serve BASE --enable-lora --lora-modules NAME=PATH --max-lora-rank R`` serves it as the
model ``NAME``.
"""

from __future__ import annotations

import json
from pathlib import Path

TARGETS = ("q_proj", "v_proj")


def make_tiny_lora(base: str | Path, dest: str | Path, *, rank: int = 8, alpha: int = 16,
                   seed: int = 1, scale: float = 0.5) -> Path:
    """Write the adapter of ``base`` (a checkpoint directory) into ``dest``; return it."""
    import importlib

    import torch

    save_file = importlib.import_module("safetensors.torch").save_file  # vLLM's environment

    config = json.loads((Path(base) / "config.json").read_text())
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads", heads))
    head_dim = int(config.get("head_dim") or hidden // heads)
    out_dims = {"q_proj": heads * head_dim, "v_proj": kv_heads * head_dim}
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(int(config["num_hidden_layers"])):
        for target in TARGETS:
            name = f"base_model.model.model.layers.{layer}.self_attn.{target}"
            tensors[f"{name}.lora_A.weight"] = (
                torch.randn(rank, hidden, generator=gen) * scale).to(torch.bfloat16)
            tensors[f"{name}.lora_B.weight"] = (
                torch.randn(out_dims[target], rank, generator=gen) * scale).to(torch.bfloat16)
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(base),
        "r": rank, "lora_alpha": alpha, "lora_dropout": 0.0, "bias": "none",
        "target_modules": list(TARGETS), "fan_in_fan_out": False, "modules_to_save": None,
        "inference_mode": True, "use_rslora": False, "use_dora": False,
    }, indent=1) + "\n")
    return out
