"""The emotion model as workers serve it: on Keras or ONNX Runtime, on which device, in batches of what size."""
