"""Spacing check with Kiwi, used as a checker and never as a blind rewriter.

Kiwi's ``space()`` restores glued Korean well but also "corrects" allowed spellings (compound nouns,
auxiliary verbs) and breaks around emoji and zero-width characters. So this module:

1. runs Kiwi only on Hangul stretches between emoji and invisible characters, and discards any
   suggestion that changes more than whitespace;
2. flags a text only where Kiwi inserts a space right after a particle, an ending or a dependent
   noun (tags ``J*``, ``ETM``, ``EC``, ``EF``, ``ETN``, ``NNB``) or a comma or sentence end, but not
   between an ending and an auxiliary verb (``EC``→``VX``)
   and not before symbols or emoji;
3. flags a long glued run (GLUED_RUN Hangul syllables or more between spaces) where Kiwi's own
   reading of it shows a word break standard spacing always writes, even where ``space()`` leaves the
   run glued or its tags put the run outside 2., as on short casual lines (이따가전화할게): after a
   particle, ending or dependent noun as in 2.; before an auxiliary verb after any ending but -아/-어
   (먹고|싶어); after an adverb or pronoun before a predicate (이따가|전화할게, 우리|언제), and after
   a noun before an adverb or pronoun with a predicate later in the run (마감|언제까지야, 출근|잘했어);
   after a noun of two or more syllables before a verb or adjective stem (산책|다녀올게: chat drops
   the particle), after a time noun (오늘|수업, 이번|주) and between the negating 안 and 하다; or,
   twice in one run or beside one of those, after a determiner (그|가게), a one-syllable noun before
   a verb (밥|먹자), or an adverb or noun before a noun-only remainder of the run (계속근로기간 is one
   legal term). Other noun chains are never split: compound nouns (개인정보보호위원회는) and
   compound noun + 하다 verbs are words. Shorter words are left alone: lexicalized words read the
   same way (새해, 함께해요, 첫걸음을);
4. offers Kiwi's full spacing, with the glued-run breaks added, as a suggestion, and ``fix`` applies
   only the flagged insertions;
5. runs that check only on texts a cheaper pre-check cannot clear. Each distinct word is analysed once
   on its own (Kiwi's six best readings): a word none of whose close readings has a particle, ending or
   dependent noun followed by a content word (nor, for a run as long as in 3., a break of 3.) is clean
   in any sentence. A word whose best reading is
   clean but a close runner-up is not (걸어가면: 걷어 가면?) is decided by Kiwi's reading of it with two
   words either side. Foreign data repeats words far more than sentences, so most texts never reach
   the full check; the spacing bench's false alarms and catches are the same with and without it.
   A text with nothing flagged has itself as the suggestion.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, pairwise
from typing import Any, Generic, TypeVar

from ..text import NOT_PLAIN_RUN, ZERO_WIDTH, ZWJ, grapheme_clusters, is_emoji_cluster, nfc

# Particles and endings, plus dependent nouns (수, 것, 때): "할수있는" is the team's most common error;
# and sentence punctuation (SF, SP: "와,진짜"), after which the next word always takes a space.
FLAGGED_BEFORE = ("J", "ETM", "EC", "EF", "ETN", "NNB", "SF", "SP")
NOT_FLAGGED_AFTER = ("S", "W")  # symbols, numbers, emoji, URLs: Kiwi's spaces there are style
# Tags that can start a new word (Kiwi's space() inserts only before these); S* are never flagged after.
_WORD_START = re.compile(r"[NMI]|V[VAX]|VCN|XR|XPN")

# The pre-check (see the module docstring). Wider settings clear fewer texts; these are the narrowest
# with which bench/spacing_bench.py gives the same figures as the full check alone.
WORD_READINGS = 6
CLOSE_READING = 5.0  # log-probability below the best reading
WINDOW_WORDS = 2
# Longer "words" are nearly always glued phrases; reading them six ways costs more than checking the text.
LONG_WORD = 10
# A run this long (in Hangul syllables) with no space is read for word breaks (3. in the module docstring).
# The smallest length with no false alarm on the bench corpus, the pools and a default build's texts,
# whose words have at most 7 syllables; at 5, lexicalized words (함께하는데, 새송이버섯) are flagged.
GLUED_RUN = 6
# Stems after a noun or an adverb that make one word with it: 공부하다, 함께하다, 축하드리다, 기억나다,
# 재미있다, 상관없다, 꿈같다, 사랑스럽다. A glued run is never split before them.
DERIVING_STEMS = frozenset(["하", "되", "시키", "드리", "받", "당하", "나", "있", "없", "같", "지", "스럽", "답", "롭"])
DEFAULT_CACHE_SIZE = 50_000

_kiwi_threads: int | None = None  # Kiwi's default: a thread per core


def use_kiwi_threads(count: int) -> None:
    """Set Kiwi's thread count before its first use (worker processes use one each)."""
    global _kiwi_threads
    _kiwi_threads = count


