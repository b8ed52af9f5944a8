"""``GET /`` and the API documentation pages (Swagger UI at ``/docs``, ReDoc at ``/redoc``).

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they were blank on a machine
without internet. Their scripts are vendored here from the npm packages ``swagger-ui-dist``
(Apache-2.0) and ``redoc`` (MIT), the way ``/maps`` vendors MapLibre, and served from this
process; the licences are served beside them.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse

from app.core.errors import NotFound

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static/docs"
# The files, by the name they are served under (nothing else is served).
STATIC_FILES = {
    "swagger-ui-bundle.js": ("vendor/swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("vendor/swagger-ui.css", "text/css"),
    "swagger-ui.LICENSE.txt": ("vendor/swagger-ui.LICENSE.txt", "text/plain"),
    "redoc.standalone.js": ("vendor/redoc.standalone.js", "text/javascript"),
    "redoc.LICENSE.txt": ("vendor/redoc.LICENSE.txt", "text/plain"),
    "favicon.png": ("vendor/favicon-32x32.png", "image/png"),
}
OPENAPI_URL = "/openapi.json"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"


@router.get("/", response_class=HTMLResponse)
async def landing() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{STATIC_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC_PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{STATIC_PREFIX}/favicon.png",
        oauth2_redirect_url=OAUTH2_REDIRECT_URL,
    )


@router.get(OAUTH2_REDIRECT_URL, response_class=HTMLResponse)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc", response_class=HTMLResponse)
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=OPENAPI_URL,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{STATIC_PREFIX}/redoc.standalone.js",
        redoc_favicon_url=f"{STATIC_PREFIX}/favicon.png",
        with_google_fonts=False,  # no request leaves for a font server
    )


@router.get(STATIC_PREFIX + "/{name}")
async def static_file(name: str) -> FileResponse:
    found = STATIC_FILES.get(name)
    if found is None:
        raise NotFound(f"No file {name}")
    path, media = found
    return FileResponse(
        STATIC_DIR / path, media_type=media, headers={"Cache-Control": "public, max-age=86400"}
    )
