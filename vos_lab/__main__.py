import sys

from vos_lab.cli import main

sys.exit(main())
