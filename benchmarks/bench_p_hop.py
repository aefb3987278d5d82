"""p_hop cost is O(F N), independent of the window t_R, and its memory is bounded by atom chunks.

Prints, for N = 10^4 atoms and F = 10^3 frames (single shot, CPU NumPy):
  * seconds for p_hop with half windows h = 10 and h = 200, and their ratio (~1 for running sums;
    a direct sum over the window would scale like h, ~20);
  * the ratio to the time of one pass over the positions (unwrapping), the floor of any method;
  * the peak memory p_hop allocates (tracemalloc; NumPy reports its buffers to it), against the
    size of its output, to show the temporaries stay bounded by the atom chunk.

Run: python benchmarks/bench_p_hop.py [N] [F]
"""

import sys
import time
import tracemalloc

import numpy as np

from softness.hops import p_hop


def main(n_atoms=10_000, n_frames=1_000):
    rng = np.random.default_rng(0)
    box = 50.0
    unwrapped = np.cumsum(rng.normal(scale=0.05, size=(n_frames, n_atoms, 3)).astype(np.float32), axis=0)
    unwrapped += rng.uniform(0, box, (1, n_atoms, 3)).astype(np.float32)
    images = np.floor(unwrapped / box).astype(np.int32)
    positions = (unwrapped - images * box).astype(np.float32)
    del unwrapped
    t0 = time.perf_counter()
    _ = positions.astype(np.float64) + images * box
    t_pass = time.perf_counter() - t0
    del _
    times = {}
    for h in (10, 200):
        tracemalloc.start()
        t0 = time.perf_counter()
        p = p_hop(positions, h, images=images, box=np.full(3, box))
        times[h] = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert np.isfinite(p[h:n_frames - h + 1]).all()
    input_mib = (positions.nbytes + images.nbytes) / 2**20
    print(f"N = {n_atoms}, F = {n_frames}")
    print(f"p_hop h=10: {times[10]:.2f} s, h=200: {times[200]:.2f} s, ratio h=200/h=10: "
          f"{times[200] / times[10]:.2f} (window-independent cost: ~1)")
    print(f"p_hop / one unwrapping pass: {times[10] / t_pass:.1f}")
    print(f"p_hop peak allocation {peak / 2**20:.0f} MiB = output {p.nbytes / 2**20:.0f} MiB + "
          f"{(peak - p.nbytes) / 2**20:.0f} MiB temporaries (inputs, not counted: {input_mib:.0f} MiB)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
