from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kochallenge_data import validate
from kochallenge_data.build import BuildConfig, build_dataset, write_build
from kochallenge_data.checks.codes import CODES, INFO
from kochallenge_data.errors import InputFileError
from kochallenge_data.validate import ReportWriter, ValidateOptions, read_dataset, validate_records

from .conftest import FIXTURE_POOLS

INSTRUCTION = "사용자에게 맞는 챌린지 세 개를 추천해 주세요."
GOOD_OUTPUT = (
    "가볍게 시작할 수 있는 챌린지를 골랐어요.\n"
    "텀블러로 커피 마시기: 카페에서 텀블러에 음료를 받으면 일회용 컵이 줄어요.\n"
    "장바구니 챙기기: 장을 보러 갈 때 장바구니를 챙기면 비닐봉지가 줄어요.\n"
    "손수건 쓰기: 휴지 대신 손수건을 쓰면 버려지는 종이가 줄어요."
)
WEEK = '{"memberId":1,"personalChallenges":[{"id":1,"title":"손수건 쓰기","isSuccess":true}],"groupChallenges":[]}'


def rec(input_text: str, output: str, instruction: str = INSTRUCTION) -> dict[str, str]:
    return {"instruction": instruction, "input": input_text, "output": output}


# One record per defect the team shipped, with the code validate must report for it.
DEFECTS: list[tuple[str, object]] = [
    (
        "json_output",
        rec("도시, 사무직, 비건", '{"recommend": "추천해요.", "challenges": [{"title": "가", "description": "나"}]}'),
    ),
    ("json_output", rec("산, 현장직, 플로깅", '{"text": "추천해요.\\n텀블러: 좋아요."}')),
    ("not_newline_format", rec("바닷가, 영업직, 비건", "추천해요. 텀블러 쓰기와 손수건 쓰기를 해 보세요.")),
    ("challenge_count", rec("농촌, 사무직, 비건", GOOD_OUTPUT.rsplit("\n", 1)[0])),
    ("numbering", rec("도시, 영업직, 비건", GOOD_OUTPUT.replace("텀블러로", "1. 텀블러로"))),
    ("blank_line", rec("산, 사무직, 비건", GOOD_OUTPUT.replace("\n", "\n\n", 1))),
    ("trailing_whitespace", rec("도시, 재택근무, 비건", GOOD_OUTPUT.replace("골랐어요.", "골랐어요. "))),
    ("empty_field", rec("도시, 사무직, 업사이클", "")),
    ("missing_field", {"instruction": INSTRUCTION, "input": "도시, 사무직, 문화 공유"}),
    ("feedback_too_long", rec(WEEK, "손수건 쓰기를 해냈네요! 🎉 " + "정말 대단해요 " * 15)),
    ("spacing", rec("오늘 피곤해", GOOD_OUTPUT.replace("가볍게 시작할 수 있는", "힐링할수있는시는건강!"))),
    ("non_korean", rec("아무거나", GOOD_OUTPUT.replace("텀블러로 커피 마시기", "Tumbler 챌린지"))),
    ("broken_text", rec("아무거나 추천", GOOD_OUTPUT.replace("줄어요.", "줄어\ufffd요.", 1))),
    ("escape_artifact", rec(WEEK.replace('"id":1,', '"id":2,'), "손수건 쓰기를 해냈네요!\\n다음 주도 응원해요 🎉")),
    ("feedback_no_emoji", rec(WEEK.replace('"id":1,', '"id":3,'), "손수건 쓰기를 해냈네요! 다음 주도 응원해요.")),
]


def test_each_kind_of_defect_is_caught_with_its_code() -> None:
    records = [item for _, item in DEFECTS]
    report = validate_records(records)
    by_index: dict[int, set[str]] = {}
    for finding in report.findings:
        by_index.setdefault(finding.index, set()).add(finding.code)
    for index, (code, _) in enumerate(DEFECTS):
        assert code in by_index.get(index, set()), (code, by_index.get(index))


def test_duplicates_and_near_duplicates_are_caught() -> None:
    base = rec("도시, 사무직, 제로웨이스트", GOOD_OUTPUT)
    spaced = rec("도시, 사무직, 제로웨이스트", GOOD_OUTPUT.replace(" ", "  "))
    near = rec("도시, 사무직, 제로웨이스트", GOOD_OUTPUT.replace("골랐어요.", "골라 봤어요."))
    other = rec(
        "산, 현장직, 비건",
        "전혀 다른 추천이에요.\n채식 점심: 고기 없이 먹어요.\n두유: 우유 대신 마셔요.\n콩고기: 볶아 먹어요.",
    )
    report = validate_records([base, spaced, near, other], check_spacing=False)
    codes = {(f.index, f.code) for f in report.findings if f.code in ("duplicate", "near_duplicate")}
    assert codes == {(1, "duplicate"), (2, "near_duplicate")}
    assert report.info["same_input_different_output"] == 1


