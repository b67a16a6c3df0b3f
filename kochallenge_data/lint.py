"""``lint-pools``: run the dataset checks on every pool phrase, naming file and line.

Phrases with slots are rendered with real values (every base-info combination; a spread of
challenge titles for feedback), because a particle or a space can be wrong only once filled in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checks.korean import DEFAULT_POLICY, FieldPolicy, describe_span, disallowed_spans
from .checks.spacing import SpacingChecker
from .pools import Phrase, Pools, Source, load_pools
from .spacing_allowlist import load_allowlist
from .templates import phrase_slots, render_phrase
from .text import broken_sequences, grapheme_clusters, is_emoji_cluster

MESSAGE_POLICY = FieldPolicy(punctuation=".,!?~")


@dataclass(frozen=True)
class LintProblem:
    source: str
    code: str
    message: str
    suggestion: str | None = None


@dataclass(frozen=True)
class _Text:
    source: Source
    text: str
    policy: FieldPolicy | None  # None: spacing only (instructions contain quotes and digits)


def lint_pools(root: Path | str | None = None) -> list[LintProblem]:
    pools = load_pools(root)
    texts = collect_texts(pools)
    checker = SpacingChecker(load_allowlist(pools.root))
    results = checker.check_many([t.text for t in texts])
    problems: list[LintProblem] = []
    reported: set[tuple[str, str]] = set()
    for item, result in zip(texts, results, strict=True):
        found: list[LintProblem] = []
        if not result.ok:
            found.append(LintProblem(str(item.source), "spacing", f"missing space in {item.text!r}", result.suggestion))
        if item.policy is not None:
            for span in disallowed_spans(item.text, item.policy)[:1]:
                found.append(
                    LintProblem(str(item.source), "non_korean", f"{describe_span(item.text, span)} in {item.text!r}")
                )
        for problem in found:
            # One report per phrase and code: a bad template phrase fails for every slot value.
            if (problem.source, problem.code) not in reported:
                reported.add((problem.source, problem.code))
                problems.append(problem)
    problems += _emoji_problems(pools)
    return problems


def collect_texts(pools: Pools) -> list[_Text]:
    texts: list[_Text] = []
    for challenge in pools.challenges:
        texts.append(_Text(challenge.source, challenge.title, DEFAULT_POLICY["challenge_title"]))
        texts += [_Text(challenge.source, d, DEFAULT_POLICY["challenge_description"]) for d in challenge.descriptions]
    texts += [_Text(p.source, p.text, DEFAULT_POLICY["recommend"]) for group in pools.about.values() for p in group]
    for phrases in pools.base_info_sentences.values():
        for phrase in phrases:
            texts += [
                _Text(phrase.source, render_phrase(phrase.text, **values), DEFAULT_POLICY["recommend"])
                for values in _base_info_values(pools, phrase_slots(phrase.text))
            ]
    replies = dict.fromkeys(p for group in pools.free_text_replies.values() for p in group)
    for phrase in replies:
        texts += [
            _Text(phrase.source, render_phrase(phrase.text, category=category.name), DEFAULT_POLICY["recommend"])
            for category in pools.categories
        ]
    texts += [_Text(m.source, m.text, MESSAGE_POLICY) for m in pools.messages]
    texts += [_Text(source, text, MESSAGE_POLICY) for source, text in _request_renderings(pools)]
    texts += [_Text(p.source, p.text, None) for group in pools.instructions.values() for p in group]
    titles = _title_spread(pools)
    for phrases in pools.feedback_phrases.values():
        for phrase in phrases:
            texts += [
                _Text(phrase.source, text, DEFAULT_POLICY["feedback"]) for text in _feedback_renderings(phrase, titles)
            ]
    return texts


def _base_info_values(pools: Pools, slots: frozenset[str]) -> list[dict[str, str]]:
    """Every location, work type and category once, the other slots at their first value.

    A particle or a space depends on the value in its own slot, so this finds what every combination would,
    in time that grows with the sum of the pool sizes rather than their product.
    """
    first = {"location": pools.locations[0], "work_type": pools.work_types[0], "category": pools.categories[0].name}
    choices = {
        "location": pools.locations,
        "work_type": pools.work_types,
        "category": tuple(c.name for c in pools.categories),
    }
    found = [first]
    for slot in sorted(slots & choices.keys()):
        found += [{**first, slot: value} for value in choices[slot][1:]]
    return found


def _request_renderings(pools: Pools) -> list[tuple[Source, str]]:
    """Every frame, reason, modifier and topic of requests.toml, each rendered in the frames that use it."""
    first = {role: next((p.text for f in pools.facets for p in getattr(f, role)), "") for role in ("reason", "want")}
    category_topics = [p for group in pools.category_topics.values() for p in group]
    found: list[tuple[Source, str]] = []
    for level in ("banmal", "jondaemal"):
        for frame in pools.frames[level]:
            roles = phrase_slots(frame.text) - {"topic"}
            base = {role: first[role] for role in roles}
            for topic in pools.topics if roles else category_topics:
                found.append((frame.source, render_phrase(frame.text, **base, topic=topic.text)))
            for role in roles:
                for phrase in (p for facet in pools.facets for p in getattr(facet, role)):
                    values = {**base, role: phrase.text}
                    found.append((phrase.source, render_phrase(frame.text, **values, topic=pools.topics[0].text)))
    for level in ("question_banmal", "question_jondaemal"):
        for frame in pools.frames[level]:
            found += [(frame.source, render_phrase(frame.text, name=c.name)) for c in pools.categories]
    return found


def _title_spread(pools: Pools) -> list[str]:
    """A few titles per category, ending in varied sounds, to exercise particle choice."""
    titles: list[str] = []
    for category in pools.categories:
        titles += [c.title for c in pools.challenges if c.category == category.key][:3]
    return titles


def _feedback_renderings(phrase: Phrase, titles: list[str]) -> list[str]:
    pairs = zip(titles, titles[1:] + titles[:1], strict=True)
    return sorted(
        {
            render_phrase(phrase.text, title=first, first=first, second=second, count=3, count_word="세")
            for first, second in pairs
        }
    )


def _emoji_problems(pools: Pools) -> list[LintProblem]:
    problems = []
    where = str(pools.root / "feedback.toml")
    for mood, items in pools.feedback_emoji.items():
        for item in items:
            clusters = list(grapheme_clusters(item))
            if len(clusters) != 1 or not is_emoji_cluster(item) or broken_sequences(item):
                problems.append(LintProblem(where, "broken_text", f"emoji.{mood}: {item!r} is not one whole emoji"))
    return problems


def print_lint(problems: list[LintProblem]) -> None:
    for problem in problems:
        print(f"{problem.source}: {problem.code}: {problem.message}")
        if problem.suggestion:
            print(f"    suggestion: {problem.suggestion}")
    print(f"{len(problems)} problem(s)" if problems else "all pool phrases pass")
