"""Seeing into the fabric: flows named by their owners, audits, and packet traces."""
