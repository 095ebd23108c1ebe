"""Real DVC repositories in tmp_path: versions of a small data directory, a local remote."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cxrflow.versioning import DataVersion, commit_version


def git_repo(root: Path) -> Path:
    """An empty git work tree."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def write_version(root: Path, files: dict[str, bytes], remote: Path) -> DataVersion:
    """Make `root/data` hold exactly `files` and record it as a version (pushed to `remote`)."""
    data = root / "data"
    if data.exists():
        shutil.rmtree(data)
    for rel, content in files.items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(content)
    return commit_version(root, data, str(remote))


def tree_hashes(directory: Path) -> dict[str, str]:
    """Relative path -> md5 of every file under `directory` (version.json included)."""
    return {
        p.relative_to(directory).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def object_path(store: Path, oid: str) -> Path:
    """Where DVC 3 keeps object `oid` in a cache or a local remote."""
    return store / "files" / "md5" / oid[:2] / oid[2:]


def drop_version(root: Path, remote: Path, md5: str) -> None:
    """Delete version `md5`'s listing from the cache and the remote (as if never pushed)."""
    for store in (root / ".dvc" / "cache", remote):
        object_path(store, md5 + ".dir").unlink(missing_ok=True)


def listing(store: Path, md5: str) -> list[dict[str, str]]:
    return json.loads(object_path(store, md5 + ".dir").read_text())


def set_remote_url(root: Path, url: str) -> None:
    """Point the default remote of `root` at `url`."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo, repo.config.edit() as conf:
        name = conf["core"]["remote"]
        conf["remote"][name] = {"url": url}


def closed_port() -> int:
    """A local TCP port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def http_remote(directory: Path) -> Iterator[str]:
    """Serve `directory` over HTTP (a read-only DVC remote of another type than local)."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
