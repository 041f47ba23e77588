"""`biglittle serve`: an OpenAI-compatible HTTP server for a model pair.

app.py       the FastAPI application: endpoints, error handlers
replies.py   one request's reply: JSON, or server-sent events as the rounds commit
worker.py    one generation at a time, a bounded queue, cancellation
protocol.py  the OpenAI API's request and response shapes, biglittle's extra fields
metrics.py   Prometheus metrics
page.html    the page at /: which model wrote each token
"""

from .app import create_app

__all__ = ["create_app"]
