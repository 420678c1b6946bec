"""`edgecls export web`: the model as a static web site that classifies in a phone's browser."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

export_app = typer.Typer(
    name="export",
    help="Export a model to run elsewhere: `edgecls export web MODEL --output DIR` (a web page for phones).",
    no_args_is_help=True,
)


@export_app.command("web")
def web(
    model: str = typer.Argument(..., help="A .tflite file, or a built-in model name (see `edgecls models`).", show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="The site's folder (must not exist, unless --force)."),
    runtime: Optional[Path] = typer.Option(
        None, "--runtime",
        help="The @mediapipe/tasks-vision 1.1.0 package (.tgz from `npm pack`, or that unpacked), for machines without network. "
        "Default: fetched once with npm (or from npm's configured registry), verified, cached in ~/.cache/edgecls.",
    ),  # fmt: skip
    force: bool = typer.Option(False, "--force", help="Replace an earlier export in --output."),
    serve: bool = typer.Option(False, "--serve", help="Then serve the site on this machine's network (Ctrl-C stops)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="The port for --serve."),
) -> None:
    """Write a static web site (page, model, MediaPipe Tasks runtime, service worker) that classifies
    images in a phone's browser, offline, with the probabilities and flag `edgecls classify` gives.
    Host it on any static web server; open index.html there (not from the file system)."""
    from edgecls.web import export_web
    from edgecls.web import serve as serve_site
    from edgecls.web.serve import lan_address

    site = export_web(model, output, runtime=runtime, force=force)
    typer.echo(f"{site}/: open it from a web server (--serve, or any static host), not as a file")
    if not serve:
        return
    server = serve_site(site, "0.0.0.0", port)
    address = lan_address()
    elsewhere = f"http://{address}:{port}/" if address else f"http://<this machine's address>:{port}/ (`hostname -I` shows it)"
    typer.echo(f"serving {site}/ at http://localhost:{port}/ and, for a phone on the same network, {elsewhere}")
    typer.echo("over plain HTTP a phone can take and choose photos; the live camera preview, offline use and "
               "'add to home screen' need HTTPS (see docs/phone.md). Ctrl-C stops.")  # fmt: skip
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
