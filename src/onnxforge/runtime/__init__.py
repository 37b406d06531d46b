"""The NumPy inference engine: registry, kernels, execution plan and the ORT-shaped session API."""
