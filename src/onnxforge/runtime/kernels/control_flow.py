"""control_flow kernels."""
