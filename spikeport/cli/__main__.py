"""``python -m spikeport.cli``: the ``spikeport`` command (as torchrun and the tests start it)."""

import sys

from spikeport.cli import main

sys.exit(main())
