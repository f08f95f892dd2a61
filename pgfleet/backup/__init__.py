"""Backups with pgBackRest to S3-compatible object storage."""
