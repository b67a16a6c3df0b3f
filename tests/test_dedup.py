from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kochallenge_data.checks.dedup import DuplicateIndex, jaccard, shingles

from .strategies import words

sentences = st.lists(words, min_size=3, max_size=12).map(" ".join)


def true_similarity(a: str, b: str) -> float:
    return jaccard(frozenset(shingles(a).tolist()), frozenset(shingles(b).tolist()))


@given(st.lists(sentences, min_size=2, max_size=25), st.data())
def test_index_agrees_with_brute_force(texts: list[str], data: st.DataObject) -> None:
    # Add near copies (one word changed) so that similar pairs exist.
    for _ in range(data.draw(st.integers(0, 5))):
        source = data.draw(st.sampled_from(texts))
        texts.append(source + data.draw(words))
    index = DuplicateIndex(threshold=0.8)
    kept: list[str] = []
    for i, text in enumerate(texts):
        hit = index.add(text, i)
        best = max((true_similarity(text, earlier) for earlier in kept), default=0.0)
        if hit is None:
            assert best < 0.95, "a pair this similar is found with near certainty (18 bands of 7 hashes)"
            kept.append(text)
        else:
            kind, other, similarity = hit
            assert similarity >= 0.8 and texts[other] in kept
            assert abs(similarity - true_similarity(text, texts[other])) < 1e-9 or kind == "duplicate"


def test_spacing_and_normalization_do_not_hide_a_duplicate() -> None:
    index = DuplicateIndex()
    assert index.add("텀블러를 챙겨요", 0) is None
    assert index.add("텀블러를  챙겨요 ", 1) == ("duplicate", 0, 1.0)
    hit = index.add("텀블러를챙겨요", 2)
    assert hit is not None and hit[0] == "near_duplicate"


def test_different_texts_are_kept() -> None:
    index = DuplicateIndex()
    assert index.add("장바구니를 챙겨서 장을 봐요", 0) is None
    assert index.add("계단으로 오르내리면 전기를 아껴요", 1) is None


def test_insert_keeps_near_duplicates_searchable() -> None:
    first = "장바구니를 챙겨서 시장에 가면 비닐봉지를 받지 않아도 돼요"
    second = first + " 정말요"
    third = second + " 그럼요 좋아요"
    assert true_similarity(second, first) >= 0.8 > true_similarity(third, first)
    assert true_similarity(third, second) >= 0.8
    added, inserted = DuplicateIndex(), DuplicateIndex()
    for i, text in enumerate((first, second)):
        added.add(text, i)
        inserted.insert(text, i)
    assert added.find(third) is None  # add() kept only the first of the near pair
    hit = inserted.find(third)
    assert hit is not None and hit[1] == 1
