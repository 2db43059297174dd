"""`soundstorm serve`: an HTTP API (FastAPI, OpenAPI schema at /openapi.json, docs at /docs)
and a web page (/) over a SpeechPipeline.

    app.py      the routes, request validation and responses
    queue.py    the bounded generation queue: one worker thread, batching concurrent requests
    uploads.py  uploaded audio: size limit, decoding, checks
    schemas.py  the JSON shapes of responses
    config.py   the limits (text length, upload size, queue depth, batch size)
    command.py  the command line
    static/     the page (plain HTML and JavaScript: no CDN, nothing fetched from outside)
"""
