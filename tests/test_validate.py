from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from kochallenge_data.build import BuildConfig, build_dataset, write_build
from kochallenge_data.validate import read_dataset, validate_records

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
