"""The playground's third-party browser files: pinned npm packages, committed, checked.

``app/api/static/playground/vendor/vendor.json`` pins each package (name, version, the registry's
``sha512`` integrity of its tarball, its licence) and lists the files taken from the tarball
with their sha256. The files are committed beside it, so neither the Docker build nor CI
needs the npm registry (the service must work offline, and a build that fetches at build
time fails whenever the registry does); the cost is about 1.4 MB in the repository.

``python -m app.playground_assets check`` (offline, also run by the tests) verifies every
committed file against the manifest. ``python -m app.playground_assets fetch`` downloads the
pinned tarballs again with ``npm pack`` (the npm client), refuses a tarball whose integrity
differs from the pin, and writes the listed files; ``fetch --update`` after changing a version
and its integrity in vendor.json rewrites the file hashes (review the diff, then commit).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

VENDOR_DIR = Path(__file__).parent / "static" / "playground" / "vendor"
MANIFEST = VENDOR_DIR / "vendor.json"


def load_manifest() -> dict[str, Any]:
    """The pinned packages."""
    manifest: dict[str, Any] = json.loads(MANIFEST.read_text())
    return manifest


def sha256_of(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sri_sha512(data: bytes) -> str:
    """The npm registry's ``integrity`` form of ``data``: ``sha512-<base64>``."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def check_vendored() -> list[str]:
    """Problems with the committed files (missing, or not the pinned bytes); empty if none."""
    problems = []
    for package in load_manifest()["packages"]:
        for source, entry in package["files"].items():
            path = VENDOR_DIR / package["dir"] / entry["as"]
            if not path.is_file():
                problems.append(f"{package['name']}: {source} is missing ({path})")
            elif sha256_of(path.read_bytes()) != entry["sha256"]:
                problems.append(f"{package['name']}: {path.name} is not the pinned file")
    return problems


def _npm_pack(spec: str, into: Path) -> bytes:
    """The tarball of ``spec`` (``name@version``), downloaded by the npm client."""
    done = subprocess.run(
        ["npm", "pack", spec, "--json", "--pack-destination", str(into)],
        capture_output=True,
        text=True,
        check=True,
    )
    filename = json.loads(done.stdout)[0]["filename"]
    return (into / filename.replace("@", "").replace("/", "-")).read_bytes()


def fetch(update: bool = False) -> None:
    """Download the pinned tarballs, check their integrity, write the listed files."""
    manifest = load_manifest()
    with tempfile.TemporaryDirectory() as tmp:
        for package in manifest["packages"]:
            tarball = _npm_pack(f"{package['name']}@{package['version']}", Path(tmp))
            if sri_sha512(tarball) != package["integrity"]:
                raise SystemExit(
                    f"{package['name']}: the tarball's integrity is not the pinned one"
                )
            with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
                for source, entry in package["files"].items():
                    member = tar.extractfile(f"package/{source}")
                    if member is None:
                        raise SystemExit(f"{package['name']}: {source} is not in the tarball")
                    data = member.read()
                    if sha256_of(data) != entry["sha256"] and not update:
                        raise SystemExit(f"{package['name']}: {source} differs from the manifest")
                    entry["sha256"] = sha256_of(data)
                    target = VENDOR_DIR / package["dir"] / entry["as"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
    if update:
        MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``check`` the committed files, or ``fetch`` them again from the npm registry."""
    parser = argparse.ArgumentParser(prog="python -m app.playground_assets")
    parser.add_argument("command", choices=("check", "fetch"))
    parser.add_argument("--update", action="store_true", help="fetch: rewrite file hashes")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        fetch(update=args.update)
    problems = check_vendored()
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
