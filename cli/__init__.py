"""The `fer` command line: thin click commands over the library packages."""
