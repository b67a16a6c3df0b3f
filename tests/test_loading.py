from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kochallenge_data.errors import PoolError, TemplateError
from kochallenge_data.pools import load_pools
from kochallenge_data.templates import load_templates, render_phrase

from .conftest import FIXTURE_POOLS, ROOT


def copy_pools(tmp_path: Path) -> Path:
    target = tmp_path / "pools"
    shutil.copytree(FIXTURE_POOLS, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("recommend.toml", '{{ category | josa("을/를") }}', "{{ categroy }}", r"recommend.toml:\d+: .*unknown slot"),
        ("challenges/vegan.toml", 'season = "여름"', 'season = "한여름"', r"vegan.toml:\d+: unknown season '한여름'"),
        (
            "challenges/zero_waste.toml",
            'needs = ["아이"]',
            'needs = ["강아지"]',
            r"zero_waste.toml:\d+: unknown need '강아지'",
        ),
        ("challenges/vegan.toml", "habit = true", 'habit = "maybe"', r"vegan.toml:\d+: challenge.0.habit"),
        ("requests.toml", "effort = [", "efort = [", r"requests.toml:\d+: unknown match field 'efort'"),
        ("requests.toml", 'key = "집"', 'key = "피곤"', r"requests.toml:\d+: duplicate facet key '피곤'"),
        (
            "requests.toml",
            '"{{ want }} {{ topic }} 뭐 있어?",',
            '"{{ want }} 뭐 있어?",',
            r"requests.toml: frames.banmal needs a frame that uses exactly \{\{ topic \}\} \{\{ want \}\}",
        ),
        ("challenges/vegan.toml", "콩고기 요리 해 보기", "두유라테 주문하기", "repeats '두유 라테 주문하기'"),
        ("challenges/vegan.toml", "콩고기 요리 해 보기", "두유 라테를 주문하기", "repeats"),
        ("challenges/vegan.toml", "두유 라테 주문하기", "채식 점심 한 끼", "duplicate phrase|repeats"),
        ("domain.toml", 'locations = ["도시", "산"]', 'locations = "도시"', r"domain.toml:\d+: locations"),
        (
            "messages.toml",
            'facets = ["피곤"]',
            'facets = ["졸림"]',
            r"messages.toml:\d+: unknown facet '졸림'.*requests.toml",
        ),
        ("feedback.toml", "[emoji]", "[emojis]", "feedback.toml"),
        (
            "challenges/vegan.toml",
            'title = "두유 라테 주문하기"',
            'title = "두유 라테 주문하기"\nidea = "우유 대신"',
            r"vegan.toml:\d+: idea '우유 대신' of '두유 라테 주문하기' is shared with no other challenge",
        ),
        ("instructions.toml", "base_info = [", "base_info = [ ", ""),
        (
            "feedback.toml",
            "[emoji]",
            '[not_said]\nsuccess_habit = ["매일", "내내"]\n\n[emoji]',
            r"feedback.toml:2: a success_habit phrase may not say '내내' \(\[not_said\] in feedback.toml\)",
        ),
        (
            "feedback.toml",
            "[emoji]",
            '[not_said]\nsuccess_habbit = ["내내"]\n\n[emoji]',
            r"feedback.toml:\d+: \[not_said\] names 'success_habbit', which is not a phrase kind; use one of: success_habit",
        ),
        ("feedback.toml", "[emoji]", '[not_said]\nsuccess_once = ["내내", "매일"]\n\n[emoji]', ""),
    ],
)
def test_pool_mistakes_name_the_file_and_what_to_do(
    tmp_path: Path, file: str, old: str, new: str, message: str
) -> None:
    pools = copy_pools(tmp_path)
    edit(pools / file, old, new)
    if not message:
        load_pools(pools)  # harmless whitespace: loads fine
        return
    with pytest.raises(PoolError, match=message):
        load_pools(pools)


def test_broken_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    pools = copy_pools(tmp_path)
    (pools / "feedback.toml").write_text("[phrases\nsuccess = 1", encoding="utf-8")
    with pytest.raises(PoolError, match=r"feedback\.toml: invalid TOML"):
        load_pools(pools)


def test_template_with_unknown_variable_names_file_and_line(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    (templates / "feedback" / "zz.j2").write_text(
        "{% for s in sentences %}{{ s.text }}{% endfor %}\n{{ end_emoji }}\n", encoding="utf-8"
    )
    with pytest.raises(TemplateError, match=r"zz.j2:2: unknown variable\(s\) \['end_emoji'\]"):
        load_templates(templates)


def test_template_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    (templates / "base_info_input.j2").write_text("{{ location }},\n{% if %}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"base_info_input.j2:2: template syntax error"):
        load_templates(templates)


def test_templates_are_sandboxed_and_strict() -> None:
    from jinja2.exceptions import SecurityError, UndefinedError

    with pytest.raises(SecurityError):
        render_phrase("{{ location.__class__.__mro__ }}", location="도시")
    with pytest.raises(UndefinedError):
        render_phrase("{{ missing }}")
    assert render_phrase('{{ w | josa("으로/로") }}', w="재택근무") == "재택근무로"


def test_import_does_not_load_heavy_modules() -> None:
    code = (
        "import sys, kochallenge_data, kochallenge_data.cli; "
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'vllm', 'trl', 'kiwipiepy', 'fastapi') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
