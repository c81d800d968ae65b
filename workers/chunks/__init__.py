"""A chunk of a job's images: read, detect, classify and write them, in a Celery worker or in this machine's
processes (`local`)."""
