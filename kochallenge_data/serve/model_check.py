"""What ``serve`` checks before it starts, and the vLLM command lines for the two ways to serve a run.

The two ways (the README's "Serving" section prints the same lines, from :func:`serving_hint`):

- **merged**: ``merge`` folds the adapter into its base; vLLM serves the merged folder
  (``vllm serve runs/merged``) and the router gets that folder, or only its config and tokenizer files;
- **base plus adapter**: vLLM serves the base and the adapter by name (``vllm serve models/base --enable-lora
  --lora-modules eco=runs/lora/adapter --max-lora-rank 16``); the router gets the ``train --out`` folder
  (``serve --model runs/lora --vllm-url http://gpu:8000 --served-model-name eco``), whose ``prompt.j2`` is the
  prompt the adapter learned.

:func:`check_model` runs the doctor: the whole of it where this process loads the weights (the transformers
backend), the config and tokenizer checks only where vLLM holds the weights on another host (``--vllm-url``).
A ``train --out`` folder (``RUN/adapter``, ``RUN/train_config.json``, ``RUN/prompt.j2``) is accepted for LoRA
serving: the base named in ``train_config.json`` is checked when it is on this host, else the run folder's own
copies of the base's config and tokenizer files.

The vLLM facts here were read in vLLM 0.33.0's wheel (the version the ``vllm`` extra pins):
``vllm/config/lora.py`` (``max_lora_rank`` is one of :data:`VLLM_LORA_RANKS`, default 16),
``vllm/lora/peft_helper.py`` (an adapter whose largest rank, ``r`` or a ``rank_pattern`` value, is above
``--max-lora-rank`` is refused, and so are the features in :func:`vllm_lora_problems`),
``vllm/engine/arg_utils.py`` (``--enable-lora``, ``--max-lora-rank``) and
``vllm/entrypoints/common/cli_args.py`` (``--lora-modules name=path``; the name is the model a request asks for).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import KochallengeError
from ..ml.doctor import METADATA_FILES, TOKENIZER_FILES, DoctorReport, doctor, format_report

TRAIN_CONFIG = "train_config.json"
ADAPTER_SUBDIR = "adapter"
ADAPTER_CONFIG = "adapter_config.json"
PROMPT_FILE = "prompt.j2"
"""The layout of a ``train --out`` folder (kochallenge_data.ml.train writes it)."""

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM 0.33 accepts for ``--max-lora-rank`` (``MaxLoRARanks`` in vllm/config/lora.py)."""

VLLM_LORA_MODULES_TO_SAVE = ("classifier", "score")
"""The only ``modules_to_save`` vLLM 0.33 serves (classification heads); anything else is refused at load."""

GPU_URL = "http://GPU_HOST:8000"
"""The placeholder printed where the vLLM server's address goes."""


class ModelRefused(KochallengeError):
    """The doctor found errors in the model directory: serving it would fail or misbehave."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------------------------
# the check before serve starts


def check_model(model_dir: Path, *, weights: bool, max_model_len: int | None = None) -> list[str]:
    """Run the doctor on what ``serve`` will use; refuse (raise :class:`ModelRefused`) on errors, return the
    warnings (and, for a train run, the vLLM command it needs) as lines to show.

    ``weights=True``: this process loads the model, so everything is checked. ``weights=False``: vLLM holds the
    weights elsewhere and this host only renders prompts, so config.json, generation_config.json and the
    tokenizer files are checked, and a ``train --out`` folder is accepted for LoRA serving.
    """
    model_dir = Path(model_dir)
    if is_train_run(model_dir):
        if weights:
            raise ModelRefused(
                f"{model_dir} is a train --out folder (a LoRA adapter): this process cannot load it. Serve it "
                f"through vLLM (--vllm-url; start vLLM with --enable-lora, see serve --help), or merge it first: "
                f"python -m kochallenge_data merge --base BASE --adapter {model_dir} --out MERGED",
                exit_code=2,
            )
        return check_train_run(read_train_run(model_dir), max_model_len=max_model_len)
    refuse_bare_adapter(model_dir)
    report = doctor(model_dir, max_model_len=max_model_len, weights=weights)
    return verdict(model_dir, report)


def verdict(model_dir: Path, report: DoctorReport) -> list[str]:
    """Raise on the doctor's errors; else its warnings as lines."""
    if report.errors or report.fatal:
        raise ModelRefused(
            f"{model_dir}: the doctor found {len(report.errors)} error(s); not serving it. Fix them "
            f"(python -m kochallenge_data fix / merge again) and retry:\n{format_report(report)}",
            exit_code=max(1, report.exit_code()),
        )
    return [f"warning: {f.code}: {f.file}: {f.message}" for f in report.warnings]


