"""Replicas on etcd: the connection, the store kept there, the leader election and the
members (docs/replicas.md)."""
