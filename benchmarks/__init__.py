"""Benchmarks of ssd-tf against the reference design (NVIDIA's SSD300 v1.1 in PyTorch), measured
side by side in one invocation: ``python -m benchmarks {data,startup,train,inference}`` from a
checkout. Not part of the installed package."""
