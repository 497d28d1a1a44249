"""The Celery edge of one worker process: tasks and their handler, the process's wiring (process.py), job
leases, token streaming, metrics, remote control and the consumer that dead-letters refused messages."""
