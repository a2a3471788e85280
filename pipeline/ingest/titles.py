"""Movie titles as MovieLens writes them, and the normal form used to match them with IMDb."""

from __future__ import annotations

import re
import unicodedata

_TITLE_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:\s*[-–]\s*\d{0,4})?\)\s*$")
# "Usual Suspects, The" -> "The Usual Suspects" (English, French, German, Spanish, Italian articles)
_TRAILING_ARTICLE = re.compile(
    r"^(?P<rest>.+?),\s*(?P<art>The|A|An|Les|Le|La|L'|Il|El|Los|Las|Der|Die|Das)$", re.IGNORECASE
)
_ALSO_KNOWN_AS = re.compile(r"\s*\((?:a\.k\.a\.\s*)?(?P<alt>[^()]*)\)\s*$", re.IGNORECASE)


def split_title_year(raw: str) -> tuple[str, int | None]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", 1995)``; a title without a year keeps ``None``."""
    text = raw.strip()
    match = _TITLE_YEAR.match(text)
    if not match:
        return text, None
    return match.group("title").strip(), int(match.group("year"))


def restore_article(title: str) -> str:
    """``"Usual Suspects, The"`` -> ``"The Usual Suspects"``."""
    match = _TRAILING_ARTICLE.match(title.strip())
    if not match:
        return title.strip()
    art = match.group("art")
    sep = "" if art.endswith("'") else " "
    return f"{art}{sep}{match.group('rest')}"


def title_variants(title: str) -> list[str]:
    """The title and, for ``"Shanghai Triad (Yao a yao yao dao waipo qiao)"``, its alternative name."""
    variants = [title]
    match = _ALSO_KNOWN_AS.search(title)
    if match and match.start() > 0:
        variants = [title[: match.start()], match.group("alt")]
    return [restore_article(v) for v in variants if v.strip()]


def normalise_title(title: str) -> str:
    """Case-, accent- and punctuation-insensitive form, with a leading article moved back to the front."""
    text = unicodedata.normalize("NFKD", restore_article(title))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower().replace("&", " and ")
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text).split())


def title_keys(title: str) -> set[str]:
    """Every normal form a title may be matched under: the whole title and each of its ``title_variants``."""
    keys = {normalise_title(v) for v in [title, *title_variants(title)]}
    keys.discard("")
    return keys
