"""One typed settings object per process, read from the environment (and `.env`)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from services.common import registry


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
    # The embedded valkey's maxmemory (devstack; compose passes it to its redis): the catalog's
    # query cache shares Redis with the job queue, and only keys with a TTL may be evicted.
    redis_maxmemory_bytes: int
    # Each registered service's address (`<NAME>_ADDR`), by its registry name.
    addrs: dict[str, str]
    grpc_listen: str
    log_level: str
    jwt_issuer: str
    jwt_audience: str
    access_token_ttl_seconds: int
    # A refresh token's own lifetime, and a session's absolute one (from its login).
    refresh_token_ttl_seconds: int
    session_max_seconds: int
    # The administrator the auth service creates or updates at start when a password is set
    # (empty: none). Kept out of repr so that no log of the settings shows it.
    admin_username: str
    admin_email: str
    admin_password: str = field(repr=False)
    jwt_private_key_file: Path
    service_key_file: Path
    max_upload_bytes: int
    upload_storage: str
    upload_dir: Path
    # Per-user quotas of the upload service: the bytes of their files still stored, and uploads
    # in progress at once (leases in Mongo, renewed while the upload runs).
    upload_max_stored_bytes_per_user: int
    upload_max_concurrent_per_user: int
    upload_slot_lease_seconds: int
    ingest_batch_size: int
    csv_max_row_chars: int
    csv_max_header_chars: int
    csv_max_columns: int
    # Where the operation jobs spill rows and keys (dedupe, unique); "" for the system's
    # temporary directory.
    csv_ops_spill_dir: str
    # Processes that parse the blocks of an operation's file, beside the job's own (1: none),
    # for a file of at least operation_parallel_min_bytes.
    operation_processes: int
    operation_parallel_min_bytes: int
    task_lease_seconds: int
    # Open WatchTask and ExportTaskErrors streams, each holding a task-service thread.
    task_streams_per_user: int
    task_streams_total: int
    # Pending and processing tasks per user; rejected rows stored per task; /tasks page sizes.
    task_max_pending_per_user: int
    task_max_stored_rejections: int
    task_list_default_limit: int
    task_list_max_limit: int
    bcrypt_rounds: int
    password_min_chars: int
    # Per-username throttling of failed logins (services/auth/throttle.py).
    login_max_failures: int
    login_failure_window_seconds: int
    login_lock_seconds: int
    login_max_lock_seconds: int
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
    catalog_cache_max_page_bytes: int
    # How often the ratings service pushes unconfirmed vote counts to the catalog and recounts.
    ratings_sync_seconds: int
    # How long a computed recommendation list is served from Redis (it is also retired at once
    # by any change of its inputs), and the minimum vote count m of the weighted rating.
    recommendations_cache_ttl_seconds: int
    recommendations_min_votes: int
    # Gateway limits on slow and abusive clients (gateway/render.py writes them into Envoy).
    gateway_request_headers_timeout_seconds: int
    gateway_idle_timeout_seconds: int
    gateway_max_connections: int
    gateway_xff_trusted_hops: int
    gateway_auth_rate_limit: int
    gateway_auth_rate_window_seconds: int
    gateway_user_rate_limit: int
    gateway_user_rate_window_seconds: int
    gateway_rate_limit_max_keys: int
    # The largest REST request body Envoy takes on a transcoded route other than the upload.
    gateway_max_json_body_bytes: int
    upload_max_seconds: int
    upload_min_bytes_per_second: int
    upload_min_rate_grace_seconds: int

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
            redis_maxmemory_bytes=_int("REDIS_MAXMEMORY_BYTES", 64 << 20),
            addrs={s.name: env(s.addr_setting, s.default_addr) for s in registry.SERVICES},
            grpc_listen=env("GRPC_LISTEN", ""),
            log_level=env("LOG_LEVEL", "INFO"),
            jwt_issuer=env("JWT_ISSUER", "marquee"),
            jwt_audience=env("JWT_AUDIENCE", "marquee"),
            access_token_ttl_seconds=_int("ACCESS_TOKEN_TTL_SECONDS", 900),
            refresh_token_ttl_seconds=_int("REFRESH_TOKEN_TTL_SECONDS", 7 * 24 * 3600),
            session_max_seconds=_int("SESSION_MAX_SECONDS", 30 * 24 * 3600),
            # Empty means the default, as compose passes an unset variable on.
            admin_username=env("MARQUEE_ADMIN_USERNAME") or "admin",
            admin_email=env("MARQUEE_ADMIN_EMAIL") or "admin@marquee.local",
            admin_password=env("MARQUEE_ADMIN_PASSWORD", ""),
            jwt_private_key_file=Path(
                env("JWT_PRIVATE_KEY_FILE", str(data_dir / "keys" / "jwt-private.pem"))
            ),
            service_key_file=Path(env("SERVICE_KEY_FILE", str(data_dir / "keys" / "service.key"))),
            max_upload_bytes=_int("MAX_UPLOAD_BYTES", 1 << 30),
            upload_storage=env("UPLOAD_STORAGE", "local"),
            upload_dir=Path(env("UPLOAD_DIR", str(data_dir / "uploads"))),
            upload_max_stored_bytes_per_user=_int("UPLOAD_MAX_STORED_BYTES_PER_USER", 10 << 30),
            upload_max_concurrent_per_user=_int("UPLOAD_MAX_CONCURRENT_PER_USER", 4),
            upload_slot_lease_seconds=_int("UPLOAD_SLOT_LEASE_SECONDS", 30),
            ingest_batch_size=_int("INGEST_BATCH_SIZE", 1000),
            csv_max_row_chars=_int("CSV_MAX_ROW_CHARS", 1 << 20),
            csv_max_header_chars=_int("CSV_MAX_HEADER_CHARS", 64 << 10),
            csv_max_columns=_int("CSV_MAX_COLUMNS", 256),
            csv_ops_spill_dir=env("CSV_OPS_SPILL_DIR", ""),
            operation_processes=_int("OPERATION_PROCESSES", 2),
            operation_parallel_min_bytes=_int("OPERATION_PARALLEL_MIN_BYTES", 512 << 20),
            task_lease_seconds=_int("TASK_LEASE_SECONDS", 60),
            task_streams_per_user=_int("TASK_STREAMS_PER_USER", 8),
            task_streams_total=_int("TASK_STREAMS_TOTAL", 32),
            task_max_pending_per_user=_int("TASK_MAX_PENDING_PER_USER", 10),
            task_max_stored_rejections=_int("TASK_MAX_STORED_REJECTIONS", 10_000),
            task_list_default_limit=_int("TASK_LIST_DEFAULT_LIMIT", 50),
            task_list_max_limit=_int("TASK_LIST_MAX_LIMIT", 100),
            bcrypt_rounds=_int("BCRYPT_ROUNDS", 12),
            password_min_chars=_int("PASSWORD_MIN_CHARS", 8),
            login_max_failures=_int("LOGIN_MAX_FAILURES", 5),
            login_failure_window_seconds=_int("LOGIN_FAILURE_WINDOW_SECONDS", 900),
            login_lock_seconds=_int("LOGIN_LOCK_SECONDS", 30),
            login_max_lock_seconds=_int("LOGIN_MAX_LOCK_SECONDS", 900),
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
            catalog_cache_max_page_bytes=_int("CATALOG_CACHE_MAX_PAGE_BYTES", 1 << 20),
            ratings_sync_seconds=_int("RATINGS_SYNC_SECONDS", 30),
            recommendations_cache_ttl_seconds=_int("RECOMMENDATIONS_CACHE_TTL_SECONDS", 600),
            recommendations_min_votes=_int("RECOMMENDATIONS_MIN_VOTES", 100),
            gateway_request_headers_timeout_seconds=_int(
                "GATEWAY_REQUEST_HEADERS_TIMEOUT_SECONDS", 10),
            gateway_idle_timeout_seconds=_int("GATEWAY_IDLE_TIMEOUT_SECONDS", 60),
            gateway_max_connections=_int("GATEWAY_MAX_CONNECTIONS", 1000),
            gateway_xff_trusted_hops=_int("GATEWAY_XFF_TRUSTED_HOPS", 0),
            gateway_auth_rate_limit=_int("GATEWAY_AUTH_RATE_LIMIT", 120),
            gateway_auth_rate_window_seconds=_int("GATEWAY_AUTH_RATE_WINDOW_SECONDS", 60),
            gateway_user_rate_limit=_int("GATEWAY_USER_RATE_LIMIT", 100),
            gateway_user_rate_window_seconds=_int("GATEWAY_USER_RATE_WINDOW_SECONDS", 10),
            gateway_rate_limit_max_keys=_int("GATEWAY_RATE_LIMIT_MAX_KEYS", 10000),
            gateway_max_json_body_bytes=_int("GATEWAY_MAX_JSON_BODY_BYTES", 1 << 20),
            upload_max_seconds=_int("UPLOAD_MAX_SECONDS", 3600),
            upload_min_bytes_per_second=_int("UPLOAD_MIN_BYTES_PER_SECOND", 16384),
            upload_min_rate_grace_seconds=_int("UPLOAD_MIN_RATE_GRACE_SECONDS", 30),
        )

    def addr(self, service: str) -> str:
        """Where a registered service listens (its `<NAME>_ADDR`)."""
        return self.addrs[registry.spec(service).name]

    def service_key(self) -> str:
        """The shared key that services present to each other on internal calls.

        `SERVICE_KEY` wins; otherwise the key file is created once (mode 0600, in a 0700
        directory) and reused, so every process of a local stack agrees without configuration.
        A key under MIN_SERVICE_KEY_BYTES stops the process: an empty one would let any caller
        that sends no key through, and a short one can be guessed.
        """
        configured = os.environ.get("SERVICE_KEY")
        if configured is not None:
            return _long_enough(configured, "SERVICE_KEY")
        return _long_enough(_read_or_create_key(self.service_key_file),
                            f"the key file {self.service_key_file}")


# 256 bits, what `openssl rand -base64 32` and the generated key file give.
MIN_SERVICE_KEY_BYTES = 32


def _long_enough(key: str, source: str) -> str:
    if len(key.encode()) < MIN_SERVICE_KEY_BYTES:
        raise SystemExit(
            f"the service key from {source} is {len(key.encode())} bytes; it must be at least "
            f"{MIN_SERVICE_KEY_BYTES}: set SERVICE_KEY to e.g. `openssl rand -base64 32`, or "
            "unset it to use the generated key file")
    return key


def _read_or_create_key(path: Path) -> str:
    """The key in `path`, which the first caller creates. The key is written to a temporary
    file that is then linked into place, so no process ever reads a half-written (empty) key
    file, whichever wins the race to create it."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process was first: its key is the one
        finally:
            draft.unlink()
    return path.read_text().strip()
