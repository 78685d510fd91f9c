"""The interactive API documentation pages, served without a CDN.

FastAPI's ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) pages load their JavaScript, CSS and
favicon from a CDN by default, and stay blank on a machine without internet. convlens serves
those assets itself from the ``fastapi-offline`` package, which vendors the released
Swagger UI and ReDoc bundles, so the pages work wherever the service answers.

Example::

    app = FastAPI(docs_url=None, redoc_url=None)
    install_docs(app)          # /docs, /redoc and their assets under /static/docs/
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where the vendored Swagger UI / ReDoc bundles are served from.
ASSETS_URL = "/static/docs"

#: Swagger UI settings: no online validator badge (it would send the document to
#: validator.swagger.io).
SWAGGER_UI_PARAMETERS: dict[str, Any] = {"validatorUrl": None}


#: The documentation pages load nothing from off this machine: scripts, styles, images and
#: fonts come from the service itself (ReDoc's sidebar logo, fetched from its vendor's CDN,
#: is refused by the browser before any request is made). Inline scripts and styles are the
#: pages' own start-up code.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "worker-src 'self' blob:",
    "connect-src 'self'",
    "frame-ancestors 'self'",
))


def _local_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def assets_directory() -> str:
    """The directory of the vendored bundles (``swagger-ui-bundle.js``, ``swagger-ui.css``,
    ``redoc.standalone.js``, ``favicon.png``).

    >>> import os
    >>> sorted(name for name in os.listdir(assets_directory()) if name.endswith((".js", ".css")))
    ['redoc.standalone.js', 'swagger-ui-bundle.js', 'swagger-ui.css']
    """
    return str(files("fastapi_offline") / "static")


def install_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve Swagger UI at ``docs_url`` and ReDoc at ``redoc_url`` from local assets.

    The application must be created with ``docs_url=None, redoc_url=None`` so that FastAPI's
    CDN-backed pages are not registered first.
    """
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    app.mount(ASSETS_URL, StaticFiles(directory=assets_directory()), name="docs-assets")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _local_only(get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_redirect_url}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        ))

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _local_only(get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        ))
