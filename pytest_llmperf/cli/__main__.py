"""``python -m pytest_llmperf.cli``: the ``llmperf`` command."""

import sys

from .main import main

sys.exit(main())