@lru_cache(maxsize=1)
def get_kiwi() -> Any:
    """One Kiwi per process, built on first use (about a second); its typo and multi-word dictionaries
    are off because spacing needs neither and they double the memory."""
    from kiwipiepy import Kiwi

    return Kiwi(num_workers=_kiwi_threads, load_typo_dict=False, load_multi_dict=False)


K = TypeVar("K")
V = TypeVar("V")
_UNSEEN: Any = object()  # a cache miss, as opposed to a cached None


class LruCache(Generic[K, V]):
    """A dict that forgets the least recently used entries beyond ``size``, so memory stays flat."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def get(self, key: K, default: Any = None) -> Any:
        """The value (``default`` when absent), now the most recently used."""
        value = self._items.get(key, _UNSEEN)
        if value is _UNSEEN:
            return default
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


@dataclass(frozen=True)
class SpacingResult:
    """Offsets in the (NFC) text before which a space is missing, and Kiwi's whole suggestion."""

    text: str
    insertions: tuple[int, ...]
    suggestion: str

    @property
    def ok(self) -> bool:
        return not self.insertions

    def fixed(self) -> str:
        """The text with only the flagged spaces inserted."""
        pieces, last = [], 0
        for offset in self.insertions:
            pieces.append(self.text[last:offset])
            last = offset
        pieces.append(self.text[last:])
        return " ".join(pieces)


@dataclass(frozen=True)
class _Segment:
    start: int
    text: str


_HANGUL = re.compile(r"[\uac00-\ud7a3]")


def _segments(text: str) -> list[_Segment]:
    """Stretches of text that contain Hangul, split at emoji and invisible characters."""
    barriers = _barriers(text)
    segments: list[_Segment] = []
    last = 0
    for start, end in [*barriers, (len(text), len(text))]:
        if start > last:
            segments.append(_Segment(last, text[last:start]))
        last = end
    return [s for s in segments if _HANGUL.search(s.text)]


def _words(text: str) -> list[list[str]]:
    """The words of each segment; most texts are one plain segment."""
    if not NOT_PLAIN_RUN.search(text):
        return [text.split()] if _HANGUL.search(text) else []
    return [segment.text.split() for segment in _segments(text)]


def _barriers(text: str) -> list[tuple[int, int]]:
    """Spans of emoji and invisible clusters. Only the clusters around non-plain characters are walked:
    a plain character is its own cluster unless it follows a zero-width joiner."""
    found: list[tuple[int, int]] = []
    walked = 0  # clusters before this offset are done
    for run in NOT_PLAIN_RUN.finditer(text):
        if walked >= run.end():
            continue  # an earlier cluster reached past this run (through a zero-width joiner)
        # The plain character before the run may carry it (a keycap digit); it starts a cluster.
        offset = max(walked, run.start() - 1)
        for cluster in grapheme_clusters(text[offset:]):
            end = offset + len(cluster)
            if is_emoji_cluster(cluster) or any(c in ZERO_WIDTH or c == ZWJ for c in cluster):
                found.append((offset, end))
            offset = end
            if end >= run.end() and cluster[-1] != ZWJ:
                break
        walked = offset
    return found


def _align(original: str, spaced: str) -> list[tuple[int, int]] | None:
    """Pairs (offset in original, offset of the new space in spaced) for each inserted space.

    None when Kiwi changed anything but whitespace: then its output is not trusted.
    """
    inserted: list[tuple[int, int]] = []
    i = j = 0
    while i < len(original) and j < len(spaced):
        a, b = original[i], spaced[j]
        if a == b or (a.isspace() and b.isspace()):
            i, j = i + 1, j + 1
        elif b == " ":
            inserted.append((i, j))
            j += 1
        elif a.isspace():
            i += 1
        else:
            return None
    if original[i:].strip() or spaced[j:].strip():
        return None
    return inserted


