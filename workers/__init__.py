"""Detect and classify faces in photos: the chunk task shared by Celery workers and local processes."""
