"""Adding the sidecar to existing workloads: one pure mutation (`mutate.inject_pod`), called
by the ``causality-sidecar inject`` command and by the admission webhook."""
