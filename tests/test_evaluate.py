"""``evaluate``: the pure scorer on hand-made answers, record choice, the report files, a tiny model answering
in-process (merged and base + adapter), a fake OpenAI-compatible server on loopback, and the CLI's errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kochallenge_data.checks.record import infer_task
from kochallenge_data.cli import main
from kochallenge_data.errors import FormatError, KochallengeError
from kochallenge_data.formats import format_recommendation, parse_recommendation
from kochallenge_data.generate.selection import Licence, allowed
from kochallenge_data.ml.answers import completion_generation, finish_row, left_pad
from kochallenge_data.ml.evaluate import (
    EVALUATION_CODES,
    Generation,
    ScoredAnswer,
    score_answers,
    select_records,
    summary_table,
    write_evaluation,
)
from kochallenge_data.models import TASKS, Challenge, Recommendation, Record, Task
from kochallenge_data.pools import Pools, load_pools, title_key
from kochallenge_data.prompt import load_prompt_layout

from .conftest import FIXTURE_POOLS
from .strategies import mixed_text, words
from .tiny_model import build_tiny_records, write_tiny_dataset

POOLS: Pools = load_pools(FIXTURE_POOLS)
FORMAT_CODES = {"not_newline_format", "json_output", "blank_line", "trailing_whitespace", "numbering"}


def instruction(task: Task) -> str:
    return POOLS.instructions[task][0].text


def base_info(output: str, location: str = "도시", work_type: str = "사무직", category: str = "제로웨이스트") -> Record:
    return Record(instruction=instruction("base_info"), input=f"{location}, {work_type}, {category}", output=output)


def free_text(message: str, output: str) -> Record:
    return Record(instruction=instruction("free_text"), input=message, output=output)


def week(*titles: str, success: bool = True) -> str:
    personal = [{"id": i, "title": t, "isSuccess": success} for i, t in enumerate(titles, start=1)]
    return orjson.dumps({"memberId": 7, "personalChallenges": personal, "groupChallenges": []}).decode()


def feedback(titles: Sequence[str], output: str) -> Record:
    return Record(instruction=instruction("feedback"), input=week(*titles), output=output)


def score_one(record: Record, answer: str, finish: str = "eos", **options: Any) -> ScoredAnswer:
    generation = Generation(text=answer, finish=finish, tokens=None)  # type: ignore[arg-type]
    return score_answers([record], [generation], pools=POOLS, **options).items[0]


RECOMMEND = "제로웨이스트 챌린지, 이렇게 시작해 보는 건 어때요?"
TUMBLER = "텀블러 들고 출근하기: 출근길에 텀블러를 챙기면 하루 종일 일회용 컵 없이 지낼 수 있어요."
BAG = "장바구니 챙기기: 장을 보러 갈 때 장바구니를 챙기면 비닐봉지를 받지 않아도 돼요."
HANDKERCHIEF = "손수건 쓰기: 휴지 대신 손수건을 쓰면 버려지는 종이가 줄어요."
MOUNTAIN = "등산 쓰레기 챙겨 내려오기: 등산할 때 작은 봉투를 챙겨 내 쓰레기를 모두 가지고 내려와요."
CHILD = "아이와 장난감 나누기: 아이와 함께 작아진 장난감을 골라 이웃에게 나누면 버려지는 물건이 줄어요."
PERFECT = "\n".join([RECOMMEND, TUMBLER, BAG, HANDKERCHIEF])


# --------------------------------------------------------------------------------------------
# the pure scorer, one hand-made answer per failure


def test_a_perfect_answer_has_no_failure_and_fits() -> None:
    item = score_one(base_info(PERFECT), PERFECT)
    assert item.codes == []
    assert item.valid and item.parses and item.fit and item.exact_match
    assert item.finish == "eos" and not item.truncated


@pytest.mark.parametrize(
    ("record", "answer", "finish", "codes"),
    [
        # Cut inside the last description: it still parses as three challenges, only the finish tells.
        (base_info(PERFECT), "\n".join([RECOMMEND, TUMBLER, BAG, "손수건 쓰기: 휴지 대신"]), "length", ["truncated"]),
        (base_info(PERFECT), "\n".join([RECOMMEND, TUMBLER, BAG]), "eos", ["challenge_count"]),
        (base_info(PERFECT), PERFECT.replace("텀블러를 챙기면", "텀블러를챙기면"), "eos", ["spacing"]),
        # 산 is not 도시: the mountain challenge is bound to a place the input does not give.
        (base_info(PERFECT), "\n".join([RECOMMEND, TUMBLER, BAG, MOUNTAIN]), "eos", ["challenge_not_allowed"]),
        (
            base_info(PERFECT),
            "\n".join([RECOMMEND, TUMBLER, BAG, "구름 모으기: 하늘의 구름을 모아요."]),
            "eos",
            ["unknown_challenge"],
        ),
        (base_info(PERFECT), "\n".join([RECOMMEND, TUMBLER, BAG, BAG]), "eos", ["repeated_challenge"]),
        # 재택근무 does not license a challenge made for 사무직.
        (base_info(PERFECT, work_type="재택근무"), PERFECT, "eos", ["challenge_not_allowed"]),
        # A tired user asked nothing about children: the child challenge presumes one.
        (
            free_text("오늘 너무 피곤한데 쉬운 거 있어?", PERFECT),
            "\n".join([RECOMMEND, BAG, HANDKERCHIEF, CHILD]),
            "eos",
            ["challenge_not_allowed"],
        ),
        (base_info(PERFECT), "1. " + PERFECT, "eos", ["numbering"]),
    ],
)
def test_each_hand_made_failure_gets_exactly_its_code(
    record: Record, answer: str, finish: str, codes: list[str]
) -> None:
    item = score_one(record, answer, finish)
    assert item.codes == codes, [f.message for f in item.failures]
    assert not item.valid
    assert item.exact_match is (answer == record.output)


def test_a_composed_message_licenses_what_its_phrases_say() -> None:
    # "아이와 함께할 만한" is the 아이 facet's modifier: a child challenge is allowed, and stays unknown otherwise.
    message = "아이와 함께할 만한 챌린지 추천해 줘"
    answer = "\n".join(["이런 챌린지는 어떠세요?", BAG, HANDKERCHIEF, CHILD])
    assert score_one(free_text(message, answer), answer).codes == []
    assert score_one(free_text("아무거나 추천해 줘", answer), answer).codes == ["challenge_not_allowed"]


def test_a_topic_request_allows_only_its_category() -> None:
    answer = "\n".join(
        ["이런 챌린지는 어떠세요?", BAG, HANDKERCHIEF, TUMBLER.replace("텀블러 들고 출근하기", "채식 점심 한 끼")]
    )
    item = score_one(free_text("비건 챌린지 해 보고 싶어요", answer), answer)
    assert item.codes == ["challenge_not_allowed"]
    assert [f.message.count("ZERO_WASTE") for f in item.failures] == [1, 1]


def test_feedback_over_100_characters_is_too_long() -> None:
    answer = "장바구니 챙기기를 한 주 내내 지켰어요! " * 5 + "🎉"
    assert len(answer) > 100
    item = score_one(feedback(["장바구니 챙기기"], "장바구니 챙기기를 한 주 내내 지켰어요! 🎉"), answer)
    assert item.codes == ["feedback_too_long"]
    assert item.parses is None and item.fit is True


def test_feedback_may_name_only_the_weeks_challenges() -> None:
    record = feedback(["장바구니 챙기기"], "장바구니 챙기기를 한 주 내내 지켰어요! 🎉")
    assert score_one(record, record.output).codes == []
    item = score_one(record, "장바구니 챙기기와 손수건 쓰기를 모두 해냈어요! 🎉")
    assert item.codes == ["not_in_week"] and "손수건 쓰기" in item.failures[0].message
    assert item.fit is False
    # A week title that contains a pool title is one mention, not two.
    longer = feedback(["장바구니 챙기기 일주일"], "장바구니 챙기기 일주일을 해냈어요! 🎉")
    assert score_one(longer, longer.output).codes == []


def test_feedback_without_emoji_and_an_empty_answer_are_record_failures() -> None:
    record = feedback(["장바구니 챙기기"], "장바구니 챙기기를 한 주 내내 지켰어요! 🎉")
    assert score_one(record, "장바구니 챙기기를 한 주 내내 지켰어요!").codes == ["feedback_no_emoji"]
    assert score_one(record, "  ", "length").codes == ["empty_field", "truncated"]


def test_a_json_answer_parses_for_the_service_but_fails_the_dataset_format() -> None:
    recommendation = parse_recommendation(PERFECT)
    answer = orjson.dumps(recommendation.model_dump()).decode()
    item = score_one(base_info(PERFECT), answer)
    assert item.parses is True and item.fit is True
    assert item.codes == ["json_output"]


def test_surrounding_whitespace_is_stripped_like_the_service_and_kept_as_raw() -> None:
    item = score_one(base_info(PERFECT), PERFECT + "\n")
    assert item.codes == [] and item.answer == PERFECT and item.raw == PERFECT + "\n"


def test_an_input_outside_the_pools_is_not_judged_for_fit() -> None:
    item = score_one(base_info(PERFECT, location="우주"), PERFECT)
    assert item.fit is None and item.fit_note and "triple" in item.fit_note
    assert item.codes == []


def test_the_references_of_a_build_are_all_valid_exact_and_fit() -> None:
    records = build_tiny_records(size=48)
    generations = [Generation(r.output, "eos", None) for r in records]
    summary = score_answers(records, generations, pools=POOLS).summary
    assert set(summary) == {*TASKS, "all"}
    for figures in summary.values():
        assert figures["valid_rate"] == 1.0 and figures["exact_match_rate"] == 1.0
        assert figures["fit_rate"] == 1.0 and figures["failure_rates"] == {}


def test_summary_rates_count_answers_with_each_code() -> None:
    records = [base_info(PERFECT)] * 4
    answers = [PERFECT, "\n".join([RECOMMEND, TUMBLER, BAG]), "\n".join([RECOMMEND, TUMBLER, BAG, MOUNTAIN]), "?"]
    finishes = ["eos", "length", "eos", "length"]
    generations = [Generation(a, f, 10) for a, f in zip(answers, finishes, strict=True)]  # type: ignore[arg-type]
    figures = score_answers(records, generations, pools=POOLS).summary["base_info"]
    assert figures["count"] == 4 and figures["valid_rate"] == 0.25 and figures["truncated_rate"] == 0.5
    assert figures["failure_rates"]["challenge_count"] == 0.25
    assert figures["failure_rates"]["challenge_not_allowed"] == 0.25
    assert figures["fit_judged"] == 3 and figures["fit_rate"] == round(2 / 3, 4)
    assert figures["parse_rate"] == 0.75 and figures["exact_match_rate"] == 0.25
    assert figures["mean_answer_tokens"] == 10 and figures["finish"] == {"eos": 2, "length": 2}


def test_records_and_generations_must_pair_up() -> None:
    with pytest.raises(ValueError, match="1 records but 0 generations"):
        score_answers([base_info(PERFECT)], [], pools=POOLS)


# --------------------------------------------------------------------------------------------
# properties


def _allowed_for(licence: Licence) -> list[Any]:
    return [c for c in POOLS.challenges if allowed(c, licence)]


BASE_LICENCES = [
    (location, work_type, category)
    for location in POOLS.locations
    for work_type in POOLS.work_types
    for category in POOLS.categories
    if len(_allowed_for(Licence(location=location, work_type=work_type, category=category.key))) >= 3
]


@st.composite
def allowed_answers(draw: st.DrawFn) -> tuple[Record, str]:
    location, work_type, category = draw(st.sampled_from(BASE_LICENCES))
    candidates = _allowed_for(Licence(location=location, work_type=work_type, category=category.key))
    picks = draw(st.lists(st.sampled_from(candidates), min_size=3, max_size=3, unique_by=lambda c: c.title))
    challenges = [Challenge(title=c.title, description=draw(st.sampled_from(c.descriptions))) for c in picks]
    answer = format_recommendation(Recommendation(recommend=RECOMMEND, challenges=challenges))
    return base_info("", location, work_type, category.name).model_copy(update={"output": answer}), answer


@given(allowed_answers())
def test_an_answer_of_allowed_pool_challenges_always_fits_and_passes(case: tuple[Record, str]) -> None:
    record, answer = case
    item = score_one(record, answer, check_spacing=False)
    assert item.codes == [] and item.fit is True and item.parses is True


@given(mixed_text, st.sampled_from(["eos", "length", "stop"]))
def test_any_text_is_scored_without_crashing_and_format_failures_agree_with_the_parser(
    answer: str, finish: str
) -> None:
    item = score_one(base_info(PERFECT), answer, finish, check_spacing=False)
    try:
        recommendation = parse_recommendation(answer.strip())
    except FormatError:
        recommendation = None
    assert item.parses is (recommendation is not None)
    assert ("truncated" in item.codes) is (finish == "length")
    if recommendation is not None and not answer.strip().startswith("{"):
        # An answer the service's parser takes in newline format is never a format failure.
        assert not set(item.codes) & FORMAT_CODES
    if item.fit is not None:
        assert item.fit is not bool(
            set(item.codes) & {"unknown_challenge", "challenge_not_allowed", "repeated_challenge"}
        )


@given(st.lists(words, min_size=3, max_size=3, unique=True))
def test_titles_outside_the_pools_are_unknown_challenges_never_a_crash(titles: list[str]) -> None:
    known = {title_key(c.title) for c in POOLS.challenges}
    answer = "\n".join([RECOMMEND, *(f"{t}: {t} 해 봐요." for t in titles)])
    item = score_one(base_info(PERFECT), answer, check_spacing=False)
    unknown = [f for f in item.failures if f.code == "unknown_challenge"]
    assert len(unknown) == sum(title_key(t) not in known for t in titles)


# --------------------------------------------------------------------------------------------
# choosing records, writing the report


def test_select_records_keeps_the_task_mix_and_depends_only_on_the_seed() -> None:
    tasks: list[Task] = ["base_info"] * 50 + ["free_text"] * 30 + ["feedback"] * 20
    chosen = select_records(tasks, 10, seed=3)
    assert Counter(tasks[i] for i in chosen) == {"base_info": 5, "free_text": 3, "feedback": 2}
    assert chosen == sorted(chosen) and len(set(chosen)) == 10
    assert select_records(tasks, 10, seed=3) == chosen
    assert select_records(tasks, 10, seed=4) != chosen
    assert select_records(tasks, 7, seed=3).__len__() == 7  # shares that do not divide evenly still add up
    assert select_records(tasks, None, seed=3) == list(range(100)) == select_records(tasks, 500, seed=3)


def test_write_evaluation_writes_json_and_markdown_with_the_failing_examples(tmp_path: Path) -> None:
    records = [base_info(PERFECT), base_info(PERFECT), feedback(["장바구니 챙기기"], "장바구니 챙기기를 지켰어요! 🎉")]
    answers = [
        PERFECT,
        "\n".join([RECOMMEND, TUMBLER, BAG, "손수건 쓰기```: 휴지 | 대신"]),
        "장바구니 챙기기를 지켰어요! 🎉",
    ]
    generations = [Generation(a, f, None) for a, f in zip(answers, ["eos", "length", "eos"], strict=True)]  # type: ignore[arg-type]
    evaluation = score_answers(records, generations, pools=POOLS, indexes=[4, 9, 12], run={"model": "m"})
    paths = write_evaluation(evaluation, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["evaluation.json", "evaluation.md"]
    data = orjson.loads(paths["json"].read_bytes())
    assert data["run"] == {"model": "m"}
    assert data["summary"]["all"]["count"] == 3 and data["summary"]["feedback"]["valid_rate"] == 1.0
    assert [i["index"] for i in data["items"]] == [4, 9, 12]
    second = data["items"][1]
    assert second["finish"] == "length" and second["task"] == "base_info" and second["reference"] == PERFECT
    assert {"truncated", "unknown_challenge"} <= {f["code"] for f in second["failures"]}
    assert set(EVALUATION_CODES) <= set(data["codes"])
    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert (
        "| task | count | valid |" in markdown and "### truncated" in markdown and "### unknown_challenge" in markdown
    )
    assert "record 9 (base_info, finish length)" in markdown
    assert "````text" in markdown  # the answer holds ``` so its fence is longer
    assert "truncated" in summary_table(evaluation)


# --------------------------------------------------------------------------------------------
# small pieces of generation


def test_left_pad_puts_padding_in_front_and_masks_it() -> None:
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids == [[5, 6, 7], [0, 0, 8]] and mask == [[1, 1, 1], [0, 0, 1]]


class _Decoder:
    def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        return " ".join(str(i) for i in ids)


def test_finish_row_stops_at_the_first_eos_else_reports_the_length_limit() -> None:
    assert finish_row([4, 5, 2, 2, 2], [2], _Decoder()) == Generation("4 5", "eos", 2)
    assert finish_row([4, 5, 6], [2, 9], _Decoder()) == Generation("4 5 6", "length", 3)
    assert finish_row([9, 2], [2, 9], _Decoder()) == Generation("", "eos", 0)


def test_completion_generation_reads_finish_reason_and_usage() -> None:
    data = {"choices": [{"text": "a", "finish_reason": "length"}], "usage": {"completion_tokens": 7}}
    assert completion_generation(data, "u") == Generation("a", "length", 7)
    assert completion_generation({"choices": [{"text": "b", "finish_reason": "stop"}]}, "u").finish == "stop"
    with pytest.raises(KochallengeError, match="without choices"):
        completion_generation({"error": "x"}, "http://h")


# --------------------------------------------------------------------------------------------
# the CLI's user errors (a real subprocess, no model needed)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kochallenge_data", "evaluate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    return write_tiny_dataset(build_tiny_records(size=6), tmp_path / "data.json")


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_cli_errors_are_one_clean_line(tmp_path: Path, data_file: Path) -> None:
    missing = run_cli("--url", "http://127.0.0.1:9", "--data", "nope.json", "--out", "o", cwd=tmp_path)
    assert (
        missing.returncode == 2
        and missing.stderr.startswith("Error: ")
        and "nope.json: file not found" in missing.stderr
    )

    neither = run_cli("--data", str(data_file), "--out", "o", cwd=tmp_path)
    assert neither.returncode == 2 and "one of the arguments --model --url is required" in neither.stderr

    url = f"http://127.0.0.1:{_closed_port()}"
    unreachable = run_cli(
        "--url", url, "--data", str(data_file), "--out", "o", "--pools", str(FIXTURE_POOLS), cwd=tmp_path
    )
    assert unreachable.returncode == 1 and unreachable.stderr.startswith("Error: cannot reach " + url)

    named = run_cli("--url", url, "--model-name", "m", "--data", str(data_file), "--out", "o", cwd=tmp_path)
    assert named.returncode == 1 and f"cannot reach {url}/v1/completions" in named.stderr

    not_a_model = run_cli("--model", str(tmp_path), "--data", str(data_file), "--out", "o", cwd=tmp_path)
    assert not_a_model.returncode == 1 and "not a model directory" in not_a_model.stderr

    both = run_cli("--model", str(tmp_path), "--model-name", "m", "--data", str(data_file), "--out", "o", cwd=tmp_path)
    assert (
        both.returncode == 1
        and both.stderr == "Error: --model-name goes with --url; a --model directory names itself\n"
    )

    for result in (missing, neither, unreachable, named, not_a_model, both):
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------------
# --url against a fake OpenAI-compatible server on loopback


def _fake_openai_app(answers: dict[str, tuple[str, str]], seen: list[dict[str, Any]]) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "runs/merged", "object": "model"}]}

    @app.post("/v1/completions")
    async def completions(body: dict[str, Any]) -> Any:
        seen.append(body)
        if body["prompt"] not in answers:
            return JSONResponse({"error": {"message": "unknown prompt"}}, status_code=400)
        text, finish = answers[body["prompt"]]
        return {
            "object": "text_completion",
            "model": body["model"],
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": 10, "completion_tokens": len(text) // 2, "total_tokens": 10 + len(text) // 2},
        }

    return app


@pytest.fixture
def fake_server() -> Iterator[tuple[str, dict[str, tuple[str, str]], list[dict[str, Any]]]]:
    pytest.importorskip("fastapi", reason="needs the serve extra")
    pytest.importorskip("uvicorn", reason="needs the serve extra")
    pytest.importorskip("httpx", reason="needs the serve extra")
    from .serve.helpers import serve_in_thread

    answers: dict[str, tuple[str, str]] = {}
    seen: list[dict[str, Any]] = []
    with serve_in_thread(_fake_openai_app(answers, seen)) as url:
        yield url, answers, seen


def test_url_answers_are_scored_and_a_length_finish_is_truncated(
    tmp_path: Path, fake_server: tuple[str, dict[str, tuple[str, str]], list[dict[str, Any]]], capsys: Any
) -> None:
    url, answers, seen = fake_server
    records = build_tiny_records(size=12)
    data = write_tiny_dataset(records, tmp_path / "data.json")
    layout = load_prompt_layout()
    prompts = [layout.render(r.instruction, r.input) for r in records]
    # Every answer is the reference, but the first is cut by the server at its token limit.
    for number, (prompt, record) in enumerate(zip(prompts, records, strict=True)):
        answers[prompt] = (
            record.output[: len(record.output) // 2] if number == 0 else record.output,
            "length" if number == 0 else "stop",
        )
    code = main(["evaluate", "--url", url, "--data", str(data), "--out", str(tmp_path / "out"),
                 "--pools", str(FIXTURE_POOLS), "--batch-size", "4", "--max-new-tokens", "77"])  # fmt: skip
    assert code == 0
    assert {body["model"] for body in seen} == {"runs/merged"}  # the server's own name, from /v1/models
    assert all(body["temperature"] == 0 and body["max_tokens"] == 77 for body in seen)
    assert sorted(body["prompt"] for body in seen) == sorted(prompts)
    data_out = orjson.loads((tmp_path / "out" / "evaluation.json").read_bytes())
    items = data_out["items"]
    assert [i["finish"] for i in items] == ["length"] + ["stop"] * (len(records) - 1)
    assert "truncated" in {f["code"] for f in items[0]["failures"]}
    assert all(i["valid"] and i["exact_match"] for i in items[1:])
    assert data_out["summary"]["all"]["truncated_rate"] == round(1 / len(records), 4)
    assert data_out["run"]["url"] == url and data_out["run"]["max_new_tokens"] == 77
    assert "truncated" in capsys.readouterr().out
    assert not any("structured_outputs" in body for body in seen), "unguided unless asked"


def test_url_guided_decoding_sends_the_serving_regex_for_recommendations_only(
    tmp_path: Path, fake_server: tuple[str, dict[str, tuple[str, str]], list[dict[str, Any]]]
) -> None:
    from kochallenge_data.checks.record import infer_task
    from kochallenge_data.serve.guided import recommendation_regex

    url, answers, seen = fake_server
    records = build_tiny_records(size=12)
    data = write_tiny_dataset(records, tmp_path / "data.json")
    layout = load_prompt_layout()
    for record in records:
        answers[layout.render(record.instruction, record.input)] = (record.output, "stop")
    code = main(["evaluate", "--url", url, "--data", str(data), "--out", str(tmp_path / "out"),
                 "--pools", str(FIXTURE_POOLS), "--guided-decoding"])  # fmt: skip
    assert code == 0
    by_prompt = {body["prompt"]: body for body in seen}
    for record in records:
        body = by_prompt[layout.render(record.instruction, record.input)]
        if infer_task(record.model_dump()) == "feedback":
            assert "structured_outputs" not in body
        else:
            assert body["structured_outputs"] == {"regex": recommendation_regex(3)}
    assert orjson.loads((tmp_path / "out" / "evaluation.json").read_bytes())["run"]["guided_decoding"] is True


def test_url_http_error_and_stall_are_clean_errors(tmp_path: Path, capsys: Any) -> None:
    pytest.importorskip("httpx", reason="needs the serve extra")
    pytest.importorskip("uvicorn", reason="needs the serve extra")
    from .serve.helpers import ReplayServer, Reply

    data = write_tiny_dataset(build_tiny_records(size=3), tmp_path / "data.json")
    args = ["--model-name", "m", "--data", str(data), "--out", str(tmp_path / "out"), "--pools", str(FIXTURE_POOLS)]
    with ReplayServer(lambda _: Reply(kind="http_error")) as server:
        assert main(["evaluate", "--url", server.url, *args]) == 1
    assert f"Error: {server.url}/v1/completions answered HTTP 500: model overloaded" in capsys.readouterr().err
    with ReplayServer(lambda _: Reply(kind="stall", stall_s=3.0)) as server:
        assert main(["evaluate", "--url", server.url, "--timeout", "0.3", *args]) == 1
    assert f"{server.url}/v1/completions did not answer within 0.3 s" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# --model on a tiny model that memorized its answers


@pytest.fixture(scope="module")
def memorized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Record]]:
    """A tiny Llama that answers three records (one per task, the shortest outputs) exactly."""
    pytest.importorskip("torch", reason="needs the train extra")
    pytest.importorskip("transformers", reason="needs the train extra")
    import torch

    from .tiny_model import build_tiny_model, memorize

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evaluate")
    records = build_tiny_records(size=48)
    chosen = [min((r for r in records if infer_task(r.model_dump()) == task), key=lambda r: len(r.output))
              for task in TASKS]  # fmt: skip
    base = build_tiny_model(records, root / "base")
    layout = load_prompt_layout()
    pairs = [(layout.render(r.instruction, r.input), r.output) for r in chosen]
    model_dir = memorize(base, root / "merged", pairs)
    data = write_tiny_dataset(chosen, root / "data.json")
    return model_dir, data, chosen


def _evaluate(model: Path, data: Path, out: Path, *extra: str) -> dict[str, Any]:
    args = ["evaluate", "--model", str(model), "--data", str(data), "--out", str(out), "--pools", str(FIXTURE_POOLS)]
    assert main([*args, *extra]) == 0
    result: dict[str, Any] = orjson.loads((out / "evaluation.json").read_bytes())
    return result


@pytest.mark.train
def test_model_answers_in_batches_of_mixed_lengths_match_the_references(
    memorized: tuple[Path, Path, list[Record]], tmp_path: Path
) -> None:
    model_dir, data, records = memorized
    result = _evaluate(model_dir, data, tmp_path / "out", "--batch-size", "3")
    items = result["items"]
    assert [i["answer"] for i in items] == [r.output for r in records]
    assert all(i["finish"] == "eos" and i["valid"] and i["fit"] for i in items)
    assert result["summary"]["all"]["exact_match_rate"] == 1.0
    assert result["run"]["max_new_tokens"] == 256 and result["run"]["max_new_tokens_from"] == "default"


@pytest.mark.train
def test_a_small_token_limit_truncates_every_answer(memorized: tuple[Path, Path, list[Record]], tmp_path: Path) -> None:
    model_dir, data, _ = memorized
    result = _evaluate(model_dir, data, tmp_path / "out", "--max-new-tokens", "4", "--batch-size", "2")
    assert [(i["finish"], i["tokens"]) for i in result["items"]] == [("length", 4)] * 3
    assert result["summary"]["all"]["truncated_rate"] == 1.0
    assert all("truncated" in {f["code"] for f in i["failures"]} for i in result["items"])


@pytest.mark.train
def test_generate_with_model_leaves_the_tokenizer_alone_and_batching_changes_nothing(
    memorized: tuple[Path, Path, list[Record]],
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kochallenge_data.ml.evaluate import generate_with_model

    model_dir, _, records = memorized
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    assert tokenizer.pad_token is None
    side = tokenizer.padding_side
    layout = load_prompt_layout()
    prompts = [layout.render(r.instruction, r.input) for r in records]
    one_by_one = generate_with_model(model, tokenizer, prompts, batch_size=1, max_new_tokens=200)
    together = generate_with_model(model, tokenizer, prompts, batch_size=3, max_new_tokens=200)
    assert one_by_one == together
    assert [g.text for g in together] == [r.output for r in records]
    assert tokenizer.pad_token is None and tokenizer.padding_side == side
    assert all(g.tokens == len(tokenizer(r.output, add_special_tokens=False)["input_ids"]) for g, r in
               zip(together, records, strict=True))  # fmt: skip


@pytest.mark.train
def test_a_train_out_folder_loads_its_base_with_the_adapter_and_its_recorded_settings(
    memorized: tuple[Path, Path, list[Record]], tmp_path: Path
) -> None:
    """A LoRA adapter starts as the identity (B = 0), so base + adapter answers exactly as the base does."""
    pytest.importorskip("peft", reason="needs the train extra")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model_dir, data, records = memorized
    run = tmp_path / "run"
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(model_dir)), LoraConfig(r=2, target_modules=["q_proj", "v_proj"])
    )
    peft_model.save_pretrained(str(run / "adapter"))
    (run / "train_config.json").write_bytes(
        orjson.dumps({"options": {"base": str(model_dir)}, "resolved": {"max_new_tokens": 180}})
    )
    shutil.copyfile(load_prompt_layout().path, run / "prompt.j2")
    result = _evaluate(run, data, tmp_path / "out", "--prompt-template", "ignored.j2")
    assert [i["answer"] for i in result["items"]] == [r.output for r in records]
    assert result["run"]["max_new_tokens"] == 180 and result["run"]["max_new_tokens_from"] == "train_config.json"
    assert result["run"]["model"].endswith(f"(adapter on {model_dir})")
    assert result["run"]["prompt_template"] == str(run / "prompt.j2")
