"""The page at ``/`` in a real headless chromium, against the API on the tiny memorized model.

Debian's chromium (/usr/bin/chromium) is driven by playwright's Python client; the browser is never
downloaded (no ``playwright install``). Every test records the page's requests and checks that
none leaves the loopback server, and that the page logged no error (a CSP violation is one).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from kochallenge_data.serve.app import BASE_INFO_PATH, FEEDBACK_PATH, FREE_TEXT_PATH, ChatService
from kochallenge_data.serve.page import CATEGORIES_PATH, mount_page, read_page

from .conftest import BASE_INFO_ANSWER, FEEDBACK_ANSWER, FREE_TEXT_ANSWER, KNOWN_FREE_TEXT, KNOWN_WEEK, create_app
from .helpers import serve_in_thread

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extra)")

pytestmark = pytest.mark.train
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 60_000  # generous: a slow CI machine; these are waits for a state, never timing assertions
# Keeps every EventSource the page makes, so a test can see whether the page closed it.
TRACK_EVENT_SOURCES = """
(() => {
  const Native = window.EventSource;
  window.__eventSources = [];
  window.EventSource = class extends Native {
    constructor(...args) { super(...args); window.__eventSources.push(this); }
  };
})();
"""


def answer_lines(answer: str) -> tuple[str, list[str]]:
    """The recommend sentence and the three titles of a memorized answer."""
    first, *challenges = answer.split("\n")
    return first, [line.split(":", 1)[0] for line in challenges]


def is_page_error(message: Any) -> bool:
    """An error the page caused (a CSP violation, a script error), not chromium's log of an HTTP error status."""
    return message.type == "error" and not message.text.startswith("Failed to load resource: the server responded")


@pytest.fixture(scope="module")
def page_server(chat_server: str, chat_service: ChatService) -> Iterator[str]:
    """The shared server when its app serves the page (create_app mounts it), else one that does."""
    if httpx.get(chat_server + "/", timeout=30).status_code == 200:
        yield chat_server
        return
    app = create_app(chat_service)
    mount_page(app, chat_service)
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            locale="ko-KR",
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(WAIT_MS)
        try:
            yield context
        finally:
            context.close()


@dataclass
class Visit:
    """One tab on the page, with every request it made and every error it logged."""

    page: Any
    base_url: str
    requests: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def urls(self, path: str) -> list[str]:
        return [r.url for r in self.requests if urlsplit(r.url).path == path]

    def query(self, url: str) -> dict[str, list[str]]:
        return parse_qs(urlsplit(url).query)

    def result_state(self) -> str:
        state: str = self.page.locator("#result").get_attribute("data-state")
        return state

    def wait_for_result(self, *states: str) -> str:
        selector = ", ".join(f'#result[data-state="{s}"]' for s in states)
        self.page.wait_for_selector(selector)
        return self.result_state()

    def card_titles(self) -> list[str]:
        titles: list[str] = self.page.locator("#cards .card .title").all_inner_texts()
        return titles

    def event_sources_closed(self) -> bool:
        closed: bool = self.page.evaluate("window.__eventSources.every((s) => s.readyState === EventSource.CLOSED)")
        return closed

    def assert_clean(self) -> None:
        outside = [r.url for r in self.requests if not r.url.startswith(self.base_url + "/")]
        assert not outside, f"the page reached outside the server: {outside}"
        assert not self.errors, self.errors


@pytest.fixture
def visit(browser: Any, page_server: str) -> Iterator[Visit]:
    page = browser.new_page()
    seen = Visit(page, page_server)
    page.on("request", lambda request: seen.requests.append(request))
    page.on("console", lambda message: seen.errors.append(message.text) if is_page_error(message) else None)
    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    page.add_init_script(TRACK_EVENT_SOURCES)
    page.goto(page_server + "/")
    page.wait_for_selector("#category option[value='VEGAN']", state="attached")
    try:
        yield seen
    finally:
        page.close()


# --------------------------------------------------------------------------------------------
# served as a page (plain HTTP)


