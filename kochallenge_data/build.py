"""The build pipeline: sample -> render -> check -> keep or reject with a reason -> write once.

Every record passes the same checks ``validate`` runs on foreign files. A rejected record is
replaced, so the requested size is met exactly; rejections go to a sidecar with their reasons.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .build_gate import Checks, Gate, InlineChecks, PoolChecks, Sink
from .build_sink import FileSink, MemorySink, StreamedFile
from .checks.dedup import DEFAULT_THRESHOLD, DuplicateIndex
from .checks.diversity import DiversityTally
from .checks.record import RecordChecker
from .checks.spacing import SpacingChecker
from .errors import CapacityError, ConfigError, UsageError
from .generate import Candidate, Sampler, capacity, pool_to_grow
from .generate.sampler import DEFAULT_MAX_LINE_SHARE
from .models import TASKS, Record, Task
from .pools import Pools, load_pools
from .progress import SILENT, Reporter
from .safe_files import read_options_file
from .spacing_allowlist import load_allowlist
from .templates import Templates, load_templates
from .writer import dataset_bytes, json_bytes, jsonl_bytes, sha256_bytes, sha256_file, sidecar, write_atomic

# 3: the metadata sidecar records request facets and why each pick was chosen.
SCHEMA_VERSION = 3
CAPACITY_SHOWN_MAX = 10**15
# Diversity statistics read at most this many records per task (every k-th, so the whole build is spread over).
DIVERSITY_SAMPLE = 10_000


def _equal_mix() -> dict[Task, float]:
    mix: dict[Task, float] = {task: 1.0 for task in TASKS}
    return mix


class BuildConfig(BaseModel):
    """Everything that shapes a dataset; the same config and seed give the same bytes."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(default=3000, ge=1, le=1_000_000)
    seed: int = Field(default=42, ge=0, lt=2**63)
    mix: dict[Task, float] = Field(default_factory=_equal_mix)
    pools: Path | None = None
    templates: Path | None = None
    out: Path = Path("multitask_dataset_v2.json")
    challenges_per_output: int = Field(default=3, ge=1, le=10)
    feedback_limit: int = Field(default=100, ge=10)
    near_duplicate_threshold: float = Field(default=DEFAULT_THRESHOLD, gt=0.0, le=1.0)
    check_spacing: bool = True
    diversity: bool = True
    max_reject_share: float = Field(default=0.25, ge=0.0, le=10.0)
    # No single challenge line may take more of the recommendation lines than this, while others fit as well.
    max_line_share: float = Field(default=DEFAULT_MAX_LINE_SHARE, gt=0.0, le=1.0)

    @field_validator("mix")
    @classmethod
    def _mix_has_weight(cls, value: dict[Task, float]) -> dict[Task, float]:
        if not all(math.isfinite(w) for w in value.values()):
            raise ValueError("mix weights must be finite numbers (not nan or inf)")
        if any(w < 0 for w in value.values()) or sum(value.values()) <= 0:
            raise ValueError("mix weights must be >= 0 with at least one above 0")
        if sum(value.values()) > 1e12:
            raise ValueError("mix weights are relative shares; keep them below 10^12")
        return value

    def fingerprint_options(self) -> dict[str, Any]:
        """Options as recorded in the manifest: no absolute paths, so manifests compare across machines."""
        data = self.model_dump(mode="json", exclude={"pools", "templates", "out"})
        data["pools"] = "custom" if self.pools else "shipped"
        data["templates"] = "custom" if self.templates else "shipped"
        return data


