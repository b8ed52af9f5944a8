"""The FastAPI application: routers, middleware, error handlers, lifespan."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.auth.principal import CHECK_CREDENTIALS
from app.auth.routes import router as auth_router
from app.cities.routes import router as admin_router
from app.contacts.routes import router as contacts_router
from app.core.bodies import install_schemas
from app.core.cors import OpenDataCORSMiddleware
from app.core.errors import install_error_handlers
from app.core.headers import SecurityHeadersMiddleware
from app.core.limits import BodySizeLimitMiddleware, RejectNulMiddleware
from app.core.logging import RequestContextMiddleware, configure_logging
from app.crews.routes import router as crews_router
from app.db import make_engine, make_read_pool, make_read_sessionmaker, make_sessionmaker
from app.health.routes import router as health_router
from app.home.routes import router as home_router
from app.imports.routes import router as imports_router
from app.jurisdictions.catalog import Catalog
from app.jurisdictions.routes import router as jurisdictions_router
from app.maps.routes import router as maps_router
from app.media.routes import router as photos_router
from app.media.service import PhotoPipeline
from app.notify.places import router as places_router
from app.notify.routes import router as notify_router
from app.reports.routes import router as reports_router
from app.settings import Settings, get_settings
from app.talk.routes import router as talk_router
from app.tickets.routes import router as tickets_router
from app.tickets.workflow_routes import router as workflow_router
from app.tickets.workflow_routes import templates_router
from app.workorders.routes import router as workorders_router

API_DESCRIPTION = """
Kerbside: citizens report street problems, reports of the same problem cluster into one
**ticket**, crews pull geo-filtered work orders, and every reporter hears back.

Errors are [RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) `application/problem+json`.
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
        # What start-up made lives as long as the process: keep the cyclic garbage collector
        # from scanning it again at every full collection, which paused the event loop for
        # over 100 ms (about 200,000 objects).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            app.state.photos.close()
            if owns_engine:
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
    )
    app.state.settings = settings
    app.state.catalog = Catalog()
    app.state.photos = PhotoPipeline(settings)
    install_error_handlers(app)
    app.add_middleware(RejectNulMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
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
    app.include_router(admin_router)
    app.include_router(talk_router, dependencies=[CHECK_CREDENTIALS])
    app.include_router(home_router)
    install_schemas(app)
    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory app.main:app_factory`` (used by ``kerbside serve``)."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
