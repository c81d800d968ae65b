"""Print fer-pipeline's dependencies without its TensorFlow line, one per line (for `pip install -r -`).

A GPU worker brings its own CUDA TensorFlow (the tensorflow/tensorflow:*-gpu image, or
`pip install 'tensorflow[and-cuda]'`); the package's `tensorflow-cpu` would be a second
distribution writing the same `tensorflow/` files, so it is left out and the package is
installed with --no-deps.
"""

import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")).read_text())["project"]
print("\n".join(d for d in project["dependencies"] if not d.replace("_", "-").startswith("tensorflow")))
