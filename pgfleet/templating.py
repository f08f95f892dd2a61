"""One jinja2 renderer for every template in ``templates/``.

Templates stay dumb (values are computed in Python); StrictUndefined makes a
missing variable an error instead of an empty string in a config file.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from pgfleet import ROOT

TEMPLATES = ROOT / "templates"


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(template: str, **variables: Any) -> str:
    """Render ``templates/<template>`` (e.g. ``"lab/hosts.j2"``) with ``variables``."""
    return _env().get_template(template).render(**variables)
