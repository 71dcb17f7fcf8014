"""MkDocs hook: the benchmark results under benchmarks/results/ become files of the site, so the benchmarks page
links to the very JSON (and plots) the figures come from, at `benchmarks/results/NAME` beside the pages."""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add every file of benchmarks/results/ to the site under benchmarks/results/."""
    for path in sorted(RESULTS.iterdir()):
        if path.is_file():
            files.append(File.generated(config, f"benchmarks/results/{path.name}", abs_src_path=str(path)))
    return files
