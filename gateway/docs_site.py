"""The API's documentation as Envoy serves it: the OpenAPI document (gateway.openapi) at
/openapi.json and Swagger UI at /docs, from the assets of the `swagger-ui-bundle-v2` package
(no CDN: it works offline). `write_swagger_ui` puts the files into the generated directory
beside the descriptor set; gateway.render routes each URL below to its file with a
direct_response, and lets them through without a token.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from gateway.openapi import DOCUMENT


@dataclass(frozen=True)
class DocFile:
    url: str
    # Relative to the generated directory (build/gen).
    file: str
    content_type: str


SWAGGER_UI_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
_TYPES = {".js": "application/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".png": "image/png"}
# Swagger UI's page; with a slash, the URL redirects to it (instead of a 401 for a path the
# token check does not know).
PAGE = "/docs"
FILES: tuple[DocFile, ...] = (
    DocFile("/openapi.json", DOCUMENT, "application/json"),
    DocFile(PAGE, "docs/index.html", "text/html; charset=utf-8"),
    *(DocFile(f"/docs/{name}", f"docs/{name}", _TYPES[Path(name).suffix])
      for name in SWAGGER_UI_ASSETS),
)

# Swagger UI's page, with the bundle alone (no standalone preset: no URL bar to load other
# documents). The token that "Authorize" takes is sent as `Authorization: Bearer ...`.
INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Marquee API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
    });
  </script>
</body>
</html>
"""


def write_swagger_ui(out: Path) -> None:
    """Swagger UI's page and the package's assets into OUT/docs."""
    from swagger_ui_bundle import swagger_ui_path

    docs = out / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for name in SWAGGER_UI_ASSETS:
        shutil.copyfile(Path(swagger_ui_path) / name, docs / name)
    (docs / "index.html").write_text(INDEX_HTML)
