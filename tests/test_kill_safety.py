"""SIGKILL the real CLI at random moments: every output stays whole, old or new, never a mix.

A build's dataset and its sidecars must agree (the manifest names the dataset's sha256); an export folder
must be exactly the previous export or exactly the new one. After the kills, a normal run succeeds and
leaves no temp file or staging folder behind.

The kill moments are a seeded random list, paced by one reference run: half spread over the whole run,
half over its writing phase (some 50 ms from its first temp file or staging folder to the last one gone,
of a run of seconds), counted from the moment the killed run's own first temp file appears, so they land
there however long a loaded machine takes to start up. Two lanes of kills run side by side (one folder
each) to keep the test short on two cores.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from kochallenge_data.export import EXPORT_MANIFEST
from kochallenge_data.writer import remove_stale_staging, staged_folder, staging_prefix

from .conftest import FIXTURE_POOLS, ROOT

BUILD_SIZE = 2000
KILLS = 8
LANES = 2
HANG_BOUND = 300  # seconds; a generous bound on one CLI run, never a performance assertion
POLL = 0.002

Snapshot = dict[str, bytes]  # relative POSIX path -> bytes, hidden files included
Seen = Callable[[int], bool]  # whether something of the run with this pid is on disk


@dataclass(frozen=True)
class Job:
    """One lane's command, the folder it writes, and what on disk shows its run writing."""

    args: list[str]
    folder: Path
    writing: Seen  # its output has begun: the dataset's temp file, the staging folder
    temps: Seen  # any temp file or staging folder of the run is still there


@dataclass(frozen=True)
class Timing:
    seconds: float  # the whole run
    writing: float  # when its output began
    written: float  # when its last temp file or staging folder was gone


@dataclass(frozen=True)
class Moment:
    """When to kill: ``delay`` seconds after the start, or after the run began writing."""

    delay: float
    after_writing: bool

    def __str__(self) -> str:
        return f"{self.delay:.2f}s after {'its first temp file' if self.after_writing else 'the start'}"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "kochallenge_data", *args]


def wait_for_writing(process: subprocess.Popen[bytes], writing: Seen) -> float | None:
    """Poll until the run has begun writing: the seconds that took, or None when it ended first."""
    started = time.monotonic()
    while not writing(process.pid):
        if process.poll() is not None:
            return None
        if time.monotonic() - started > HANG_BOUND:
            process.kill()
        time.sleep(POLL)
    return time.monotonic() - started


def run_to_the_end(args: Sequence[str]) -> None:
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=HANG_BOUND, check=False)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