MIDDLE_DOTS = "·ㆍ・‧"
OPENING_MARKS = "([{「『〈《“‘\"'"
CLOSING_MARKS = ")]}」』〉》”’"


def _beside_a_mark(text: str, offset: int) -> bool:
    """A space Kiwi wants right after a middle dot or an opening mark, or right before a middle dot or a closing
    mark, is never missing: standard Korean writes 체포·구속·압수, 「근로기준법」 and "심야 열람실" without one
    (21% false alarms on legal text came from the middle dot alone)."""
    before = text[offset - 1] if offset > 0 else ""
    after = text[offset] if offset < len(text) else ""
    opens = bool(before) and before in MIDDLE_DOTS + OPENING_MARKS
    closes = bool(after) and after in MIDDLE_DOTS + CLOSING_MARKS
    return opens or closes


def _is_glued_run(word: str) -> bool:
    return len(_HANGUL.findall(word)) >= GLUED_RUN


def _glued_runs(text: str) -> list[tuple[int, int]]:
    """(start, end) of each space-free run of GLUED_RUN Hangul syllables or more."""
    return [match.span() for match in re.finditer(r"\S+", text) if _is_glued_run(match.group())]


def _ending_break(left: str, right: str) -> bool:
    """A particle, ending, dependent noun or sentence mark (tag ``left``) before a word-starting tag."""
    return bool(_WORD_START.match(right)) and _space_due_after(left, right)


def _space_due_after(left: str, right: str) -> bool:
    """Whether standard spacing puts a space between tags ``left`` and ``right`` for the left one's sake: after a
    particle, ending, dependent noun or sentence mark; after a dependent noun only before a verb or adjective ("수
    있다", "것 같다"; Kiwi misreads "거라면" as 거 + 라면, noodles); never between an ending and an auxiliary verb."""
    if not left.startswith(FLAGGED_BEFORE):
        return False
    if left == "NNB":
        return right.startswith(("VV", "VA", "VX"))
    return not (left == "EC" and right.startswith("VX"))


# Word breaks inside a glued run (3. in the module docstring): one sure break is enough, unsure ones
# count only in pairs or beside a sure one.
SURE_BREAK, UNSURE_BREAK = 2, 1
PREDICATE_TAGS = ("VV", "VA", "VX", "VCP", "VCN", "XSV", "XSA")
# Only after -아/-어 may an auxiliary verb be written together (한글 맞춤법 제47항: 해 보다/해보다,
# 가져다 주다); after -고, -지, -게, -어야 it is always a word of its own. Kiwi writes -아 as 어.
JOINABLE_BEFORE_AUXILIARY = frozenset(["어", "아", "여", "어다", "아다"])
# What can end a noun: a noun, or a noun suffix (친구들, 선생님).
NOUN_END_TAGS = ("NNG", "NNP", "XSN")
# Nouns used as time adverbs: a word of their own before anything but another of them (오늘 수업, 어제 산 옷;
# 내일모레, 어제오늘 are words, 오늘날 is one token). Chat drops the particle after them more than after any noun.
TIME_NOUNS = frozenset(["오늘", "어제", "내일", "모레", "요즘", "그저께", "엊그제"])
# 이번 주, 다음 달, 저번 주: the unit is a noun of its own (지난주, 지난달 are single tokens to Kiwi).
TIME_DETERMINERS = frozenset(["이번", "다음", "저번"])
TIME_UNITS = frozenset(["주", "달"])


