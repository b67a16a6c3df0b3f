"""The build pipeline: sample -> render -> check -> keep or reject with a reason -> write once.

Every record passes the same checks ``validate`` runs on foreign files. A rejected record is
replaced, so the requested size is met exactly; rejections go to a sidecar with their reasons.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .checks.dedup import DEFAULT_THRESHOLD, DuplicateIndex
from .checks.diversity import diversity_stats
from .checks.record import RecordChecker
from .checks.spacing import SpacingChecker
from .errors import CapacityError, ConfigError, KochallengeError
from .generate import Candidate, Sampler, capacity, pool_to_grow
from .generate.sampler import DEFAULT_MAX_LINE_SHARE
from .models import TASKS, Finding, Record, Task
from .pools import Pools, load_pools
from .spacing_allowlist import load_allowlist
from .templates import Templates, load_templates
from .writer import dataset_bytes, json_bytes, jsonl_bytes, sha256_bytes, sha256_file, sidecar, write_atomic

# 3: the metadata sidecar records request facets and why each pick was chosen.
SCHEMA_VERSION = 3
BATCH = 512
CAPACITY_SHOWN_MAX = 10**15
# Consecutive draws that only repeat earlier records before a task counts as exhausted.
MAX_REPEATS = 2000
MIN_ALLOWED_REJECTS = 20


def _equal_mix() -> dict[Task, float]:
    mix: dict[Task, float] = {task: 1.0 for task in TASKS}
    return mix


class BuildConfig(BaseModel):
    """Everything that shapes a dataset; the same config and seed give the same bytes."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(default=3000, ge=1, le=1_000_000)
    seed: int = 42
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
        if any(w < 0 for w in value.values()) or sum(value.values()) <= 0:
            raise ValueError("mix weights must be >= 0 with at least one above 0")
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
            raise ConfigError(f"--mix: unknown task {name!r}; use {', '.join(TASKS)}")
        try:
            mix[name] = float(weight)
        except ValueError:
            raise ConfigError(f"--mix: weight for {name} is not a number: {weight!r}") from None
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


ProgressFn = Callable[[int, int], None]


def build_dataset(config: BuildConfig, progress: ProgressFn | None = None) -> BuildResult:
    """Build the multitask dataset in memory; :func:`write_build` puts it on disk."""
    started = time.perf_counter()
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
        spacing=SpacingChecker(load_allowlist(pools.root)),
        check_spacing=config.check_spacing,
    )
    gate = _Gate(config, sampler, checker, DuplicateIndex(config.near_duplicate_threshold))
    accepted = gate.fill(order, progress)
    records = [Record(instruction=c.instruction, input=c.input, output=c.output) for c in accepted]
    meta = [dict(c.meta, index=i) for i, c in enumerate(accepted)]
    stats = _stats(config, records, order, meta, gate, capacities)
    if config.diversity:
        stats["diversity"] = diversity_stats([r.model_dump() for r in records], order)
    stats["seconds"] = round(time.perf_counter() - started, 2)
    result = BuildResult(records, order, meta, gate.rejected, stats)
    result.manifest = _manifest(config, pools, templates, result, capacities)
    return result


@dataclass
class _Gate:
    """Draws candidates until every slot holds a record that passed every check."""

    config: BuildConfig
    sampler: Sampler
    checker: RecordChecker
    duplicates: DuplicateIndex
    rejected: list[dict[str, Any]] = field(default_factory=list)
    seen: set[Hashable] = field(default_factory=set)
    blame: Counter[str] = field(default_factory=Counter)

    def fill(self, order: list[Task], progress: ProgressFn | None) -> list[Candidate]:
        slots: list[Candidate | None] = [None] * len(order)
        pending = list(range(len(order)))
        # A few rejects are normal even in tiny builds; beyond the share, the pools need fixing.
        allowed_rejects = int(self.config.max_reject_share * len(order)) + MIN_ALLOWED_REJECTS
        done = 0
        while pending:
            batch, pending = pending[:BATCH], pending[BATCH:]
            candidates = [self._draw_new(order[slot]) for slot in batch]
            items = [(slot, c.model_record(), c.task) for slot, c in zip(batch, candidates, strict=True)]
            all_findings = self.checker.check_many(items)
            for slot, candidate, findings in zip(batch, candidates, all_findings, strict=True):
                if not findings:
                    hit = self.duplicates.add(f"{candidate.input}\n{candidate.output}", slot)
                    if hit is not None:
                        kind, other, similarity = hit
                        findings = [
                            Finding(
                                index=slot,
                                field="output",
                                code=kind,
                                message=f"like record {other} ({similarity:.2f})",
                            )
                        ]
                if findings:
                    self._reject(candidate, findings)
                    if len(self.rejected) > allowed_rejects:
                        raise KochallengeError(self._too_many_rejects_message())
                    pending.append(slot)
                else:
                    slots[slot] = candidate
                    done += 1
            if progress is not None:
                progress(done, len(order))
        return [c for c in slots if c is not None]

    def _draw_new(self, task: Task) -> Candidate:
        for _ in range(MAX_REPEATS):
            candidate = self.sampler.draw(task)
            if candidate.key not in self.seen:
                self.seen.add(candidate.key)
                return candidate
        found = sum(1 for key in self.seen if isinstance(key, tuple) and key[0] == task)
        raise CapacityError(
            f"task {task}: the pools ran out of new records after {found} distinct ones "
            f"({MAX_REPEATS} draws in a row repeated earlier records); grow {pool_to_grow(self.sampler.pools, task)}"
        )

    def _reject(self, candidate: Candidate, findings: list[Finding]) -> None:
        reasons = sorted({f.code for f in findings})
        sources = _sources(candidate.meta)
        self.blame.update(f"{source} ({reason})" for source in sources for reason in reasons)
        self.rejected.append(
            {
                "task": candidate.task,
                "reasons": reasons,
                "findings": [f.model_dump(exclude={"index"}, exclude_none=True) for f in findings],
                "record": candidate.model_record(),
                "meta": candidate.meta,
            }
        )

    def _too_many_rejects_message(self) -> str:
        worst = ", ".join(f"{item} x{n}" for item, n in self.blame.most_common(5))
        return (
            f"the checks rejected {len(self.rejected)} candidates, more than allowed for this size; "
            f"the pool items most often involved: {worst}. Fix those phrases (run lint-pools) and build again"
        )


