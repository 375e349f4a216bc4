"""The site's static files (a stylesheet, a script, an icon), served from memory.

They are read once at start. Starlette's ``StaticFiles`` stats and reads every file in the
thread pool, so while a stalled database holds all of the pool's threads, the login page's
stylesheet would wait with it; these answer on the event loop alone.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException

__all__ = ["asset_router"]


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _load(folder: Path) -> dict[str, Asset]:
    assets = {}
    for path in sorted(folder.iterdir()):
        if path.is_file():
            body = path.read_bytes()
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            assets[path.name] = Asset(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
    return assets


def asset_router(folder: Path) -> APIRouter:
    """``GET /static/NAME`` for each file directly in ``folder``, with an ETag."""
    assets = _load(folder)
    router = APIRouter(include_in_schema=False)

    @router.api_route("/static/{name}", methods=["GET", "HEAD"], name="static")
    async def static_asset(name: str, request: Request) -> Response:
        asset = assets.get(name)
        if asset is None:
            raise HTTPException(status_code=404)
        headers = {"ETag": asset.etag}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    return router
