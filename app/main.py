"""The FastAPI application: routers, middleware, error handlers, lifespan."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from app.auth.principal import CHECK_CREDENTIALS
from app.auth.routes import router as auth_router
from app.cities.routes import router as admin_router
from app.contacts.routes import router as contacts_router
from app.core.bodies import install_schemas
from app.core.contract import install_contract
from app.core.cors import OpenDataCORSMiddleware
from app.core.errors import install_error_handlers
from app.core.headers import SecurityHeadersMiddleware
from app.core.limits import (
    BodyLimits,
    BodySizeLimitMiddleware,
    RejectNulMiddleware,
    install_body_limit_responses,
)
from app.core.logging import RequestContextMiddleware, configure_logging
from app.core.ratelimit import install_limit_responses, limit_writes
from app.crews.routes import router as crews_router
from app.db import (
    ReadReplica,
    make_engine,
    make_read_pool,
    make_read_sessionmaker,
    make_sessionmaker,
)
from app.geocoding.service import HttpGeocoder
from app.health.routes import router as health_router
from app.home.routes import router as home_router
from app.imports.routes import MAX_IMPORT_BYTES
from app.imports.routes import router as imports_router
from app.jurisdictions.catalog import Catalog
from app.jurisdictions.routes import router as jurisdictions_router
from app.linking.routes import router as linking_router
from app.maps.routes import router as maps_router
from app.media.routes import router as photos_router
from app.media.service import PhotoPipeline
from app.notify.places import router as places_router
from app.notify.routes import router as notify_router
from app.open311.errors import Open311Middleware
from app.open311.routes import router as open311_router
from app.reports.routes import router as reports_router
from app.settings import Settings, get_settings
from app.social.demo import router as social_demo_router
from app.social.routes import router as social_router
from app.talk.routes import router as talk_router
from app.tickets.routes import router as tickets_router
from app.tickets.workflow_routes import router as workflow_router
from app.tickets.workflow_routes import templates_router
from app.workorders.routes import router as workorders_router

API_DESCRIPTION = """
Kerbside: citizens report street problems, reports of the same problem cluster into one
**ticket**, crews pull geo-filtered work orders, and every reporter hears back.