def _sources(meta: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for key in ("recommend", "message", "instruction"):
        if isinstance(meta.get(key), str):
            found.append(meta[key])
    for key in ("challenges", "phrases"):
        found += [s for s in meta.get(key, []) if isinstance(s, str)]
    return found


def _stats(
    config: BuildConfig,
    records: list[Record],
    order: list[Task],
    meta: list[dict[str, Any]],
    gate: _Gate,
    capacities: Mapping[Task, int],
) -> dict[str, Any]:
    per_task = Counter(order)
    rejected = Counter(reason for item in gate.rejected for reason in item["reasons"])
    return {
        "records": len(records),
        "per_task": {t: per_task[t] for t in TASKS},
        "capacity": {t: min(capacities[t], CAPACITY_SHOWN_MAX) for t in TASKS},
        "rejected": dict(sorted(rejected.items())),
        "rejected_total": len(gate.rejected),
        "base_info_balance": {
            key: dict(sorted(Counter(m[key] for m in meta if m["task"] == "base_info").items()))
            for key in ("category", "location", "work_type")
        },
    }


def _manifest(
    config: BuildConfig,
    pools: Pools,
    templates: Templates,
    result: BuildResult,
    capacities: Mapping[Task, int],
) -> dict[str, Any]:
    from . import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "library_version": __version__,
        "seed": config.seed,
        "options": config.fingerprint_options(),
        "records": len(result.records),
        "per_task": result.stats["per_task"],
        "capacity": {t: min(capacities[t], CAPACITY_SHOWN_MAX) for t in TASKS},
        "rejected": result.stats["rejected"],
        "pool_files": {_relative(p, pools.root): sha256_file(p) for p in pools.files},
        "template_files": {_relative(p, templates.root): sha256_file(p) for p in templates.files},
        "output_sha256": sha256_bytes(dataset_bytes(r.model_dump() for r in result.records)),
    }


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def write_build(result: BuildResult, out: Path) -> dict[str, Path]:
    """Write sidecars first and the dataset last, each atomically."""
    data = dataset_bytes(r.model_dump() for r in result.records)
    paths = {
        "meta": sidecar(out, "meta.jsonl"),
        "rejected": sidecar(out, "rejected.jsonl"),
        "manifest": sidecar(out, "manifest.json"),
        "dataset": out,
    }
    write_atomic(paths["meta"], jsonl_bytes(result.meta))
    write_atomic(paths["rejected"], jsonl_bytes(result.rejected))
    write_atomic(paths["manifest"], json_bytes(result.manifest))
    write_atomic(paths["dataset"], data)
    return paths


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a build config (TOML or JSON) as a dict of BuildConfig fields."""
    import tomllib

    import orjson

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from exc
    try:
        data = orjson.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode("utf-8"))
    except (orjson.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a table/object of build options")
    return data


def make_config(values: Mapping[str, Any], source: str = "options") -> BuildConfig:
    try:
        return BuildConfig.model_validate(dict(values))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{source}: {key}: {first['msg']}") from exc


def print_progress(done: int, total: int) -> None:
    if sys.stderr.isatty() and total >= 2000:
        width = 30
        filled = width * done // total
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
