"""One typed settings object per process, read from the environment (and `.env`)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


def load_dotenv(path: Path = Path(".env")) -> None:
    """Sets variables from a `.env` file that the environment does not already set."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        os.environ.setdefault(key.strip(), value.strip().strip("'\""))


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"setting {name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    mongo_uri: str
    mongo_db: str
    redis_url: str
    auth_addr: str
    upload_addr: str
    task_addr: str
    catalog_addr: str
    grpc_listen: str
    log_level: str
    jwt_issuer: str
    jwt_audience: str
    access_token_ttl_seconds: int
    jwt_private_key_file: Path
    service_key_file: Path
    max_upload_bytes: int
    upload_storage: str
    upload_dir: Path
    ingest_batch_size: int
    task_lease_seconds: int
    bcrypt_rounds: int
    job_visibility_timeout_seconds: int
    worker_concurrency: int
    worker_name: str
    gateway_host: str
    gateway_port: int
    gateway_admin_port: int
    descriptor_set: Path
    task_sweep_seconds: int
    file_retention_seconds: int
    upload_orphan_grace_seconds: int
    catalog_cache_ttl_seconds: int

    @classmethod
    def from_env(cls) -> Settings:
        load_dotenv()
        env = os.environ.get
        data_dir = Path(env("MARQUEE_DATA_DIR", ".marquee")).resolve()
        return cls(
            data_dir=data_dir,
            mongo_uri=env("MONGO_URI", "mongodb://127.0.0.1:27017/?directConnection=true"),
            mongo_db=env("MONGO_DB", "marquee"),
            redis_url=env("REDIS_URL", "redis://127.0.0.1:6379/0"),
            auth_addr=env("AUTH_ADDR", "127.0.0.1:50051"),
            upload_addr=env("UPLOAD_ADDR", "127.0.0.1:50052"),
            task_addr=env("TASK_ADDR", "127.0.0.1:50053"),
            catalog_addr=env("CATALOG_ADDR", "127.0.0.1:50054"),
            grpc_listen=env("GRPC_LISTEN", ""),
            log_level=env("LOG_LEVEL", "INFO"),
            jwt_issuer=env("JWT_ISSUER", "marquee"),
            jwt_audience=env("JWT_AUDIENCE", "marquee"),
            access_token_ttl_seconds=_int("ACCESS_TOKEN_TTL_SECONDS", 900),
            jwt_private_key_file=Path(
                env("JWT_PRIVATE_KEY_FILE", str(data_dir / "keys" / "jwt-private.pem"))
            ),
            service_key_file=Path(env("SERVICE_KEY_FILE", str(data_dir / "keys" / "service.key"))),
            max_upload_bytes=_int("MAX_UPLOAD_BYTES", 1 << 30),
            upload_storage=env("UPLOAD_STORAGE", "local"),
            upload_dir=Path(env("UPLOAD_DIR", str(data_dir / "uploads"))),
            ingest_batch_size=_int("INGEST_BATCH_SIZE", 1000),
            task_lease_seconds=_int("TASK_LEASE_SECONDS", 60),
            bcrypt_rounds=_int("BCRYPT_ROUNDS", 12),
            job_visibility_timeout_seconds=_int("JOB_VISIBILITY_TIMEOUT_SECONDS", 300),
            worker_concurrency=_int("WORKER_CONCURRENCY", 1),
            worker_name=env("WORKER_NAME", "marquee@%h"),
            gateway_host=env("GATEWAY_HOST", "127.0.0.1"),
            gateway_port=_int("GATEWAY_PORT", 8000),
            gateway_admin_port=_int("GATEWAY_ADMIN_PORT", 9901),
            descriptor_set=Path(env("DESCRIPTOR_SET", "build/gen/marquee.pb")).resolve(),
            task_sweep_seconds=_int("TASK_SWEEP_SECONDS", 30),
            file_retention_seconds=_int("FILE_RETENTION_SECONDS", 7 * 24 * 3600),
            upload_orphan_grace_seconds=_int("UPLOAD_ORPHAN_GRACE_SECONDS", 24 * 3600),
            catalog_cache_ttl_seconds=_int("CATALOG_CACHE_TTL_SECONDS", 300),
        )

    def service_key(self) -> str:
        """The shared key that services present to each other on internal calls.

        `SERVICE_KEY` wins; otherwise the key file is created once (mode 0600) and reused, so
        every process of a local stack agrees without configuration.
        """
        configured = os.environ.get("SERVICE_KEY")
        if configured:
            return configured
        path = self.service_key_file
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
        return path.read_text().strip()
