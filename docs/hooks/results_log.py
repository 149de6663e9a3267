"""MkDocs hook: publish the append-only results log (``experiments/LOG.md``) as the page ``log.md``.

The log lives beside the scripts that append to it, outside ``docs/``; its links are relative to
``experiments/`` (``../docs/figures/x.png``, ``../docs/results.md``), so they are rewritten to the
site's layout (``figures/x.png``, ``results.md``). Anything else the log links that the site does
not have still fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import pathlib

from mkdocs.structure.files import File

LOG = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "LOG.md"


def on_files(files, config):
    text = LOG.read_text(encoding="utf-8")
    text = text.replace("](../docs/figures/", "](figures/").replace("](../docs/results.md)", "](results.md)")
    files.append(File.generated(config, "log.md", content=text))
    return files
