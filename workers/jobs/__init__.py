"""A job before it runs: its options, the files it covers, how it is recorded, and the errors the library raises."""
