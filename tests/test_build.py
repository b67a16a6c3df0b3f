from __future__ import annotations

import copy
import hashlib
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kochallenge_data import build_gate
from kochallenge_data.build import (
    BuildConfig,
    build_dataset,
    build_to_files,
    plan_build,
    split_counts,
    write_build,
)
from kochallenge_data.build_gate import key_digest
from kochallenge_data.build_sink import record_item_bytes
from kochallenge_data.checks.minhash import jaccard, shingles
from kochallenge_data.checks.record import RecordChecker, infer_task
from kochallenge_data.errors import CapacityError, KochallengeError
from kochallenge_data.formats import parse_recommendation
from kochallenge_data.generate import capacity
from kochallenge_data.generate.selection import Licence, allowed
from kochallenge_data.models import TASKS, WeeklyRecord
from kochallenge_data.pools import load_pools
from kochallenge_data.writer import dataset_bytes

from .conftest import FIXTURE_POOLS, GOLDEN, ROOT, assert_golden


def small_config(tmp_path: Path, **overrides: object) -> BuildConfig:
    values: dict[str, object] = {"size": 24, "seed": 7, "pools": FIXTURE_POOLS, "out": tmp_path / "data.json"}
    values.update(overrides)
    return BuildConfig.model_validate(values)


def test_golden_build_over_the_test_pools(tmp_path: Path, update_golden: bool) -> None:
    config = small_config(tmp_path, size=12, seed=3, diversity=False)
    write_build(build_dataset(config), config.out)
    assert_golden(GOLDEN / "fixture_build.json", config.out.read_text(encoding="utf-8"), update_golden)


@settings(max_examples=8)
@given(seed=st.integers(0, 2**32), size=st.integers(3, 40))
def test_every_built_record_meets_the_output_contract(
    tmp_path_factory: pytest.TempPathFactory, seed: int, size: int
) -> None:
    tmp_path = tmp_path_factory.mktemp("build")
    result = build_dataset(small_config(tmp_path, seed=seed, size=size, diversity=False))
    assert len(result.records) == size
    checker = RecordChecker()
    for index, (record, task) in enumerate(zip(result.records, result.tasks, strict=True)):
        assert set(record.model_dump()) == {"instruction", "input", "output"}
        assert checker.check(index, record.model_dump(), task) == []
        if task == "feedback":
            assert len(record.output) <= 100
            WeeklyRecord.model_validate_json(record.input)
        else:
            parsed = parse_recommendation(record.output, expected_challenges=3)
            assert not record.output.lstrip().startswith("{")
            assert all(":" not in c.title for c in parsed.challenges)
    keys = Counter((r.instruction, r.input, r.output) for r in result.records)
    assert max(keys.values()) == 1


def test_requested_size_and_mix_are_met_exactly(tmp_path: Path) -> None:
    config = small_config(
        tmp_path, size=31, mix={"base_info": 2, "free_text": 1, "feedback": 0}, near_duplicate_threshold=1.0
    )
    result = build_dataset(config)
    counts = Counter(result.tasks)
    assert counts == {"base_info": 21, "free_text": 10}
    assert len(result.records) == 31


@given(size=st.integers(0, 5000), weights=st.lists(st.floats(0, 10), min_size=3, max_size=3))
def test_split_counts_always_sums_to_size(size: int, weights: list[float]) -> None:
    if sum(weights) <= 0:
        weights = [1.0, 1.0, 1.0]
    counts = split_counts(size, dict(zip(TASKS, weights, strict=True)))  # type: ignore[arg-type]
    assert sum(counts.values()) == size
    assert all(c >= 0 for c in counts.values())


def test_capacity_error_names_the_task_and_the_pool_before_writing(tmp_path: Path) -> None:
    pools = load_pools(FIXTURE_POOLS)
    base_capacity = capacity(pools, "base_info")
    config = small_config(tmp_path, size=base_capacity + 1, mix={"base_info": 1, "free_text": 0, "feedback": 0})
    with pytest.raises(CapacityError, match=r"task base_info needs \d+ distinct records .* grow pools/challenges"):
        build_dataset(config)
    assert not config.out.exists()


