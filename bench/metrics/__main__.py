import sys

from bench.cli.metrics import main

sys.exit(main())
