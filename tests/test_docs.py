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


def _gin_binding_problem(name: str) -> str | None:
    """Why ``name`` (``prime_jax.<module path>.<Configurable>.<parameter>``) names nothing, or None.

    Read statically: the longest prefix that is a module file, then ``class`` / ``def`` of the
    configurable in it and the parameter's name in that file."""
    parts = name.split(".")
    for cut in range(len(parts) - 2, 0, -1):
        base = REPO.joinpath(*parts[:cut])
        source = base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"
        if source.exists():
            break
    else:
        return "no module"
    rest = parts[cut:]
    if len(rest) != 2:
        return f"expected <Configurable>.<parameter> after {'.'.join(parts[:cut])}"
    text = source.read_text()
    owner = re.search(rf"^(\s*)(class|def) {rest[0]}\b(.*?)(?=^\1(?:class|def|@) |\Z)", text, flags=re.M | re.S)
    exported = re.search(rf"^from (prime_jax[\w.]*) import [^\n]*\b{rest[0]}\b", text, flags=re.M)
    if not owner and exported:  # a package re-exporting the configurable (gin binds it by this name)
        return _gin_binding_problem(f"{exported.group(1)}.{rest[0]}.{rest[1]}")
    if not owner:
        return f"{source.relative_to(REPO)} defines no {rest[0]}"
    if owner.group(2) == "def":  # a configurable function: the parameter is in its signature
        found = re.search(rf"\b{rest[1]}\b", owner.group(3).split("):", 1)[0])
    else:  # a configurable dataclass: the parameter is one of its fields
        found = re.search(rf"^\s+{rest[1]}\s*:", owner.group(3), flags=re.M)
    return None if found else f"{rest[0]} in {source.relative_to(REPO)} has no parameter {rest[1]}"


def test_gin_bindings_in_the_docs_name_real_settings():
    """A binding quoted in README or a guide (``prime_jax.x.Config.field = ...``) still exists."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    bindings = {name for page in pages
                for name in re.findall(r"(prime_jax(?:\.\w+)+)\s*=", page.read_text())}
    assert bindings
    stale = {name: why for name in sorted(bindings) if (why := _gin_binding_problem(name))}
    assert not stale, f"bindings in the docs that name nothing: {stale}"


def test_api_reference_covers_every_module_and_package():
    """Each module or subpackage directly under prime_jax/ has its ``::: prime_jax.<name>`` page entry."""
    documented = set()
    for page in (REPO / "docs" / "api").glob("*.md"):
        documented |= set(re.findall(r"^::: (prime_jax\.\w+)\s*$", page.read_text(), flags=re.M))
    package = REPO / "prime_jax"
    names = {f"prime_jax.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    names |= {f"prime_jax.{p.parent.name}" for p in package.glob("*/__init__.py")}
    missing = sorted(names - documented)
    assert not missing, f"docs/api/*.md has no '::: NAME' for {missing}"
    gone = sorted(documented - names)
    assert not gone, f"docs/api/*.md documents modules that no longer exist: {gone}"