def run_watched(job: Job) -> Timing:
    """Run the job to the end, noting when it began writing and when its temp files were all gone."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(job.args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
        wrote = wait_for_writing(process, job.writing)
        while process.poll() is None and job.temps(process.pid):
            time.sleep(POLL)
        written = time.monotonic() - started
        process.wait(timeout=HANG_BOUND)
        seconds = time.monotonic() - started
        stderr.seek(0)
        message = stderr.read().decode("utf-8", "replace")
    assert process.returncode == 0 and "Traceback" not in message, message
    assert wrote is not None, "no temp file was seen while the run wrote its output"
    return Timing(seconds, wrote, written)


def run_killed(job: Job, moment: Moment) -> None:
    """Start the job and SIGKILL it at ``moment``, unless it has finished by then."""
    process = subprocess.Popen(job.args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if moment.after_writing:
        wait_for_writing(process, job.writing)
    try:
        process.wait(timeout=moment.delay)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=HANG_BOUND)


def kill_moments(timing: Timing, count: int, rng: random.Random) -> list[Moment]:
    """Random moments, one in each equal slice: half over the whole run, half over its writing phase, where a
    kill can tear something (the startup before it is most of the run). Both reach a little past their end,
    so some runs finish."""
    half = count // 2
    whole, writing = timing.seconds * 1.05, (timing.written - timing.writing) * 1.25
    return [Moment(whole * (slot + rng.random()) / half, after_writing=False) for slot in range(half)] + [
        Moment(writing * (slot + rng.random()) / half, after_writing=True) for slot in range(half)
    ]


def kill_lane(job: Job, moments: Sequence[Moment], reset: Callable[[Path], None]) -> list[Snapshot]:
    """Kill one run at each moment, in turn, noting what the folder holds after each kill, then ``reset`` it."""
    states = []
    for moment in moments:
        run_killed(job, moment)
        states.append(snapshot(job.folder))
        reset(job.folder)
    return states


def kill_in_lanes(
    jobs: Sequence[Job], moments: Sequence[Moment], reset: Callable[[Path], None]
) -> list[tuple[Moment, Snapshot]]:
    """The kills dealt out to the lanes (one job and folder each, run side by side): (moment, what was left)."""
    dealt = [moments[lane :: len(jobs)] for lane in range(len(jobs))]
    with ThreadPoolExecutor(len(jobs)) as pool:
        states = list(pool.map(kill_lane, jobs, dealt, [reset] * len(jobs)))
    return [pair for lane in range(len(jobs)) for pair in zip(dealt[lane], states[lane], strict=True)]


def run_in_lanes(jobs: Sequence[Job]) -> None:
    """One normal run of each job, side by side."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        list(pool.map(lambda job: run_to_the_end(job.args), jobs))


def snapshot(folder: Path) -> Snapshot:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def visible(files: Snapshot) -> Snapshot:
    """Without temp files (``.name.<pid>.*.tmp``), which a kill may leave and the next run removes."""
    return {path: data for path, data in files.items() if not any(part.startswith(".") for part in path.split("/"))}


def hidden_beside(folder: Path) -> list[str]:
    """Temp files and staging folders in ``folder`` and beside it (names starting with its own, hidden)."""
    inside = [p.name for p in folder.rglob(".*") if p.name != EXPORT_MANIFEST]
    beside = [p.name for p in folder.parent.glob(f".{folder.name}.*")]
    return sorted(inside + beside)


def restore(folder: Path, files: Snapshot) -> None:
    """Put ``files`` back as the folder's visible content; hidden leftovers of earlier kills stay for the final run."""
    for path in visible(snapshot(folder)):
        if path not in files:
            (folder / path).unlink()
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)


# --- build -----------------------------------------------------------------------------------------


def build_job(folder: Path, seed: int) -> Job:
    """The diversity figures (a Kiwi pass, half the run) only fill the manifest: skipped to keep the test short.
    The build writes the dataset to ``.data.json.<pid>.*.tmp`` once every record is accepted."""
    args = cli("build", "--size", str(BUILD_SIZE), "--seed", str(seed), "--out", str(folder / "data.json"))
    return Job(
        [*args, "--no-diversity"],
        folder,
        writing=lambda pid: any(folder.glob(f".data.json.{pid}.*.tmp")),
        temps=lambda pid: any(folder.glob(f".*.{pid}.*.tmp")),
    )


@dataclass(frozen=True)
class Reference:
    folder: Path
    files: Snapshot
    timing: Timing


