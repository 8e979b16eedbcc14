//! An in-process fake Kubernetes API server.
