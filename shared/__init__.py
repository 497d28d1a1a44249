"""Job schemas, settings, queue names, the Celery app factory and errors shared by producers and workers."""
