# The MicroPython-dialect half of the simulator. Its modules import each other by bare name
# (`import simboard`), as they do inside the WASI MicroPython where /sim is on sys.path; under
# CPython the package registers that name once, for the same module object.
import sys

from simulator.mp import simboard

sys.modules.setdefault("simboard", simboard)
