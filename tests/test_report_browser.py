"""The report page in a real browser (headless Chromium over the DevTools protocol): every image loads from
the page itself, nothing is fetched, nothing is logged as an error, nothing overflows sideways at desktop
or phone width, each contrast shows its figure, and the verdict board lists every contrast.

Screenshots at both widths are saved under pytest's tmp dir and, when $ELBOLAB_ARTEFACTS names a folder,
there too. Without a Chromium that starts, the tests are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from cdp import BrowserError, Chromium, find_chromium
from elbolab.report.gallery import figure_name
from elbolab.report.render import write_report
from synthetic import synthetic_results

WIDTHS = (1280, 390)

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
  return {scrollWidth: de.scrollWidth, clientWidth: de.clientWidth, wide: wide.slice(0, 5),
          images: imgs.length, broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
          external: imgs.filter(i => !i.src.startsWith('data:')).map(i => i.src),
          scripts: document.scripts.length, stylesheets: document.querySelectorAll('link[rel=stylesheet]').length,
          sections, board};
})()"""


@pytest.fixture(scope="module")
def browser():
    exe = find_chromium()
    if exe is None:
        reason = "no Chromium found (install Debian's chromium, or set ELBOLAB_CHROMIUM to a browser)"
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    try:
        b = Chromium(exe)
    except BrowserError as exc:
        print(f"SKIPPED: {exc}")
        pytest.skip(f"Chromium could not be started: {exc}")
    yield b
    b.close()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    results, images, reference = synthetic_results()
    paths = write_report(results, out, images, reference)
    return results, paths["html"]


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


@pytest.mark.parametrize("width", WIDTHS)
def test_the_page_in_a_browser(browser, page, width, tmp_path):
    results, html = page
    start = time.perf_counter()
    found = inspect(browser, html, width, artefacts(tmp_path), "report")
    print(f"{width} px: {html.stat().st_size:,} bytes, checked in {time.perf_counter() - start:.2f} s, "
          f"screenshot {found['screenshot']}")
    assert not found["requests"], found["requests"]
    assert not found["errors"], found["errors"]
    assert found["images"] > 0 and not found["broken"] and not found["external"], found
    assert found["scripts"] == 0 and found["stylesheets"] == 0
    assert found["scrollWidth"] <= found["clientWidth"], (found["scrollWidth"], found["clientWidth"], found["wide"])
    assert not found["wide"], found["wide"]
    # the verdict board lists every contrast, in order, with its verdict, linking to its section
    assert [(r["title"], r["badge"].replace("verdict: ", "")) for r in found["board"]] == \
        [(c.title, c.verdict) for c in results.contrasts]
    assert [r["target"] for r in found["board"]] == [f"#contrast-{i + 1}" for i in range(len(results.contrasts))]
    # each contrast section holds the figure it names (or its title points to), every image of it loaded
    sections = {s["title"]: s for s in found["sections"]}
    assert list(sections) == [c.title for c in results.contrasts]
    for c in results.contrasts:
        s, wanted = sections[c.title], figure_name(c)
        if wanted == "no_such_figure":
            assert s["figure"] is None
            continue
        assert wanted and s["figure"] == wanted, (c.title, s)
        assert s["images"] > 0 and s["loaded"] == s["images"], (c.title, s)


def test_the_page_alone_in_another_folder_shows_every_image(browser, page, tmp_path):
    _, html = page
    folder = shutil.copytree(html.parent, tmp_path / "report")        # the report as written, images beside it
    alone = tmp_path / "elsewhere" / "attachment.html"
    alone.parent.mkdir()
    shutil.move(folder / html.name, alone)
    assert not (alone.parent / "samples_vae.png").exists()
    found = inspect(browser, alone, 1280, [tmp_path], "moved")
    assert found["images"] > 0 and not found["broken"] and not found["requests"] and not found["errors"], found
