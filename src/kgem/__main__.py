import sys

from kgem.cli import main

sys.exit(main())
