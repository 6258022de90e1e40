import os
import sys

from optim.cli import main

try:
    code = main()
    sys.stdout.flush()
except BrokenPipeError:  # `python -m optim techniques | head`: the reader has gone, say nothing
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code = 141  # 128 + SIGPIPE, as a shell tool would end
sys.exit(code)