def test_the_page_and_its_categories_are_served(page_server: str, chat_service: ChatService) -> None:
    with httpx.Client(base_url=page_server, timeout=30) as client:
        page = client.get("/")
        categories = client.get(CATEGORIES_PATH)
        schema = client.get("/openapi.json").json()
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.text == read_page()
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/]+=*'", policy), policy
    # nothing the page would fetch from elsewhere: no absolute URLs at all
    assert not re.search(r"(src|href|action)\s*=\s*[\"']?(https?:)?//", page.text)
    assert categories.json() == [{"key": c.key, "name": c.name} for c in chat_service.pools.categories]
    assert CATEGORIES_PATH in schema["paths"] and "/" not in schema["paths"]


# --------------------------------------------------------------------------------------------
# in the browser


def test_base_info_streams_three_cards_then_the_recommend_sentence(visit: Visit, tmp_path: Path) -> None:
    page = visit.page
    recommend, titles = answer_lines(BASE_INFO_ANSWER)
    page.get_by_label("지역").fill("도시")
    page.get_by_label("근무 형태").fill("사무직")
    page.get_by_label("카테고리").select_option("VEGAN")
    page.get_by_role("button", name="추천받기").focus()
    page.keyboard.press("Enter")  # keyboard only

    assert visit.wait_for_result("closed", "error") == "closed", page.inner_text("#result")
    assert visit.card_titles() == titles
    assert page.locator("#cards .card").evaluate_all("cards => cards.map(c => c.dataset.index)") == ["1", "2", "3"]
    assert page.locator("#cards .badge").all_inner_texts() == ["비건"] * 3
    assert page.inner_text("#recommend") == recommend
    assert page.locator("#stream-error").is_hidden()
    assert visit.event_sources_closed(), "the page left an EventSource open: it would reconnect and ask again"

    [url] = visit.urls(BASE_INFO_PATH)
    assert "location=%EB%8F%84%EC%8B%9C" in url  # Hangul percent-encoded as UTF-8, not sent raw
    query = visit.query(url)
    assert query["location"] == ["도시"] and query["workType"] == ["사무직"] and query["category"] == ["VEGAN"]
    assert query["sessionId"] == [page.inner_text("#session-id")]
    assert "apiKey" not in query

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    visit.assert_clean()


def test_a_known_message_streams_its_cards_and_keeps_the_session(visit: Visit) -> None:
    page = visit.page
    recommend, titles = answer_lines(FREE_TEXT_ANSWER)
    session_id = page.inner_text("#session-id")
    page.get_by_label("메시지", exact=True).fill(KNOWN_FREE_TEXT["message"])
    page.keyboard.press("Control+Enter")

    assert visit.wait_for_result("closed", "error") == "closed", page.inner_text("#result")
    assert visit.card_titles() == titles
    assert page.inner_text("#recommend") == recommend
    [url] = visit.urls(FREE_TEXT_PATH)
    assert visit.query(url) == {"sessionId": [session_id], "message": [KNOWN_FREE_TEXT["message"]]}
    assert visit.event_sources_closed()
    visit.assert_clean()


def test_a_too_short_message_shows_the_error_and_its_code(visit: Visit, tmp_path: Path) -> None:
    page = visit.page
    page.get_by_label("메시지", exact=True).fill("짧아")
    page.get_by_role("button", name="보내기").click()

    assert visit.wait_for_result("closed", "error") == "error"
    assert page.locator("#stream-error").is_visible()
    assert page.inner_text("#stream-error-message").startswith("message:")
    assert page.inner_text("#stream-error-code") == "invalid_request (HTTP 400)"
    assert page.locator("#cards .card").count() == 0
    assert visit.event_sources_closed()
    assert len(visit.urls(FREE_TEXT_PATH)) == 1
    page.screenshot(path=str(tmp_path / "error.png"), full_page=True)
    visit.assert_clean()


