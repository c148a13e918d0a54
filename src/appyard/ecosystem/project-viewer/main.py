"""Project viewer: a web page of an images project, served until the session is stopped.

A long-lived ("serving") app: it listens on the port the agent gives it (``APP_PORT``), reports
``session.ready(url)`` (the task, still ``started``, becomes ``ready``) and answers until SIGTERM, when it closes
the server and exits 0. Every page reads the project afresh, with the task's token.

- ``/``: the project's datasets, each with its first page of images (thumbnails, links);
- ``/datasets/<id>?cursor=``: a further page of a dataset's images;
- ``/images/<id>.png``: the image with its annotation drawn in the class colours
  (``?width=`` scales it down: the thumbnails);
- ``/health``: ``{"status": "ok"}``.

Its page is opened through the server at ``/apps/<task_id>/`` (the web UI's "App page"): the
server asks for the path under that prefix, and the links here are written under
``APP_BASE_PATH`` (the prefix, set by the agent) so that they work there. A path that still
has the prefix is served too (the page opened on the app's own port).
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import signal
import socket
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from PIL import Image, ImageChops, ImageColor, ImageFilter

import appyard as ay
from appyard.errors import AppyardError, NotFoundError
from appyard.schemas.annotation import Annotation, ProjectMeta
from appyard.sdk.geometry import object_mask

IMAGE_PATH = re.compile(r"^/images/(\d+)\.png$")
DATASET_PATH = re.compile(r"^/datasets/(\d+)$")
PAGE_SIZE = 100  # images per page
FILL_ALPHA = 90  # of 255: the fill lets the image show through; the outline is opaque
THUMB_WIDTH = 160
#: where the page is, through the server (``/apps/<task_id>/``); links are written under it
BASE = "/" + (os.environ.get("APP_BASE_PATH") or "/").strip("/") + "/"
BASE = "/" if BASE == "//" else BASE


def _rgb(color: str | None) -> tuple[int, int, int]:
    r, g, b = ImageColor.getrgb(color or "#FF0000")[:3]
    return r, g, b


def _outline(mask: Image.Image) -> Image.Image:
    """The edge pixels of a mode ``L`` mask (inside, next to outside), 255 on them."""
    bbox = mask.getbbox()
    out = Image.new("L", mask.size, 0)
    if bbox is None:
        return out
    left, top, right, bottom = bbox
    box = (
        max(0, left - 1),
        max(0, top - 1),
        min(mask.width, right + 1),
        min(mask.height, bottom + 1),
    )
    crop = mask.crop(box)
    out.paste(ImageChops.subtract(crop, crop.filter(ImageFilter.MinFilter(3))), box[:2])
    return out


def render(
    image: bytes, ann_json: dict[str, Any], meta: ProjectMeta, width: int | None = None
) -> bytes:
    """The image as PNG with each object filled (translucent) and outlined in its class colour;
    scaled down to ``width`` (a thumbnail) when given."""
    ann = Annotation.model_validate(ann_json)
    with Image.open(io.BytesIO(image)) as img:
        base = img.convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    for obj in ann.objects:
        cls = meta.get_class(obj.class_)
        rgb = _rgb(cls.color if cls else None)
        mask = object_mask(obj, base.width, base.height).point(lambda v: 255 if v else 0)
        overlay.paste((*rgb, FILL_ALPHA), (0, 0), mask)
        overlay.paste((*rgb, 255), (0, 0), _outline(mask))
    drawn = Image.alpha_composite(base, overlay).convert("RGB")
    if width is not None and 0 < width < drawn.width:
        drawn.thumbnail((width, drawn.height))
    out = io.BytesIO()
    drawn.save(out, format="PNG")
    return out.getvalue()


def _page(title: str, body: list[str]) -> str:
    e = html.escape
    return "\n".join(
        [
            "<!doctype html>",
            f"<html><head><meta charset='utf-8'><title>{e(title)}</title>",
            "<style>body{font-family:sans-serif;margin:2em}li{margin:.4em 0}"
            "img{vertical-align:middle;margin-right:.6em;border:1px solid #ccc}</style>"
            "</head><body>",
            *body,
            "</body></html>",
        ]
    )


def index_page(api: ay.Api, project_id: int) -> str:
    """The project and its datasets; each dataset's first page of images with thumbnails."""
    project = api.project.get_info_by_id(project_id)
    e = html.escape
    body = [
        f"<h1>{e(project.name)}</h1>",
        f"<p>Project {project.id}: {project.datasets_count} datasets, "
        f"{project.images_count} images.</p>",
    ]
    for ds in api.dataset.get_list(project_id):
        body += [f"<h2 id='dataset-{ds.id}'>{e(ds.name)} ({ds.images_count} images)</h2>"]
        body += _image_list(api, ds.id, None)
    return _page(project.name, body)


