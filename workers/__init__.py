"""Detect and classify faces in photos: the library under the CLI (`workers.pipeline`), the Celery app and
tasks, and the chunk work shared by Celery workers and local runs."""