def test_capacity_counts_the_distinct_challenge_sets_per_input() -> None:
    pools = load_pools(FIXTURE_POOLS)
    # Fixture: ZERO_WASTE has 3 general challenges, one 사무직-only and one 산-only (plus one that needs a
    # child, never given to base_info); VEGAN has 4 general ones (plus a summer one, never given either).
    # One or two picks bound to the location or work type when there are any, the rest general:
    # 도시/사무직: 1 x C(3,2); 도시/재택: C(3,3); 산/사무직: 2 x C(3,2) + 1 x C(3,1); 산/재택: C(3,2); VEGAN: 4 x C(4,3).
    assert capacity(pools, "base_info") == 3 + 1 + 9 + 3 + 4 * 4


def test_a_build_can_use_every_distinct_record(tmp_path: Path) -> None:
    pools = load_pools(FIXTURE_POOLS)
    exact = capacity(pools, "base_info")
    config = small_config(
        tmp_path, size=exact, mix={"base_info": 1, "free_text": 0, "feedback": 0}, near_duplicate_threshold=1.0
    )
    result = build_dataset(config)
    assert (
        len({(r.input, frozenset(line.split(": ")[0] for line in r.output.split("\n")[1:])) for r in result.records})
        == exact
    )


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    write_build(build_dataset(small_config(tmp_path, out=first)), first)
    write_build(build_dataset(small_config(tmp_path, out=second)), second)
    write_build(build_dataset(small_config(tmp_path, out=other, seed=8)), other)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_determinism_holds_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    outputs = []
    for hash_seed in ("0", "12345"):
        out = tmp_path / f"hash{hash_seed}.json"
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        args = ["build", "--size", "30", "--pools", str(FIXTURE_POOLS), "--out", str(out), "--no-diversity"]
        subprocess.run(
            [sys.executable, "-m", "kochallenge_data", *args], check=True, env=env, cwd=tmp_path, capture_output=True
        )
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_dataset_is_a_utf8_array_of_three_string_fields_with_sidecars(tmp_path: Path) -> None:
    config = small_config(tmp_path)
    result = build_dataset(config)
    paths = write_build(result, config.out)
    raw = config.out.read_bytes()
    assert "\\u" not in raw.decode("utf-8")
    data = orjson.loads(raw)
    assert isinstance(data, list) and all(list(r) == ["instruction", "input", "output"] for r in data)
    manifest = orjson.loads(paths["manifest"].read_bytes())
    assert manifest["seed"] == 7 and manifest["records"] == len(data)
    assert set(manifest["pool_files"]) >= {"domain.toml", "challenges/vegan.toml", "feedback.toml"}
    import hashlib

    assert manifest["output_sha256"] == hashlib.sha256(raw).hexdigest()
    meta = [orjson.loads(line) for line in paths["meta"].read_bytes().splitlines()]
    assert [m["index"] for m in meta] == list(range(len(data)))
    assert [m["task"] for m in meta] == result.tasks


def test_base_info_challenges_fit_the_location_and_work_type(tmp_path: Path) -> None:
    pools = load_pools(FIXTURE_POOLS)
    by_title = {c.title: c for c in pools.challenges}
    result = build_dataset(
        small_config(
            tmp_path, size=30, mix={"base_info": 1, "free_text": 0, "feedback": 0}, near_duplicate_threshold=1.0
        )
    )
    names = {c.name: c.key for c in pools.categories}
    for record in result.records:
        location, work_type, category_name = record.input.split(", ")
        for challenge in parse_recommendation(record.output).challenges:
            item = by_title[challenge.title]
            assert item.category == names[category_name]
            assert allowed(item, Licence(location=location, work_type=work_type)), (record.input, challenge.title)


