import subprocess
import sys

import pytest

MB = 1 << 20

# Run in a fresh process, as a compare worker is: an earlier, larger cell allocates many 8 MB blocks
# and frees them. After the first round glibc raises its mmap threshold, so later rounds come from the
# heap and stay in malloc's free lists when freed. The next cell, which needs 32 MB, must still read
# ~32 MB, not the ~0 of reusing that free memory.
SCENARIO = """
import torch
from mambapoc.bench.memory import PeakMemory
MB = 1 << 20
for _ in range(3):
    blocks = [torch.ones(8 * MB // 4) for _ in range(20)]
    del blocks
mem = PeakMemory(torch.device("cpu"))
mem.reset()
blocks = [torch.ones(8 * MB // 4) for _ in range(4)]
print(mem.read()["peak_rss_bytes"])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux's")
def test_cell_peak_counts_memory_an_earlier_cell_freed():
    out = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, check=True)
    peak = int(out.stdout.split()[-1])
    assert 28 * MB <= peak <= 48 * MB


def test_tensor_peak_counts_tensors_alive_at_once_and_repeats_exactly():
    import torch

    from mambapoc.bench.memory import tensor_peak

    def together():
        blocks = [torch.ones(MB // 4) for _ in range(8)]  # 8 MiB alive at once
        return len(blocks)

    def one_at_a_time():
        for _ in range(8):
            block = torch.ones(MB // 4)
            del block

    kept = torch.ones(16 * MB // 4)  # alive before: not counted
    assert tensor_peak(together) == tensor_peak(together) == 8 * MB
    assert tensor_peak(one_at_a_time) == MB
    del kept
