"""MkDocs hook: after the build, check the HTML itself, which `mkdocs build --strict` does not.

MkDocs validates the Markdown links between pages; this walks what was written to the site
directory: every internal `href`/`src` (generated references, API pages, the theme's own
assets) must name a file of the site, and no page may load an asset (script, stylesheet,
font, image) from the network, so the site builds and reads offline. A finding is a warning,
which `--strict` turns into a failed build.
"""

from __future__ import annotations

import html.parser
import logging
import posixpath
from pathlib import Path
from urllib.parse import unquote, urlsplit

log = logging.getLogger("mkdocs.plugins.s2jax.site_check")

# attributes that make the browser fetch something when the page loads
_LOADS = {("script", "src"), ("link", "href"), ("img", "src"), ("source", "src"),
          ("iframe", "src"), ("video", "src"), ("audio", "src")}


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, url)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if value and (name in ("href", "src")):
                self.links.append((tag, name, value))


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def problems(site: Path) -> list[str]:
    """Every broken internal link, missing anchor and network-loaded asset of the site."""
    pages = {p: _parse(p) for p in site.rglob("*.html")}
    found = []
    for page, parsed in pages.items():
        if page == site / "404.html":  # links from the server's root, wherever it is served
            continue
        where = page.relative_to(site).as_posix()
        for tag, attr, url in parsed.links:
            parts = urlsplit(url)
            if parts.scheme or url.startswith("//"):
                if (tag, attr) in _LOADS and parts.scheme in ("http", "https", ""):
                    found.append(f"{where}: <{tag} {attr}> loads {url} from the network")
                continue
            if not parts.path:  # a link within the page
                target = page
            else:
                rel = posixpath.normpath(posixpath.join(page.parent.relative_to(site)
                                                        .as_posix(), unquote(parts.path)))
                target = site / rel
                if target.is_dir() or parts.path.endswith("/"):
                    target = target / "index.html"
                if rel.startswith("..") or not target.is_file():
                    found.append(f"{where}: link to {url}: no such file in the site")
                    continue
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    found.append(f"{where}: link to {url}: no element with id "
                                 f"{parts.fragment!r}")
    return found


def on_post_build(config):
    for problem in problems(Path(config["site_dir"])):
        log.warning(problem)
