"""Configuration, read from the environment with the prefix ``KERBSIDE_``.

Every setting is documented in ``docs/configuration.md``; keep the two in step.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Secrets that ship in the repository. They are fine on a laptop and refused in production.
DEV_SECRET = "kerbside-development-secret-change-me"  # noqa: S105


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KERBSIDE_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"

    # Database. Unset means: start the project-local embedded PostGIS cluster.
    database_url: str | None = None
    database_pool_size: int = Field(default=20, ge=1, le=200)
    database_max_overflow: int = Field(default=10, ge=0, le=200)
    database_statement_timeout_ms: int = Field(default=15_000, ge=0)
    database_pre_ping: bool = False
    # While the database is down, a request fails fast with a 503 (Retry-After) instead of
    # hanging: opening a connection gives up after this long (libpq counts whole seconds,
    # at least 2), and so does waiting for a free connection of a pool.
    database_connect_timeout_seconds: int = Field(default=3, ge=2, le=60)
    database_pool_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    # Behind PgBouncer (or another pooler) in transaction mode: no server-side prepared
    # statements and no session options in the startup packet (docs/scaling.md).
    database_transaction_pooler: bool = False
    # A streaming replica for the map, tile, statistics and export reads (docs/operations.md).
    # It is used while it answers and lags at most ``read_replica_max_lag_seconds``; otherwise
    # those reads go to the primary, checked every ``read_replica_check_seconds``.
    read_database_url: str | None = None
    read_replica_max_lag_seconds: float = Field(default=10.0, gt=0, le=3600)
    read_replica_check_seconds: float = Field(default=2.0, gt=0, le=300)

    # Embedded cluster (used only when database_url is unset).
    embedded_dir: Path = PROJECT_ROOT / ".kerbside"
    embedded_port: int = Field(default=54329, ge=1024, le=65535)

    # HTTP.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    public_base_url: str = "http://127.0.0.1:8000"
    cors_origins: list[str] = []  # every route, for the city's own web apps (docs/auth.md)
    # Public reads (tiles, GeoJSON, OGC API, stats, public tickets), without credentials;
    # ["*"]: any origin, []: none (app/core/cors.py).
    open_data_cors_origins: list[str] = ["*"]
    # The largest request body of any route (photos); each route has its own maximum below it
    # (docs/privacy.md, "Request sizes"): JSON bodies this much, boundaries and areas that.
    max_request_bytes: int = Field(default=40 * 1024 * 1024, ge=1024)
    max_json_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_geometry_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)

    # Auth.
    secret_key: SecretStr = SecretStr(DEV_SECRET)
    jwt_lifetime_seconds: int = Field(default=3600 * 24 * 7, ge=60)

    # Logging.
    log_level: str = "INFO"
    log_json: bool = True

    # Photos.
    media_dir: Path = PROJECT_ROOT / ".kerbside" / "media"
    photo_storage: Literal["local", "s3"] = "local"
    photo_s3_bucket: str | None = None
    photo_s3_endpoint_url: str | None = None
    photo_s3_region: str | None = None
    photo_public_base_url: str | None = None  # a CDN or bucket URL; unset: the API serves them
    max_photos_per_report: int = Field(default=6, ge=0, le=20)
    max_photo_bytes: int = Field(default=15 * 1024 * 1024, ge=1024)
    max_photo_pixels: int = Field(default=40_000_000, ge=10_000)
    photo_max_edge: int = Field(default=2048, ge=256, le=8192)
    # Photos are accepted at once and processed afterwards by the worker (docs/intake.md).
    photo_threads: int = Field(default=1, ge=1, le=32)  # photos decoded at once per process
    photo_decode_nice: int = Field(default=10, ge=0, le=19)  # lower CPU priority of decoding
    photo_max_attempts: int = Field(default=3, ge=1, le=20)
    # Refuse new photo uploads (503, Retry-After) while this many wait to be processed; 0: never.
    photo_max_pending: int = Field(default=2000, ge=0)

    # Notifications (docs/notifications.md): attempts before a message is dead, and the
    # backoff between them (doubling from the first, capped, with jitter).
    notify_max_attempts: int = Field(default=8, ge=1, le=50)
    notify_backoff_seconds: float = Field(default=30.0, gt=0, le=3600)
    notify_backoff_max_seconds: float = Field(default=3600.0, gt=0, le=86400)
    # Delivery in batches: rows one transaction claims, sends at once per batch, and how many
    # delivery jobs may share a backlog (across every worker).
    notify_batch_size: int = Field(default=200, ge=1, le=5000)
    notify_send_concurrency: int = Field(default=16, ge=1, le=512)
    notify_parallel_jobs: int = Field(default=4, ge=1, le=64)

    # Background jobs (`kerbside worker`, docs/architecture.md "Jobs").
    worker_concurrency: int = Field(default=2, ge=1, le=64)  # jobs one worker runs at once
    worker_heartbeat_seconds: float = Field(default=10.0, gt=0, le=300)
    # A running job whose worker sent no heartbeat for this long is retried elsewhere.
    worker_stalled_after_seconds: float = Field(default=60.0, gt=0, le=3600)

    # Mail (account verification and password reset). Unset host: mail is logged, not sent.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_from: str = "Kerbside <no-reply@localhost>"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    # Outbound channels (app/channels): every HTTP call has these timeouts.
    channels_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    channels_read_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    # A social post's photo: the whole download (lookups and redirects included).
    social_photo_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # Outside production, a channel without credentials writes its messages here instead
    # (one JSON object a line), so the demo shows what each reporter received.
    channels_sink_file: Path = PROJECT_ROOT / ".kerbside" / "sink" / "messages.jsonl"
    # Email notifications go through the SMTP server above (KERBSIDE_SMTP_*).
    email_from: str | None = None  # unset: KERBSIDE_SMTP_FROM
    email_message_id_domain: str | None = None  # unset: the host of the public base URL
    # Mobile push through FCM HTTP v1 (Android, and iOS through FCM's APNs relay).
    fcm_base_url: str = "https://fcm.googleapis.com"
    fcm_service_account_file: Path | None = None  # the service account's JSON key file
    fcm_service_account_json: SecretStr | None = None  # or its text
    fcm_project_id: str | None = None  # unset: the service account's project
    fcm_token_url: str | None = None  # unset: the service account's token_uri
    fcm_ttl_seconds: int = Field(default=86_400, ge=0, le=2_419_200)
    # Web Push (VAPID, RFC 8292; payloads encrypted per RFC 8291).
    webpush_vapid_private_key: SecretStr | None = None  # PEM, or base64url of the raw key
    webpush_vapid_subject: str | None = None  # mailto: or https: contact for push services
    webpush_ttl_seconds: int = Field(default=86_400, ge=0, le=2_419_200)
    # SMS through a Twilio-compatible REST API.
    sms_base_url: str = "https://api.twilio.com"
    sms_account_sid: str | None = None
    sms_auth_token: SecretStr | None = None
    sms_from: str | None = None  # a sender number (E.164); or:
    sms_messaging_service_sid: str | None = None
    sms_status_callback_url: str | None = None
    # Outbound webhooks to partner systems (Standard Webhooks). Private, link-local and
    # loopback targets are refused; loopback may be allowed for tests and demos only.
    webhook_allow_loopback: bool = False
    # Photos an Open311 client names by media_url, fetched from its server after filing:
    # public addresses only, as webhooks; loopback for tests and demos, refused in production.
    media_url_allow_loopback: bool = False
    media_url_timeout_seconds: float = Field(default=30.0, gt=0, le=600)

    # Social intake (docs/social.md). The X API's base URL: unset, https://api.x.com in
    # production and the local sink for replies elsewhere (the demo); set (a local fake),
    # the real adapter there. An account in the city file may name its own base_url.
    x_api_base_url: str | None = None
    # The X app's consumer secret: signs webhook deliveries and answers the CRC challenge;
    # unset, the webhook route answers 404.
    x_consumer_secret: SecretStr | None = None
    x_poll_max_pages: int = Field(default=10, ge=1, le=100)  # 100 posts each; X keeps 800
    # A WhatsApp or Messenger reporting chat silent this long is closed (the periodic job).
    social_dialogue_timeout_minutes: int = Field(default=120, ge=5, le=24 * 60)
    # Linked accounts (app/linking; docs/notifications.md, "Notices on your own account"):
    # how long a started linking (an OAuth state, a Messenger ref) holds; where the Mastodon
    # server (or X) sends the citizen back with the code, "{platform}" filled in (registered
    # with the city's app; unset: Mastodon out of band, the server shows the code for the
    # citizen's app to send us, and no X linking); the
    # citizen's own page a notice links to (unset: {public_base_url}/v1/me/reports).
    linking_state_minutes: int = Field(default=15, ge=2, le=60)
    linking_redirect_uri: str | None = None
    citizen_page_url: str | None = None
    # A resident's own Mastodon server is a host they type in: public addresses only (the
    # webhooks' guard); loopback, reached over http, for tests and demos, refused in production.
    linking_allow_loopback: bool = False
    # A Nominatim- or Photon-compatible geocoder for addresses named in posts (searched
    # within the jurisdiction); unset: the city file's street list only.
    geocoder_url: str | None = None
    geocoder_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    # Proxies (load balancers) whose X-Forwarded-For and X-Forwarded-Proto are believed:
    # addresses or networks, comma-separated ("*": any). Empty (the default): none, so every
    # per-client limit counts the connecting peer, which a client cannot forge.
    trusted_proxies: str = ""
    # How long an idle keep-alive connection is held open (slow or idle clients let go).
    http_keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    # How long a client may take to send a request's headers (slow clients let go).
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    # Personal data (contacts, reporter names, consent evidence) is dropped from tickets
    # closed more than this many days ago (docs/privacy.md); a city file's
    # privacy.contact_retention_days overrides it for its jurisdiction.
    privacy_contact_retention_days: int = Field(default=180, ge=1, le=36_500)
    # Tickets per transaction of the retention job.
    privacy_batch_size: int = Field(default=500, ge=1, le=10_000)
    # Talk signals (app/talk: place, time, service, mood and terms of each report and post)
    # older than this are deleted by a nightly job. The spike baseline reads 8 weeks and the
    # longest talk query a year; hence the floor and the default.
    talk_signal_retention_days: int = Field(default=400, ge=70, le=36_500)

    # Where rate limit counters live: "postgres" (the table rate_limit_hit, shared by every
    # process and host; one statement per limited request) or "memory" (per API process: N
    # processes allow N times a limit; for tests and single-process tools).
    rate_limit_store: Literal["memory", "postgres"] = "postgres"
    # Every write request (any method but GET/HEAD/OPTIONS, every route) per minute: per
    # client address, per account or API key, per device (X-Device-Id). 0 turns one off; a
    # fuzzing run raises them.
    rate_limit_writes_per_address_per_minute: int = Field(default=300, ge=0)
    rate_limit_writes_per_account_per_minute: int = Field(default=120, ge=0)
    rate_limit_writes_per_device_per_minute: int = Field(default=60, ge=0)
    # Rate limits, per client; 0 turns one off.
    rate_limit_login_per_minute: int = Field(default=10, ge=0)
    # Sign-in attempts from one client address whatever the account (one address trying
    # many accounts); carrier NAT shares addresses, hence more than per account.
    rate_limit_login_per_address_per_minute: int = Field(default=20, ge=0)
    rate_limit_register_per_minute: int = Field(default=10, ge=0)
    rate_limit_account_mail_per_minute: int = Field(default=5, ge=0)
    # Reports, supports and follows per client address (carrier NAT shares addresses).
    rate_limit_reports_per_minute: int = Field(default=60, ge=0)

    # Open311 GeoReport v2 (docs/open311.md).
    # Rows one GET requests answers at most (the spec's 1000), and its page_size ceiling.
    open311_max_requests: int = Field(default=1_000, ge=1, le=10_000)
    # Days of the default window of GET requests when no date is given (the spec's 90).
    open311_default_days: int = Field(default=90, ge=1, le=3650)
    # A single-city deployment may take any jurisdiction_id as its own: clients send
    # whatever they were configured with (validators hard-code one of their own).
    open311_ignore_unknown_jurisdiction: bool = False
    # Discovery's contact and key_service texts (defaults name the API documentation).
    open311_contact: str | None = None
    open311_key_service: str | None = None

    # Maps and open data (docs/maps.md).
    # Largest bbox of clusters counted live (zoom >= 15); feature pages take any bbox.
    map_max_bbox_km2: float = Field(default=25.0, gt=0)
    map_bbox_optional_below: int = Field(default=10_000, ge=0)  # tickets; above: bbox required
    map_max_features: int = Field(default=10_000, ge=1, le=100_000)  # one page at most
    map_default_features: int = Field(default=1_000, ge=1, le=100_000)
    map_max_cluster_bbox_km2: float = Field(default=250_000.0, gt=0)
    map_tile_points_min_zoom: int = Field(default=14, ge=0, le=22)  # below: clusters
    map_tile_max_points: int = Field(default=10_000, ge=1)
    map_cache_max_age_seconds: int = Field(default=60, ge=0)  # Cache-Control of tiles, stats
    map_stats_cache_seconds: float = Field(default=60.0, ge=0)
    map_export_batch_rows: int = Field(default=1_000, ge=100, le=100_000)
    # The dashboard's basemap: a MapLibre style URL (a city's own tile server, a hosted
    # style); unset: a plain background, nothing loaded from elsewhere.
    map_basemap_style_url: str | None = None

    # Work orders: every filter is bounded, so one request never scans the whole city.
    workorders_page_size: int = Field(default=50, ge=1, le=1000)
    workorders_max_page_size: int = Field(default=200, ge=1, le=1000)
    workorders_max_radius_m: float = Field(default=5_000.0, gt=0, le=100_000)
    workorders_max_bbox_km2: float = Field(default=400.0, gt=0)
    workorders_max_polygon_km2: float = Field(default=400.0, gt=0)
    workorders_max_polygon_vertices: int = Field(default=2_000, ge=4, le=100_000)
    workorders_route_max_stops: int = Field(default=100, ge=1, le=500)
    max_completion_photos: int = Field(default=6, ge=0, le=20)

    @field_validator("public_base_url", "fcm_base_url", "sms_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> Settings:
        if self.env == "production":
            if self.secret_key.get_secret_value() == DEV_SECRET:
                raise ValueError("KERBSIDE_SECRET_KEY must be set to a private value in production")
            if len(self.secret_key.get_secret_value()) < 32:
                raise ValueError("KERBSIDE_SECRET_KEY must be at least 32 characters in production")
            if self.database_url is None:
                raise ValueError(
                    "KERBSIDE_DATABASE_URL must be set in production "
                    "(the embedded cluster is for development only)"
                )
            if self.webhook_allow_loopback:
                raise ValueError(
                    "KERBSIDE_WEBHOOK_ALLOW_LOOPBACK is for tests and demos, not production"
                )
            if self.media_url_allow_loopback:
                raise ValueError(
                    "KERBSIDE_MEDIA_URL_ALLOW_LOOPBACK is for tests and demos, not production"
                )
            if self.linking_allow_loopback:
                raise ValueError(
                    "KERBSIDE_LINKING_ALLOW_LOOPBACK is for tests and demos, not production"
                )
        if self.webpush_vapid_private_key is not None and not self.webpush_vapid_subject:
            raise ValueError(
                "KERBSIDE_WEBPUSH_VAPID_SUBJECT (mailto: or https:) must be set with the VAPID key"
            )
        return self

    @property
    def async_database_url(self) -> str:
        """The configured URL with the psycopg 3 async driver named, as SQLAlchemy wants it."""
        if self.database_url is None:
            raise RuntimeError("database_url is not set; start the embedded cluster first")
        return to_sqlalchemy_url(self.database_url)


def to_sqlalchemy_url(url: str) -> str:
    """Accept ``postgres://``, ``postgresql://`` or an explicit driver; return ``postgresql+psycopg://``."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg_async://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"unsupported database URL scheme in {url.split('://', 1)[0]!r}")


def to_libpq_url(url: str) -> str:
    """The same URL as libpq (psql, pgbench, psycopg.connect) wants it."""
    return "postgresql://" + to_sqlalchemy_url(url).split("://", 1)[1]


@lru_cache
def get_settings() -> Settings:
    return Settings()
