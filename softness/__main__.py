import sys

from softness.cli import main

sys.exit(main())