def _run_break(left: Any, right: Any, predicate_follows: bool) -> int:
    """How sure it is that standard spacing puts a space between two adjacent tokens of a glued run."""
    left_tag, right_tag = left.tag, right.tag
    if _ending_break(left_tag, right_tag):
        return SURE_BREAK
    if left_tag == "EC" and right_tag.startswith("VX") and left.form not in JOINABLE_BEFORE_AUXILIARY:
        return SURE_BREAK  # 먹고|싶다, 하지|않아요, 먹어야|한다
    if not _WORD_START.match(right_tag) or right_tag == "NNB":
        return 0  # a dependent noun after 그, 한: 그중, 한번 are one word
    if left.form == "안" and left_tag == "MAG" and right.form == "하":
        return SURE_BREAK  # the negating adverb: 안 하다 (안되다 "pitiful" is a word, 안하다 is not)
    if right_tag.startswith("V") and right.form in DERIVING_STEMS:
        return 0
    if left_tag in ("MAG", "NP"):
        # Before a predicate an adverb or pronoun is a word of its own (이따가 전화할게, 우리 집에 가자);
        # in a run with no predicate after it, it is as likely the head of a compound noun (계속근로기간).
        return SURE_BREAK if right_tag.startswith("V") or predicate_follows else UNSURE_BREAK
    if left.form in TIME_NOUNS and right.form not in TIME_NOUNS:
        return SURE_BREAK
    if left.form in TIME_DETERMINERS and right.form in TIME_UNITS and right_tag == "NNG":
        return SURE_BREAK
    if left_tag in NOUN_END_TAGS and right_tag.startswith(("VV", "VA")):
        # A noun before a verb stem is its subject or object with the particle dropped (산책 다녀올게, 지하철
        # 놓쳤어). Verbs made of a noun and a verb are words (발맞추다, 손잡다), but nearly all that Kiwi splits
        # have a one-syllable noun; with a longer one it reads one stem (마음먹다, 앞장서다; 뿌리내리다 is split).
        return SURE_BREAK if len(left.form) >= 2 else UNSURE_BREAK
    if left_tag in NOUN_END_TAGS and right_tag in ("MAG", "NP"):
        # An adverb or pronoun after a noun starts a word (출근 잘 했어, 마감 언제야); with no predicate after
        # it, as in a noun-only run, Kiwi may be reading a syllable of a compound noun as an adverb.
        return SURE_BREAK if predicate_follows else UNSURE_BREAK
    if left_tag == "MM":
        return UNSURE_BREAK
    return 0


def _glued_run_breaks(tokens: Sequence[Any], start: int, end: int) -> list[int]:
    """Offsets strictly inside the run ``start``..``end`` where Kiwi's reading of it shows a missing space."""
    inside = [t for t in tokens if start <= t.start < end]
    found: list[tuple[int, int]] = []
    for at, (left, right) in enumerate(pairwise(inside)):
        if left.start + left.len != right.start:
            continue
        predicate_follows = any(t.tag.startswith(PREDICATE_TAGS) for t in inside[at + 2 :])
        if kind := _run_break(left, right, predicate_follows):
            found.append((right.start, kind))
    if any(kind == SURE_BREAK for _, kind in found) or len(found) >= 2:
        return [offset for offset, _ in found]
    return []


def _with_spaces_at(original: str, spaced: str, offsets: Iterable[int]) -> str:
    """``spaced`` (``original`` with only whitespace changed) with a space also before each original offset."""
    wanted = set(offsets)
    pieces: list[str] = []
    i = j = 0
    while j < len(spaced):
        if spaced[j].isspace():
            pieces.append(spaced[j])
            i += 1 if i < len(original) and original[i].isspace() else 0
            j += 1
        elif i < len(original) and original[i].isspace():
            i += 1
        else:
            if i in wanted and pieces and not pieces[-1].isspace():
                pieces.append(" ")
            pieces.append(spaced[j])
            i, j = i + 1, j + 1
    return "".join(pieces)


def _is_flagged(tokens: Sequence[Any], space_at: int) -> bool:
    before = [t for t in tokens if t.start + t.len == space_at]
    after = [t for t in tokens if t.start == space_at + 1]
    if not before or not after:
        return False
    left, right = before[-1].tag, after[0].tag
    return not right.startswith(NOT_FLAGGED_AFTER) and _space_due_after(left, right)


def _close_readings_flagged(readings: Sequence[tuple[Any, float]], glued_run: bool) -> tuple[bool, bool]:
    """(best reading has a flaggable boundary, some close runner-up has one)."""
    best_score = readings[0][1]
    best = _has_flaggable_boundary(readings[0][0], glued_run=glued_run)
    runner_up = any(
        _has_flaggable_boundary(tokens, glued_run=glued_run)
        for tokens, score in readings[1:]
        if score >= best_score - CLOSE_READING
    )
    return best, runner_up


def _has_flaggable_boundary(
    tokens: Sequence[Any], start: int = 0, end: int | None = None, glued_run: bool = False
) -> bool:
    """A particle, ending, dependent noun or sentence mark directly followed by a word-starting token,
    inside ``start``..``end``, or for a ``glued_run`` any of its word breaks: the places where the full
    check could demand a space."""
    stop = end if end is not None else sys.maxsize
    if glued_run and _glued_run_breaks(tokens, start, stop):
        return True
    return any(
        left.start + left.len == right.start and start < right.start < stop and _ending_break(left.tag, right.tag)
        for left, right in pairwise(tokens)
    )


