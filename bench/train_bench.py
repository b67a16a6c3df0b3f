"""Training figures for the README: CPU step time with the README's defaults, and the memory plan for 7B bases.

Part 1 measures: a default build (3,000 records), the tests' 2-layer Llama with a byte-level BPE trained on
those records, `train` with its defaults (effective batch 16; on CPU 2 per device x 8 accumulation) for
``--steps`` optimizer steps, then the end-of-run evaluation on ``--evaluate`` validation inputs.

Part 2 computes (no GPU here): `kochallenge_data.ml.train.memory.estimate_memory` for two public 7B shapes
(their config.json values), sequences of ``--sequence`` tokens, LoRA rank 16, and which card sizes each
setting fits, with the per-device batch the trainer would pick on a 24 GiB card.

Run from the repository root: PYTHONPATH=. .venv/bin/python bench/train_bench.py
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kochallenge_data.ml.train.memory import ModelShape, estimate_memory, largest_fitting_batch

# Public config.json values of two 7B-class bases used for Korean.
SHAPES = {
    "Qwen2.5-7B": {"hidden_size": 3584, "num_hidden_layers": 28, "intermediate_size": 18944,
                   "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064},
    "EXAONE-3.5-7.8B": {"hidden_size": 4096, "num_hidden_layers": 32, "intermediate_size": 14336,
                        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 102400},
}  # fmt: skip
SETTINGS = [
    ("bf16 LoRA", {"precision": "bf16", "quantization": "none", "checkpointing": False}),
    ("bf16 LoRA + checkpointing", {"precision": "bf16", "quantization": "none", "checkpointing": True}),
    ("QLoRA 4-bit + checkpointing", {"precision": "bf16", "quantization": "4bit", "checkpointing": True}),
]
CARDS = (16, 24, 40, 80)


def memory_table(sequence: int) -> None:
    print(f"\n## memory estimate per GPU (sequences of {sequence} tokens, LoRA r 16; GiB)\n")
    print("| base | setting | batch 1 | batch 4 | fits (batch 1) | batch picked on 24 GiB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, config in SHAPES.items():
        shape = ModelShape.from_config(config)
        assert shape is not None
        for label, setting in SETTINGS:
            one = estimate_memory(shape, batch=1, sequence=sequence, lora_rank=16, **setting).total
            four = estimate_memory(shape, batch=4, sequence=sequence, lora_rank=16, **setting).total
            fits = ", ".join(f"{c} GB" for c in CARDS if one <= c * 0.93) or "none"  # a "24 GB" card has ~22.3 GiB
            picked = largest_fitting_batch(shape, 24 * 0.93, sequence=sequence, lora_rank=16, **setting)
            print(f"| {name} ({shape.parameters / 1e9:.1f}B) | {label} | {one:.1f} | {four:.1f} | {fits} | {picked} |")


def cpu_run(size: int, steps: int, evaluate: int) -> None:
    import torch

    from kochallenge_data.build import BuildConfig, build_dataset
    from kochallenge_data.ml.train import TrainOptions, train
    from kochallenge_data.writer import dataset_bytes
    from tests.tiny_model import build_tiny_model

    torch.set_num_threads(2)
    root = Path(tempfile.mkdtemp(prefix="train-bench-"))
    try:
        started = time.perf_counter()
        records = build_dataset(BuildConfig(size=size, seed=42)).records
        data = root / "data.json"
        data.write_bytes(dataset_bytes(r.model_dump() for r in records))
        base = build_tiny_model(records, root / "base")
        prepared_s = time.perf_counter() - started
        options = TrainOptions(data=data, base=base, out=root / "run", max_steps=steps, evaluate_limit=evaluate,
                               show_progress=False)  # fmt: skip
        report = train(options, progress=lambda _: None).report
        evaluation = report["evaluation"].get("all", {})
        print(
            f"\n## CPU training ({size} records, 2-layer tiny Llama, train defaults, {torch.get_num_threads()} threads)\n"
        )
        print("| measure | result |")
        print("| --- | --- |")
        print(f"| build + tokenizer + tiny base | {prepared_s:.1f} s |")
        print(f"| batch plan | {options.effective_batch_size} = 2 per device x "
              f"{options.effective_batch_size // 2} accumulation x 1 process |")  # fmt: skip
        print(f"| optimizer steps | {report['steps']} in {report['train_seconds']:.1f} s |")
        print(f"| seconds per optimizer step (16 records) | {report['seconds_per_step']:.2f} |")
        print(f"| records per second | {16 / report['seconds_per_step']:.1f} |")
        print(f"| one epoch would take | {report['records']['train'] / 16 * report['seconds_per_step'] / 60:.1f} min |")
        print(f"| end-of-run evaluation | {evaluation.get('count', 0)} answers, whole run {report['seconds']:.1f} s |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--evaluate", type=int, default=16)
    parser.add_argument("--sequence", type=int, default=512)
    args = parser.parse_args()
    memory_table(args.sequence)
    cpu_run(args.size, args.steps, args.evaluate)


if __name__ == "__main__":
    main()
