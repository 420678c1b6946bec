"""MkDocs hooks (mkdocs.yml: `hooks:`): the site is built from files that have one copy each.

- `index.md` is README.md, `changelog.md` is CHANGELOG.md, and `models/<name>.md` (with its
  reliability diagram) is the model card shipped in src/edgecls/models/: added to the site at build
  time, with the README's repository links (`docs/guides/train.md`) made site links (`guides/train.md`).
- A page line `<!-- edgecls:cli -->` becomes the command-line reference, generated from the Typer
  app itself (every command, argument, option and default, as `edgecls COMMAND --help` has them).
- A page line `<!-- edgecls:api -->` becomes one mkdocstrings block per public name of `edgecls`
  (`edgecls.__all__`, looked up in the module that defines it), so a new public name appears in
  the reference without editing the page.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "src" / "edgecls" / "models"

# Repository paths in README.md / CHANGELOG.md -> the same page on the site.
_LINKS = [
    (re.compile(r"\]\(docs/"), "]("),
    (re.compile(r"\]\(src/edgecls/models/"), "](models/"),
    (re.compile(r"\]\(CHANGELOG\.md"), "](changelog.md"),
    (re.compile(r"\]\(README\.md"), "](index.md"),
]


def site_text(text: str) -> str:
    for pattern, replacement in _LINKS:
        text = pattern.sub(replacement, text)
    return text


def on_files(files: Files, config) -> Files:
    generated = {
        "index.md": site_text((ROOT / "README.md").read_text(encoding="utf-8")),
        "changelog.md": site_text((ROOT / "CHANGELOG.md").read_text(encoding="utf-8")),
    }
    for uri, content in generated.items():
        files.append(File.generated(config, uri, content=content))
    for card in sorted(MODELS.glob("*.md")) + sorted(MODELS.glob("*.png")):
        files.append(File.generated(config, f"models/{card.name}", abs_src_path=str(card)))
    return files


def cli_reference() -> str:
    """Markdown for every command of the `edgecls` Typer app (typer's own docs generator)."""
    import click
    import typer.main
    from typer.cli import get_docs_for_click

    from edgecls.cli import app

    command = typer.main.get_command(app)
    text = get_docs_for_click(obj=command, ctx=click.Context(command, info_name="edgecls"), name="edgecls", indent=1)
    return text.strip() + "\n"


def api_reference() -> str:
    """One `::: module.Name` block per public name, in `edgecls.__all__` order."""
    import edgecls

    blocks = []
    for name in edgecls.__all__:
        module = edgecls._LAZY.get(name)
        if module is not None:
            blocks.append(f"::: {module}.{name}\n")
    return "\n".join(blocks)


_MARKERS = {"<!-- edgecls:cli -->": cli_reference, "<!-- edgecls:api -->": api_reference}


def on_page_markdown(markdown: str, page, config, files) -> str:
    for marker, generate in _MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown
