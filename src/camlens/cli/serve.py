"""``camlens serve``: the local web explorer and its REST API (the extra ``camlens[serve]``)."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from .common import EXIT_OK, UsageError, parse_device, subcommand

__all__ = ["add_parser", "run"]

SAMPLES = Path("examples/images")


def _choice(text: str):
    from ..serve import ModelChoice

    name, _, weights = text.partition("=")
    return ModelChoice(name.strip(), Path(weights) if weights else None)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def settings_from(args: argparse.Namespace):
    """The server's settings from the options, every model and folder checked before it starts."""
    try:
        from ..serve import ServeSettings
        from ..serve.explorer import sample_paths
        from ..serve.settings import check_choice, zoo_choices
    except ImportError as error:
        raise UsageError(str(error)) from None
    extra = [_choice(text) for text in args.model or []]
    for choice in extra:
        try:
            check_choice(choice)
        except (ValueError, ImportError) as error:
            raise UsageError(f"--model {choice.name}: {error}") from None
    models = {choice.name: choice for choice in extra}
    for choice in [] if args.only else zoo_choices():
        models.setdefault(choice.name, choice)  # a zoo model the user gave weights keeps them
    if not models:
        raise UsageError("no model to offer: give --model NAME (camlens models lists the zoo)")
    folders = [Path(folder) for folder in args.samples] if args.samples else ([SAMPLES] if SAMPLES.is_dir() else [])
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"--samples {folder} is not a folder")
    parse_device(args.device)
    # on loopback, only the names of this machine (DNS rebinding is refused); on the network, any
    hosts = ("127.0.0.1", "localhost", "::1", args.host) if _loopback(args.host) else ("*",)
    try:
        return ServeSettings(models=tuple(models.values()), samples=sample_paths(folders),
                             max_upload_bytes=int(args.max_upload_mb * 2 ** 20),
                             max_pixels=int(args.max_megapixels * 1_000_000), queue=args.queue, device=args.device,
                             allowed_hosts=tuple(dict.fromkeys(hosts)))
    except ValueError as error:
        raise UsageError(str(error)) from None


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    import uvicorn

    from ..serve import create_app

    if not _loopback(args.host):
        print(f"camlens: warning: serving on {args.host}: anyone who can reach this machine can use the explorer "
              "(it has no login); the default, 127.0.0.1, serves this machine only", file=sys.stderr)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"camlens explorer: http://{shown}:{args.port}/  (API: /docs; models: "
          f"{', '.join(c.name for c in settings.models)}; Ctrl+C stops it)", file=sys.stderr)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = subcommand(commands, "serve", "a local web explorer: upload a photo, see its maps",
                        "Serve the web explorer and its REST API (needs: pip install 'camlens[serve]').",
                        examples=False)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 opens it to the "
                             "network, with a warning)")
    parser.add_argument("--port", type=int, default=8000, help="(default: %(default)s)")
    parser.add_argument("--model", action="append", metavar="NAME[=WEIGHTS]",
                        help="also offer this model (zoo name, torchvision:NAME, timm:NAME, hf:NAME; =PATH gives its "
                             "weights file); repeat for several. The first is the page's default")
    parser.add_argument("--only", action="store_true", help="offer only the --model ones, not the zoo's classifiers")
    parser.add_argument("--samples", action="append", metavar="FOLDER",
                        help=f"photos the page offers as samples (default: {SAMPLES} when it exists here)")
    parser.add_argument("--max-upload-mb", type=float, default=20, help="largest upload (default: %(default)s)")
    parser.add_argument("--max-megapixels", type=float, default=50,
                        help="largest photo, in decoded pixels: decompression bombs are refused; at most 89 "
                             "(default: %(default)s)")
    parser.add_argument("--queue", type=int, default=64,
                        help="requests that may wait for one model; more are refused with 503 (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    parser.set_defaults(run=run)
