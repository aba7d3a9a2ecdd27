"""Apps the real-server tests run in subprocesses (uvicorn, gunicorn).

Both read their SDK settings from ``REVOCAST_*`` variables and follow the real Kafka topic.
"""