def refuse_bare_adapter(model_dir: Path) -> None:
    """An adapter folder given where its run folder was meant: name the run folder (it has the prompt)."""
    run_dir = model_dir.parent
    if (model_dir / ADAPTER_CONFIG).is_file() and is_train_run(run_dir) and not (model_dir / "config.json").exists():
        raise ModelRefused(
            f"{model_dir} is the adapter of the train run {run_dir}: pass --model {run_dir} (its prompt.j2 and "
            "train_config.json are what serving needs), or merge it first",
            exit_code=2,
        )


# --------------------------------------------------------------------------------------------
# a train --out folder served as base + adapter


@dataclass(frozen=True)
class TrainRun:
    """A ``train --out`` folder as the router sees it: the adapter, the base it names, its prompt."""

    run_dir: Path
    adapter_dir: Path
    adapter_config: Mapping[str, Any]
    base: Path | None
    """``options.base`` of train_config.json, as the training host wrote it (None without a train_config)."""
    train_config: Mapping[str, Any]

    @property
    def prompt(self) -> Path | None:
        path = self.run_dir / PROMPT_FILE
        return path if path.is_file() else None

    @property
    def rank(self) -> int:
        return adapter_rank(self.adapter_config, self.adapter_dir / ADAPTER_CONFIG)


def is_train_run(path: Path) -> bool:
    """A ``train --out`` folder: it holds the adapter. (A merged model holds train_config.json too, copied by
    merge for the answer budget, but no adapter folder.)"""
    return (path / ADAPTER_SUBDIR / ADAPTER_CONFIG).is_file()


def read_train_run(run_dir: Path) -> TrainRun:
    """Read ``RUN/adapter/adapter_config.json`` and ``RUN/train_config.json``; refuse a run that is unusable."""
    adapter_dir = run_dir / ADAPTER_SUBDIR
    config_path = adapter_dir / ADAPTER_CONFIG
    if not config_path.is_file():
        raise ModelRefused(
            f"{run_dir} has {TRAIN_CONFIG} but no {ADAPTER_SUBDIR}/{ADAPTER_CONFIG}: did training finish? "
            "Copy the whole train --out folder",
            exit_code=2,
        )
    adapter_config = read_json_object(config_path)
    train_path = run_dir / TRAIN_CONFIG
    train_config = read_json_object(train_path) if train_path.is_file() else {}
    options = train_config.get("options")
    base = options.get("base") if isinstance(options, Mapping) else None
    return TrainRun(
        run_dir=run_dir,
        adapter_dir=adapter_dir,
        adapter_config=adapter_config,
        base=Path(base) if isinstance(base, str) and base else None,
        train_config=train_config,
    )


