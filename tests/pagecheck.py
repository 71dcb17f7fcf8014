"""The checks a report page must pass in a browser, shared by the synthetic and the real report's tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cdp import Chromium

from elbolab.report.gallery import FIGURES, figure_name

CHECKS = """(() => {
  const de = document.documentElement;
  const imgs = [...document.images];
  const sections = [...document.querySelectorAll('section.contrast')].map(s => {
    const fig = s.querySelector('figure.fig');
    const img = fig ? [...fig.querySelectorAll('img')] : [];
    return {title: s.querySelector('h3').textContent, wanted: s.dataset.figure,
            figure: fig ? fig.dataset.figure : null,
            images: img.length, loaded: img.filter(i => i.complete && i.naturalWidth > 0).length};
  });
  const board = [...document.querySelectorAll('ol.board li')].map(li => ({
    title: li.querySelector('a').textContent, target: li.querySelector('a').getAttribute('href'),
    badge: li.querySelector('.badge').textContent}));
  const wide = [...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right > de.clientWidth + 1
      && !e.closest('.scroll')).map(e => e.tagName + '.' + e.className);
  const crushed = [...document.querySelectorAll('td, dd, figcaption, p')].filter(e => e.textContent.trim().length > 3
      && e.getBoundingClientRect().width < 48).map(e => e.tagName + ': ' + e.textContent.slice(0, 40));
  return {scrollWidth: de.scrollWidth, clientWidth: de.clientWidth, wide: wide.slice(0, 5), crushed: crushed.slice(0, 5),
          images: imgs.length, broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
          external: imgs.filter(i => !i.src.startsWith('data:')).map(i => i.src),
          scripts: document.scripts.length, stylesheets: document.querySelectorAll('link[rel=stylesheet]').length,
          sections, board};
})()"""


def artefacts(tmp: Path) -> list[Path]:
    """Where screenshots go: pytest's folder, and $ELBOLAB_ARTEFACTS when it is set."""
    folders = [tmp]
    if os.environ.get("ELBOLAB_ARTEFACTS"):
        folders.append(Path(os.environ["ELBOLAB_ARTEFACTS"]))
        folders[-1].mkdir(parents=True, exist_ok=True)
    return folders


def inspect(browser: Chromium, html: Path, width: int, shots: list[Path], name: str) -> dict:
    """Open the page at `width`, run the checks, save a full-page screenshot into each folder of `shots`."""
    seen = len(browser.events)
    browser.open(html.resolve().as_uri(), width)
    found = browser.evaluate(CHECKS)
    shot = browser.screenshot(shots[0] / f"{name}-{width}px.png")
    for folder in shots[1:]:
        shutil.copy(shot, folder / shot.name)
    events = browser.events[seen:]
    found["requests"] = [url for url in browser.requests(events) if url != html.resolve().as_uri()]
    found["errors"] = browser.console_errors(events)
    found["screenshot"] = shot
    return found


def assert_sound(found: dict, contrasts) -> None:
    """Nothing fetched or logged, every image embedded and loaded, nothing wider than the screen, the verdict
    board lists every contrast with its verdict, and each contrast's section holds the figure it names."""
    assert not found["requests"], found["requests"]
    assert not found["errors"], found["errors"]
    assert found["images"] > 0 and not found["broken"] and not found["external"], found
    assert found["scripts"] == 0 and found["stylesheets"] == 0
    assert found["scrollWidth"] <= found["clientWidth"], (found["scrollWidth"], found["clientWidth"], found["wide"])
    assert not found["wide"], found["wide"]
    assert not found["crushed"], found["crushed"]  # no text squeezed into a sliver of a column
    # the verdict board lists every contrast, in order, with its verdict, linking to its section
    assert [(r["title"], r["badge"].replace("verdict: ", "")) for r in found["board"]] == [
        (c.title, c.verdict) for c in contrasts
    ]
    assert [r["target"] for r in found["board"]] == [f"#contrast-{i + 1}" for i in range(len(contrasts))]
    # each contrast section holds the figure it names (or its title points to), every image of it loaded
    sections = {s["title"]: s for s in found["sections"]}
    assert list(sections) == [c.title for c in contrasts]
    for c in contrasts:
        s, wanted = sections[c.title], figure_name(c)
        if wanted not in FIGURES:
            assert s["figure"] is None
            continue
        assert wanted and s["figure"] == wanted, (c.title, s)
        assert s["images"] > 0 and s["loaded"] == s["images"], (c.title, s)
