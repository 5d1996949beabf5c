import sys

from bench.speed.benchmark import main

sys.exit(main())
