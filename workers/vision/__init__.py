"""Photos and the faces in them: decoding, face detectors and the smallest face, face crops (no emotion model)."""