@pytest.fixture(scope="module")
def old_build(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """A 2000-record build with its sidecars, through the CLI; its timing paces the build kills."""
    folder = tmp_path_factory.mktemp("old_build")
    timing = run_watched(build_job(folder, seed=1))
    return Reference(folder, snapshot(folder), timing)


def build_version(files: Snapshot, old: Snapshot, new: Snapshot) -> str:
    """Which build the folder holds; fails on a torn dataset or a sidecar that is not its dataset's."""
    present = visible(files)
    dataset = present["data.json"]
    name, version = ("old", old) if dataset == old["data.json"] else ("new", new)
    assert dataset == version["data.json"], "the dataset is neither the old one nor the new one"
    for path, data in present.items():
        assert data == version[path], f"{path} beside the {name} dataset is not the {name} build's"
    if "data.manifest.json" in present:
        manifest = orjson.loads(present["data.manifest.json"])
        assert manifest["output_sha256"] == hashlib.sha256(dataset).hexdigest()
    return name


def test_a_build_killed_at_any_moment_never_leaves_sidecars_that_disagree_with_the_dataset(
    old_build: Reference, tmp_path: Path
) -> None:
    jobs = [build_job(tmp_path / f"lane{lane}", seed=2) for lane in range(LANES)]
    for job in jobs:
        restore(job.folder, old_build.files)
    moments = kill_moments(old_build.timing, KILLS, random.Random(15))
    states = kill_in_lanes(jobs, moments, lambda folder: restore(folder, old_build.files))
    run_in_lanes(jobs)
    new = snapshot(jobs[0].folder)
    for job in jobs:
        assert hidden_beside(job.folder) == [], "the run after the kills removes their temp files"
        assert snapshot(job.folder) == new
    assert new["data.json"] != old_build.files["data.json"] and set(new) == set(old_build.files)
    versions = [(str(moment), build_version(state, old_build.files, new)) for moment, state in states]
    assert any(version == "old" for _, version in versions), versions  # the early kills at least


# --- export ----------------------------------------------------------------------------------------


def export_job(source: Path, fmt: str, folder: Path) -> Job:
    """An export stages its folder as ``.<out>.export-<pid>.*.tmp`` beside ``--out`` once the split is made."""
    args = cli("export", str(source), "--to", fmt, "--out", str(folder), "--force")

    def staging(pid: int) -> bool:
        return any(folder.parent.glob(f".{folder.name}.export-{pid}.*"))

    return Job(args, folder, writing=staging, temps=staging)


def test_an_export_killed_at_any_moment_leaves_the_old_export_or_the_new_one(
    old_build: Reference, tmp_path: Path
) -> None:
    source = old_build.folder / "data.json"
    timing = run_watched(export_job(source, "jsonl", tmp_path / "lane0"))
    old = snapshot(tmp_path / "lane0")

    def reset(folder: Path) -> None:
        if snapshot(folder) != old:
            shutil.rmtree(folder, ignore_errors=True)
            restore(folder, old)

    jobs = [export_job(source, "alpaca", tmp_path / f"lane{lane}") for lane in range(LANES)]
    for job in jobs:
        reset(job.folder)
    states = kill_in_lanes(jobs, kill_moments(timing, KILLS, random.Random(15)), reset)
    run_in_lanes(jobs)
    new = snapshot(jobs[0].folder)
    for job in jobs:
        assert hidden_beside(job.folder) == [], "the run after the kills removes their staging folders"
        assert snapshot(job.folder) == new
    assert "train.json" in new and "train.jsonl" in old
    for moment, state in states:
        assert state in (old, new), f"killed {moment}: a mix ({sorted(state)})"


# --- the swap itself, where a kill cannot be timed -----------------------------------------------


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(process.stdout)


def test_staging_folders_of_dead_runs_are_removed_and_a_live_runs_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "out"
    dead = tmp_path / f".out.export-{dead_pid()}.abc.tmp"
    (dead / "data").mkdir(parents=True)
    (dead / "data" / "train.parquet").write_bytes(b"half")
    live = Path(f"{tmp_path / staging_prefix(target, 'export')}xyz.tmp")
    live.mkdir()
    unrelated = tmp_path / ".out.export-notes"
    unrelated.mkdir()
    assert remove_stale_staging(target, "export") == [dead]
    assert not dead.exists() and live.is_dir() and unrelated.is_dir()


def test_a_swap_killed_between_its_two_renames_is_undone_by_the_next_run(tmp_path: Path) -> None:
    """Without renameat2 the swap takes two renames; a kill between them leaves --out missing, the old
    folder retired and the new one staged. The next run puts the old folder back before it looks."""
    target = tmp_path / "out"
    pid = dead_pid()
    retired = tmp_path / f".out.split-{pid}.k3j.old"
    staged = tmp_path / f".out.split-{pid}.k3j.tmp"
    for folder, text in ((retired, "old"), (staged, "new")):
        folder.mkdir()
        (folder / "train.json").write_text(text, encoding="utf-8")
    remove_stale_staging(target, "split")
    assert (target / "train.json").read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_a_staged_folder_replaces_the_target_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    if not exchange:  # as on a file system without RENAME_EXCHANGE
        monkeypatch.setattr("kochallenge_data.writer._exchange", lambda first, second: False)
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError), staged_folder(target, "export") as staging:
        (staging / "new.txt").write_text("new", encoding="utf-8")
        raise RuntimeError("interrupted")
    assert snapshot(tmp_path) == {"out/old.txt": b"old"}
    with staged_folder(target, "export") as staging:
        (staging / "new.txt").write_text("new", encoding="utf-8")
    assert snapshot(tmp_path) == {"out/new.txt": b"new"}


