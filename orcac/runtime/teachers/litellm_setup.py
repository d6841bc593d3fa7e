"""litellm, imported once and quietly: offline price map, no callbacks, no logging noise.

Its own module because everything that talks to litellm needs it (the call loop, the fast
path's one-time resolution, the local provider's registration, the batch path) and none of
them should import the others for it. `import litellm` costs about 2 s: only teacher calls pay it.
"""

from __future__ import annotations

import logging
import os

_litellm = None


def get_litellm():
    """litellm, imported once, offline price map, no callbacks, no logging noise."""
    global _litellm
    if _litellm is not None:
        return _litellm
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch prices at import
    os.environ.setdefault("LITELLM_LOG", "CRITICAL")
    import litellm

    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    litellm.turn_off_message_logging = True
    litellm.telemetry = False
    litellm.drop_params = True  # a provider that lacks e.g. `seed` ignores it instead of failing
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "httpx", "openai"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    _litellm = litellm
    return litellm