def read_json_object(path: Path) -> Mapping[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelRefused(f"{path}: not readable JSON ({exc})", exit_code=2) from None
    if not isinstance(doc, dict):
        raise ModelRefused(f"{path}: not a JSON object", exit_code=2)
    return doc


def check_train_run(run: TrainRun, *, max_model_len: int | None = None) -> list[str]:
    """The router's checks for base + adapter: vLLM can serve the adapter, the base's tokenizer and config pass
    the doctor, the prompt is the trained one. Returns warnings and the vLLM command as lines."""
    problems = vllm_lora_problems(run.adapter_config)
    if problems:
        raise ModelRefused(
            f"{run.adapter_dir}: vLLM 0.33 cannot serve this adapter with --enable-lora: {'; '.join(problems)}. "
            f"Merge it instead (merge folds these in): python -m kochallenge_data merge --base BASE "
            f"--adapter {run.run_dir} --out MERGED",
            exit_code=1,
        )
    max_rank = vllm_max_lora_rank(run.rank)
    checked = tokenizer_folder(run)
    lines = verdict(checked, doctor(checked, max_model_len=max_model_len, weights=False))
    lines += prompt_warnings(run)
    lines += base_config_warnings(run, checked)
    name = lora_name(run.run_dir)
    vllm = lora_vllm_command(run.base or Path("BASE"), run.adapter_dir, name=name, rank=max_rank)
    lines.append(f"note: LoRA serving: start vLLM with `{vllm}` and serve with --served-model-name {name}")
    return lines


def tokenizer_folder(run: TrainRun) -> Path:
    """Where the router finds the base's config and tokenizer: the base itself when it is on this host, else the
    run folder's own copies; refused when there is neither."""
    if run.base is not None and run.base.is_dir():
        return run.base
    if any((run.run_dir / name).is_file() for name in METADATA_FILES):
        return run.run_dir
    where = f"the base it names ({run.base}) is not on this host" if run.base else f"it has no {TRAIN_CONFIG}"
    copies = ", ".join(("config.json", "generation_config.json", *TOKENIZER_FILES[:4]))
    raise ModelRefused(
        f"{run.run_dir}: {where} and the folder has no copy of the base's config and tokenizer files, so there is "
        f"nothing to check the prompts against. Copy config.json and the tokenizer files from the base into "
        f"{run.run_dir} (those of {copies} that the base has), or give the base's path as in train_config.json",
        exit_code=2,
    )


def prompt_warnings(run: TrainRun) -> list[str]:
    """A run without its prompt.j2 is served with the shipped layout: refused when training used another."""
    if run.prompt is not None:
        return []
    options = run.train_config.get("options")
    options = options if isinstance(options, Mapping) else {}
    if options.get("prompt_mode") == "chat-template" or options.get("prompt_template"):
        raise ModelRefused(
            f"{run.run_dir} has no {PROMPT_FILE}, and training did not use the shipped prompt layout "
            f"(prompt_mode {options.get('prompt_mode')!r}, prompt_template {options.get('prompt_template')!r}): "
            f"copy {PROMPT_FILE} from the training host's run folder",
            exit_code=2,
        )
    return [f"warning: {run.run_dir} has no {PROMPT_FILE}: serving renders prompts with the shipped layout"]


def base_config_warnings(run: TrainRun, checked: Path) -> list[str]:
    """The checked config.json against the base fingerprint train recorded (another base, another tokenizer)."""
    from ..ml.fingerprint import normalise_config

    fingerprint = run.train_config.get("base_fingerprint")
    recorded = fingerprint.get("config") if isinstance(fingerprint, Mapping) else None
    try:
        config = json.loads((checked / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return []  # the doctor has already said what is wrong with it
    if not isinstance(recorded, Mapping) or not isinstance(config, dict):
        return []
    actual = normalise_config(config)
    keys = sorted(k for k in recorded.keys() | actual.keys() if recorded.get(k) != actual.get(k))
    if not keys:
        return []
    return [
        f"warning: {checked}/config.json is not the config of the base {run.run_dir} was trained on (differs in "
        f"{', '.join(keys[:5])}): vLLM must serve that base, and the router's tokenizer files should be its own"
    ]


# --------------------------------------------------------------------------------------------
# the adapter as vLLM 0.33 reads it


def adapter_rank(config: Mapping[str, Any], source: Path | str = ADAPTER_CONFIG) -> int:
    """The largest LoRA rank in the adapter: ``r``, or a larger ``rank_pattern`` value (vLLM compares the max)."""
    r = config.get("r")
    pattern = config.get("rank_pattern") or {}
    values = [r, *pattern.values()] if isinstance(pattern, Mapping) else [r]
    ranks = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 0]
    if len(ranks) != len(values):
        raise ModelRefused(f"{source}: r and rank_pattern must be positive whole numbers (got r={r!r})", exit_code=2)
    return max(ranks)


def vllm_max_lora_rank(rank: int) -> int:
    """The ``--max-lora-rank`` to start vLLM with: the smallest value it accepts that holds ``rank``."""
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ModelRefused(
        f"LoRA rank {rank} is above {VLLM_LORA_RANKS[-1]}, the largest --max-lora-rank vLLM 0.33 accepts: merge "
        "the adapter and serve the merged model",
        exit_code=1,
    )


def vllm_lora_problems(config: Mapping[str, Any]) -> list[str]:
    """What in adapter_config.json vLLM 0.33 refuses to load (vllm/lora/peft_helper.py), for a person to read."""
    problems: list[str] = []
    saved = [m for m in config.get("modules_to_save") or [] if m not in VLLM_LORA_MODULES_TO_SAVE]
    if saved:
        problems.append(f"modules_to_save {saved} (whole modules saved beside the LoRA)")
    if config.get("trainable_token_indices"):
        problems.append("trainable_token_indices (trained token rows)")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        problems.append("trained biases (bias / lora_bias)")
    if config.get("use_dora"):
        problems.append("DoRA (use_dora)")
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower() not in ("gaussian", "eva", "orthogonal", "mica", "lora_ga"):
        problems.append(f"init_lora_weights {init!r} (it changes the base weights)")
    for key, what in (
        ("alora_invocation_tokens", "Activated LoRA"),
        ("layer_replication", "layer_replication"),
        ("use_bdlora", "block-diagonal LoRA"),
        ("use_qalora", "QALoRA"),
    ):
        if config.get(key):
            problems.append(f"{what} ({key})")
    return problems


# --------------------------------------------------------------------------------------------
# the command lines


def lora_name(run_dir: Path) -> str:
    """The name vLLM serves the adapter under (``--lora-modules NAME=...``): the run folder's name, made safe
    for vLLM's ``name=path`` form (no ``=`` or ``,``) and for a shell."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(run_dir).resolve().name).strip("-.")
    return name or "adapter"


def merged_vllm_command(model_dir: Path, *, max_model_len: int | None = None, dtype: str | None = None) -> str:
    """``vllm serve MERGED [--dtype D] [--max-model-len N]``: vLLM serves the merged folder under its path."""
    parts = ["vllm", "serve", str(model_dir)]
    if dtype:
        parts += ["--dtype", dtype]
    if max_model_len:
        parts += ["--max-model-len", str(max_model_len)]
    return shlex.join(parts)


def lora_vllm_command(base: Path, adapter_dir: Path, *, name: str, rank: int, max_model_len: int | None = None) -> str:
    """``vllm serve BASE --enable-lora --lora-modules NAME=ADAPTER --max-lora-rank R``; ``rank`` is the adapter's
    largest rank, rounded up here to a value vLLM accepts."""
    parts = ["vllm", "serve", str(base), "--enable-lora", "--lora-modules", f"{name}={adapter_dir}"]
    parts += ["--max-lora-rank", str(vllm_max_lora_rank(rank))]
    if max_model_len:
        parts += ["--max-model-len", str(max_model_len)]
    return shlex.join(parts)


def router_command(model_dir: Path, vllm_url: str = GPU_URL, served_model_name: str | None = None) -> str:
    """``python -m kochallenge_data serve --model DIR --vllm-url URL [--served-model-name NAME]``."""
    parts = ["python", "-m", "kochallenge_data", "serve", "--model", str(model_dir), "--vllm-url", vllm_url]
    if served_model_name:
        parts += ["--served-model-name", served_model_name]
    return shlex.join(parts)


def serving_hint(
    adapter: Path,
    *,
    merged_dir: Path | None = None,
    base: Path | None = None,
    max_model_len: int | None = None,
    vllm_url: str = GPU_URL,
) -> str:
    """Both ways to serve a trained adapter, as the lines to run on the GPU host and on the router host.

    ``adapter`` is the ``train --out`` folder, the adapter folder inside it, or an adapter from elsewhere (then
    the router gets the base and the shipped prompt layout). ``base`` defaults to the one train_config.json
    names; ``merged_dir`` (what ``merge --out`` wrote) adds the merged way. For ``merge``'s closing message and
    the README.
    """
    run = adapter_source(adapter)
    base = base or run.base or Path("BASE")
    name = lora_name(run.run_dir)
    router_dir = run.run_dir if run.run_dir != run.adapter_dir else base
    lines = ["serve it in one of two ways (vLLM in its own environment, on the GPU host):"]
    if merged_dir is not None:
        lines += [
            "  merged (one model, fastest):",
            f"    {merged_vllm_command(merged_dir, max_model_len=max_model_len)}",
            f"    {router_command(merged_dir, vllm_url)}",
        ]
    lines += [
        "  base plus adapter (vLLM loads the adapter by name; other adapters can share the base):",
        f"    {lora_vllm_command(base, run.adapter_dir, name=name, rank=run.rank, max_model_len=max_model_len)}",
        f"    {router_command(router_dir, vllm_url, name)}",
        "  the router host needs the model folder's config and tokenizer files only (and the run's prompt.j2)",
    ]
    return "\n".join(lines)


def adapter_source(path: Path) -> TrainRun:
    """The train run an adapter belongs to (given as the run folder or its adapter folder), or a bare adapter
    folder read as a run of its own with no train_config.json."""
    path = Path(path)
    if is_train_run(path):
        return read_train_run(path)
    if not (path / ADAPTER_CONFIG).is_file():
        raise ModelRefused(f"{path} has no {ADAPTER_CONFIG}: not a LoRA adapter or a train --out folder", exit_code=2)
    if is_train_run(path.parent) and path.name == ADAPTER_SUBDIR:
        return read_train_run(path.parent)
    return TrainRun(path, path, read_json_object(path / ADAPTER_CONFIG), base=None, train_config={})