def test_a_default_build_validates_clean(tmp_path: Path) -> None:
    out = tmp_path / "data.json"
    config = BuildConfig(size=45, seed=11, pools=FIXTURE_POOLS, out=out, diversity=False)
    write_build(build_dataset(config), out)
    report = validate_records(read_dataset(out))
    assert report.findings == []
    assert report.info["tasks"] == {"base_info": 15, "feedback": 15, "free_text": 15}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kochallenge_data", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_validate_json_report_and_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "old.json"
    bad.write_bytes(orjson.dumps([item for _, item in DEFECTS]))
    result = run_cli("validate", str(bad), "--json", cwd=tmp_path)
    assert result.returncode == 1
    report = orjson.loads(result.stdout)
    assert report["records"] == len(DEFECTS)
    assert {"index", "field", "code", "message"} <= set(report["findings"][0])
    assert report["summary"]["json_output"] == 2
    spacing = [f for f in report["findings"] if f["code"] == "spacing"]
    assert spacing and "힐링할 수 있는" in spacing[0]["suggestion"]


def test_broken_jsonl_line_is_named_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "data.jsonl"
    bad.write_text('{"instruction": "a", "input": "b", "output": "c"}\n{"instruction": \n', encoding="utf-8")
    result = run_cli("validate", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{bad}:2:" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "the file is empty"), (b"\xff\xfe\x00", "not UTF-8"), (b'{"a": 1}', "JSONL"), (b"[1, 2", "not valid JSON")],
)
def test_unusable_files_exit_2_with_a_message(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "data.json"
    path.write_bytes(content)
    result = run_cli("validate", str(path), cwd=tmp_path)
    assert result.returncode in (1, 2)
    if result.returncode == 2:
        assert message in result.stderr and "Traceback" not in result.stderr


def test_fix_writes_a_corrected_copy_that_validates_better(tmp_path: Path) -> None:
    source = tmp_path / "old.json"
    records = [item for _, item in DEFECTS] + [DEFECTS[0][1]]
    source.write_bytes(orjson.dumps(records))
    fixed = tmp_path / "fixed.json"
    result = run_cli("validate", str(source), "--fix", str(fixed), cwd=tmp_path)
    assert result.returncode == 1
    assert "converted_json 2" in result.stdout and "dropped_duplicate" in result.stdout
    after = validate_records(read_dataset(fixed))
    codes = {f.code for f in after.findings}
    for fixed_code in ("json_output", "blank_line", "trailing_whitespace", "spacing", "feedback_too_long", "duplicate"):
        assert fixed_code not in codes, fixed_code
    data = orjson.loads(fixed.read_bytes())
    assert data[0]["output"].split("\n")[0] == "추천해요."
    assert all(len(r["output"]) <= 100 for r, t in zip(data, after.tasks, strict=True) if t == "feedback")


# Streaming: the file is read record by record, checked in batches, by any number of workers, and the
# report, the corrected file and every message come out the same as from the whole file at once.

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(alphabet=st.sampled_from('ab가"\\[]{},:\n\t é🎉\u2028')),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=80)
@given(st.lists(json_values, max_size=12), st.sampled_from(["compact", "indented", "jsonl"]), st.integers(1, 9))
def test_streamed_reading_equals_parsing_the_whole_file(records: list[object], layout: str, chunk: int) -> None:
    assume(not (layout == "jsonl" and records and isinstance(records[0], list)))  # that file reads as an array
    if layout == "jsonl":
        data = b"\xef\xbb\xbf" + b"\r\n".join(orjson.dumps(r) for r in records) + b"\r\n\n"
    else:
        data = orjson.dumps(records, option=orjson.OPT_INDENT_2 if layout == "indented" else 0) + b"\n"
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        path = Path(folder) / "data.json"
        path.write_bytes(data)
        patch.setattr(validate, "READ_CHUNK", chunk)  # strings, escapes and brackets cut at every place
        if layout == "jsonl" and not records:
            with pytest.raises(InputFileError, match="empty"):
                read_dataset(path)
            return
        assert read_dataset(path) == records


def test_reading_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    record = {"instruction": "지시" * 20, "input": "도시, 사무직, 비건", "output": "추천해요.\n" * 30}
    peaks = []
    for count in (4000, 16000):
        path = tmp_path / f"data_{count}.json"
        path.write_bytes(orjson.dumps([record] * count))  # 2.5 MB and 10 MB
        tracemalloc.start()
        assert sum(1 for _ in validate.iter_raw(path)) == count
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.2 * peaks[0] and peaks[1] < path.stat().st_size / 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'[{"a": 1},\n {"b": 2}', "2:10: not valid JSON: the array is not closed"),
        (b'[{"a": 1},\n]', "2:1: not valid JSON: a comma before ']'"),
        (b'[{"a": 1}]\n[2]', "2:1: not valid JSON: text after the closing ']'"),
        (b'[{"a": 1},\n  {"b": tru}]', "2:"),
        (b'[{"a": 1}, , 2]', "1:12: not valid JSON: an empty element"),
        (b'{"a": 1}\n{"b": \n', ":2: JSONL line is not valid JSON"),
        (b'{"a": "\xff"}\n', "not UTF-8 (byte 7:"),
    ],
)
def test_unusable_files_name_the_place(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "data.json"
    path.write_bytes(content)
    with pytest.raises(InputFileError) as raised:
        validate.validate_file(path, ValidateOptions(check_spacing=False), lambda f: None)
    assert message in str(raised.value)
    assert str(raised.value).startswith(str(path))


def defect_file(tmp_path: Path, copies: int = 3) -> tuple[Path, list[object]]:
    """Every defect, near and exact copies across batch borders, and a small clean build."""
    out = tmp_path / "built.json"
    write_build(build_dataset(BuildConfig(size=24, seed=3, pools=FIXTURE_POOLS, out=out, diversity=False)), out)
    records: list[object] = []
    for n in range(copies):
        records += [item for _, item in DEFECTS] + read_dataset(out)[n::copies]
    records.append(rec("도시, 사무직, 제로웨이스트", GOOD_OUTPUT.replace("골랐어요.", "골라 봤어요.")))
    path = tmp_path / "mixed.json"
    path.write_bytes(orjson.dumps(records, option=orjson.OPT_INDENT_2))
    return path, records


def streamed(path: Path, workers: int, fixed: Path | None = None, as_json: bool = True) -> tuple[str, object]:
    out = io.StringIO()
    writer = ReportWriter(as_json=as_json)
    result = validate.validate_file(path, ValidateOptions(), writer, fixed_out=fixed, workers=workers)
    writer.finish(path, result, out)
    return out.getvalue(), result


def test_streamed_report_is_the_in_memory_report_byte_for_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, records = defect_file(tmp_path)
    monkeypatch.setattr(validate, "CHECK_BATCH", 7)
    text, _ = streamed(path, workers=1)
    report = validate_records(records)
    assert text == orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n"
    assert {"duplicate", "near_duplicate", "spacing", "json_output"} <= set(report.summary)


def test_workers_give_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = defect_file(tmp_path)
    monkeypatch.setattr(validate, "CHECK_BATCH", 5)  # batches are cut in this process; many of them
    outputs = {}
    for workers in (1, 2, 3):
        fixed = tmp_path / f"fixed_{workers}.json"
        report, result = streamed(path, workers, fixed)
        text, _ = streamed(path, workers, as_json=False)
        outputs[workers] = (report, text, fixed.read_bytes(), result.changes_line())  # type: ignore[attr-defined]
    assert outputs[1] == outputs[2] == outputs[3]
    assert "dropped_duplicate" in outputs[1][3]


def test_fixed_file_is_formatted_like_the_dataset_files(tmp_path: Path) -> None:
    path, records = defect_file(tmp_path, copies=1)
    fixed = tmp_path / "fixed.json"
    streamed(path, workers=1, fixed=fixed)
    data = fixed.read_bytes()
    assert data == orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2) + b"\n"
    assert len(orjson.loads(data)) < len(records)  # the exact copy is gone