# Word states in the pre-check.
CLEAN, UNSURE, SUSPECT = 0, 1, 2


class SpacingChecker:
    """Checks texts once each and in batches for volume; results, word readings and windows are kept in
    bounded LRU caches, so memory stays flat on any amount of text.

    ``precheck=True`` clears most texts without the full check (see the module docstring); ``validate``
    and the build's gate turn it on. Off, every text gets the full check: on rare words Kiwi's reading in
    context differs from its reading alone (살펴보기와 → 살펴보 기와), and the full check then raises a false
    alarm the pre-check does not.
    """

    def __init__(
        self, allowlist: Iterable[str] = (), cache_size: int = DEFAULT_CACHE_SIZE, precheck: bool = False
    ) -> None:
        self._results: LruCache[str, SpacingResult | None] = LruCache(cache_size)  # None: no missing space
        self._words: LruCache[str, int] = LruCache(cache_size)
        self._windows: LruCache[tuple[str, int, int], bool] = LruCache(cache_size)
        self._allowlist = tuple(a for a in allowlist if a)
        self.precheck = precheck
        # What the pre-check did: words and windows read by Kiwi, texts cleared and texts fully checked.
        self.stats: Counter[str] = Counter()

    def check(self, text: str) -> SpacingResult:
        return self.check_many([text])[0]

    def check_many(self, texts: Sequence[str]) -> list[SpacingResult]:
        normalized = [nfc(t) for t in texts]
        flagged = self._flagged(normalized)
        return [flagged.get(t) or SpacingResult(t, (), t) for t in normalized]

    def problems(self, texts: Sequence[str]) -> dict[str, SpacingResult]:
        """Only the texts with a missing space, keyed by the text as given: what a checker reports."""
        normalized = {t: nfc(t) for t in texts}
        flagged = self._flagged(list(normalized.values()))
        return {t: flagged[n] for t, n in normalized.items() if n in flagged}

    def _flagged(self, texts: Sequence[str]) -> dict[str, SpacingResult]:
        """The results that are not ok, for (NFC) texts; clean texts are cached as ``None``."""
        flagged: dict[str, SpacingResult] = {}
        todo: list[str] = []
        for text in dict.fromkeys(texts):
            cached = self._results.get(text, _UNSEEN)
            if cached is _UNSEEN:
                todo.append(text)
            elif cached is not None:
                flagged[text] = cached
        if not todo:
            return flagged
        suspects = self._suspects(todo) if self.precheck else todo
        self.stats.update(cleared=len(todo) - len(suspects), fully_checked=len(suspects))
        checked = dict(zip(suspects, self._run(suspects), strict=True)) if suspects else {}
        for text in todo:
            result = checked.get(text)
            if result is not None and result.ok:
                result = None
            self._results.put(text, result)
            if result is not None:
                flagged[text] = result
        return flagged

    def _suspects(self, texts: Sequence[str]) -> list[str]:
        """The texts the pre-check cannot clear, in order."""
        # _words with its common case inline: a foreign file sends hundreds of thousands of distinct texts here.
        not_plain, hangul = NOT_PLAIN_RUN.search, _HANGUL.search
        words_of = [_words(text) if not_plain(text) else [text.split()] if hangul(text) else [] for text in texts]
        states = self._word_states(set(chain.from_iterable(chain.from_iterable(words_of))))
        unclear = {word for word, state in states.items() if state != CLEAN}
        if not unclear:
            return []
        # Most texts have only clean words; the rest need a closer look, word by word.
        clean = unclear.isdisjoint
        looked_at = [
            (text, segments) for text, segments in zip(texts, words_of, strict=True) if not all(map(clean, segments))
        ]
        windows = {
            _window(words, at)
            for _, segments in looked_at
            for words in segments
            for at, word in enumerate(words)
            if states[word] == UNSURE
        }
        flagged_windows = self._window_verdicts(windows) if windows else {}
        return [
            text
            for text, segments in looked_at
            if any(
                states[word] == SUSPECT or (states[word] == UNSURE and flagged_windows[_window(words, at)])
                for words in segments
                for at, word in enumerate(words)
            )
        ]

    def _word_states(self, words: set[str]) -> dict[str, int]:
        """CLEAN, UNSURE or SUSPECT for each word, from Kiwi's close readings of the word alone."""
        states: dict[str, int] = {}
        new: list[str] = []
        for word in words:
            state = SUSPECT if len(word) > LONG_WORD else self._words.get(word)
            if state is None:
                new.append(word)
            else:
                states[word] = state
        self.stats["words_read"] += len(new)
        for word, readings in zip(new, get_kiwi().analyze(new, top_n=WORD_READINGS) if new else [], strict=True):
            best, runner_up = _close_readings_flagged(readings, glued_run=_is_glued_run(word))
            states[word] = SUSPECT if best else UNSURE if runner_up else CLEAN
            self._words.put(word, states[word])
        return states

    def _window_verdicts(self, windows: set[tuple[str, int, int]]) -> dict[tuple[str, int, int], bool]:
        """For each (window, start, end): does Kiwi's best reading of the window flag inside start..end?"""
        verdicts: dict[tuple[str, int, int], bool] = {}
        new: list[tuple[str, int, int]] = []
        for window in windows:
            verdict = self._windows.get(window)
            if verdict is None:
                new.append(window)
            else:
                verdicts[window] = verdict
        self.stats["windows_read"] += len(new)
        tokenized = get_kiwi().tokenize([text for text, _, _ in new]) if new else []
        for window, tokens in zip(new, tokenized, strict=True):
            text, start, end = window
            verdicts[window] = _has_flaggable_boundary(tokens, start, end, glued_run=_is_glued_run(text[start:end]))
            self._windows.put(window, verdicts[window])
        return verdicts

    def _run(self, texts: Sequence[str]) -> list[SpacingResult]:
        kiwi = get_kiwi()
        per_text = [_segments(t) for t in texts]
        flat = [segment.text for segments in per_text for segment in segments]
        spaced_flat = list(kiwi.space(flat)) if flat else []
        alignments = [_align(o, s) for o, s in zip(flat, spaced_flat, strict=True)]
        needs_tokens = [k for k, a in enumerate(alignments) if a]
        tokens_for = (
            dict(zip(needs_tokens, kiwi.tokenize([spaced_flat[k] for k in needs_tokens]), strict=True))
            if needs_tokens
            else {}
        )
        # Glued runs are read as written: space() may have left them whole.
        runs_for = {k: runs for k, segment in enumerate(flat) if (runs := _glued_runs(segment))}
        run_tokens_for = (
            dict(zip(runs_for, kiwi.tokenize([flat[k] for k in runs_for]), strict=True)) if runs_for else {}
        )
        results: list[SpacingResult] = []
        k = 0
        for text, segments in zip(texts, per_text, strict=True):
            insertions: list[int] = []
            suggestion_parts: list[str] = []
            last = 0
            for segment in segments:
                alignment = alignments[k]
                spaced = spaced_flat[k] if alignment is not None else segment.text
                wanted = {
                    segment.start + at for at, at_spaced in alignment or [] if _is_flagged(tokens_for[k], at_spaced)
                }
                kiwi_inserted = {at for at, _ in alignment or []}
                run_breaks = {
                    at for start, end in runs_for.get(k, []) for at in _glued_run_breaks(run_tokens_for[k], start, end)
                }
                wanted |= {segment.start + at for at in run_breaks}
                flagged = sorted(o for o in wanted if not _beside_a_mark(text, o) and not self._allowed(text, o))
                insertions += flagged
                extra = {o - segment.start for o in flagged} - kiwi_inserted
                suggestion_parts += [text[last : segment.start], _with_spaces_at(segment.text, spaced, extra)]
                last = segment.start + len(segment.text)
                k += 1
            suggestion_parts.append(text[last:])
            results.append(SpacingResult(text, tuple(insertions), "".join(suggestion_parts)))
        return results

    def _allowed(self, text: str, offset: int) -> bool:
        """True when the flagged offset falls inside an allowlisted phrase (Kiwi known to be wrong)."""
        for phrase in self._allowlist:
            start = text.find(phrase)
            while start != -1:
                if start < offset < start + len(phrase):
                    return True
                start = text.find(phrase, start + 1)
        return False


def _window(words: Sequence[str], at: int) -> tuple[str, int, int]:
    """The word at ``at`` with up to WINDOW_WORDS words on each side, and where the word lies in it."""
    before = words[max(0, at - WINDOW_WORDS) : at]
    start = sum(len(w) + 1 for w in before)
    return " ".join([*before, *words[at : at + WINDOW_WORDS + 1]]), start, start + len(words[at])
