"""The documentation site builds as .ci/run builds it (`mkdocs build --strict`), and its generated
reference pages cover what they must: every public name of `edgecls` in the API reference, every
command and option of the CLI in the command-line reference, and no TensorFlow imported to build
them. One build (~10 s) is shared by the module's tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import edgecls

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="the site needs the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings", reason="the site needs the docs extra: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    code = (
        "import sys\nfrom mkdocs.__main__ import cli\n"
        "try:\n    cli(['build', '--strict', '-q', '-d', sys.argv[1]], standalone_mode=False)\n"
        "finally:\n    print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'tf_keras', 'keras'}))\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, capture_output=True, text=True,
                         env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})  # fmt: skip
    return run, out


def test_the_site_builds_strictly_without_tensorflow(site):
    run, out = site
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == "[]", run.stdout
    for page in ("index.html", "changelog/index.html", "models/ham10000/index.html", "models/ham10000.reliability.png",
                 "guides/speed/index.html", "reference/file-format/index.html"):  # fmt: skip
        assert (out / page).is_file(), page


def test_the_api_reference_has_every_public_name(site):
    _, out = site
    page = (out / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    for name in edgecls.__all__:
        if name != "__version__":
            assert f'id="{edgecls._LAZY[name]}.{name}"' in page, name
    assert "Classify one image, or a list of them" in page  # a docstring's own text, not just a heading


def test_the_cli_reference_has_every_command_and_option(site):
    import typer.main

    from edgecls.cli import app

    _, out = site
    page = (out / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    assert len(group.commands) >= 8
    for name, command in group.commands.items():
        assert f"edgecls {name}" in page, name
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            shown = param.opts if param.param_type_name == "option" else [param.human_readable_name]
            for flag in shown:
                assert flag in page, f"edgecls {name} {flag}"


def test_the_front_page_links_become_site_links(site):
    """README.md links to docs/guides/x.md (right on GitHub); on the site they are guides/x/."""
    _, out = site
    page = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="guides/speed/"' in page and 'href="docs/' not in page
    assert 'href="models/ham10000/"' in page and 'href="changelog/"' in page
