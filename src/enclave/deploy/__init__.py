"""Deployment helpers: what to run on the GPU hosts that enclave sits in front of."""