def test_progress_counts_the_whole_file(tmp_path: Path) -> None:
    path, _ = defect_file(tmp_path, copies=1)
    steps: list[tuple[str, int | None, str, list[int]]] = []

    class Recorder:
        def step(self, label: str, total: int | None, unit: str = "records") -> Any:
            steps.append((label, total, unit, []))
            advances = steps[-1][3]

            class Step:
                def advance(self, count: int = 1) -> None:
                    advances.append(count)

                def __enter__(self) -> Step:
                    return self

                def __exit__(self, *exc: object) -> None:
                    return None

            return Step()

    validate.validate_file(path, ValidateOptions(check_spacing=False), lambda f: None, reporter=Recorder())
    [(label, total, unit, advances)] = steps
    assert (label, unit) == ("validate", "bytes") and total == path.stat().st_size == sum(advances)


def test_workers_must_be_positive(tmp_path: Path) -> None:
    path, _ = defect_file(tmp_path, copies=1)
    result = run_cli("validate", str(path), "--workers", "0", cwd=tmp_path)
    assert result.returncode == 2  # bad usage
    assert "--workers: 0 must be positive" in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_the_command_with_workers_prints_the_same_report(tmp_path: Path) -> None:
    path, _ = defect_file(tmp_path, copies=2)
    one = run_cli("validate", str(path), "--json", "--workers", "1", cwd=tmp_path)
    two = run_cli("validate", str(path), "--json", "--workers", "2", cwd=tmp_path)
    assert one.returncode == two.returncode == 1
    assert one.stdout == two.stdout and orjson.loads(one.stdout)["summary"]["duplicate"] >= 1