def dataset_page(api: ay.Api, project_id: int, dataset_id: int, cursor: str | None) -> str:
    """One page of a dataset's images (``?cursor=`` from the previous page's link)."""
    ds = api.dataset.get_info_by_id(dataset_id)
    if ds.project_id != project_id:
        raise NotFoundError(f"no dataset {dataset_id} in this project")
    e = html.escape
    body = [f"<p><a href='{e(BASE)}'>back to the project</a></p>", f"<h1>{e(ds.name)}</h1>"]
    return _page(ds.name, body + _image_list(api, dataset_id, cursor))


def _image_list(api: ay.Api, dataset_id: int, cursor: str | None) -> list[str]:
    """A page of images (``PAGE_SIZE``) with thumbnails, and a link to the next page."""
    e = html.escape
    page = api.image.get_page(dataset_id, PAGE_SIZE, cursor)
    out = ["<ul>"]
    for im in page.items:
        href = f"{BASE}images/{im.id}.png"
        tags = f" [{e(', '.join(im.tags))}]" if im.tags else ""
        out.append(
            f"<li><a href='{href}'><img src='{href}?width={THUMB_WIDTH}' width='{THUMB_WIDTH}' "
            f"loading='lazy' alt=''>{e(im.name)}</a> {im.width}x{im.height}, "
            f"{im.objects_count} objects{tags}</li>"
        )
    out.append("</ul>")
    if page.next_cursor:
        nxt = f"{BASE}datasets/{dataset_id}?{urlencode({'cursor': page.next_cursor})}"
        out.append(f"<p><a href='{e(nxt)}'>more images</a></p>")
    return out


class ViewerServer(ThreadingHTTPServer):
    daemon_threads = True  # a slow client does not hold up the stop

    def __init__(self, address: tuple[str, int], api: ay.Api, project_id: int) -> None:
        super().__init__(address, Handler)
        self.api = api
        self.project_id = project_id


class Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        if BASE != "/" and path.startswith(BASE):
            path = path[len(BASE) - 1 :]  # opened on its own port, with the prefix's links
        try:
            if path == "/health":
                self._json(HTTPStatus.OK, {"status": "ok"})
            elif path in ("/", "/index.html"):
                page = index_page(self.server.api, self.server.project_id)
                self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
            elif m := IMAGE_PATH.match(path):
                width = query.get("width", [""])[0]
                self._image(int(m.group(1)), int(width) if width.isdigit() else None)
            elif m := DATASET_PATH.match(path):
                cursor = query.get("cursor", [None])[0]
                api, project_id = self.server.api, self.server.project_id
                try:
                    page = dataset_page(api, project_id, int(m.group(1)), cursor)
                except NotFoundError:
                    self._json(HTTPStatus.NOT_FOUND, {"detail": f"no dataset page {path}"})
                    return
                self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"detail": f"no page {path}"})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left
        except Exception as exc:
            traceback.print_exc()
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"detail": f"{type(exc).__name__}: {exc}"})

    def _image(self, image_id: int, width: int | None) -> None:
        api = self.server.api
        try:
            info = api.image.get_info_by_id(image_id)
        except NotFoundError:
            info = None
        if info is None or info.project_id != self.server.project_id:
            self._json(HTTPStatus.NOT_FOUND, {"detail": f"no image {image_id} in this project"})
            return
        meta = ProjectMeta.model_validate(api.project.get_meta(info.project_id))
        body = render(
            api.image.download_bytes(image_id),
            api.annotation.download_json(image_id),
            meta,
            width,
        )
        self._send(HTTPStatus.OK, body, "image/png")

    def log_message(self, format: str, *args: Any) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


def public_url(host: str, port: int) -> str:
    """The URL clients use: a wildcard bind is reached by the machine's name."""
    name = socket.gethostname() if host in ("", "0.0.0.0", "::") else host
    return f"http://{name}:{port}/"


def main() -> int:
    session = ay.AppSession.from_env()
    target = session.target
    project_id = target.value if target.name == "images_project" else None
    if project_id is None:
        project_id = ay.env.project_id(raise_not_found=False)
    if project_id is None:
        print("error: start the viewer on an images project (state projectId)", file=sys.stderr)
        return 2
    api = session.api
    try:
        project = api.project.get_info_by_id(int(project_id))
    except AppyardError as exc:
        print(f"error: project {project_id}: {exc}", file=sys.stderr)
        return 2
    host = str(session.state.get("host") or "127.0.0.1")
    server = ViewerServer((host, session.port or 0), api, project.id)

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever() to return: call it from another thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    url = public_url(host, server.server_address[1])
    print(
        f"serving project {project.name!r} (id {project.id}) at {url}, pid {os.getpid()}",
        flush=True,
    )
    session.ready(url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    print("stopped: the viewer was asked to stop", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
