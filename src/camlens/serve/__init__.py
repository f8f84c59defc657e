"""``camlens serve``: a local web explorer and its REST API.

:func:`create_app` builds a FastAPI application from :class:`ServeSettings` — the models a request
may name, the sample photos, and the limits (upload size, pixels, queue). It needs the optional
extra ``camlens[serve]`` (FastAPI, uvicorn, python-multipart); importing this package without it
is an ``ImportError`` that names the ``pip install`` line.
"""

try:
    import fastapi  # noqa: F401
    import python_multipart  # noqa: F401
except ImportError as error:  # pragma: no cover - the extra is installed wherever the tests run
    raise ImportError("camlens serve needs its extra: pip install 'camlens[serve]'") from error

from .app import create_app
from .explorer import ExplainRequest, ExplainResult, Explorer, RequestError
from .settings import ModelChoice, ServeSettings

__all__ = ["create_app", "ServeSettings", "ModelChoice", "Explorer", "ExplainRequest", "ExplainResult", "RequestError"]
