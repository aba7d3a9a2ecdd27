import sys

from revocast.cli import main

sys.exit(main())
