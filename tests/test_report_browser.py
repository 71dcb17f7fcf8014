"""The report page in a real browser (headless Chromium over the DevTools protocol): every image loads from
the page itself, nothing is fetched, nothing is logged as an error, nothing overflows sideways at desktop
or phone width, each contrast shows its figure, and the verdict board lists every contrast.

Screenshots at both widths are saved under pytest's tmp dir and, when $ELBOLAB_ARTEFACTS names a folder,
there too. Without a Chromium that starts, the tests are skipped with the reason.
"""

from __future__ import annotations

import shutil
import time

import pytest
from pagecheck import artefacts, assert_sound, inspect
from synthetic import synthetic_results

from elbolab.report.render import write_report

WIDTHS = (1280, 390)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    results, images, reference = synthetic_results()
    paths = write_report(results, out, images, reference)
    return results, paths["html"]


@pytest.mark.parametrize("width", WIDTHS)
def test_the_page_in_a_browser(browser, page, width, tmp_path):
    results, html = page
    start = time.perf_counter()
    found = inspect(browser, html, width, artefacts(tmp_path), "report")
    print(
        f"{width} px: {html.stat().st_size:,} bytes, checked in {time.perf_counter() - start:.2f} s, "
        f"screenshot {found['screenshot']}"
    )
    assert_sound(found, results.contrasts)
    named_elsewhere = [c for c in results.contrasts if c.figure == "no_such_figure"]
    assert sum(s["figure"] is not None for s in found["sections"]) == len(results.contrasts) - len(named_elsewhere)


def test_the_page_alone_in_another_folder_shows_every_image(browser, page, tmp_path):
    _, html = page
    folder = shutil.copytree(html.parent, tmp_path / "report")  # the report as written, images beside it
    alone = tmp_path / "elsewhere" / "attachment.html"
    alone.parent.mkdir()
    shutil.move(folder / html.name, alone)
    assert not (alone.parent / "samples_vae.png").exists()
    found = inspect(browser, alone, 1280, [tmp_path], "moved")
    assert found["images"] > 0 and not found["broken"] and not found["requests"] and not found["errors"], found


def test_the_checks_catch_a_page_that_breaks_them(browser, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!doctype html><html><head><meta name="viewport" content="width=device-width"></head><body><main>'
        '<img src="beside.png" alt="a file beside the page"><div style="width:2000px">wide</div>'
        '<script>console.error("broken")</script></main></body></html>'
    )
    found = inspect(browser, bad, 390, [tmp_path], "bad")
    assert found["requests"] == [(tmp_path / "beside.png").as_uri()]
    assert found["broken"] == ["a file beside the page"] and found["external"] and found["scripts"] == 1
    assert any("broken" in e for e in found["errors"]) and any("beside.png" in e for e in found["errors"])
    assert found["scrollWidth"] > found["clientWidth"] and found["wide"]
