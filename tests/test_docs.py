"""The documentation site builds with ``mkdocs build --strict``, and README's links resolve.

CI runs only README's test command, so the site's build runs here: a guide linking a page that
does not exist, a nav entry without its file, or an API page naming a module that moved
(``::: prime_jax.<name>``, read statically by mkdocstrings / griffe, nothing imported) fails.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_mkdocs_build_is_strict_and_clean(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    problems = [line for line in log.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert result.returncode == 0 and not problems, "mkdocs build --strict failed:\n" + log[-6000:]
    assert (tmp_path / "site" / "results" / "index.html").exists()
    assert (tmp_path / "site" / "api" / "rl" / "index.html").exists()


def test_readme_links_and_images_exist():
    readme = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+://", t) and not t.startswith("#")]
    assert local, "README links nothing local"
    missing = [t for t in local if t and not (REPO / t).exists()]
    assert not missing, f"README.md links files that do not exist: {missing}"


def test_experiment_drivers_are_listed():
    """Every script in experiments/ has its line in experiments/README.md."""
    listing = (REPO / "experiments" / "README.md").read_text()
    drivers = sorted(p.name for p in (REPO / "experiments").glob("*.py"))
    assert drivers
    unlisted = [name for name in drivers if f"({name})" not in listing]
    assert not unlisted, f"experiments/README.md has no line for {unlisted}"
