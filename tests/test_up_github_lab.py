"""``pgfleet up lab --output github`` inside a CI job: the same code as the cloud path, against the real lab.

An application's integration tests then connect with the written DSN. Checks: the outputs are written in GitHub's
format, the DSN reaches the cluster (a vector table and an HNSW query, as the pull-request smoke test does), and
every secret of the stack was masked before anything else was printed and appears nowhere else in the log.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from pgfleet import github

pytestmark = pytest.mark.lab


def test_up_lab_output_github_writes_a_working_dsn_and_masks_every_secret(deployed, lab_secrets, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out_file = tmp_path / "github_output"
    out_file.touch()
    p = subprocess.run([sys.executable, "-m", "pgfleet.cli", "up", "lab", "--output", "github"],
                       env={**os.environ, github.OUTPUT_ENV: str(out_file)}, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    masks = {ln.removeprefix("::add-mask::") for ln in lines if ln.startswith("::add-mask::")}
    secrets = [*lab_secrets.passwords.values(), *[ln for ln in lab_secrets.ca_key_pem.splitlines() if ln.strip()]]
    assert set(secrets) <= masks
    last_mask = max(i for i, ln in enumerate(lines) if ln.startswith("::add-mask::"))
    assert last_mask < next(i for i, ln in enumerate(lines) if "[2/4]" in ln)
    for s in secrets:
        assert s not in p.stderr and not [ln for ln in lines if s in ln and not ln.startswith("::add-mask::")]

    got = github.parse_outputs(out_file.read_text())
    assert {"dsn", "dsn_ro", "dsn_direct", "ca_cert", "ca_file", "passfile", "password", "inventory", "endpoints"} <= set(got)
    assert got["ca_cert"].strip() == lab_secrets.ca_cert_pem.strip()
    with psycopg.connect(got["dsn"], autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS ci_smoke")
        conn.execute("CREATE TABLE ci_smoke (id int PRIMARY KEY, v vector(3))")
        conn.execute("INSERT INTO ci_smoke SELECT i, ARRAY[i, i * 2, i * 3]::vector FROM generate_series(1, 200) i")
        conn.execute("CREATE INDEX ON ci_smoke USING hnsw (v vector_l2_ops)")
        nearest = conn.execute("SELECT id FROM ci_smoke ORDER BY v <-> '[10,20,30]' LIMIT 1").fetchone()
        conn.execute("DROP TABLE ci_smoke")
    assert nearest == (10,)
