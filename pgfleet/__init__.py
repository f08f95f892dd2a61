"""pgfleet: highly available PostgreSQL + pgvector on Hetzner NVMe machines."""

from pathlib import Path

__version__ = "0.1.0"

#: The repository root: stacks/, roles/ and templates/ live here.
ROOT = Path(__file__).resolve().parent.parent
