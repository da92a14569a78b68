"""Browser demo of restore (``restore web``; needs the ``web`` extra: ``pip install 'restore[web]'``).

Importing this package turns Gradio's telemetry off (``GRADIO_ANALYTICS_ENABLED=False``) before
:mod:`restore.web.app` imports Gradio: the demo runs offline and never phones home.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
