from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kochallenge_data.cli import build_parser

from .conftest import FIXTURE_POOLS, ROOT


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kochallenge_data", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,  # a hang is a failure, not a stuck CI job
    )


def command_names() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", command_names())
def test_every_command_help_has_an_example_and_the_readme_mentions_it(command: str) -> None:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    help_text = action.choices[command].format_help()  # type: ignore[index]
    assert "example:" in help_text and f"kochallenge_data {command}" in help_text
    assert command in (ROOT / "README.md").read_text(encoding="utf-8")


def test_build_prints_a_summary_and_writes_the_files(tmp_path: Path) -> None:
    result = run_cli("build", "--size", "12", "--pools", str(FIXTURE_POOLS), "--out", "d.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "built 12 records" in result.stdout and "capacity" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "d.json",
        "d.manifest.json",
        "d.meta.jsonl",
        "d.rejected.jsonl",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "--pools", "no/such/folder"], "pools folder not found"),
        (["build", "--size", "100000", "--pools", str(FIXTURE_POOLS)], "task base_info needs"),
        (["build", "--mix", "base_info=1,chat=2"], "unknown task 'chat'"),
        (["build", "--config", "missing.toml"], "missing.toml: no such file"),
        (["validate", "missing.json"], "file not found"),
    ],
)
def test_user_mistakes_get_one_line_and_no_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode in (1, 2)
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.json"))


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    assert run_cli("build", "--size", "many", cwd=tmp_path).returncode == 2
    assert run_cli("no-such-command", cwd=tmp_path).returncode == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mix", "base_info=nan"], "--mix: weight for base_info must be a finite number"),
        (["--mix", "base_info=inf"], "--mix: weight for base_info must be a finite number"),
        (["--mix", "base_info=1e400"], "--mix: weight for base_info must be a finite number"),
        (["--mix", "base_info=-1"], "--mix: weight for base_info must be a finite number >= 0"),
        (["--mix", "freetext=1"], "--mix: unknown task 'freetext'"),
        (["--mix", "base_info=0,free_text=0,feedback=0"], "--mix: mix weights must be >= 0 with at least one above 0"),
        (["--seed", str(10**30)], "--seed: Input should be less than"),
        (["--seed", "-1"], "--seed: Input should be greater than or equal to 0"),
        (["--size", "0"], "--size: Input should be greater than or equal to 1"),
    ],
)
def test_bad_option_values_are_usage_errors_naming_the_flag(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("build", "--pools", str(FIXTURE_POOLS), *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"Error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr and "Value error" not in result.stderr
    assert not list(tmp_path.iterdir()), "nothing written"


def test_a_pool_file_that_is_a_fifo_a_folder_or_a_link_outside_is_refused_at_once(tmp_path: Path) -> None:
    import os

    cases = {}
    for case in ("fifo", "folder", "outside"):
        pools = tmp_path / case
        shutil.copytree(FIXTURE_POOLS, pools)
        target = pools / "instructions.toml"
        target.unlink()
        if case == "fifo":
            os.mkfifo(target)
        elif case == "folder":
            target.mkdir()
        else:
            secret = tmp_path / "secret.toml"
            secret.write_text("[x]\n", encoding="utf-8")
            target.symlink_to(secret)
        cases[case] = run_cli("build", "--pools", str(pools), "--size", "5", cwd=tmp_path)
    assert "not a regular file" in cases["fifo"].stderr
    assert "is a folder" in cases["folder"].stderr
    assert "points outside" in cases["outside"].stderr
    for result in cases.values():
        assert result.returncode == 1 and result.stderr.startswith("Error: ") and "Traceback" not in result.stderr


def test_a_broken_pool_file_is_named_with_its_line(tmp_path: Path) -> None:
    pools = tmp_path / "pools"
    shutil.copytree(FIXTURE_POOLS, pools)
    path = pools / "challenges" / "vegan.toml"
    path.write_text(
        path.read_text(encoding="utf-8").replace('title = "두유 라테 주문하기"', 'title = "두유: 라테"'),
        encoding="utf-8",
    )
    result = run_cli("build", "--pools", str(pools), "--size", "6", cwd=tmp_path)
    assert result.returncode == 1
    assert "vegan.toml:" in result.stderr and "':'" in result.stderr


def test_a_config_file_sets_options_and_flags_override_it(tmp_path: Path) -> None:
    config = tmp_path / "build.toml"
    config.write_text(f'size = 9\nseed = 5\npools = "{FIXTURE_POOLS}"\nout = "from_config.json"\n', encoding="utf-8")
    result = run_cli("build", "--config", str(config), "--size", "6", "--no-diversity", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "built 6 records" in result.stdout and (tmp_path / "from_config.json").exists()


def test_lint_pools_names_file_and_line_of_a_glued_phrase(tmp_path: Path) -> None:
    pools = tmp_path / "pools"
    shutil.copytree(FIXTURE_POOLS, pools)
    path = pools / "recommend.toml"
    text = path.read_text(encoding="utf-8").replace("이런 챌린지는 어떠세요?", "이런챌린지는어떠세요?")
    path.write_text(text, encoding="utf-8")
    result = run_cli("lint-pools", "--pools", str(pools), cwd=tmp_path)
    assert result.returncode == 1
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "이런챌린지는" in row)
    assert f"recommend.toml:{line}: spacing" in result.stdout


@pytest.mark.parametrize("command", command_names())
def test_every_command_dispatches_to_its_own_handler(command: str) -> None:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    handler = action.choices[command].get_default("func")  # type: ignore[index]
    assert command.split("-")[0] in handler.__name__, (command, handler.__name__)


@pytest.mark.parametrize("form", ["existing", "slash"])
def test_build_out_as_a_folder_writes_the_default_file_inside_it(tmp_path: Path, form: str) -> None:
    folder = tmp_path / "data"
    if form == "existing":
        folder.mkdir()
    out = str(folder) if form == "existing" else f"{folder}/"
    result = run_cli(
        "build", "--size", "12", "--pools", str(FIXTURE_POOLS), "--no-diversity", "--out", out, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == [
        "multitask_dataset_v2.json", "multitask_dataset_v2.manifest.json", "multitask_dataset_v2.meta.jsonl",
        "multitask_dataset_v2.rejected.jsonl",
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"], "no orphan sidecar beside the folder"


def test_a_threshold_outside_0_to_1_is_bad_usage(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text("[]", encoding="utf-8")
    result = run_cli("validate", "d.json", "--threshold", "1.5", cwd=tmp_path)
    assert result.returncode == 2 and "must be above 0 and at most 1" in result.stderr


def test_usage_names_the_program_as_it_was_run() -> None:
    from kochallenge_data.cli import program_name

    assert program_name("/usr/local/bin/kochallenge-data") == "kochallenge-data"
    assert program_name("/repo/kochallenge_data/__main__.py") == "python -m kochallenge_data"


def test_a_pool_with_tens_of_thousands_of_messages_builds_in_seconds(tmp_path: Path) -> None:
    """Naming each message's line used to reread the file per message: 200,000 messages hung the build."""
    import itertools

    pools = tmp_path / "pools"
    shutil.copytree(FIXTURE_POOLS, pools)
    syllables = "가나다라마바사아자차카타파하"
    messages = [f"오늘 {a}{b} {c}{d} 챌린지 추천해 줘" for a, b, c, d in itertools.product(syllables, repeat=4)]
    with (pools / "messages.toml").open("a", encoding="utf-8") as handle:
        handle.write("\n[[group]]\nfacets = []\nmessages = [\n" + "".join(f'  "{m}",\n' for m in messages) + "]\n")
    result = run_cli("build", "--pools", str(pools), "--size", "30", "--no-diversity", "--out", "d.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # run_cli fails on a hang after 120 s; it takes about 2 s
    assert len(messages) == 14**4
