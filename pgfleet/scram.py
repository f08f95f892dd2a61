"""SCRAM-SHA-256 verifiers, so plaintext passwords never reach SQL files on hosts.

PostgreSQL accepts ``ALTER ROLE … PASSWORD 'SCRAM-SHA-256$…'`` as an already
hashed password. The salt is derived from the role and the password, so the
same password gives the same verifier and a re-deploy changes nothing, while a
rotated password gives a new one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

ITERATIONS = 4096


def verifier(role: str, password: str, iterations: int = ITERATIONS) -> str:
    """The ``pg_authid.rolpassword`` value PostgreSQL would store for this password."""
    salt = hmac.new(password.encode(), b"pgfleet scram salt:" + role.encode(), hashlib.sha256).digest()[:16]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
