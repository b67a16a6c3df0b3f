"""The page to try the chatbot: ``GET /`` (one static HTML file) and ``GET /api/categories``.

The page is plain HTML with inline CSS and JavaScript (no build step, nothing fetched from
elsewhere), shipped inside the package and read with importlib.resources so it works from the
wheel. It is sent with a Content-Security-Policy that allows only its own inline script and style
(by hash) and connections back to this server, so the browser itself refuses anything external.

fastapi is imported inside :func:`mount_page` (the ``serve`` extra).
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoint annotations at runtime.
import base64
import hashlib
import re
from importlib import resources
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ..pools import Pools

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .app import ChatService

PAGE_PATH = "/"
CATEGORIES_PATH = "/api/categories"
PAGE_FILE = ("static", "index.html")

_INLINE_BLOCK = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


class CategoryOption(BaseModel):
    """One choice of the page's category select: the API key and the Korean name a person reads."""

    key: str
    name: str


def read_page() -> str:
    """The page's HTML from the installed package (a source checkout or the wheel alike)."""
    return resources.files(__package__).joinpath(*PAGE_FILE).read_text(encoding="utf-8")


def category_options(pools: Pools) -> list[CategoryOption]:
    """The configured categories in file order, as the page lists them."""
    return [CategoryOption(key=c.key, name=c.name) for c in pools.categories]


def inline_hashes(html: str, tag: str) -> list[str]:
    """CSP source expressions (``'sha256-…'``) for each inline ``<tag>`` block, hashed as the browser does.

    Only tags written without attributes are found (index.html writes them so); a block missed here is
    refused by the browser, which the page test sees as a console error.
    """
    hashes = []
    for found_tag, body in _INLINE_BLOCK.findall(html):
        if found_tag == tag:
            digest = hashlib.sha256(body.encode("utf-8")).digest()
            hashes.append(f"'sha256-{base64.b64encode(digest).decode()}'")
    return hashes


def content_security_policy(html: str) -> str:
    """Only this page's own inline script and style, and requests back to the server that sent it."""
    scripts = " ".join(inline_hashes(html, "script")) or "'none'"
    styles = " ".join(inline_hashes(html, "style")) or "'none'"
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {scripts}",
            f"style-src {styles}",
            "connect-src 'self'",
            "img-src data:",  # the empty inline favicon, so the browser does not ask for /favicon.ico
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


def mount_page(app: "FastAPI", service: "ChatService") -> None:
    """Add ``GET /`` (the page) and ``GET /api/categories`` (its category choices) to ``app``."""
    from fastapi.responses import HTMLResponse

    html = read_page()  # read once: the page is part of the installed package
    headers = {
        "Content-Security-Policy": content_security_policy(html),
        "Cache-Control": "no-cache",  # a new version is seen after an upgrade, without a stale copy
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    options = category_options(service.pools)

    @app.get(PAGE_PATH, response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers=headers)

    @app.get(CATEGORIES_PATH, summary="The configured categories, for the page's select")
    async def categories() -> list[CategoryOption]:
        return options
