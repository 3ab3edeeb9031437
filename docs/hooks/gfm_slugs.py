"""mkdocs hook: heading anchors made as GitHub makes them, so a link such as
``guides/training.md#error-bars---head-gaussian---ensemble-k-calibration`` works on GitHub and
on the site alike (Python-Markdown's own rule collapses the hyphens)."""

from __future__ import annotations

import re


def gfm_slug(value: str, separator: str = "-") -> str:
    """GitHub's rule: lower case, drop every character that is not a letter, digit, ``_``,
    ``-`` or space, then each space becomes ``separator`` (runs are kept)."""
    return re.sub(r"[^\w\- ]", "", value.strip().lower()).replace(" ", separator)


def on_config(config, **kwargs):
    config.mdx_configs.setdefault("toc", {})["slugify"] = gfm_slug
    return config
