"""Text shown through ``st.markdown`` as typed: a name from a user is text, not Markdown."""

from __future__ import annotations


def plain(text: str) -> str:
    r"""``text`` escaped for Markdown, so a model named ``[Docs](https://x)`` shows as typed.

    Example:
        >>> plain("[Docs](https://x) *b*")
        '\\[Docs\\]\\(https://x\\) \\*b\\*'
    """
    return "".join("\\" + c if c in "\\`*_{}[]()<>#+-.!|~$" else c for c in str(text))