def test_no_hedged_particles_in_any_output(tmp_path: Path) -> None:
    result = build_dataset(small_config(tmp_path, size=60, near_duplicate_threshold=1.0))
    for record in result.records:
        for hedge in ("이(가)", "을(를)", "은(는)", "(으)로", "과(와)"):
            assert hedge not in record.output


def test_interrupted_write_leaves_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kochallenge_data import writer

    target = tmp_path / "data.json"
    target.write_bytes(b"previous")

    def interrupted(src: str, dst: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(writer.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        writer.write_atomic(target, b"new content")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_shipped_pools_and_templates_are_found_from_any_folder(tmp_path: Path) -> None:
    pools = load_pools()
    assert pools.root.resolve() in {(ROOT / "pools").resolve(), pools.root.resolve()}
    assert len(pools.categories) == 8


@settings(max_examples=10)
@given(extra=st.integers(1, 50), task=st.sampled_from(["base_info", "free_text"]))
def test_any_request_beyond_capacity_fails_before_sampling(
    tmp_path_factory: pytest.TempPathFactory, extra: int, task: str
) -> None:
    pools = load_pools(FIXTURE_POOLS)
    limit = capacity(pools, task)  # type: ignore[arg-type]
    mix = {t: (1.0 if t == task else 0.0) for t in TASKS}
    config = small_config(tmp_path_factory.mktemp("cap"), size=limit + extra, mix=mix)
    with pytest.raises(CapacityError, match=f"task {task} needs {limit + extra} distinct records"):
        build_dataset(config)


def test_too_many_rejects_name_the_pool_items_at_fault(tmp_path: Path) -> None:
    import shutil

    pools = tmp_path / "pools"
    shutil.copytree(FIXTURE_POOLS, pools)
    recommend = pools / "recommend.toml"
    text = recommend.read_text(encoding="utf-8")
    start, end = text.index("[base_info]"), text.index("[free_text]")
    glued = "[base_info]\n" + "".join(
        f"{reason} = ['{{{{ category }}}}챌린지를골라봤어요.']\n"
        for reason in ("both", "location", "work_type", "category")
    )
    recommend.write_text(text[:start] + glued + "\n" + text[end:], encoding="utf-8")
    config = small_config(
        tmp_path,
        size=30,
        pools=pools,
        mix={"base_info": 1, "free_text": 0, "feedback": 0},
        max_reject_share=0.0,
        near_duplicate_threshold=1.0,
    )
    with pytest.raises(KochallengeError, match=r"recommend\.toml:\d+ \(spacing\)"):
        build_dataset(config)


# --------------------------------------------------------------------------------------------
# building straight to files, in flat memory


def test_a_near_duplicate_rejection_names_the_dataset_record_it_resembles(tmp_path: Path) -> None:
    """Records are listed in the order accepted, so a refilled slot's record is not at the slot's number: the
    rejection must name the place of the earlier record in the dataset, with that pair's exact similarity."""
    config = small_config(tmp_path, size=400, seed=5, pools=None, near_duplicate_threshold=0.5, diversity=False)
    result = build_dataset(config)
    near = [item for item in result.rejected if item["reasons"] == ["near_duplicate"]]
    assert len(near) >= 2, "the comparison needs near-duplicate rejections"
    for item in near:
        match = re.fullmatch(
            r"nearly the same as record (\d+) \(similarity (0\.\d\d)\)", item["findings"][0]["message"]
        )
        assert match is not None, item["findings"][0]["message"]
        named = result.records[int(match[1])]
        rejected = item["record"]
        similarity = jaccard(
            frozenset(shingles(f"{named.input}\n{named.output}").tolist()),
            frozenset(shingles(f"{rejected['input']}\n{rejected['output']}").tolist()),
        )
        assert f"{similarity:.2f}" == match[2]


def test_building_to_files_gives_the_same_bytes_as_the_in_memory_build(tmp_path: Path) -> None:
    """Refilled slots (near duplicates at a low threshold) are written where they were accepted, as the in-memory
    build lists them."""
    # The shipped pools: big enough that a 0.5 threshold rejects some records (4) without exhausting any task.
    config = small_config(tmp_path, size=400, seed=5, pools=None, near_duplicate_threshold=0.5, diversity=False)
    in_memory = build_dataset(config)
    assert in_memory.stats["rejected_total"] > 0, "the comparison needs slots that were drawn again"
    expected = write_build(in_memory, tmp_path / "memory" / "data.json")
    stats, written = build_to_files(config, tmp_path / "files" / "data.json")
    for kind, path in expected.items():
        assert written[kind].read_bytes() == path.read_bytes(), kind
    assert stats["rejected_total"] == in_memory.stats["rejected_total"]
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == sorted(p.name for p in expected.values())


def test_worker_processes_give_the_same_bytes_as_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small batches put many in flight at once, and the low threshold sends slots back to be drawn again while
    later batches are still being checked: the files must not change."""
    monkeypatch.setattr(build_gate, "BATCH", 16)
    config = small_config(tmp_path, size=400, seed=5, pools=None, near_duplicate_threshold=0.5, diversity=False)
    one = build_to_files(config, tmp_path / "one" / "data.json", workers=1)
    two = build_to_files(config, tmp_path / "two" / "data.json", workers=2)
    assert one[0]["rejected_total"] > 0, "the comparison needs slots that were drawn again"
    for kind, path in one[1].items():
        assert two[1][kind].read_bytes() == path.read_bytes(), kind


_KIWI_LOADED_AFTER_BUILD = """
import sys
from pathlib import Path
import orjson
from kochallenge_data.build import BuildConfig, build_to_files
from kochallenge_data.checks.spacing import get_kiwi
stats, _ = build_to_files(BuildConfig(size=120, seed=3), Path(sys.argv[1]), workers=int(sys.argv[2]))
print(orjson.dumps({"kiwi_here": get_kiwi.cache_info().currsize, "diversity": stats["diversity"]}).decode())
"""


def test_a_worker_build_reads_its_diversity_words_in_a_worker(tmp_path: Path) -> None:
    """The build's own process never loads Kiwi when it has workers, and the figures are the ones one process
    gives (where one process does load it: the control that this test can see a load)."""
    runs = {}
    for workers in (1, 2):
        done = subprocess.run(
            [sys.executable, "-c", _KIWI_LOADED_AFTER_BUILD, str(tmp_path / f"w{workers}.json"), str(workers)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs[workers] = orjson.loads(done.stdout.splitlines()[-1])
    assert runs[1]["kiwi_here"] == 1
    assert runs[2]["kiwi_here"] == 0
    assert runs[2]["diversity"] == runs[1]["diversity"]


def test_a_pool_exhausted_under_workers_is_the_same_clear_error(tmp_path: Path) -> None:
    config = small_config(tmp_path, size=60, mix={"base_info": 1.0, "free_text": 0.0, "feedback": 0.0})
    limit = capacity(load_pools(FIXTURE_POOLS), "base_info")
    config = config.model_copy(update={"size": limit})
    for workers in (1, 2):
        out = tmp_path / str(workers) / "data.json"
        with pytest.raises(KochallengeError) as raised:
            build_to_files(config.model_copy(update={"near_duplicate_threshold": 0.05}), out, workers=workers)
        assert "rejected" in str(raised.value) or "ran out" in str(raised.value)
        assert not out.exists()


records_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=60)
@given(st.lists(st.fixed_dictionaries({"instruction": records_text, "input": records_text, "output": records_text}),
                min_size=1, max_size=5))  # fmt: skip
def test_array_items_join_into_exactly_the_dataset_bytes(rows: list[dict[str, str]]) -> None:
    streamed = b"[\n" + b",\n".join(record_item_bytes(r) for r in rows) + b"\n]\n"
    assert streamed == dataset_bytes(rows)


@settings(max_examples=60)
@given(
    key=st.recursive(
        st.text(max_size=6) | st.integers(-(2**63), 2**63 - 1) | st.booleans(), lambda inner: st.tuples(inner, inner)
    )
)
def test_key_digests_tell_keys_apart(key: object) -> None:
    assert key_digest(key) == key_digest(copy.deepcopy(key))
    assert key_digest(("x", key)) != key_digest(("y", key))
    assert key_digest((key, True)) != key_digest((key, 1))


def test_a_recommendation_key_holds_its_challenges_in_one_order() -> None:
    config = BuildConfig(size=60, seed=5, mix={"base_info": 1.0, "free_text": 1.0, "feedback": 0.0})
    plan = plan_build(config)
    for task in plan.order:
        candidate = plan.sampler.draw(task)
        titles = [line.partition(": ")[0] for line in candidate.output.split("\n")[1:]]
        assert candidate.key == (task, candidate.input, *sorted(titles))
    with pytest.raises(TypeError):
        key_digest(("base_info", "도시", frozenset(titles)))


def test_a_failed_build_leaves_no_output_and_no_temporary_file(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    config = small_config(tmp_path, size=30, max_reject_share=0.0, near_duplicate_threshold=0.3, out=folder / "d.json")
    with pytest.raises(KochallengeError, match="rejected"):
        build_to_files(config, config.out)
    assert list(folder.iterdir()) == []


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        _, paths = build_to_files(small_config(tmp_path, size=12), tmp_path / "data.json")
    finally:
        os.umask(previous)
    for path in paths.values():
        assert path.stat().st_mode & 0o777 == 0o640, path


def test_temp_files_of_a_killed_run_are_removed_by_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "data.json"
    dead = tmp_path / ".data.json.999999999.x1y2.tmp"  # no such process
    mine = tmp_path / f".data.json.{os.getpid()}.live.tmp"  # a live run's file is left alone
    foreign = tmp_path / ".notes.txt.999999999.z.tmp"  # another output's temp file is not ours to remove
    for path in (dead, mine, foreign):
        path.write_text("partial")
    build_to_files(small_config(tmp_path, size=12), out)
    assert not dead.exists() and mine.exists() and foreign.exists()


KILL_SCRIPT = """
import sys
from pathlib import Path
from kochallenge_data.build import BuildConfig, build_to_files
config = BuildConfig(size=int(sys.argv[2]), seed=int(sys.argv[3]), diversity=False)
build_to_files(config, Path(sys.argv[1]))
"""


def consistent(folder: Path) -> None:
    """Whatever a kill left: the manifest, when present, names this dataset; metadata never outnumbers it."""
    dataset, manifest, meta = folder / "data.json", folder / "data.manifest.json", folder / "data.meta.jsonl"
    if not dataset.exists():
        assert not manifest.exists()
        return
    records = orjson.loads(dataset.read_bytes())
    if manifest.exists():
        assert orjson.loads(manifest.read_bytes())["output_sha256"] == hashlib.sha256(dataset.read_bytes()).hexdigest()
    if meta.exists():
        lines = meta.read_bytes().splitlines()
        assert len(lines) == len(records)
        # The metadata belongs to this dataset: record by record, the task it names is the record's.
        assert [orjson.loads(line)["task"] for line in lines] == [infer_task(r) for r in records]


@pytest.mark.slow
def test_a_build_killed_at_any_moment_never_leaves_sidecars_that_disagree_with_the_dataset(tmp_path: Path) -> None:
    import random
    import signal
    import time

    folder = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(folder / "data.json"), "200", "1"], env=env, check=True)
    rng = random.Random(11)
    for attempt in range(6):
        process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(folder / "data.json"), "300", str(attempt + 2)],
                                   env=env, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(0.5, 4.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        consistent(folder)
    subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(folder / "data.json"), "200", "1"], env=env, check=True)
    consistent(folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "data.json", "data.manifest.json", "data.meta.jsonl", "data.rejected.jsonl"
    ], "the finished run removed every temporary file the killed runs left"  # fmt: skip
