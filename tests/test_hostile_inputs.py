"""Hostile input never crashes, hangs or tears an output (issue 15).

Pools, templates, config files and options are untrusted. Every case must end in one of two ways, within a
time bound: exit 0 with a dataset that ``validate`` passes, or exit 1/2 with exactly one ``Error:`` line on
stderr, no traceback and no dataset written. The fuzz tests run the real CLI in-process (``cli.main``) for
speed, under a timer that turns a hang into a failure; the cases that could block in the kernel (FIFOs) run
it as a subprocess with a timeout. With ``CI`` set, the fuzz tests run over 200 cases together.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kochallenge_data.cli import main

from .conftest import FIXTURE_POOLS, ROOT

IN_CI = bool(os.environ.get("CI"))
HANG_SECONDS = 60  # a case that runs this long is a hang: a small build takes well under a second


def examples(ci: int, dev: int) -> settings:
    """``ci`` cases unless FUZZ_QUICK is set (then ``dev``): CI runs at least 200 cases in all, whatever it sets."""
    return settings(
        max_examples=dev if os.environ.get("FUZZ_QUICK") else ci,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        derandomize=not IN_CI,
    )


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


class Hang(Exception):
    """The command ran past HANG_SECONDS."""


@contextlib.contextmanager
def hang_guard(seconds: float) -> Iterator[None]:
    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_in_process(*args: str) -> Outcome:
    """The real CLI in this process; an exception escaping ``main`` fails the test (that is a traceback)."""
    out, err = io.StringIO(), io.StringIO()
    with hang_guard(HANG_SECONDS), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return Outcome(code, out.getvalue(), err.getvalue())


def run_subprocess(*args: str, cwd: Path) -> Outcome:
    result = subprocess.run(
        [sys.executable, "-m", "kochallenge_data", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=HANG_SECONDS,  # a hang is a failure, not a stuck CI job
    )
    return Outcome(result.returncode, result.stdout, result.stderr)


def assert_clean_outcome(outcome: Outcome, dataset: Path | None = None) -> None:
    """Exit 0 with a dataset validate passes, or exit 1/2 with one ``Error:`` line and no dataset."""
    assert "Traceback" not in outcome.stderr, outcome.stderr
    if outcome.code == 0:
        if dataset is not None:
            check = run_in_process("validate", str(dataset), "--no-spacing")
            assert check.code == 0, f"build wrote a dataset validate rejects:\n{check.stdout}{check.stderr}"
        return
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("Error:")]
    assert outcome.code in (1, 2), (outcome.code, outcome.stderr)
    assert len(errors) == 1, outcome.stderr
    if dataset is not None:
        assert not dataset.exists(), "a failed build left a dataset behind"


def build(folder: Path, *extra: str, pools: Path = FIXTURE_POOLS, size: int = 6) -> tuple[Outcome, Path]:
    out = folder / "out" / "data.json"
    out.parent.mkdir(exist_ok=True)
    args = ["build", "--size", str(size), "--no-diversity", "--pools", str(pools), "--out", str(out), *extra]
    return run_in_process(*args), out


def copy_templates(folder: Path) -> Path:
    target = folder / "templates"
    shutil.copytree(ROOT / "templates", target)
    return target


def copy_pools(folder: Path) -> Path:
    target = folder / "pools"
    shutil.copytree(FIXTURE_POOLS, target)
    return target


def error_line(outcome: Outcome) -> str:
    return next(line for line in outcome.stderr.splitlines() if line.startswith("Error:"))


# --- templates -------------------------------------------------------------------------------------------------

BIG = ["0", "1", "3", "100000", "10**9", "-1", "2**64"]
SLOTS = ["location", "work_type", "category"]


@st.composite
def hostile_template(draw: st.DrawFn) -> str:
    """A base-info template made of slots, text and the constructs an attacker would try."""
    n = st.sampled_from(BIG)
    slot = st.sampled_from(SLOTS)
    piece = st.one_of(
        slot.map(lambda s: "{{ " + s + " }}"),
        st.sampled_from([", ", " ", "텍스트", "\n", "{#- 주석 -#}", "{{", "{% endfor %}", "}}", "{{ missing }}"]),
        st.sampled_from(['{% include "x.j2" %}', '{% import "x.j2" as m %}', '{% extends "base_info_input.j2" %}']),
        st.sampled_from(['{% from "x.j2" import y %}', "{% for x in range(3) recursive %}{{ loop([]) }}{% endfor %}"]),
        n.map(lambda v: "{{ range(" + v + ")|list }}"),
        n.map(lambda v: '{{ "a" * ' + v + " }}"),
        n.map(lambda v: "{{ [location] * " + v + " }}"),
        n.map(lambda v: "{{ 2 ** " + v + " }}"),
        n.map(lambda v: "{{ 1 / (" + v + " - " + v + ") }}"),
        n.map(lambda v: "{% for i in range(" + v + ") %}{% for j in range(" + v + ") %}{% endfor %}{% endfor %}"),
        n.map(lambda v: "{{ location|truncate(" + v + ") }}"),
        slot.map(lambda s: "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(" + s + ") }}"),
        slot.map(lambda s: "{{ " + s + ".__class__.__mro__ }}"),
        slot.map(lambda s: "{{ " + s + ".center(10**9) }}"),
        slot.map(lambda s: "{{ " + s + "|center(10**9) }}"),
        slot.map(lambda s: '{{ "%0999999999d" % 1 }}{{ ' + s + " }}"),
        slot.map(lambda s: '{{ "{:999999999}".format(' + s + ") }}"),
        slot.map(lambda s: "{% set l = [1] %}{% for x in l %}{{ l.append(x) }}{% endfor %}{{ " + s + " }}"),
        slot.map(lambda s: "{{ ([" + s + "] * 60000)|join(" + s + " * 60000) }}"),
        slot.map(lambda s: "{{ " + s + '|josa("을/를") }}'),
        slot.map(lambda s: "{{ " + s + '|josa("없는/쌍") }}'),
        slot.map(lambda s: "{{ " + s + "|upper ~ " + s + " }}"),
        slot.map(lambda s: "{% if " + s + " %}{{ " + s + " }}{% endif %}"),
        st.sampled_from(["{{ lipsum(10**9) }}", "{% set ns = namespace(s='a') %}", "{{ cycler(1, 2).next() }}"]),
    )
    return "".join(draw(st.lists(piece, min_size=1, max_size=5)))


@examples(ci=90, dev=15)
@given(source=hostile_template())
def test_fuzzed_templates_build_or_fail_cleanly(source: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        templates = copy_templates(folder)
        (templates / "base_info_input.j2").write_text(source, encoding="utf-8")
        outcome, dataset = build(folder, "--templates", str(templates), "--mix", "base_info=1")
        assert_clean_outcome(outcome, dataset)


# --- pools ------------------------------------------------------------------------------------------------------

HOSTILE_PHRASES = [
    "{{ 1 + 1 }}",
    "{{ range(10**9) }}",
    "{{ category * 10**9 }}",
    "{% for x in category %}{{ x }}{% endfor %}",
    '{{ category|josa("없는/쌍") }}',
    "{{ category.upper() }}",
    "{{ category|upper }}",
    "{{ category.__class__ }}",
    "{% include 'x' %}",
    "첫 줄\n둘째 줄",
    "줄\u2028나눔",
    "",
    " 앞에 공백",
    "가" * 600,
    "{{",
    "{{ category }}",
    "이런 챌린지는 어떠세요?",
]


@st.composite
def mutated_pool(draw: st.DrawFn, folder: Path) -> Path:
    """A copy of the fixture pools with one hostile edit: a phrase replaced, bytes cut or broken, a type changed."""
    pools = copy_pools(folder)
    files = sorted(p for p in pools.rglob("*.toml"))
    path = draw(st.sampled_from(files))
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    kind = draw(st.sampled_from(["phrase", "phrase", "phrase", "cut", "bytes", "type", "duplicate"]))
    if kind == "cut":
        data = text.encode("utf-8")
        path.write_bytes(data[: draw(st.integers(0, len(data)))])
        return pools
    if kind == "bytes":
        path.write_bytes(text.encode("utf-8") + draw(st.sampled_from([b"\xff\xfe", b"\x00", b"\xed\xa0\x80"])))
        return pools
    quoted = [i for i, line in enumerate(lines) if line.count('"') >= 2]
    index = draw(st.sampled_from(quoted))
    line = lines[index]
    start = line.index('"')
    end = line.index('"', start + 1)
    if kind == "phrase":
        replacement = json.dumps(draw(st.sampled_from(HOSTILE_PHRASES)), ensure_ascii=False)
    elif kind == "type":
        replacement = draw(st.sampled_from(["1", "nan", "inf", "[]", "{}", "true", "1979-05-27", "-1", "1e400"]))
    else:
        replacement = line[start : end + 1]
        lines.insert(index, line)
    lines[index] = line[:start] + replacement + line[end + 1 :]
    path.write_text("".join(lines), encoding="utf-8")
    return pools


@examples(ci=60, dev=12)
@given(data=st.data())
def test_fuzzed_pools_build_or_fail_cleanly(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pools = data.draw(mutated_pool(folder))
        outcome, dataset = build(folder, pools=pools)
        assert_clean_outcome(outcome, dataset)


# --- config files and options ------------------------------------------------------------------------------------

ODD_VALUES = ["nan", "inf", "-inf", "-1", "0", "1e400", "99999999999999999999", '"3"', "[]", "{}", "true", "1979-05-27"]
CONFIG_KEYS = ["size", "seed", "mix", "pools", "templates", "out", "diversity", "colour"]


@st.composite
def config_file(draw: st.DrawFn, folder: Path) -> Path:
    """A TOML or JSON config with odd values and types under real and unknown keys."""
    keys = draw(st.lists(st.sampled_from(CONFIG_KEYS), min_size=1, max_size=4, unique=True))
    values = {key: draw(st.sampled_from([*ODD_VALUES, "6", f'"{FIXTURE_POOLS}"', '"/etc/passwd"'])) for key in keys}
    if "mix" in values and draw(st.booleans()):
        values["mix"] = "{ base_info = " + draw(st.sampled_from([*ODD_VALUES, "1"])) + " }"
    if draw(st.booleans()):
        path = folder / "config.toml"
        path.write_text("".join(f"{key} = {value}\n" for key, value in values.items()), encoding="utf-8")
    else:
        path = folder / "config.json"
        as_json = {key: value.replace("{ base_info = ", '{"base_info": ') for key, value in values.items()}
        body = ", ".join(f'"{key}": {value}' for key, value in as_json.items())
        path.write_text("{" + body + "}", encoding="utf-8")
    return path


@examples(ci=35, dev=8)
@given(data=st.data())
def test_fuzzed_config_files_build_or_fail_cleanly(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = data.draw(config_file(folder))
        outcome, dataset = build(folder, "--config", str(config))
        assert_clean_outcome(outcome, dataset)


OPTION_TEXT = st.sampled_from(
    ["6", "0", "-1", "nan", "inf", "1e3", "99999999999999999999", " 6", "", "٣", "6.5", "0x10", "--", "-"]
)
MIX_TEXT = st.sampled_from(
    ["base_info=1", "base_info=nan", "base_info=inf", "base_info=1e400", "base_info=-1", "base_info=0", "chat=1",
     "base_info", "=", ",,", "base_info=1,base_info=2", "free_text=0,feedback=0,base_info=0"]
)  # fmt: skip


@examples(ci=35, dev=8)
@given(size=OPTION_TEXT, seed=OPTION_TEXT, mix=MIX_TEXT)
def test_fuzzed_build_options_build_or_fail_cleanly(size: str, seed: str, mix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        out = folder / "data.json"
        args = ["build", "--no-diversity", "--pools", str(FIXTURE_POOLS), "--out", str(out)]
        outcome = run_in_process(*args, f"--size={size}", f"--seed={seed}", f"--mix={mix}")
        assert_clean_outcome(outcome, out)


@examples(ci=10, dev=4)
@given(workers=OPTION_TEXT, challenges=OPTION_TEXT, threshold=OPTION_TEXT)
def test_fuzzed_validate_options_check_or_fail_cleanly(workers: str, challenges: str, threshold: str) -> None:
    dataset = ROOT / "tests" / "golden"
    sample = next(dataset.glob("*.json"), None) if dataset.is_dir() else None
    target = str(sample) if sample is not None else str(ROOT / "pyproject.toml")
    outcome = run_in_process(
        "validate", target, "--no-spacing", f"--workers={workers}", f"--challenges={challenges}",
        f"--threshold={threshold}",
    )  # fmt: skip
    assert "Traceback" not in outcome.stderr
    if outcome.code == 2:
        assert len([line for line in outcome.stderr.splitlines() if line.startswith("Error:")]) == 1, outcome.stderr
    else:
        assert outcome.code in (0, 1), outcome.stderr


# --- one test per attack class of the issue ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('{% include "free_text_input.j2" %}', r"base_info_input.j2:1: .*\{% include %\} is not available"),
        ('{% import "free_text_input.j2" as m %}', r"\{% import %\} is not available"),
        ('{% extends "free_text_input.j2" %}', r"\{% extends %\} is not available"),
        ("{{ range(10**9)|list }}", "Range too big"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(location) }}", "recursion too deep"),
        ("{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(location) }}", "recursion too deep|more than"),
        ("{{ location }}{{ 1/0 }}", "ZeroDivisionError: division by zero"),
        ('{{ "a" * 10**9 }}', "a repetition would be more than"),
        ("{{ [location] * 10**9 }}", "a repetition would be more than"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{{ location }}",
            "more than 100,000 loop iterations",
        ),
        ("{% set l = [1] %}{% for x in l %}{{ l.append(x) }}{% endfor %}", "'append' of 'list' object is unsafe"),
        ("{{ location }}\n{{ work_type }}, {{ category }}", "renders a line break"),
        ("{{ location.__class__.__mro__ }}", "unsafe"),
        ("{{ location|center(10**9) }}", "No filter named 'center'"),
    ],
)
def test_each_template_attack_is_one_error_naming_the_template(tmp_path: Path, source: str, message: str) -> None:
    templates = copy_templates(tmp_path)
    (templates / "base_info_input.j2").write_text(source, encoding="utf-8")
    outcome, dataset = build(tmp_path, "--templates", str(templates), "--mix", "base_info=1")
    assert_clean_outcome(outcome, dataset)
    assert outcome.code == 1
    line = error_line(outcome)
    assert "base_info_input.j2" in line
    assert re.search(message, line), line


def test_a_self_growing_accumulator_in_a_feedback_layout_is_stopped(tmp_path: Path) -> None:
    templates = copy_templates(tmp_path)
    for layout in (templates / "feedback").glob("*.j2"):
        layout.unlink()
    (templates / "feedback" / "grow.j2").write_text(
        "{% set s = sentences[0].text %}{% for i in range(100000) %}{% set s = s ~ s %}{% endfor %}"
        "{% for s in sentences %}{{ s.text }} {{ s.emoji }}{% endfor %}",
        encoding="utf-8",
    )
    outcome, dataset = build(tmp_path, "--templates", str(templates), "--mix", "feedback=1")
    assert_clean_outcome(outcome, dataset)
    assert outcome.code == 1 and "grow.j2" in error_line(outcome)


def test_a_template_symlinked_out_of_its_folder_is_refused(tmp_path: Path) -> None:
    templates = copy_templates(tmp_path)
    outside = tmp_path / "secret.j2"
    outside.write_text("{{ location }}, {{ work_type }}, {{ category }}", encoding="utf-8")
    (templates / "base_info_input.j2").unlink()
    (templates / "base_info_input.j2").symlink_to(outside)
    outcome, dataset = build(tmp_path, "--templates", str(templates))
    assert_clean_outcome(outcome, dataset)
    assert outcome.code == 1 and "points outside" in error_line(outcome)


@pytest.mark.parametrize("kind", ["directory", "symlink loop"])
def test_a_template_or_pool_that_is_not_a_file_is_refused(tmp_path: Path, kind: str) -> None:
    templates = copy_templates(tmp_path)
    pools = copy_pools(tmp_path)
    for path in (templates / "base_info_input.j2", pools / "recommend.toml"):
        path.unlink()
        if kind == "directory":
            path.mkdir()
        else:
            path.symlink_to(path)
    outcome, dataset = build(tmp_path, "--templates", str(templates), pools=pools)
    assert_clean_outcome(outcome, dataset)
    assert outcome.code == 1
    expected = "is a folder" if kind == "directory" else "cannot be resolved"
    assert expected in error_line(outcome)


@pytest.mark.parametrize("target", ["template", "pool", "config"])
def test_a_fifo_in_place_of_a_file_is_refused_without_blocking(tmp_path: Path, target: str) -> None:
    templates = copy_templates(tmp_path)
    pools = copy_pools(tmp_path)
    path = {
        "template": templates / "base_info_input.j2",
        "pool": pools / "recommend.toml",
        "config": tmp_path / "config.toml",
    }[target]
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    args = ["build", "--size", "6", "--pools", str(pools), "--templates", str(templates), "--out", "d.json"]
    if target == "config":
        args += ["--config", str(path)]
    outcome = run_subprocess(*args, cwd=tmp_path)  # a FIFO read would block in the kernel: a real hang bound
    assert_clean_outcome(outcome, tmp_path / "d.json")
    assert outcome.code == 1 and "not a regular file" in error_line(outcome)


@pytest.mark.parametrize(
    ("phrase", "message"),
    [
        ("{{ 1 + 1 }}", "not plain text with slots"),
        ("{{ category * 10**9 }}", "not plain text with slots"),
        ("{{ range(10**9) }}", "not plain text with slots"),
        ("{% for x in category %}{{ x }}{% endfor %}", "not plain text with slots"),
        ("{{ category.upper() }}", "not plain text with slots"),
        ("{{ category|upper }}", "not plain text with slots"),
        ('{{ category|josa("없는/쌍") }}', "unknown particle pair '없는/쌍'"),
        ("첫 줄\n둘째 줄", "has a line break"),
        ("가" * 600, "the limit is 500"),
    ],
)
def test_a_pool_phrase_is_data_not_a_program(tmp_path: Path, phrase: str, message: str) -> None:
    pools = copy_pools(tmp_path)
    path = pools / "recommend.toml"
    text = path.read_text(encoding="utf-8")
    assert "이런 챌린지는 어떠세요?" in text
    path.write_text(text.replace('"이런 챌린지는 어떠세요?"', json.dumps(phrase, ensure_ascii=False)), encoding="utf-8")
    outcome, dataset = build(tmp_path, pools=pools)
    assert_clean_outcome(outcome, dataset)
    assert outcome.code == 1
    line = error_line(outcome)
    assert "recommend.toml:" in line and message in line, line


def test_a_location_that_injects_a_newline_into_the_input_is_refused(tmp_path: Path) -> None:
    pools = copy_pools(tmp_path)
    path = pools / "domain.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('"도시"', '"도시\\n산"', 1), encoding="utf-8")
    outcome, dataset = build(tmp_path, pools=pools)
    assert_clean_outcome(outcome, dataset)
    assert outcome.code == 1 and "domain.toml" in error_line(outcome) and "line break" in error_line(outcome)


def test_a_very_long_location_name_is_refused_quickly_by_lint_pools(tmp_path: Path) -> None:
    pools = copy_pools(tmp_path)
    path = pools / "domain.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('"도시"', '"' + "가" * 5000 + '"', 1), encoding="utf-8")
    outcome = run_in_process("lint-pools", "--pools", str(pools))
    assert_clean_outcome(outcome)
    assert outcome.code == 1 and "domain.toml" in error_line(outcome)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--seed", "99999999999999999999999"], "--seed"),
        (["--seed", "-1"], "--seed"),
        (["--mix", "base_info=nan"], "--mix"),
        (["--mix", "base_info=inf,free_text=1"], "--mix"),
        (["--mix", "base_info=1e400"], "--mix"),
        (["--size", "0"], "--size"),
        (["--out", "/proc/kochallenge/data.json"], "/proc"),
    ],
)
def test_options_at_the_edge_are_refused_with_one_line(tmp_path: Path, options: list[str], message: str) -> None:
    args = ["build", "--size", "6", "--no-diversity", "--pools", str(FIXTURE_POOLS), "--out", str(tmp_path / "d.json")]
    outcome = run_in_process(*args, *options)
    assert_clean_outcome(outcome, None if "--out" in options else tmp_path / "d.json")
    assert outcome.code in (1, 2) and message in error_line(outcome)


def test_argparse_errors_are_one_error_line_with_exit_2() -> None:
    outcome = run_in_process("validate", "x.json", "--threshold", "nan")
    assert outcome.code == 2
    assert outcome.stderr.strip().splitlines() == [error_line(outcome)]
    assert "--threshold" in error_line(outcome) and "--help" in error_line(outcome)


@pytest.mark.parametrize(
    "options",
    [
        ["validate", "x.json", "--workers=--"],
        ["validate", "x.json", "--threshold=--"],
        ["build", "--size=--"],
        ["build", "--seed=--", "--size", "6"],
    ],
)
def test_a_double_dash_as_an_option_value_is_one_error_line(options: list[str]) -> None:
    # Python 3.11's argparse drops this "--" and gives the option an empty list (CI found it as a traceback).
    outcome = run_in_process(*options)
    flag = next(option for option in options if option.endswith("=--")).removesuffix("=--")
    assert outcome.code == 2
    assert outcome.stderr.strip().splitlines() == [error_line(outcome)]
    assert flag in error_line(outcome) and "expected one value" in error_line(outcome)


def test_validate_with_more_workers_than_cpus_finishes(tmp_path: Path) -> None:
    outcome, dataset = build(tmp_path)
    assert outcome.code == 0, outcome.stderr
    checked = run_in_process("validate", str(dataset), "--no-spacing", "--workers", "100000")
    assert checked.code == 0, checked.stderr


@pytest.mark.parametrize(
    "body", ["{{ 1/0 }}", "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "{{ input * 10**9 }}"]
)
def test_a_hostile_prompt_layout_in_export_is_one_error_naming_it(tmp_path: Path, body: str) -> None:
    """export renders prompt.j2 for every record: a user's layout is a program like the build's templates."""
    outcome, dataset = build(tmp_path, size=9)
    assert outcome.code == 0, outcome.stderr
    layout = tmp_path / "prompt.j2"
    layout.write_text("{{ instruction }}\n{{ input }}\n" + body + "\n", encoding="utf-8")
    export = run_in_process(
        "export",
        str(dataset),
        "--to",
        "prompt-completion",
        "--prompt-template",
        str(layout),
        "--out",
        str(tmp_path / "e"),
    )
    assert_clean_outcome(export)
    assert export.code == 1 and str(layout) in error_line(export)
