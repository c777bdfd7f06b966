"""Process settings for the command, made before numpy loads.

One OpenBLAS thread: the kernel keeps every matrix product below OpenBLAS's
threading threshold, since its own threads already share the cores, but
OpenBLAS starts its threads when numpy loads and they spin while idle. In a
``screen`` or ``enforce`` run they took a quarter of the CPU samples (about
0.13 CPU-s), beside the kernel, GDAL and hashing threads. A value the user
set is kept; library users choose for their own process.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