Errors are [RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) `application/problem+json`,
except under `/open311/v2/`, where they are Open311 GeoReport v2's own error document.
Coordinates are WGS84, GeoJSON order (longitude, latitude). Times are UTC, ISO 8601.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Tests install their own engine and sessionmaker before start-up.
        owns_engine = not hasattr(app.state, "engine")
        if owns_engine:
            app.state.engine = make_engine(settings)
            app.state.sessionmaker = make_sessionmaker(app.state.engine)
            app.state.read_sessionmaker = make_read_sessionmaker(app.state.engine)
            app.state.read_pool = make_read_pool(settings)
            await app.state.read_pool.open()
            if settings.read_database_url is not None:
                app.state.replica = ReadReplica(settings)
                await app.state.replica.start()
        # What start-up made lives as long as the process: keep the cyclic garbage collector
        # from scanning it again at every full collection, which paused the event loop for
        # over 100 ms (about 200,000 objects).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            app.state.photos.close()
            if app.state.geocoder is not None:
                await app.state.geocoder.close()
            if owns_engine:
                if settings.read_database_url is not None:
                    await app.state.replica.close()
                await app.state.read_pool.close()
                await app.state.engine.dispose()

    app = FastAPI(
        title="Kerbside",
        version="0.1.0",
        summary="Civic issue reporting: reports, tickets, crews, maps, Open311",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        license_info={"name": "AGPL-3.0-or-later"},
        # Served by app.home from vendored files, so they work without internet.
        docs_url=None,
        redoc_url=None,
        # Every write of every route, present and future, per client address and device.
        dependencies=[Depends(limit_writes)],
    )
    app.state.settings = settings
    app.state.catalog = Catalog()
    app.state.photos = PhotoPipeline(settings)
    # Open311 places address-only requests with it (the social worker makes its own).
    app.state.geocoder = HttpGeocoder(settings) if settings.geocoder_url else None
    install_error_handlers(app)
    app.add_middleware(RejectNulMiddleware)
    body_limits = BodyLimits(settings.max_json_body_bytes, settings.max_request_bytes)
    app.add_middleware(BodySizeLimitMiddleware, limits=body_limits)
    # Outside the two above, so that their refusals under /open311/ are Open311 errors too.
    app.add_middleware(Open311Middleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "ETag", "Location"],
        )
    # Added after (so outside) the general CORS: open data answers any allowed origin first.
    if settings.open_data_cors_origins:
        app.add_middleware(OpenDataCORSMiddleware, origins=settings.open_data_cors_origins)
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, public_base_url=settings.public_base_url)
    # Requests are matched against routes in this order: the busiest first (maps, intake,
    # work orders); maps also before tickets for /v1/tickets/clusters.
    app.include_router(maps_router)
    app.include_router(reports_router)
    app.include_router(contacts_router, dependencies=[CHECK_CREDENTIALS])
    app.include_router(workorders_router)
    app.include_router(health_router)
    app.include_router(auth_router)
    # Public routers of domains below auth: wrong credentials are still a 401 there.
    app.include_router(jurisdictions_router, dependencies=[CHECK_CREDENTIALS])
    app.include_router(imports_router)
    app.include_router(tickets_router)
    app.include_router(workflow_router)
    app.include_router(templates_router)
    app.include_router(photos_router, dependencies=[CHECK_CREDENTIALS])
    app.include_router(crews_router)
    app.include_router(notify_router, dependencies=[CHECK_CREDENTIALS])
    app.include_router(places_router, dependencies=[CHECK_CREDENTIALS])
    app.include_router(linking_router, dependencies=[CHECK_CREDENTIALS])
    app.include_router(admin_router)
    app.include_router(social_router)
    app.include_router(social_demo_router)
    app.include_router(open311_router)
    app.include_router(talk_router, dependencies=[CHECK_CREDENTIALS])
    app.include_router(home_router)
    install_schemas(app)
    install_limit_responses(app)
    body_limits.install(_route_table(app), larger_bodies(settings))
    install_body_limit_responses(app, body_limits)
    install_contract(app)
    return app


def larger_bodies(settings: Settings) -> dict[tuple[str, str], int]:
    """The write routes that take more than a JSON body (``KERBSIDE_MAX_JSON_BODY_BYTES``),
    and how much; every other route takes at most that (413 problem+json beyond)."""
    photos = settings.max_request_bytes  # up to max_photos_per_report photos, and the report
    geometry = settings.max_geometry_body_bytes  # boundaries and areas as GeoJSON
    return {
        ("POST", "/v1/reports"): photos,
        ("POST", "/v1/workorders/{reference}/done"): photos,  # after-photos
        # Open311's POST requests: a report and its `media` file, in a form or multipart body.
        ("POST", "/open311/v2/requests.json"): photos,
        ("POST", "/open311/v2/requests.xml"): photos,
        ("POST", "/open311/v2/requests"): photos,
        ("POST", "/v1/imports"): MAX_IMPORT_BYTES + 64 * 1024,  # the file and its multipart
        ("PUT", "/v1/admin/jurisdictions/{slug}/city"): geometry,
        ("POST", "/v1/admin/jurisdictions"): geometry,
        ("PUT", "/v1/admin/jurisdictions/{slug}"): geometry,
        ("PUT", "/v1/admin/jurisdictions/{slug}/areas/{kind}/{code}"): geometry,
    }


def _route_table(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route, through included routers."""
    found: list[tuple[str, str]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if hasattr(route, "original_router"):  # an included router (FastAPI >= 0.120)
                walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif isinstance(route, APIRoute):
                found.extend((method, prefix + route.path) for method in route.methods or ())

    walk(list(app.routes), "")
    return found


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory app.main:app_factory`` (used by ``kerbside serve``)."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
