"""How much GPU memory a LoRA run needs, estimated from the base's shape before a weight loads.

An estimate, not a measurement: weights at their stored width (4-bit NF4 with double quantization
is about 0.52 bytes a parameter; embeddings and the head stay 16-bit), the LoRA parameters with
their fp32 gradients and Adam moments (16 bytes each), activations per token and layer (16-bit; with
gradient checkpointing only each layer's input is kept, plus one layer being recomputed), fp32 logits
for the loss, and a fixed allowance for the CUDA context and allocator fragmentation. It errs high,
because a plan that does not fit costs a crashed job and one that fits with room costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GIB = 2**30
CONTEXT_GIB = 1.5
"""CUDA context, cuBLAS workspaces and fragmentation: what a real job loses before the first tensor."""
BYTES_PER_WEIGHT = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "4bit": 0.52}
LORA_BYTES_PER_PARAMETER = 16.0  # fp32 weight + fp32 gradient + two fp32 Adam moments


@dataclass(frozen=True)
class ModelShape:
    """What the memory of a decoder-only transformer depends on, from its config.json."""

    parameters: int
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    kv_hidden: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any], parameters: int | None = None) -> ModelShape | None:
        text = config.get("text_config", config)
        try:
            hidden = int(text["hidden_size"])
            layers = int(text["num_hidden_layers"])
            heads = int(text.get("num_attention_heads") or 1)
            kv_heads = int(text.get("num_key_value_heads") or heads)
            intermediate = int(text.get("intermediate_size") or 4 * hidden)
            vocab = int(text["vocab_size"])
        except (KeyError, TypeError, ValueError):
            return None
        head_dim = int(text.get("head_dim") or hidden // heads)
        if parameters is None:
            per_layer = 2 * hidden * (hidden + kv_heads * head_dim) + 3 * hidden * intermediate
            parameters = layers * per_layer + 2 * vocab * hidden
        return cls(parameters, layers, hidden, intermediate, vocab, kv_heads * head_dim)

    def lora_parameters(self, rank: int) -> int:
        """Rank-r adapters on every linear layer of every block (q, k, v, o, gate, up, down)."""
        h, i, kv = self.hidden, self.intermediate, self.kv_hidden
        per_layer = rank * ((h + h) + 2 * (h + kv) + (h + h) + 2 * (h + i) + (i + h))
        return self.layers * per_layer


@dataclass(frozen=True)
class MemoryEstimate:
    """GiB per device, by what holds it."""

    weights: float
    lora: float
    activations: float
    logits: float
    context: float = CONTEXT_GIB

    @property
    def total(self) -> float:
        return self.weights + self.lora + self.activations + self.logits + self.context


def estimate_memory(
    shape: ModelShape,
    *,
    precision: str,
    quantization: str,
    checkpointing: bool,
    batch: int,
    sequence: int,
    lora_rank: int,
) -> MemoryEstimate:
    """Per-device GiB for a LoRA step on ``batch`` sequences of ``sequence`` tokens."""
    width = BYTES_PER_WEIGHT["4bit" if quantization == "4bit" else precision]
    embeddings = 2 * shape.vocab * shape.hidden
    stored = (shape.parameters - embeddings) * width + embeddings * min(BYTES_PER_WEIGHT[precision], 4.0)
    tokens = batch * sequence
    activation_bytes = 2.0 if precision in ("bf16", "fp16") else 4.0
    # A block keeps about 10 hidden-sized and 3 intermediate-sized tensors per token for its backward pass.
    per_layer = tokens * (10 * shape.hidden + 3 * shape.intermediate) * activation_bytes
    if checkpointing:
        activations = shape.layers * tokens * shape.hidden * activation_bytes + per_layer
    else:
        activations = shape.layers * per_layer
    logits = tokens * shape.vocab * 4.0 * 2  # fp32 logits and their gradient
    return MemoryEstimate(
        weights=stored / GIB,
        lora=shape.lora_parameters(lora_rank) * LORA_BYTES_PER_PARAMETER / GIB,
        activations=activations / GIB,
        logits=logits / GIB,
    )


def largest_fitting_batch(shape: ModelShape, free_gib: float, *, ceiling: int = 16, **settings: Any) -> int | None:
    """The largest power-of-two per-device batch (up to ``ceiling``) whose estimate fits in ``free_gib``;
    None when not even one sequence fits."""
    batch = ceiling
    while batch >= 1:
        if estimate_memory(shape, batch=batch, **settings).total <= free_gib:
            return batch
        batch //= 2
    return None