def test_a_stream_that_ends_without_a_result_is_shown_and_not_retried(visit: Visit) -> None:
    page = visit.page
    # A server bug or a proxy cutting the stream: the browser would reconnect and ask again on its own.
    page.route(
        f"**{FREE_TEXT_PATH}?*",
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=": nothing\n\n"),
    )
    page.get_by_label("메시지", exact=True).fill(KNOWN_FREE_TEXT["message"])
    page.get_by_role("button", name="보내기").click()

    assert visit.wait_for_result("closed", "error") == "error"
    assert page.inner_text("#stream-error-code") == "연결 오류"
    assert visit.event_sources_closed()
    visit.assert_clean()


def test_the_sample_week_is_valid_and_a_known_week_gets_its_feedback(visit: Visit, tmp_path: Path) -> None:
    page = visit.page
    button = page.get_by_role("button", name="피드백 받기")
    button.click()
    page.wait_for_selector('#feedback-result[data-state="ok"], #feedback-result[data-state="error"]')
    if page.locator("#feedback-result").get_attribute("data-state") == "ok":
        assert page.inner_text("#feedback-text")
    else:  # the tiny model does not know this week: its answer may fail the checks, but the week is valid
        code = page.inner_text("#feedback-error-code")
        assert not code.startswith("invalid_request") and code.endswith("(HTTP 502)"), code
        assert page.inner_text("#feedback-error-message")

    page.get_by_label("한 주 기록 (JSON)").fill(KNOWN_WEEK)
    button.click()
    page.wait_for_selector('#feedback-result[data-state="ok"]')
    assert page.inner_text("#feedback-text") == FEEDBACK_ANSWER
    assert page.locator("#feedback-error").is_hidden()
    page.screenshot(path=str(tmp_path / "feedback.png"), full_page=True)

    page.get_by_label("한 주 기록 (JSON)").fill('{"memberId": "seven"}')
    button.click()
    page.wait_for_selector('#feedback-result[data-state="error"]')
    assert page.inner_text("#feedback-error-code") == "invalid_request (HTTP 400)"
    assert page.inner_text("#feedback-error-message").startswith("memberId")

    page.get_by_role("button", name="샘플로 되돌리기").click()
    assert orjson.loads(page.input_value("#week"))["memberId"] == 7
    assert len(visit.urls(FEEDBACK_PATH)) == 3
    visit.assert_clean()


def test_the_api_key_goes_as_a_query_parameter_to_streams_and_a_header_to_fetch(visit: Visit) -> None:
    page = visit.page
    page.get_by_label("API 키 (선택)").fill("k3y+/=&%?")
    page.get_by_label("메시지", exact=True).fill("짧아")
    page.get_by_role("button", name="보내기").click()
    visit.wait_for_result("closed", "error")
    page.get_by_label("한 주 기록 (JSON)").fill(KNOWN_WEEK)
    page.get_by_role("button", name="피드백 받기").click()
    page.wait_for_selector('#feedback-result[data-state="ok"], #feedback-result[data-state="error"]')

    [stream_url] = visit.urls(FREE_TEXT_PATH)
    assert visit.query(stream_url)["apiKey"] == ["k3y+/=&%?"]
    [feedback] = [r for r in visit.requests if urlsplit(r.url).path == FEEDBACK_PATH]
    assert feedback.method == "POST" and feedback.headers["x-api-key"] == "k3y+/=&%?"

    # a key no header can carry is refused on the page, not mistaken for a network failure
    page.get_by_label("API 키 (선택)").fill("키")
    page.get_by_role("button", name="보내기").click()
    assert visit.wait_for_result("error") == "error"
    assert page.inner_text("#stream-error-code") == "보내지 않음"
    assert len(visit.urls(FREE_TEXT_PATH)) == 1
    visit.assert_clean()


def test_the_session_id_lasts_for_the_tab_until_a_new_session_is_started(visit: Visit) -> None:
    page = visit.page
    first = page.inner_text("#session-id")
    assert re.fullmatch(r"web-[0-9a-f]{24}", first)
    page.reload()
    page.wait_for_selector("#category option[value='VEGAN']", state="attached")
    assert page.inner_text("#session-id") == first
    page.get_by_role("button", name="새 세션 시작").click()
    second = page.inner_text("#session-id")
    assert second != first and page.evaluate("sessionStorage.getItem('kochallenge.sessionId')") == second
    visit.assert_clean()