# Inputs of a feedback file that are not weekly records, and the place each message must name.
BAD_WEEKS: list[tuple[str, str]] = [
    ("도시, 사무직, 비건", "the input is not JSON"),
    ('{"memberId": 1, ', "the input is not JSON"),
    ("[1, 2]", "the input is [1,2], not an object"),
    (WEEK.replace('"memberId":1', '"memberId":"abc"'), 'memberId is "abc", not a whole number'),
    (WEEK.replace(',"groupChallenges":[]', ""), "the weekly record has no groupChallenges"),
    (WEEK.replace('"isSuccess":true', '"done":true'), "personalChallenges[0] has no isSuccess"),
    (WEEK.replace('"groupChallenges":[]', '"groupChallenges":[],"extra":1'), 'unknown field "extra"'),
    (WEEK.replace('"groupChallenges":[]', '"groupChallenges":"none"'), 'groupChallenges is "none", not a list'),
]
PYDANTIC_WORDS = ("Input should", "Field required", "Invalid JSON", "Extra inputs", "weekly record :")


def test_bad_feedback_inputs_are_explained_in_sentences(tmp_path: Path) -> None:
    records = [rec(week, f"손수건 쓰기를 해냈네요! 🎉 {n}번째 기록") for n, (week, _) in enumerate(BAD_WEEKS)]
    path = tmp_path / "feedback.json"
    path.write_bytes(orjson.dumps(records))
    result = run_cli("validate", str(path), "--task", "feedback", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = [line for line in result.stdout.splitlines() if " bad_input: " in line]
    assert len(lines) == len(BAD_WEEKS)
    for index, ((_, expected), line) in enumerate(zip(BAD_WEEKS, lines, strict=True)):
        assert line.startswith(f"  #{index} input bad_input: ") and expected in line, line
        assert not any(words in line for words in PYDANTIC_WORDS), line


def test_field_types_are_named_in_json_words() -> None:
    report = validate_records([{"instruction": 1, "input": None, "output": []}, ["not", "a", "record"]])
    messages = {(f.index, f.field): f.message for f in report.findings}
    assert messages[(0, "instruction")] == "instruction is a number, not a string"
    assert messages[(0, "input")] == "input is null, not a string"
    assert messages[(0, "output")] == "output is a list, not a string"
    assert messages[(1, "record")].startswith("the record is a list, not an object")


def test_the_summary_explains_every_code_and_count_it_prints(tmp_path: Path) -> None:
    path, _ = defect_file(tmp_path, copies=2)
    result = run_cli("validate", str(path), cwd=tmp_path)
    lines = result.stdout.splitlines()
    findings = ("  #", "   ", "  ... ")  # findings, their suggestions, and the "more" line
    counted = [line.split() for line in lines if line.startswith("  ") and not line.startswith(findings)]
    codes = {words[0] for words in counted if words[0] in CODES}
    assert codes >= {"json_output", "spacing", "near_duplicate", "duplicate"}
    for words in counted:
        name = words[0].rstrip(":")
        explanation = CODES.get(name) or INFO[name]  # a KeyError is a count printed without its words
        assert explanation in " ".join(lines)
    assert any(line.startswith("  same_input_different_output: ") for line in lines)
    assert "info: {" not in result.stdout
