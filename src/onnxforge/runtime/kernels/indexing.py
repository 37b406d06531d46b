"""indexing kernels."""