def parse_mix(text: str) -> dict[Task, float]:
    """``base_info=1,free_text=1,feedback=2`` -> weights; unknown tasks are a usage error."""
    mix: dict[Task, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in TASKS:
            raise UsageError(f"--mix: unknown task {name!r}; use {', '.join(TASKS)}")
        try:
            mix[name] = float(weight)
        except ValueError:
            raise UsageError(f"--mix: weight for {name} is not a number: {weight!r}") from None
        if not math.isfinite(mix[name]) or mix[name] < 0:
            raise UsageError(f"--mix: weight for {name} must be a finite number >= 0, got {weight!r}")
    return mix


def split_counts(size: int, mix: Mapping[Task, float]) -> dict[Task, int]:
    """Exact per-task counts summing to ``size`` (largest remainder, ties in task order)."""
    total = sum(mix.get(t, 0.0) for t in TASKS)
    shares = {t: size * mix.get(t, 0.0) / total for t in TASKS}
    counts = {t: int(shares[t]) for t in TASKS}
    leftover = size - sum(counts.values())
    by_remainder = sorted(TASKS, key=lambda t: (-(shares[t] - counts[t]), TASKS.index(t)))
    for task in by_remainder[:leftover]:
        counts[task] += 1
    return counts


@dataclass
class BuildResult:
    records: list[Record]
    tasks: list[Task]
    meta: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    stats: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildPlan:
    """Everything decided before the first draw."""

    pools: Pools
    templates: Templates
    order: list[Task]
    capacities: dict[Task, int]
    sampler: Sampler
    checker: RecordChecker


def plan_build(config: BuildConfig) -> BuildPlan:
    pools = load_pools(config.pools)
    templates = load_templates(config.templates)
    counts = split_counts(config.size, config.mix)
    capacities = {t: capacity(pools, t, config.challenges_per_output) for t in TASKS}
    for task in TASKS:
        if counts[task] > capacities[task]:
            raise CapacityError(
                f"task {task} needs {counts[task]} distinct records but the pools can produce only "
                f"{capacities[task]}; grow {pool_to_grow(pools, task)}, or lower --size or this task's --mix weight"
            )
    rng = random.Random(config.seed)
    sampler = Sampler(pools, templates, rng, config.challenges_per_output, config.feedback_limit, config.max_line_share)
    order: list[Task] = [t for t in TASKS for _ in range(counts[t])]
    rng.shuffle(order)
    checker = RecordChecker(
        expected_challenges=config.challenges_per_output,
        feedback_limit=config.feedback_limit,
        spacing=SpacingChecker(load_allowlist(pools.root), precheck=True),
        check_spacing=config.check_spacing,
    )
    return BuildPlan(pools, templates, order, capacities, sampler, checker)


def diversity_strides(order: Sequence[Task], sample: int = DIVERSITY_SAMPLE) -> dict[Task, int]:
    """Every how many records of a task the diversity statistics read: 1 (all) up to ``sample`` per task."""
    counts = Counter(order)
    return {task: max(1, math.ceil(counts[task] / sample)) for task in counts}


@dataclass
class DiversitySample:
    """Every k-th record of each task, in dataset order (the same sample in memory and on disk)."""

    strides: dict[Task, int]
    tally: DiversityTally = field(default_factory=DiversityTally)
    seen: Counter[Task] = field(default_factory=Counter)

    def offer(self, candidate: Candidate) -> None:
        task = candidate.task
        if self.seen[task] % self.strides[task] == 0:
            self.tally.add(task, candidate.output)
        self.seen[task] += 1

    def result(self) -> dict[str, Any]:
        stats = self.tally.result()
        for task in TASKS:
            if task in stats and self.strides.get(task, 1) > 1:
                stats[task]["sampled_every"] = self.strides[task]
        return stats


@contextmanager
def open_checks(plan: BuildPlan, workers: int) -> Iterator[Checks]:
    """Where the gate's checks run: ``workers`` processes (1: this one); the workers end with the block."""
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    checks = InlineChecks(plan.checker) if workers == 1 else PoolChecks(plan.checker, workers)
    try:
        yield checks
    finally:
        if isinstance(checks, PoolChecks):
            checks.close()


def make_gate(config: BuildConfig, plan: BuildPlan, checks: Checks, sink: Sink) -> Gate:
    return Gate(plan.sampler, checks, DuplicateIndex(config.near_duplicate_threshold), sink, config.max_reject_share)


def build_dataset(config: BuildConfig, reporter: Reporter = SILENT, workers: int = 1) -> BuildResult:
    """Build the multitask dataset in memory; :func:`write_build` puts it on disk. For large builds the
    command uses :func:`build_to_files`, which gives the same bytes in flat memory. Any number of ``workers``
    gives the same bytes."""
    started = time.perf_counter()
    plan = plan_build(config)
    sink = MemorySink()
    with open_checks(plan, workers) as checks:
        gate = make_gate(config, plan, checks, sink)
        gate.fill(plan.order, reporter)
        stats = _stats(plan, gate)
        if config.diversity:
            sample = DiversitySample(diversity_strides(plan.order), DiversityTally(checks.read_words))
            for candidate in sink.accepted:
                sample.offer(candidate)
            stats["diversity"] = sample.result()
    accepted = sink.accepted
    records = [Record(instruction=c.instruction, input=c.input, output=c.output) for c in accepted]
    tasks = [c.task for c in accepted]
    meta = [dict(c.meta, index=i) for i, c in enumerate(accepted)]
    stats["seconds"] = round(time.perf_counter() - started, 2)
    result = BuildResult(records, tasks, meta, gate.rejected, stats)
    output_sha = sha256_bytes(dataset_bytes(r.model_dump() for r in records))
    result.manifest = _manifest(config, plan, stats, output_sha)
    return result


def build_to_files(
    config: BuildConfig, out: Path, reporter: Reporter = SILENT, workers: int = 1
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Build straight to ``out`` and its sidecars in flat memory: each record is written as it is accepted.
    The bytes equal ``write_build(build_dataset(config))``; nothing appears at ``out`` until every file is
    complete."""
    started = time.perf_counter()
    plan = plan_build(config)
    paths = {
        "meta": sidecar(out, "meta.jsonl"),
        "rejected": sidecar(out, "rejected.jsonl"),
        "manifest": sidecar(out, "manifest.json"),
        "dataset": out,
    }
    files: list[StreamedFile] = []
    try:
        for kind in ("rejected", "dataset", "meta"):
            files.append(StreamedFile(paths[kind]))
        rejected, dataset, meta = files
        with open_checks(plan, workers) as checks:
            # The diversity figures' words are read where the checks run, so a worker build's own process
            # never loads Kiwi.
            sample = DiversitySample(diversity_strides(plan.order), DiversityTally(checks.read_words))
            sink = FileSink(dataset, meta, sample.offer if config.diversity else None)
            gate = make_gate(config, plan, checks, sink)
            gate.on_reject = lambda item: rejected.write(orjson.dumps(item) + b"\n")
            gate.keep_rejected = False
            gate.fill(plan.order, reporter)
            sink.finish()
            stats = _stats(plan, gate)
            if config.diversity:
                stats["diversity"] = sample.result()
        stats["seconds"] = round(time.perf_counter() - started, 2)
        output_sha = str(dataset.digest.hexdigest())
        clear_sidecars(paths)
        dataset.commit()
        meta.commit()
        rejected.commit()
        write_atomic(paths["manifest"], json_bytes(_manifest(config, plan, stats, output_sha)))
    except BaseException:
        for file in files:
            file.discard()
        raise
    return stats, paths


def _stats(plan: BuildPlan, gate: Gate) -> dict[str, Any]:
    per_task = Counter(plan.order)
    return {
        "records": len(plan.order),
        "per_task": {t: per_task[t] for t in TASKS},
        "capacity": {t: min(plan.capacities[t], CAPACITY_SHOWN_MAX) for t in TASKS},
        "rejected": dict(sorted(gate.reasons.items())),
        "rejected_total": gate.rejected_total,
        "base_info_balance": {key: dict(sorted(counts.items())) for key, counts in gate.balance.items()},
    }


def _manifest(config: BuildConfig, plan: BuildPlan, stats: Mapping[str, Any], output_sha256: str) -> dict[str, Any]:
    from . import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "library_version": __version__,
        "seed": config.seed,
        "options": config.fingerprint_options(),
        "records": stats["records"],
        "per_task": stats["per_task"],
        "capacity": stats["capacity"],
        "rejected": stats["rejected"],
        "pool_files": {_relative(p, plan.pools.root): sha256_file(p) for p in plan.pools.files},
        "template_files": {_relative(p, plan.templates.root): sha256_file(p) for p in plan.templates.files},
        "output_sha256": output_sha256,
    }


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def clear_sidecars(paths: Mapping[str, Path]) -> None:
    """Remove the previous build's sidecars before the new dataset replaces the old one, then write the new ones
    with the manifest (which names the dataset's hash) last: a run killed at any moment leaves sidecars that belong
    to the dataset beside them, or none, never an old manifest or metadata beside a new dataset."""
    for kind in ("manifest", "meta", "rejected"):
        paths[kind].unlink(missing_ok=True)


def write_build(result: BuildResult, out: Path) -> dict[str, Path]:
    """Write the dataset and its sidecars, each atomically; the manifest (with the dataset's hash) last."""
    data = dataset_bytes(r.model_dump() for r in result.records)
    paths = {
        "meta": sidecar(out, "meta.jsonl"),
        "rejected": sidecar(out, "rejected.jsonl"),
        "manifest": sidecar(out, "manifest.json"),
        "dataset": out,
    }
    clear_sidecars(paths)
    write_atomic(paths["dataset"], data)
    write_atomic(paths["meta"], jsonl_bytes(result.meta))
    write_atomic(paths["rejected"], jsonl_bytes(result.rejected))
    write_atomic(paths["manifest"], json_bytes(result.manifest))
    return paths


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a build config (TOML or JSON) as a dict of BuildConfig fields."""
    return read_options_file(path, "build options")


def make_config(values: Mapping[str, Any], source: str = "options") -> BuildConfig:
    """Validate build options; a bad flag is a usage error naming the flag, a bad config file names the key."""
    try:
        return BuildConfig.model_validate(dict(values))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "options"
        message = str(first["msg"]).removeprefix("Value error, ")
        if source == "options":
            flag = "--" + key.split(".")[0].replace("_", "-")
            raise UsageError(f"{flag}: {message} (got {first.get('input')!r})") from exc
        raise ConfigError(f"{source}: {key}: {message}") from exc
