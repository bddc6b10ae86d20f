"""The bundled HAM10000 sample (CC BY-NC 4.0, see SOURCE.md in this folder)."""

import os

# Folder of the bundled sample, loadable with the `ham10000` source.
SAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ham10000")
