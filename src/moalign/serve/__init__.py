"""Serving one model steered per request: an OpenAI-compatible server (``moalign serve``) where every request
carries its own preference vector and requests that arrive together are decoded as one mixed-preference batch.

:mod:`~moalign.serve.model` (what is served: a HoE model, a rewarded soup of experts, or a plain model),
:mod:`~moalign.serve.batcher` (dynamic batching on one worker thread), :mod:`~moalign.serve.protocol` (request
validation and OpenAI-style bodies), :mod:`~moalign.serve.metrics` (Prometheus text), :mod:`~moalign.serve.app`
(the FastAPI routes, the playground and graceful shutdown under uvicorn). Needs the ``serve`` extra.
"""

from moalign.serve.app import ServeConfig, create_app, run_server
from moalign.serve.model import ServedModel, ServeError, load_served_model

__all__ = ["ServeConfig", "ServeError", "ServedModel", "create_app", "load_served_model", "run_server"]