def test_a_staged_folder_follows_the_umask_and_keeps_a_symlinked_target(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    previous = os.umask(0o027)
    try:
        with staged_folder(link, "export") as staging:
            (staging / "a.txt").write_text("a", encoding="utf-8")
    finally:
        os.umask(previous)
    assert link.is_symlink() and (real / "a.txt").read_text(encoding="utf-8") == "a"
    assert real.stat().st_mode & 0o777 == 0o750


# --- build, killed at each file step -----------------------------------------------------------------

# Runs the CLI with os.replace and os.unlink counted: the process SIGKILLs itself right before the K-th rename or
# removal of a real (not temporary) file, K from argv[1] (0: never).
KILLED_AT_STEP = """
import os, signal, sys
from kochallenge_data.cli import main
kill_at, steps = int(sys.argv[1]), [0]
def counted(real, target):
    def step(*args, **kwargs):
        if not os.fspath(args[target]).endswith(".tmp"):
            steps[0] += 1
            if steps[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return step
os.replace, os.unlink = counted(os.replace, 1), counted(os.unlink, 0)
sys.exit(main(sys.argv[2:]))
"""


def build_killed_at_step(folder: Path, step: int, seed: int) -> int:
    args = ["build", "--size", "40", "--seed", str(seed), "--pools", str(FIXTURE_POOLS), "--no-diversity"]
    command = [sys.executable, "-c", KILLED_AT_STEP, str(step), *args, "--out", str(folder / "data.json")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, timeout=HANG_BOUND, check=False)
    return result.returncode


def test_a_build_killed_before_each_file_step_leaves_the_old_build_or_the_new_one(tmp_path: Path) -> None:
    """Deterministic where the random kills are not: one kill right before every rename and removal of the build's
    files (the last step number is the run that finishes), each over a copy of an older build."""
    old_folder, new_folder = tmp_path / "old", tmp_path / "new"
    assert build_killed_at_step(old_folder, 0, seed=1) == 0
    assert build_killed_at_step(new_folder, 0, seed=2) == 0
    old, new = snapshot(old_folder), snapshot(new_folder)
    assert old["data.json"] != new["data.json"]

    def killed(step: int) -> tuple[int, Snapshot]:
        folder = tmp_path / f"step{step}"
        shutil.copytree(old_folder, folder)
        return build_killed_at_step(folder, step, seed=2), snapshot(folder)

    with ThreadPoolExecutor(LANES) as pool:
        runs = list(pool.map(killed, range(1, 10)))
    codes = [code for code, _ in runs]
    assert -9 in codes and 0 in codes, codes  # some steps were killed, and the last ones were past every step
    versions = [build_version(files, old, new) for _, files in runs]
    assert versions[0] == "old" and versions[-1] == "new", versions
