from __future__ import annotations

import os
import sys

# suffix_reference.py sits beside the tests; the root config puts nothing on the path.
sys.path.insert(0, os.path.dirname(__file__))
