#!/usr/bin/env python
"""Download, verify, extract and check DAVIS under a data root (default: $VOS_LAB_DATA).

    python data_scripts/get_davis.py --root ~/vos-data                  # DAVIS-2017 trainval 480p
    python data_scripts/get_davis.py --root ~/vos-data 2016 2017-test-dev
    python data_scripts/get_davis.py --check ~/vos-data/davis2017       # only verify a folder

Interrupted downloads resume on the next run; a complete dataset is skipped.
"""

from __future__ import annotations

import argparse
import sys

from vos_lab.data.catalogue import CATALOGUE, prepare_davis, verify_davis_layout
from vos_lab.errors import VosLabError


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {key:14s} {spec.approx_size:38s} -> <root>/{spec.target}/"
                        + (" (no pinned checksum)" if spec.unpinned else "")
                        for key, spec in CATALOGUE.items())
    parser = argparse.ArgumentParser(
        description="Download and prepare DAVIS (official archives from davischallenge.org).",
        epilog=f"archives:\n{listing}\n  all            every archive above",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("datasets", nargs="*", metavar="DATASET", default=["2017-trainval"],
                        help="which archives (default: 2017-trainval)")
    parser.add_argument("--root", help="data root to prepare into (default: $VOS_LAB_DATA)")
    parser.add_argument("--keep-archive", action="store_true", help="keep the .zip in <root>/downloads/")
    parser.add_argument("--sha256", metavar="HEX",
                        help="expected sha256 of the archive (one dataset only): needed for an archive without "
                             "a pinned checksum (2017-test-dev), or if the publisher re-released one")
    parser.add_argument("--no-checksum", action="store_true",
                        help="skip the size and checksum check; only the layout is checked")
    parser.add_argument("--check", metavar="DAVIS_DIR", help="only verify an existing DAVIS folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.check:
            report = verify_davis_layout(args.check)
            print(report.summary())
            return 0 if report.ok else 1
        unknown = [name for name in args.datasets if name not in (*CATALOGUE, "all")]
        if unknown:
            raise VosLabError(f"unknown dataset {', '.join(unknown)} (choose {', '.join(CATALOGUE)} or all)")
        keys = list(CATALOGUE) if "all" in args.datasets else args.datasets
        if args.sha256 and len(keys) > 1:
            raise VosLabError("--sha256 applies to one dataset: name only one")
        for key in keys:
            report = prepare_davis(args.root, key, keep_archive=args.keep_archive, sha256=args.sha256,
                                   verify_checksum=not args.no_checksum, progress=not args.no_progress)
            print(report.summary())
    except VosLabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
