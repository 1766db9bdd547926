"""The web console of ``probewatch collect --ui``: a Starlette app (:mod:`.app`) served
by uvicorn in a thread of its own, and its one static page (``static/index.html``).
Importing this package imports neither Starlette nor uvicorn."""
