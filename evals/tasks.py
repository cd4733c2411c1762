"""django-q2 entry points: a few lines each, ids in, one service call.

Never pass the judge API key (or any secret) as a task argument: django-q2 stores arguments in plain text.
"""

from __future__ import annotations

# --- Datasets -------------------------------------------------------------------------------------

# --- Runs -----------------------------------------------------------------------------------------
