"""Deployment helpers: what to run on the GPU hosts that enclave sits in front of, and
the offline bundle that installs enclave itself on a machine with no network."""
