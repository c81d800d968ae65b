"""The self-contained HTML report of a job: data from the database, charts, face thumbnails, one file."""
