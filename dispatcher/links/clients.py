"""Who asked for a short link, coarsely: ``mobile``, ``desktop``, ``other`` or ``bot``.

Link-preview fetchers (messaging apps unfurling a link, security scanners) and prefetches ask
for links nobody clicked: they are flagged ``bot`` and not counted, and fire no webhook. A
``HEAD`` request, a ``Purpose``/``Sec-Purpose: prefetch`` header, or a user agent of a known
preview fetcher or crawler marks one. Nothing more of the user agent is kept.
"""

from __future__ import annotations

import re
from functools import lru_cache

MOBILE = "mobile"
DESKTOP = "desktop"
OTHER = "other"
BOT = "bot"

# Preview fetchers and crawlers, by the names they announce (Apple's and WhatsApp's previews
# announce themselves as facebookexternalhit or Twitterbot, or carry "WhatsApp").
_BOTS = re.compile(
    r"bot\b|bot/|crawler|spider|preview|facebookexternalhit|facebookcatalog|whatsapp|"
    r"telegram|slack|discord|skype|linkedin|embedly|vkshare|pinterest|bitlybot|"
    r"google-inspectiontool|googleother|headlesschrome|lighthouse|curl/|wget/|"
    r"python-requests|python-httpx|aiohttp|go-http-client|okhttp/[0-9.]+$|java/|scanner|"
    r"proofpoint|mimecast|barracuda|safelinks|urldefense",
    re.IGNORECASE,
)
_MOBILE = re.compile(r"mobile|android|iphone|ipad|ipod|windows phone|kaios|opera mini", re.I)
_DESKTOP = re.compile(r"windows nt|macintosh|x11|cros|linux x86_64", re.IGNORECASE)


def classify(method: str, user_agent: str, purpose: str = "") -> tuple[str, bool]:
    """``(client class, is a preview)`` of a request for a short link."""
    if method == "HEAD" or "prefetch" in purpose.lower() or "preview" in purpose.lower():
        return BOT, True
    return _by_agent(user_agent)


# Clicks come from a few hundred distinct browsers: the regular expressions run once for each.
@lru_cache(maxsize=4096)
def _by_agent(user_agent: str) -> tuple[str, bool]:
    if not user_agent or _BOTS.search(user_agent):
        return BOT, True
    if _MOBILE.search(user_agent):
        return MOBILE, False
    if _DESKTOP.search(user_agent):
        return DESKTOP, False
    return OTHER, False
